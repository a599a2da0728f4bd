//! The column-panel product on the few-row shapes it serves, against the shared GEMM split
//! into one column band per thread (what a convolution with few output pixels did before):
//! batch-1 decoding steps of the seed's model (f32 and f16 weights) and the last ResNet-50
//! stage at batch 1. Then, on one thread, the row-tile products a convolution makes (a tile
//! of output pixels times all its weights): the shared GEMM, which packs the weights again
//! for every tile, against [`PanelMatrix::mul_rows`] on weights packed once.
//! `cargo bench -p autocaption-tensor --bench panel`.

use std::time::Instant;

use autocaption_tensor::{gemm_serial_ld, Epilogue, PanelMatrix, Rng, WeightFormat, PANEL};

fn best(f: &mut dyn FnMut()) -> f64 {
    f();
    (0..20)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let mut rng = Rng::new(1);
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "shape (rows×k×n)", "GEMM bands", "panels f32", "panels f16"
    );
    for &(what, m, k, n) in &[
        ("decoder LSTM step [x,h]·W", 1usize, 640usize, 2048usize),
        ("output layer", 1, 512, 4487),
        ("beam 3: output layer", 3, 512, 4487),
        ("7×7 conv 3×3 512→512 (im2col)", 49, 4608, 512),
        ("7×7 conv 1×1 512→2048", 49, 512, 2048),
        ("7×7 conv 1×1 1024→2048", 49, 1024, 2048),
    ] {
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let flop = 2.0 * (m * k * n) as f64;
        let mut c = vec![0f32; m * n];
        let t_gemm = best(&mut || {
            let half = n / 2;
            let (c0, c1) = c.split_at_mut(m * half);
            rayon::join(
                || gemm_serial_ld(m, k, half, &a, k, &w, n, c0, half),
                || gemm_serial_ld(m, k, n - half, &a, k, &w[half..], n, c1, n - half),
            );
        });
        let panel_time = |format| {
            let p = PanelMatrix::pack(&w, k, n, format).expect("in range");
            let mut out = vec![0f32; p.panels() * m * PANEL];
            best(&mut || p.mul(&a, m, &mut out, |_, _| {}))
        };
        let (t32, t16) = (panel_time(WeightFormat::F32), panel_time(WeightFormat::F16));
        let cell = |t: f64| format!("{:.3} ms {:>4.0}", t * 1e3, flop / t / 1e9);
        println!(
            "{:<34} {:>12} {:>12} {:>12}   (ms, GFLOP/s)",
            format!("{what} {m}×{k}×{n}"),
            cell(t_gemm),
            cell(t32),
            cell(t16)
        );
    }
    println!();
    println!(
        "{:<34} {:>16} {:>16}",
        "one thread: tile (rows×k×n)", "GEMM", "packed panels"
    );
    for &(what, m, k, n) in &[
        ("56×56 1×1 64→256", 384usize, 64usize, 256usize),
        ("56×56 1×1 256→64", 384, 256, 64),
        ("56×56 3×3 64→64 (patches)", 256, 576, 64),
        ("28×28 1×1 128→512", 256, 128, 512),
        ("14×14 3×3 256→256 (patches)", 98, 2304, 256),
        ("14×14 1×1 256→1024", 98, 256, 1024),
        ("7×7 ×8 1×1 512→2048", 196, 512, 2048),
        ("Winograd 14×14 ×8 256→256", 224, 256, 256),
    ] {
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let flop = 2.0 * (m * k * n) as f64;
        let mut c = vec![0f32; m * n];
        let t_gemm = best(&mut || gemm_serial_ld(m, k, n, &a, k, &w, n, &mut c, n));
        let p = PanelMatrix::pack(&w, k, n, WeightFormat::F32).expect("in range");
        let t_rows = best(&mut || {
            let row = |r: usize, k0: usize| &a[r * k + k0..(r + 1) * k];
            p.mul_rows(m, k, row, 0..p.panels(), &mut c, n, Epilogue::default())
        });
        let cell = |t: f64| format!("{:.3} ms {:>4.0}", t * 1e3, flop / t / 1e9);
        println!(
            "{:<34} {:>16} {:>16}   (ms, GFLOP/s)",
            format!("{what} {m}×{k}×{n}"),
            cell(t_gemm),
            cell(t_rows)
        );
    }
}
