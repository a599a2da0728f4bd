//! `compile --quantize int8` on an exported caption model against the engine running the
//! weights `quantize::simulate_int8` gives it: the compiled int8 code computes with exactly
//! those weights, so the two agree to float rounding (1e-5 on probabilities), and
//! `evaluate --int8` measures what the compiled int8 decoder would score.

use std::process::Command;

use autocaption_compiler::{compile, Options, Quantize};
use autocaption_model::{MergeConfig, MergeModel};
use autocaption_pipeline::quantize::simulate_int8;
use autocaption_tensor::Rng;

#[test]
fn int8_decoder_in_c_matches_the_simulated_weights_in_the_engine() {
    if !Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: no C compiler (cc)");
        return;
    }
    // Hidden sizes on and off the kernels' 16-wide blocks.
    let config = MergeConfig {
        vocab_size: 37,
        feature_dim: 24,
        embed_dim: 8,
        text_lstm: 16,
        text_dense: 12,
        image_dense: 12,
        merge_lstm: 20,
        decoder_lstm: 32,
        dropout: 0.5,
        max_len: 7,
    };
    let mut m = MergeModel::new(config.clone(), 5);
    let mut rng = Rng::new(9);
    for p in m.params_mut() {
        for v in &mut p.value {
            *v += rng.uniform(-0.3, 0.3);
        }
    }
    let tokens: Vec<u32> = vec![0, 0, 1, 5, 9, 3, 12];
    let feats: Vec<f32> = (0..config.feature_dim)
        .map(|_| rng.uniform(0.0, 3.0))
        .collect();
    let mut q = m.clone();
    simulate_int8(&mut q);
    let v = config.vocab_size;
    let last = |all: Vec<f32>| all[(config.max_len - 1) * v..config.max_len * v].to_vec();
    let want = last(q.predict_all_positions(&tokens, config.max_len, &feats));
    let unquantized = last(m.predict_all_positions(&tokens, config.max_len, &feats));

    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        batch: Some(1),
        quantize: Some(Quantize::Int8),
        ..Options::default()
    };
    let c = compile(&autocaption_export::decoder(&m), &opts, "int8 test").unwrap();
    let f32_bytes = compile(
        &autocaption_export::decoder(&m),
        &Options {
            batch: Some(1),
            ..Options::default()
        },
        "f32",
    )
    .unwrap()
    .sources
    .const_bytes;
    assert!(
        c.sources.const_bytes < f32_bytes,
        "int8 weights are smaller"
    );
    c.write(dir.path(), "model", true).unwrap();
    let status = Command::new("cc")
        .args(["-std=c99", "-O2", "-Wall", "-Werror", "-o"])
        .arg(dir.path().join("model"))
        .arg(dir.path().join("model.c"))
        .arg(dir.path().join("main.c"))
        .arg("-lm")
        .status()
        .unwrap();
    assert!(status.success());
    let write = |name: &str, v: &[f32]| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
        )
        .unwrap();
        p
    };
    let t = write(
        "t.bin",
        &tokens.iter().map(|&x| x as f32).collect::<Vec<_>>(),
    );
    let f = write("f.bin", &feats);
    let out = Command::new(dir.path().join("model"))
        .arg(&t)
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<f32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.parse().unwrap())
        .collect();
    let d = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let moved = unquantized
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("int8 C vs simulated engine: max |Δp| = {d:e} (int8 moved p by up to {moved:e})");
    assert_eq!(got.len(), v);
    assert!(d <= 1e-5, "max difference {d}");
    assert!(moved > 1e-5, "the test would not see int8 at all");
}
