use autocaption_tensor::*;
use std::time::Instant;
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
    for &(m, k, n) in &[
        (49usize, 4608usize, 512usize),
        (49, 512, 2048),
        (49, 2048, 512),
        (196, 2304, 256),
        (196, 256, 1024),
        (49, 1024, 2048),
    ] {
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let flop = 2.0 * (m * k * n) as f64;
        // gemm: two column bands, one per thread (the conv's small-row path).
        let mut c = vec![0f32; m * n];
        let t_gemm = best(&mut || {
            let half = n / 2;
            let (c0, c1) = c.split_at_mut(m * half);
            rayon::join(
                || gemm_serial_ld(m, k, half, &a, k, &w, n, c0, half),
                || gemm_serial_ld(m, k, half, &a, k, &w[half..], n, c1, half),
            );
        });
        let p = PanelMatrix::pack(&w, k, n, WeightFormat::F32).unwrap();
        let mut out = vec![0f32; p.panels() * m * PANEL];
        let t_panel = best(&mut || {
            p.mul(&a, m, &mut out, |_, _| {});
        });
        println!(
            "{m}x{k}x{n}: gemm {:.0} GFLOP/s ({:.2} ms), panels {:.0} GFLOP/s ({:.2} ms)",
            flop / t_gemm / 1e9,
            t_gemm * 1e3,
            flop / t_panel / 1e9,
            t_panel * 1e3
        );
    }
}
