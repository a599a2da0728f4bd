//! Parity with Keras: the fixtures in `fixtures/keras_merge` were made by
//! `fixtures/keras_merge/make_fixture.py` (TensorFlow 2.15 / Keras 2), which builds the same
//! merge model, runs it on pre-padded token sequences, and stores the per-position
//! probabilities. Ours must match them to 1e-5 absolute.

use std::path::{Path, PathBuf};

use autocaption_model::{MergeConfig, MergeModel};
use safetensors::{Dtype, SafeTensors};

/// Largest absolute difference allowed between our probabilities and Keras'.
const PROB_TOLERANCE: f32 = 1e-5;

fn fixture(name: &str) -> (Vec<u8>, PathBuf) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/keras_merge")
        .join(name);
    (
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        p,
    )
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn tokens(st: &SafeTensors) -> Vec<u32> {
    let t = st.tensor("input.tokens").unwrap();
    assert_eq!(t.dtype(), Dtype::I64);
    t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect()
}

fn config(bytes: &[u8]) -> MergeConfig {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    serde_json::from_str(&meta["config"]).unwrap()
}

/// Compares our per-position probabilities and last-position output with Keras'.
fn compare(model: &mut MergeModel, st: &SafeTensors) {
    let steps = model.config.max_len;
    let v = model.config.vocab_size;
    let toks = tokens(st);
    let probs = model.predict_all_positions(&toks, steps, &f32s(st, "input.features"));
    let want = f32s(st, "expected.probs");
    assert_eq!(probs.len(), want.len());
    let worst = probs
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= PROB_TOLERANCE,
        "per-position probabilities differ from Keras by {worst:e}"
    );
    let seed_out = f32s(st, "expected.seed_output");
    let n = toks.len() / steps;
    for i in 0..n {
        let ours = &probs[(i * steps + steps - 1) * v..(i * steps + steps) * v];
        let worst = ours
            .iter()
            .zip(&seed_out[i * v..(i + 1) * v])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= PROB_TOLERANCE,
            "seed output of sequence {i} differs by {worst:e}"
        );
    }
    eprintln!(
        "max |ours - keras| = {worst:e} over {} probabilities",
        probs.len()
    );
}

#[test]
fn tiny_model_loaded_from_keras_weights() {
    let (bytes, path) = fixture("tiny.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut model = MergeModel::new(config(&bytes), 0);
    model.load_weights_bytes(&bytes, &path).unwrap();
    compare(&mut model, &st);
}

#[test]
fn seed_sized_model_with_formula_weights() {
    let (bytes, _) = fixture("seed50.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cfg = config(&bytes);
    assert_eq!(cfg, MergeConfig::seed(50));
    let mut model = MergeModel::new(cfg, 0);
    // The same formula as make_fixture.py's formula_weight, in named_params order.
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    for (layer, (p, name)) in model.params_mut().into_iter().zip(&names).enumerate() {
        let amp = if name == "output.kernel" { 3.0 } else { 0.08 };
        for (k, w) in p.value.iter_mut().enumerate() {
            *w = (amp * (0.37 * k as f64 + 1.3 * layer as f64).sin()) as f32;
        }
    }
    compare(&mut model, &st);
}
