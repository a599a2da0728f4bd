//! What several test files share: a small model that carries its own encoder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use tempfile::TempDir;

pub fn bin() -> Command {
    Command::cargo_bin("autocaption").unwrap()
}

/// `synth` → `prepare` → `concepts` → `train` into `dir`: a model with a concept CNN as its
/// encoder, trained on `count` 64×64 images; (model directory, its images).
pub fn train_concept_model(dir: &Path, count: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("synth");
    bin()
        .args([
            "synth",
            "-q",
            "--count",
            &count.to_string(),
            "--seed",
            "4",
            "--size",
            "64",
            "--out",
        ])
        .arg(&data)
        .assert()
        .success();
    let prep = dir.join("prep");
    bin()
        .args(["prepare", "-q"])
        .arg(&data)
        .arg("--out")
        .arg(&prep)
        .assert()
        .success();
    let features = dir.join("f.safetensors");
    bin()
        .args(["concepts", "-q", "--epochs", "3", "--size", "32", "--data"])
        .arg(&prep)
        .arg("--out")
        .arg(&features)
        .assert()
        .success();
    let cfg = dir.join("small.json");
    std::fs::write(
        &cfg,
        r#"{"embed_dim": 16, "text_lstm": 32, "text_dense": 16, "image_dense": 16, "merge_lstm": 32, "decoder_lstm": 48, "dropout": 0.2}"#,
    )
    .unwrap();
    let model = dir.join("model");
    bin()
        .args([
            "train",
            "-q",
            "--epochs",
            "40",
            "--lr",
            "0.01",
            "--patience",
            "40",
            "--data",
        ])
        .arg(&prep)
        .arg("--features")
        .arg(&features)
        .arg("--model-config")
        .arg(&cfg)
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    (model, data.join("images"))
}

/// One such model of 60 images for every test of a test binary.
pub fn concept_model() -> &'static (PathBuf, PathBuf) {
    static MODEL: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    MODEL.get_or_init(|| train_concept_model(&TempDir::new().unwrap().keep(), 60))
}
