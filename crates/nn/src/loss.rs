use autocaption_tensor::exp;
use rayon::prelude::*;

autocaption_tensor::simd_fn! {
    /// Softmax over each row of `[rows, width]`, in place (max-subtracted for stability).
    pub fn softmax_rows(x: &mut [f32], width: usize) {
        for row in x.chunks_mut(width) {
            let sum = exp_shifted(row);
            let inv = 1.0 / sum;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// Replaces `row` by `exp(row − max(row))` and returns the sum.
#[inline(always)]
fn exp_shifted(row: &mut [f32]) -> f32 {
    // Eight partial maxima and sums let the compiler keep vector registers busy.
    let mut m = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for k in 0..16 {
            m[k] = m[k].max(c[k]);
        }
    }
    let max = chunks.remainder().iter().fold(
        m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
        |a, &b| a.max(b),
    );
    let mut s = [0.0f32; 16];
    let mut chunks = row.chunks_exact_mut(16);
    for c in &mut chunks {
        for k in 0..16 {
            c[k] = exp(c[k] - max);
            s[k] += c[k];
        }
    }
    let mut sum: f32 = s.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    sum
}

/// Loss and accuracy of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CrossEntropy {
    /// Sum of −log p(target) over the rows.
    pub loss_sum: f64,
    /// Rows whose most probable class is the target.
    pub correct: usize,
    /// Rows scored.
    pub rows: usize,
}

/// Softmax cross-entropy of `logits` `[targets.len(), width]` (Keras
/// `categorical_crossentropy` after a softmax). The logits are replaced by the gradient of
/// `scale · Σ loss` with respect to them: `scale · (softmax − onehot)`.
pub fn softmax_cross_entropy(
    logits: &mut [f32],
    width: usize,
    targets: &[u32],
    scale: f32,
) -> CrossEntropy {
    // Rows in parallel; the per-row results are summed in row order afterwards, so the
    // total is the same whatever the threads did.
    let per_row: Vec<(f64, bool)> = logits
        .par_chunks_mut(width)
        .zip(targets.par_iter())
        .with_min_len(16)
        .map(|(row, &t)| row_cross_entropy(row, t as usize, scale))
        .collect();
    let mut out = CrossEntropy {
        rows: targets.len(),
        ..CrossEntropy::default()
    };
    for (loss, correct) in per_row {
        out.loss_sum += loss;
        out.correct += usize::from(correct);
    }
    out
}

/// Largest value of a row (vectorisable: 16 running maxima).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for k in 0..16 {
            m[k] = m[k].max(c[k]);
        }
    }
    chunks.remainder().iter().fold(
        m.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
        |a, &b| a.max(b),
    )
}

autocaption_tensor::simd_fn! {
    /// One row of [`softmax_cross_entropy`]: returns (−log p(target), argmax == target) and
    /// leaves the scaled gradient in `row`.
    fn row_cross_entropy(row: &mut [f32], t: usize, scale: f32) -> (f64, bool) {
        // Argmax is the first index holding the maximum: t is it when row[t] is the maximum
        // and nothing before it is.
        let max = row_max(row);
        let correct = row[t] == max && !row[..t].contains(&max);
        let sum = exp_shifted(row);
        // Keras clips probabilities to [1e-7, 1 - 1e-7] inside the log.
        let p_t = (row[t] / sum).clamp(1e-7, 1.0 - 1e-7);
        let inv = scale / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
        row[t] -= scale;
        (-(p_t as f64).ln(), correct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check;

    #[test]
    fn gradient_and_value() {
        let targets = [2u32, 0, 1];
        let mut logits: Vec<f32> = vec![0.1, -0.4, 0.9, 1.5, 0.2, -1.0, 0.0, 0.3, 0.3];
        let loss = |l: &[f32]| {
            let mut x = l.to_vec();
            softmax_cross_entropy(&mut x, 3, &targets, 1.0).loss_sum
        };
        let base = logits.clone();
        let mut g = base.clone();
        let ce = softmax_cross_entropy(&mut g, 3, &targets, 1.0);
        // The third row ties 0.3 and 0.3: the first (index 1) wins, as argmax does.
        assert_eq!(ce.correct, 3);
        // python: -math.log(softmax([0.1, -0.4, 0.9])[2]) = 0.5434055416160295
        let mut first = base[..3].to_vec();
        softmax_rows(&mut first, 3);
        assert!(((-(first[2] as f64).ln()) - 0.543_405_54).abs() < 1e-6);
        check("softmax cross-entropy", &mut logits, &g, loss);
    }
}
