//! The one matrix-product entry point, over the `gemm` crate with rayon threads.
//! `benches/gemm.rs` compares it with `matrixmultiply` (threaded) on the shapes the models
//! use; on the 2-core AVX-512 build machine `gemm` was 20–75% faster on 9 of 10 shapes
//! (output projection 210 vs 170 GFLOP/s, recurrent backward 126 vs 72) and 5–10% slower on
//! the small per-step forward product.

/// Arithmetic of the matrix products: f32 throughout, or bf16 operands with f32
/// accumulation (mixed precision, about 1.5× faster where the CPU has AVX512_BF16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 operands and accumulation: the reference.
    #[default]
    F32,
    /// Operands rounded to bfloat16, f32 accumulation.
    Bf16,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!(
                "unknown precision {other:?} (expected f32 or bf16)"
            )),
        }
    }
}

/// [`gemm`] or [`crate::gemm_bf16`], by `precision`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    precision: Precision,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    match precision {
        Precision::F32 => gemm(m, k, n, alpha, a, ta, b, tb, beta, c),
        Precision::Bf16 => crate::gemm_bf16(m, k, n, alpha, a, ta, b, tb, beta, c),
    }
}

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trans {
    /// As stored (row-major).
    No,
    /// Transposed.
    Yes,
}

/// `C = alpha · op(A) · op(B) + beta · C` for row-major matrices, where op(A) is `m×k` and
/// op(B) is `k×n`. A is stored `m×k` (or `k×m` when transposed), B `k×n` (or `n×k`), C `m×n`.
/// With `beta == 0`, C's old contents are ignored (NaNs included).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    gemm_inner(m, k, n, alpha, a, ta, b, tb, beta, c, true)
}

/// [`gemm`] on the calling thread only: for callers that split the work themselves (a
/// convolution computing its output in row tiles, one tile per task).
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
) {
    gemm_inner(m, k, n, alpha, a, ta, b, tb, beta, c, false)
}

/// `C = A·B` on the calling thread for sub-matrices of larger row-major arrays: A is `m×k`
/// with row stride `lda`, B `k×n` with row stride `ldb`, C `m×n` with row stride `ldc`
/// (C's old contents are ignored). Lets a caller split a product by columns, giving each
/// task a column band of B.
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial_ld(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    serial_ld(m, k, n, a, lda, b, ldb, c, ldc, false)
}

/// [`gemm_serial_ld`] adding the product to C's contents: `C += A·B`. Lets a caller
/// accumulate onto values already in C (a residual) without a second pass over memory.
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial_ld_add(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    serial_ld(m, k, n, a, lda, b, ldb, c, ldc, true)
}

#[allow(clippy::too_many_arguments)]
fn serial_ld(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lda >= k && ldb >= n && ldc >= n,
        "gemm: row strides shorter than rows"
    );
    assert!(
        a.len() >= (m - 1) * lda + k,
        "gemm: A has {} values, needs {}",
        a.len(),
        (m - 1) * lda + k
    );
    assert!(
        k == 0 || b.len() >= (k - 1) * ldb + n,
        "gemm: B has {} values, needs {}",
        b.len(),
        (k.max(1) - 1) * ldb + n
    );
    assert!(
        c.len() >= (m - 1) * ldc + n,
        "gemm: C has {} values, needs {}",
        c.len(),
        (m - 1) * ldc + n
    );
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above guarantee every element the strides reach lies inside the
    // slices. The crate computes dst = alpha·dst + beta·lhs·rhs, reading dst only when
    // accumulating.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            ldb as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm_inner(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Trans,
    b: &[f32],
    tb: Trans,
    beta: f32,
    c: &mut [f32],
    threads: bool,
) {
    assert!(
        a.len() >= m * k,
        "gemm: A has {} values, needs {}",
        a.len(),
        m * k
    );
    assert!(
        b.len() >= k * n,
        "gemm: B has {} values, needs {}",
        b.len(),
        k * n
    );
    assert!(
        c.len() >= m * n,
        "gemm: C has {} values, needs {}",
        c.len(),
        m * n
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // matrixmultiply leaves C untouched here; the definition says C = beta·C.
        for v in &mut c[..m * n] {
            *v = if beta == 0.0 { 0.0 } else { *v * beta };
        }
        return;
    }
    let (a_cs, a_rs) = match ta {
        Trans::No => (1, k as isize),
        Trans::Yes => (m as isize, 1),
    };
    let (b_cs, b_rs) = match tb {
        Trans::No => (1, n as isize),
        Trans::Yes => (k as isize, 1),
    };
    // Threads cost more than they save on tiny products.
    let parallelism = if !threads || m * k * n < 1 << 15 {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(0)
    };
    // SAFETY: the asserts above guarantee every index the strides reach lies inside the
    // slices: A spans m·k values, B k·n and C m·n, with the strides of dense matrices.
    // The crate computes dst = alpha·dst + beta·lhs·rhs, reading dst only if asked.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], ta: Trans, b: &[f32], tb: Trans) -> Vec<f32> {
        let at = |i: usize, p: usize| {
            if ta == Trans::No {
                a[i * k + p]
            } else {
                a[p * m + i]
            }
        };
        let bt = |p: usize, j: usize| {
            if tb == Trans::No {
                b[p * n + j]
            } else {
                b[j * k + p]
            }
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| at(i, p) as f64 * bt(p, j) as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_for_every_transpose_and_beta() {
        let mut rng = crate::Rng::new(1);
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 128, 96)] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
            for ta in [Trans::No, Trans::Yes] {
                for tb in [Trans::No, Trans::Yes] {
                    let want = naive(m, k, n, &a, ta, &b, tb);
                    let mut c = vec![f32::NAN; m * n];
                    gemm(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut c);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-4, "{m}x{k}x{n} {ta:?}{tb:?}: {x} vs {y}");
                    }
                    gemm(m, k, n, 2.0, &a, ta, &b, tb, 1.0, &mut c);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - 3.0 * y).abs() < 1e-3);
                    }
                }
            }
        }
    }

    #[test]
    fn strided_product_of_a_column_band() {
        let mut rng = crate::Rng::new(2);
        let (m, k, n) = (7, 9, 40);
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let want = naive(m, k, n, &a, Trans::No, &b, Trans::No);
        // Columns 16..40 of the product, written into a 24-wide buffer.
        let mut band = vec![f32::NAN; m * 24];
        gemm_serial_ld(m, k, 24, &a, k, &b[16..], n, &mut band, 24);
        for i in 0..m {
            for j in 0..24 {
                assert!((band[i * 24 + j] - want[i * n + 16 + j]).abs() < 1e-4);
            }
        }
        // The same band added onto values already there.
        let mut sum: Vec<f32> = (0..m * 24).map(|i| i as f32).collect();
        gemm_serial_ld_add(m, k, 24, &a, k, &b[16..], n, &mut sum, 24);
        for i in 0..m {
            for j in 0..24 {
                let want = (i * 24 + j) as f32 + want[i * n + 16 + j];
                assert!((sum[i * 24 + j] - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn empty_inner_dimension_scales_c() {
        let mut c = vec![2.0; 4];
        gemm(2, 0, 2, 1.0, &[], Trans::No, &[], Trans::No, 0.5, &mut c);
        assert_eq!(c, vec![1.0; 4]);
    }
}
