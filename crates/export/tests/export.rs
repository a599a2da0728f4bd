//! Exported models against our own engine: compiled to C by our compiler (always, where a C
//! compiler is installed) and run by ONNX Runtime (where Python has `onnxruntime`: the
//! interpreter in `AUTOCAPTION_PYTHON`, else `python3`; `.ci/run` installs it).

use std::path::Path;
use std::process::Command;

use autocaption_compiler::{compile, Options};
use autocaption_model::{MergeConfig, MergeModel};
use autocaption_onnx::read_model;
use autocaption_tensor::Rng;
use autocaption_vision::{Layout, Maps, ResNet, ResNetConfig};

/// The bound between an exported model and our engine, in absolute terms on
/// probabilities and features of order 1.
const TOLERANCE: f32 = 1e-5;

fn config() -> MergeConfig {
    MergeConfig {
        vocab_size: 13,
        feature_dim: 10,
        embed_dim: 6,
        text_lstm: 7,
        text_dense: 5,
        image_dense: 4,
        merge_lstm: 6,
        decoder_lstm: 8,
        dropout: 0.5,
        max_len: 9,
    }
}

/// A model whose every parameter is random (biases included), so that no gate or
/// transposition can hide behind a zero.
fn model() -> MergeModel {
    let mut m = MergeModel::new(config(), 7);
    let mut rng = Rng::new(11);
    for p in m.params_mut() {
        for v in &mut p.value {
            *v += rng.uniform(-0.3, 0.3);
        }
    }
    m
}

/// The model, its two input rows (tokens, features) and the engine's next-word
/// probabilities at every position, `[2, max_len, vocab]`.
fn engine_run() -> (MergeModel, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut m = model();
    let (tokens, feats) = inputs(&m.config);
    let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
    let all = m.predict_all_positions(&ids, m.config.max_len, &feats);
    (m, tokens, feats, all)
}

/// Two pre-padded token rows and their features.
fn inputs(c: &MergeConfig) -> (Vec<f32>, Vec<f32>) {
    let tokens: Vec<f32> = [0, 0, 0, 0, 1, 5, 9, 3, 12, 0, 0, 1, 2, 4, 6, 8, 10, 11]
        .iter()
        .map(|&t| t as f32)
        .collect();
    let mut rng = Rng::new(3);
    let feats = (0..2 * c.feature_dim)
        .map(|_| rng.uniform(0.0, 3.0))
        .collect();
    (tokens, feats)
}

fn write_f32(path: &Path, v: &[f32]) {
    std::fs::write(
        path,
        v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
}

fn has_cc() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Compiles `onnx` with N = 2, builds it with the strict flags and runs it on raw inputs;
/// returns the first output's values.
fn run_compiled(onnx: &Path, dir: &Path, inputs: &[&Path]) -> Vec<f32> {
    let model = read_model(onnx).expect("exported model reads back");
    let mut opts = Options::default();
    opts.dims.insert("N".into(), 2);
    let c = compile(&model, &opts, "export test").expect("exported model compiles");
    c.write(dir, "model", true).unwrap();
    let out = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Werror", "-o"])
        .arg(dir.join("model"))
        .arg(dir.join("model.c"))
        .arg(dir.join("main.c"))
        .arg("-lm")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(dir.join("model"))
        .args(inputs)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = String::from_utf8(run.stdout).unwrap();
    text.lines()
        .skip(1)
        .take_while(|l| !l.starts_with("output "))
        .map(|l| l.parse().unwrap())
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn exported_decoder_compiled_to_c_matches_the_engine() {
    if !has_cc() {
        eprintln!("skipped: no C compiler (cc)");
        return;
    }
    let (m, tokens, feats, all) = engine_run();
    let c = m.config.clone();
    let v = c.vocab_size;
    let want: Vec<f32> = (0..2)
        .flat_map(|i| {
            all[(i * c.max_len + c.max_len - 1) * v..(i * c.max_len + c.max_len) * v].to_vec()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    autocaption_export::export(Some(&m), None, dir.path()).unwrap();
    let (t, f) = (
        dir.path().join("tokens.bin"),
        dir.path().join("features.bin"),
    );
    write_f32(&t, &tokens);
    write_f32(&f, &feats);
    let got = run_compiled(
        &dir.path().join("decoder.onnx"),
        &dir.path().join("c"),
        &[&t, &f],
    );
    let d = max_diff(&got, &want);
    println!("decoder.onnx compiled to C vs engine: max |Δp| = {d:e}");
    assert!(d <= TOLERANCE, "max difference {d}");
}

fn tiny_resnet() -> ResNet {
    ResNet::random(
        ResNetConfig {
            layout: Layout::Keras,
            width: 4,
            blocks: [1, 1, 1, 1],
        },
        5,
    )
}

/// Two images of preprocessed-looking values (Keras' caffe preset spans about ±128).
fn random_images(size: usize) -> Maps {
    let mut rng = Rng::new(9);
    let mut images = Maps::zeros(2, size, size, 3);
    images
        .data
        .iter_mut()
        .for_each(|x| *x = rng.uniform(-100.0, 100.0));
    images
}

#[test]
fn exported_encoder_compiled_to_c_matches_the_engine() {
    if !has_cc() {
        eprintln!("skipped: no C compiler (cc)");
        return;
    }
    let net = tiny_resnet();
    let size = 32;
    let images = random_images(size);
    let want = net.forward(&images);
    let dir = tempfile::tempdir().unwrap();
    autocaption_export::export(Some(&model()), Some((&net, size)), dir.path()).unwrap();
    let x = dir.path().join("images.bin");
    write_f32(&x, &images.data);
    let got = run_compiled(
        &dir.path().join("encoder.onnx"),
        &dir.path().join("c"),
        &[&x],
    );
    let scale = want.iter().fold(0.0f32, |a, &b| a.max(b.abs())).max(1.0);
    let d = max_diff(&got, &want) / scale;
    println!("encoder.onnx compiled to C vs engine: max relative |Δ| = {d:e}");
    assert!(d <= TOLERANCE, "max relative difference {d}");
}

fn python_with_ort() -> Option<String> {
    let py = std::env::var("AUTOCAPTION_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

#[test]
fn exported_models_match_the_engine_in_onnx_runtime() {
    let Some(py) = python_with_ort() else {
        eprintln!("skipped: no Python with onnxruntime (set AUTOCAPTION_PYTHON)");
        return;
    };
    let (m, tokens, feats, all) = engine_run();
    let net = tiny_resnet();
    let size = 32;
    let images = random_images(size);
    let features = net.forward(&images);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    autocaption_export::export(Some(&m), Some((&net, size)), d).unwrap();
    write_f32(&d.join("tokens.bin"), &tokens);
    write_f32(&d.join("features.bin"), &feats);
    write_f32(&d.join("probs_all.bin"), &all);
    write_f32(&d.join("images.bin"), &images.data);
    write_f32(&d.join("encoded.bin"), &features);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_onnx_export.py");
    let out = Command::new(&py).arg(&script).arg(d).output().unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
