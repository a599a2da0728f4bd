//! How much a feature set says about a label: a ridge-regression linear probe.

use autocaption_tensor::{gemm, Trans};

/// Held-out accuracy of a linear classifier of `labels` on features `[n, dim]`, fitted on the
/// rows where `train` is true and scored on the others: every dimension standardised with the
/// training rows' mean and deviation, then one-vs-all ridge regression (weight penalty
/// `lambda · training rows`) in its dual form, the predicted class the largest score.
/// Returns `(accuracy, chance)`, chance being the share of the most frequent class among the
/// scored rows, or `None` when either side has no rows.
///
/// A linear probe is the usual measure of what an encoder's features make easy to read
/// (Alain and Bengio, *Understanding intermediate layers using linear classifier probes*,
/// 2016).
pub fn linear_probe(
    features: &[f32],
    dim: usize,
    labels: &[usize],
    train: &[bool],
    lambda: f64,
) -> Option<(f64, f64)> {
    let n = labels.len();
    assert_eq!(features.len(), n * dim, "one feature row per label");
    assert_eq!(train.len(), n, "one train flag per label");
    let fit: Vec<usize> = (0..n).filter(|&i| train[i]).collect();
    let test: Vec<usize> = (0..n).filter(|&i| !train[i]).collect();
    if fit.is_empty() || test.is_empty() {
        return None;
    }
    let classes = labels.iter().max().map_or(0, |&m| m + 1);

    // Standardise with the training rows' statistics.
    let mut mean = vec![0f64; dim];
    let mut var = vec![0f64; dim];
    for &i in &fit {
        for (m, &x) in mean.iter_mut().zip(&features[i * dim..(i + 1) * dim]) {
            *m += f64::from(x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= fit.len() as f64);
    for &i in &fit {
        for ((v, &x), m) in var.iter_mut().zip(&features[i * dim..]).zip(&mean) {
            *v += (f64::from(x) - m).powi(2);
        }
    }
    let inv: Vec<f64> = var
        .iter()
        .map(|v| 1.0 / ((v / fit.len() as f64).sqrt() + 1e-6))
        .collect();
    let rows = |ids: &[usize]| -> Vec<f32> {
        let mut out = Vec::with_capacity(ids.len() * dim);
        for &i in ids {
            let row = &features[i * dim..(i + 1) * dim];
            out.extend(
                row.iter()
                    .zip(&mean)
                    .zip(&inv)
                    .map(|((&x, m), s)| ((f64::from(x) - m) * s) as f32),
            );
        }
        out
    };
    let (xf, xt) = (rows(&fit), rows(&test));
    let (nf, nt) = (fit.len(), test.len());

    // Dual ridge: alpha = (X Xᵀ + λ n I)⁻¹ Y, scores = X_test Xᵀ alpha.
    let mut k = vec![0f32; nf * nf];
    gemm(
        nf,
        dim,
        nf,
        1.0,
        &xf,
        Trans::No,
        &xf,
        Trans::Yes,
        0.0,
        &mut k,
    );
    let mut kd: Vec<f64> = k.iter().map(|&v| f64::from(v)).collect();
    for i in 0..nf {
        kd[i * nf + i] += lambda * nf as f64;
    }
    cholesky(&mut kd, nf);
    let mut alpha = vec![0f64; nf * classes];
    for (r, &i) in fit.iter().enumerate() {
        alpha[r * classes + labels[i]] = 1.0;
    }
    cholesky_solve(&kd, nf, &mut alpha, classes);
    let mut cross = vec![0f32; nt * nf];
    gemm(
        nt,
        dim,
        nf,
        1.0,
        &xt,
        Trans::No,
        &xf,
        Trans::Yes,
        0.0,
        &mut cross,
    );

    let mut correct = 0usize;
    let mut counts = vec![0usize; classes];
    for (r, &i) in test.iter().enumerate() {
        let mut scores = vec![0f64; classes];
        for (j, &c) in cross[r * nf..(r + 1) * nf].iter().enumerate() {
            for (s, a) in scores
                .iter_mut()
                .zip(&alpha[j * classes..(j + 1) * classes])
            {
                *s += f64::from(c) * a;
            }
        }
        let best = (0..classes)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap_or(0);
        correct += usize::from(best == labels[i]);
        counts[labels[i]] += 1;
    }
    let chance = counts.iter().max().copied().unwrap_or(0) as f64 / nt as f64;
    Some((correct as f64 / nt as f64, chance))
}

/// In-place Cholesky factor `L` (lower triangle) of a symmetric positive definite `a[n, n]`.
fn cholesky(a: &mut [f64], n: usize) {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-300).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
}

/// Solves `L Lᵀ x = b` for the `cols` columns of `b[n, cols]` in place.
fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64], cols: usize) {
    for c in 0..cols {
        for i in 0..n {
            let mut s = b[i * cols + c];
            for k in 0..i {
                s -= l[i * n + k] * b[k * cols + c];
            }
            b[i * cols + c] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = b[i * cols + c];
            for k in i + 1..n {
                s -= l[k * n + i] * b[k * cols + c];
            }
            b[i * cols + c] = s / l[i * n + i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autocaption_tensor::Rng;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2], [2, 3]], x = [1, -2]: b = [0, -4].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        cholesky(&mut a, 2);
        let mut b = vec![0.0, -4.0];
        cholesky_solve(&a, 2, &mut b, 1);
        assert!(
            (b[0] - 1.0).abs() < 1e-12 && (b[1] + 2.0).abs() < 1e-12,
            "{b:?}"
        );
    }

    #[test]
    fn separable_labels_are_read_and_noise_is_not() {
        let (n, dim, classes) = (300, 20, 3);
        let mut rng = Rng::new(4);
        let labels: Vec<usize> = (0..n).map(|_| rng.below(classes)).collect();
        let train: Vec<bool> = (0..n).map(|i| i < 200).collect();
        // Informative: class c shifts dimension c by 3 (plus noise, and a large offset and
        // scale that standardisation must undo).
        let mut informative = Vec::new();
        let mut noise = Vec::new();
        for &l in &labels {
            for d in 0..dim {
                let shift = if d == l { 3.0 } else { 0.0 };
                informative.push(500.0 + 80.0 * (shift + rng.normal()));
                noise.push(rng.normal());
            }
        }
        let (acc, chance) = linear_probe(&informative, dim, &labels, &train, 1e-2).unwrap();
        assert!(acc > 0.9, "informative features: {acc}");
        assert!(chance > 0.3 && chance < 0.45, "{chance}");
        let (acc, _) = linear_probe(&noise, dim, &labels, &train, 1e-2).unwrap();
        assert!(acc < 0.5, "noise: {acc}");
        assert!(linear_probe(&noise, dim, &labels, &[true; 300], 1e-2).is_none());
    }
}
