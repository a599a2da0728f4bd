//! GEMM throughput on the shapes the models use: our entry point (the `gemm` crate) against
//! `matrixmultiply` (threaded). `cargo bench -p autocaption-tensor --bench gemm`.

use std::time::Instant;

use autocaption_tensor::{gemm, gemm_bf16, gemm_bf16_packed, PackedB, Rng, Trans};

struct Shape {
    what: &'static str,
    m: usize,
    k: usize,
    n: usize,
    ta: Trans,
    tb: Trans,
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best
}

fn main() {
    let shapes = [
        Shape {
            what: "LSTM(256) step: h·R",
            m: 64,
            k: 256,
            n: 1024,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "LSTM(512) step: h·R",
            m: 64,
            k: 512,
            n: 2048,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "LSTM(512) step bwd: dG·Rᵀ",
            m: 64,
            k: 2048,
            n: 512,
            ta: Trans::No,
            tb: Trans::Yes,
        },
        Shape {
            what: "same, Rᵀ stored: 64×2048·2048×512",
            m: 64,
            k: 2048,
            n: 512,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "LSTM(256) step bwd: dG·Rᵀ",
            m: 64,
            k: 1024,
            n: 256,
            ta: Trans::No,
            tb: Trans::Yes,
        },
        Shape {
            what: "same, Rᵀ stored",
            m: 64,
            k: 1024,
            n: 256,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "DESIGN recurrent 64×384·384×1024",
            m: 64,
            k: 384,
            n: 1024,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "LSTM(512) input proj (packed)",
            m: 704,
            k: 128,
            n: 2048,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "output proj 704×512·512×4487",
            m: 704,
            k: 512,
            n: 4487,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "output dW: Hᵀ·dY",
            m: 512,
            k: 704,
            n: 4487,
            ta: Trans::Yes,
            tb: Trans::No,
        },
        Shape {
            what: "output dX: dY·Wᵀ",
            m: 704,
            k: 4487,
            n: 512,
            ta: Trans::No,
            tb: Trans::Yes,
        },
        Shape {
            what: "DESIGN 832×512·512×4487",
            m: 832,
            k: 512,
            n: 4487,
            ta: Trans::No,
            tb: Trans::No,
        },
        Shape {
            what: "im2col conv 3136×576·576×64",
            m: 3136,
            k: 576,
            n: 64,
            ta: Trans::No,
            tb: Trans::No,
        },
    ];
    let mut rng = Rng::new(0);
    println!(
        "{:<36} {:>17} {:>17} {:>14} {:>14}",
        "shape", "f32 (gemm crate)", "matrixmultiply", "bf16", "bf16 packed B"
    );
    for s in &shapes {
        let a: Vec<f32> = (0..s.m * s.k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..s.k * s.n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mut c = vec![0.0f32; s.m * s.n];
        let flops = 2.0 * (s.m * s.k * s.n) as f64;
        let ours = time(|| gemm(s.m, s.k, s.n, 1.0, &a, s.ta, &b, s.tb, 0.0, &mut c));
        let (rsa, csa) = match s.ta {
            Trans::No => (s.k as isize, 1),
            Trans::Yes => (1, s.m as isize),
        };
        let (rsb, csb) = match s.tb {
            Trans::No => (s.n as isize, 1),
            Trans::Yes => (1, s.k as isize),
        };
        let mm = time(|| unsafe {
            // SAFETY: dense row-major buffers of exactly these sizes.
            matrixmultiply::sgemm(
                s.m,
                s.k,
                s.n,
                1.0,
                a.as_ptr(),
                rsa,
                csa,
                b.as_ptr(),
                rsb,
                csb,
                0.0,
                c.as_mut_ptr(),
                s.n as isize,
                1,
            )
        });
        let bf = time(|| gemm_bf16(s.m, s.k, s.n, 1.0, &a, s.ta, &b, s.tb, 0.0, &mut c));
        let packed = PackedB::new(&b, s.tb, s.k, s.n);
        let bfp = time(|| gemm_bf16_packed(s.m, 1.0, &a, s.ta, &packed, 0.0, &mut c));
        println!(
            "{:<36} {:>12.1} GF/s {:>12.1} GF/s {:>9.1} GF/s {:>9.1} GF/s",
            s.what,
            flops / ours / 1e9,
            flops / mm / 1e9,
            flops / bf / 1e9,
            flops / bfp / 1e9
        );
    }
}
