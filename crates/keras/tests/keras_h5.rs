//! The seed's Keras model read from HDF5: `fixtures/keras_h5/make_fixture.py` (TensorFlow
//! 2.15, Keras 2) saved the seed's graph at small widths with random weights, its fitted
//! Tokenizer, Keras' probabilities for 8 pre-padded windows and the captions of the seed's
//! own `model.predict` loop for 100 feature vectors.

use std::path::{Path, PathBuf};

use autocaption_keras::{read_model_file, read_tokenizer_file, KerasError};
use serde_json::Value;

/// Largest absolute difference allowed between our probabilities and Keras'.
const PROB_TOLERANCE: f32 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/keras_h5")
        .join(name)
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}

fn tokens(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
        })
        .collect()
}

/// Largest difference between our last-position probabilities and Keras' for 8 windows.
fn worst_last_position(probs: &[f32], want: &[f32], steps: usize, v: usize) -> f32 {
    let mut worst = 0.0f32;
    for i in 0..8 {
        let last = &probs[(i * steps + steps - 1) * v..][..v];
        for (a, b) in last.iter().zip(&want[i * v..(i + 1) * v]) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

#[test]
fn probabilities_match_keras() {
    let mut k = read_model_file(&fixture("tiny_seed.h5")).unwrap();
    assert!(!k.mask_zero, "the seed's Embedding has no mask");
    assert_eq!(
        k.keras_version.as_deref().map(|v| v.starts_with("2.")),
        Some(true)
    );
    let e = expected();
    let windows = tokens(&e["windows"]);
    let feats = floats(&e["features"]);
    let want = floats(&e["probs"]);
    let c = k.model.config.clone();
    let probs = k.model.predict_all_positions(&windows, c.max_len, &feats);
    let n = windows.len() / c.max_len;
    assert_eq!(n, 8);
    let worst = worst_last_position(&probs, &want, c.max_len, c.vocab_size);
    eprintln!(
        "max |ours - keras| = {worst:e} over {} probabilities",
        n * c.vocab_size
    );
    assert!(worst <= PROB_TOLERANCE, "{worst:e}");
}

#[test]
fn greedy_captions_match_the_seed_loop() {
    let mut k = read_model_file(&fixture("tiny_seed.h5")).unwrap();
    let tok = read_tokenizer_file(&fixture("tokenizer.json"), "startseq", "endseq").unwrap();
    assert_eq!(tok.vocab.len(), k.model.config.vocab_size);
    let e = expected();
    let photos = floats(&e["photos"]);
    let start = tok.vocab.index_of("startseq").unwrap();
    let end = tok.vocab.index_of("endseq").unwrap();
    let max_len = k.model.config.max_len;
    let hyps = k.model.greedy_prefix(&photos, start, end, max_len, false);
    let want = e["captions"].as_array().unwrap();
    assert_eq!(hyps.len(), 100);
    let mut same = 0;
    for (h, want) in hyps.iter().zip(want) {
        let text: Vec<&str> = std::iter::once("startseq")
            .chain(h.tokens.iter().map(|&i| tok.vocab.word(i).unwrap()))
            .chain(h.finished.then_some("endseq"))
            .collect();
        if text.join(" ") == want.as_str().unwrap() {
            same += 1;
        } else {
            eprintln!("ours:  {}\nkeras: {}", text.join(" "), want);
        }
    }
    assert_eq!(same, 100, "{same} of 100 captions identical");
}

#[test]
fn unsupported_layers_are_listed_and_bad_files_refused() {
    let e = read_model_file(&fixture("unsupported.h5")).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, KerasError::Unsupported { .. }), "{s}");
    assert!(
        s.contains("conv1d (Conv1D)") && s.contains("gru (GRU)"),
        "{s}"
    );
    // Truncated, not HDF5, a Keras 3 zip.
    let bytes = std::fs::read(fixture("tiny_seed.h5")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in [
        ("cut.h5", bytes[..bytes.len() / 3].to_vec()),
        ("text.h5", b"hello".to_vec()),
        ("model.keras", b"PK\x03\x04rest".to_vec()),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        let e = read_model_file(&p).unwrap_err();
        eprintln!("{e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    let e = read_tokenizer_file(&fixture("tokenizer.json"), "<s>", "</s>").unwrap_err();
    assert!(e.to_string().contains("not in the word index"), "{e}");
}

/// The seed's exact sizes (V = 4487, 5,075,463 parameters): made by `make_fixture.py
/// --seed-size DIR` (20 MB, not checked in); runs when `AUTOCAPTION_SEED_H5_DIR` names DIR.
#[test]
fn seed_sized_model_matches_keras_when_present() {
    let Ok(dir) = std::env::var("AUTOCAPTION_SEED_H5_DIR") else {
        eprintln!("skipped: AUTOCAPTION_SEED_H5_DIR is not set");
        return;
    };
    let dir = PathBuf::from(dir);
    let mut k = read_model_file(&dir.join("seed.h5")).unwrap();
    assert_eq!(k.model.parameter_count(), 5_075_463);
    let e: Value =
        serde_json::from_slice(&std::fs::read(dir.join("seed_expected.json")).unwrap()).unwrap();
    let windows = tokens(&e["windows"]);
    let c = k.model.config.clone();
    let probs = k
        .model
        .predict_all_positions(&windows, c.max_len, &floats(&e["features"]));
    let want = floats(&e["probs"]);
    let worst = worst_last_position(&probs, &want, c.max_len, c.vocab_size);
    eprintln!(
        "seed-sized: max |ours - keras| = {worst:e} over {} probabilities",
        8 * c.vocab_size
    );
    assert!(worst <= PROB_TOLERANCE, "{worst:e}");
}

/// Fuzzing found a file whose dataset claims 1.2 billion values (4.8 GB allocated before
/// reading); shapes are now checked against the model's before anything is allocated.
#[test]
fn a_dataset_claiming_a_huge_shape_is_refused_before_allocating() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/keras_model/oom-huge-dataset-shape.h5");
    let e = read_model_file(&p).unwrap_err().to_string();
    eprintln!("{e}");
    assert!(e.contains("expected"), "{e}");
}

/// A model_config whose Dropout feeds itself is a cycle, reported, not followed forever.
#[test]
fn a_cycle_in_the_graph_is_an_error() {
    let bytes = std::fs::read(fixture("tiny_seed.h5")).unwrap();
    // Rewire dropout_1 to feed itself; spaces dropped elsewhere in the JSON keep its length,
    // so the HDF5 attribute stays whole.
    let from = br#""dropout_1", "trainable": true, "dtype": "float32", "rate": 0.5, "noise_shape": null, "seed": null}, "name": "dropout_1", "inbound_nodes": [[["lstm", 0, 0, {}]]]"#;
    let to = br#""dropout_1", "trainable":true,"dtype":"float32","rate": 0.5, "noise_shape":null, "seed": null}, "name": "dropout_1", "inbound_nodes": [[["dropout_1", 0, 0, {}]]]"#;
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from.as_slice());
    let Some(at) = at else {
        panic!("the fixture's model_config changed; update this test");
    };
    let mut cyclic = bytes[..at].to_vec();
    cyclic.extend_from_slice(to);
    cyclic.extend_from_slice(&bytes[at + from.len()..]);
    let e = autocaption_keras::read_model(cyclic, Path::new("cyclic.h5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cycle"), "{e}");
}
