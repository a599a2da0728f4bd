//! The weight loaders against Keras. `fixtures/resnet/make_fixture.py` built the ResNet-50
//! topology at width 4 in the torchvision layout in Keras, with random weights and
//! batch-norm statistics, exported them under torchvision names, and stored Keras' pooled
//! features for two fixture images; `make_keras_fixture.py` did the same in the Keras
//! layout with `applications.ResNet50`'s layer names, saved by Keras' own `save_weights`
//! as HDF5.

use std::path::{Path, PathBuf};

use autocaption_vision::{
    batch, keras_preprocess, load_keras_file, load_rgb, load_torchvision_file, load_weights_file,
    Layout, ResNet,
};
use safetensors::SafeTensors;

/// Largest difference allowed, relative to the largest feature.
const RELATIVE_TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Largest |ours − Keras| over the features, relative to the largest |Keras| feature.
fn compare(net: &ResNet, want: &[f32]) -> f32 {
    let inputs: Vec<Vec<f32>> = ["rgb_37x23.png", "smooth_130x90.jpg"]
        .iter()
        .map(|n| {
            let path = fixtures().join("keras_preprocess/images").join(n);
            keras_preprocess(&load_rgb(&path).unwrap(), 224)
        })
        .collect();
    let got = net.forward(&batch(&inputs, 224));
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
        / scale
}

#[test]
fn torchvision_safetensors_features_match_keras() {
    let path = fixtures().join("resnet/torchvision_w4.safetensors");
    let net = load_torchvision_file(&path).unwrap();
    assert_eq!(net.config.layout, Layout::Torchvision);
    assert_eq!((net.config.width, net.config.blocks), (4, [3, 4, 6, 3]));
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f32> = st
        .tensor("expected.features")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let worst = compare(&net, &want);
    eprintln!("torchvision layout: max |ours - keras| / max |keras| = {worst:e}");
    assert!(
        worst <= RELATIVE_TOLERANCE,
        "features differ by {worst:e} (relative)"
    );
    // The content-sniffing entry point picks the same loader.
    assert_eq!(load_weights_file(&path).unwrap(), net);
}

#[test]
fn keras_hdf5_features_match_keras() {
    let path = fixtures().join("resnet/keras_w4.h5");
    let net = load_keras_file(&path).unwrap();
    assert_eq!(net.config.layout, Layout::Keras);
    assert_eq!((net.config.width, net.config.blocks), (4, [3, 4, 6, 3]));
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("resnet/keras_w4.json")).unwrap())
            .unwrap();
    let want: Vec<f32> = expected["features"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let worst = compare(&net, &want);
    eprintln!("keras layout: max |ours - keras| / max |keras| = {worst:e}");
    assert!(
        worst <= RELATIVE_TOLERANCE,
        "features differ by {worst:e} (relative)"
    );
    assert_eq!(load_weights_file(&path).unwrap(), net);
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
    let err = load_weights_file(&junk).unwrap_err().to_string();
    assert!(err.contains("neither Keras HDF5 nor safetensors"), "{err}");
    // A Keras file cut short, and a valid HDF5 file that holds something else.
    let h5 = std::fs::read(fixtures().join("resnet/keras_w4.h5")).unwrap();
    for cut in [8, 100, 2_000, h5.len() / 2, h5.len() - 1000] {
        let short = d.join("short.h5");
        std::fs::write(&short, &h5[..cut]).unwrap();
        let err = load_weights_file(&short).unwrap_err().to_string();
        assert!(err.contains("short.h5"), "cut at {cut}: {err}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn hdf5_without_a_resnet_says_so() {
    let path = fixtures().join("resnet/other.h5");
    let err = load_keras_file(&path).unwrap_err().to_string();
    assert!(err.contains("not the weights of a Keras ResNet"), "{err}");
}
