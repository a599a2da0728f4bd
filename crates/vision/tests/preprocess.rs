//! Both preprocessing presets against their references, value for value:
//! `fixtures/keras_preprocess/make_fixture.py` ran Keras' `load_img(target_size=(224, 224))`,
//! `img_to_array` and `resnet50.preprocess_input`; `fixtures/torchvision_preprocess/
//! make_fixture.py` ran torchvision's `Resize(256)` + `CenterCrop(224)` + `ToTensor` +
//! `Normalize` steps with Pillow and float32 numpy. Each stored the SHA-256 of every float32
//! array; equal digests mean every value is identical.

use std::path::{Path, PathBuf};

use autocaption_vision::{keras_preprocess, load_rgb, torchvision_preprocess};
use image::RgbImage;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn fixture_dir() -> PathBuf {
    fixtures().join("keras_preprocess")
}

fn keras(img: &RgbImage) -> Vec<f32> {
    keras_preprocess(img, 224)
}

fn torchvision(img: &RgbImage) -> Vec<f32> {
    torchvision_preprocess(img, 256, 224)
}

fn load_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check_all(
    expected: &serde_json::Value,
    dir: &Path,
    preprocess: fn(&RgbImage) -> Vec<f32>,
) -> usize {
    let mut checked = 0;
    for (name, want) in expected.as_object().unwrap() {
        let img = load_rgb(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
        let x = preprocess(&img);
        assert_eq!(x.len(), 224 * 224 * 3);
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let got = format!("{:x}", Sha256::digest(&bytes));
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        assert_eq!(
            got,
            want["sha256"].as_str().unwrap(),
            "{name}: differs from the reference (mean {mean}, reference {})",
            want["mean"]
        );
        checked += 1;
    }
    checked
}

#[test]
fn generated_images_match_keras_exactly() {
    let dir = fixture_dir();
    let expected = load_json(&dir.join("expected.json"));
    assert_eq!(check_all(&expected, &dir.join("images"), keras), 4);
}

#[test]
fn generated_images_match_torchvision_exactly() {
    // Shrinking both ways, odd crop offsets, no resize at all, and (the Keras fixture's
    // tiny images) enlarging.
    let dir = fixtures().join("torchvision_preprocess");
    let expected = load_json(&dir.join("expected.json"));
    assert_eq!(check_all(&expected, &dir.join("images"), torchvision), 8);
}

fn shared_images() -> Option<PathBuf> {
    let Some(shared) = std::env::var_os("AUTOCAPTION_SHARED") else {
        eprintln!("AUTOCAPTION_SHARED is unset: skipping the real-photo check");
        return None;
    };
    Some(PathBuf::from(shared).join("data/flickr8k/images"))
}

#[test]
fn real_flickr8k_photos_match_keras_exactly() {
    let Some(images) = shared_images() else {
        return;
    };
    let expected = load_json(&fixture_dir().join("shared.json"));
    assert_eq!(check_all(&expected, &images, keras), 105);
}

#[test]
fn real_flickr8k_photos_match_torchvision_exactly() {
    let Some(images) = shared_images() else {
        return;
    };
    let expected = load_json(&fixtures().join("torchvision_preprocess/shared.json"));
    assert_eq!(check_all(&expected, &images, torchvision), 105);
}

#[test]
fn corrupt_truncated_and_non_images_are_errors_not_panics() {
    let d = std::env::temp_dir().join(format!("autocaption-vision-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let jpeg = std::fs::read(fixture_dir().join("images/smooth_130x90.jpg")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.jpg", jpeg[..jpeg.len() / 2].to_vec()),
        (
            "garbage.jpg",
            b"\xFF\xD8\xFF\xE0 this is not really a jpeg".to_vec(),
        ),
        ("text.png", b"hello".to_vec()),
        ("empty.jpg", Vec::new()),
    ];
    for (name, bytes) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        match load_rgb(&p) {
            Ok(img) => panic!(
                "{name}: decoded as {}×{} instead of failing",
                img.width(),
                img.height()
            ),
            Err(e) => assert!(e.to_string().contains(name), "{e}"),
        }
    }
    assert!(load_rgb(&d.join("missing.jpg")).is_err());
    let _ = std::fs::remove_dir_all(&d);
}
