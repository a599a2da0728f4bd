//! The torchvision safetensors loader against Keras: `fixtures/resnet/make_fixture.py` built
//! the ResNet-50 topology at width 4 in the torchvision layout in Keras, with random weights
//! and batch-norm statistics, exported them under torchvision names, and stored Keras'
//! pooled features for two fixture images.

use std::path::Path;

use autocaption_vision::{batch, keras_preprocess, load_rgb, load_torchvision_file, Layout};
use safetensors::SafeTensors;

/// Largest difference allowed, relative to the largest feature.
const RELATIVE_TOLERANCE: f32 = 1e-4;

#[test]
fn features_match_keras() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let path = root.join("resnet/torchvision_w4.safetensors");
    let net = load_torchvision_file(&path).unwrap();
    assert_eq!(net.config.layout, Layout::Torchvision);
    assert_eq!((net.config.width, net.config.blocks), (4, [3, 4, 6, 3]));
    let inputs: Vec<Vec<f32>> = ["rgb_37x23.png", "smooth_130x90.jpg"]
        .iter()
        .map(|n| {
            keras_preprocess(
                &load_rgb(&root.join("keras_preprocess/images").join(n)).unwrap(),
                224,
            )
        })
        .collect();
    let got = net.forward(&batch(&inputs, 224));
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f32> = st
        .tensor("expected.features")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
        / scale;
    eprintln!("max |ours - keras| / max |keras| = {worst:e}");
    assert!(
        worst <= RELATIVE_TOLERANCE,
        "features differ from Keras by {worst:e} (relative)"
    );
}

#[test]
fn wrong_files_name_the_problem() {
    let d = std::env::temp_dir().join(format!("autocaption-weights-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let junk = d.join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors").unwrap();
    assert!(load_torchvision_file(&junk)
        .unwrap_err()
        .to_string()
        .contains("not a safetensors file"));
    assert!(load_torchvision_file(&d.join("missing.safetensors")).is_err());
    let _ = std::fs::remove_dir_all(&d);
}
