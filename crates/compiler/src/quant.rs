//! Weight quantisation: per-output-channel symmetric int8. Each channel's scale is its
//! largest magnitude over 127 (1 for an all-zero channel); a weight becomes
//! `round(w / scale)`, at most 127 in magnitude, and the kernels multiply a channel's sum
//! by its scale once. Activations stay float32.
//!
//! A constant float table read by Gather along its first axis (an embedding) is stored as
//! int8 rows with a scale each.
//!
//! Matrix products (MatMul, Gemm, LSTM) also equalise their input channels first: row k of
//! the K×N weights is divided by its largest magnitude (kept as a per-input scale the
//! kernel multiplies the input by), so that rows of very different magnitudes keep their
//! precision. Without it, a Dense whose input standardisation was folded into its weights
//! loses its small rows: the demo caption model's BLEU-4 fell from 0.46 to 0.09 with plain
//! per-output-channel scales on its image Dense, and stays within 0.01 with equalisation.

/// How the compiler stores weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantize {
    /// Per-output-channel symmetric int8 for MatMul, Gemm, Conv and LSTM weights, and per
    /// row for Gather tables.
    Int8,
}

impl std::str::FromStr for Quantize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "int8" => Ok(Self::Int8),
            other => Err(format!("'{other}': expected int8")),
        }
    }
}

/// Quantises `channels` channels of `len` weights each, weight `i` of channel `c` given by
/// `at(c, i)`: the int8 weights in channel-major order and the scales.
pub fn int8_channels(
    channels: usize,
    len: usize,
    at: impl Fn(usize, usize) -> f32,
) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(channels * len);
    let mut scales = Vec::with_capacity(channels);
    for c in 0..channels {
        let max = (0..len).map(|i| at(c, i).abs()).fold(0.0f32, f32::max);
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        for i in 0..len {
            q.push((at(c, i) / scale).round().clamp(-127.0, 127.0) as i8);
        }
        scales.push(scale);
    }
    (q, scales)
}

/// The float32 weights `int8_channels` stands for: `q * scale`, in the same order (what the
/// int8 code computes with, for simulating it).
pub fn dequantized(q: &[i8], scales: &[f32]) -> Vec<f32> {
    let len = q.len() / scales.len().max(1);
    q.iter()
        .enumerate()
        .map(|(k, &v)| f32::from(v) * scales[k / len.max(1)])
        .collect()
}

/// A K×N matrix (element (k, j) given by `at`) as equalised int8: each row divided by its
/// largest magnitude (the row scales), then per-column int8. Returns the int8 weights in
/// column-major order (`[j][k]`), the column scales and the row scales.
pub fn int8_equalized(
    k: usize,
    n: usize,
    at: impl Fn(usize, usize) -> f32,
) -> (Vec<i8>, Vec<f32>, Vec<f32>) {
    let rows: Vec<f32> = (0..k)
        .map(|kk| {
            let m = (0..n).map(|j| at(kk, j).abs()).fold(0.0f32, f32::max);
            if m > 0.0 && m.is_finite() {
                m
            } else {
                1.0
            }
        })
        .collect();
    let (q, cols) = int8_channels(n, k, |j, kk| at(kk, j) / rows[kk]);
    (q, cols, rows)
}

/// The K×N float32 weights `int8_equalized` stands for, row-major: `rows[k] * q * cols[j]`.
pub fn dequantized_equalized(q: &[i8], cols: &[f32], rows: &[f32]) -> Vec<f32> {
    let (k, n) = (rows.len(), cols.len());
    let mut out = vec![0.0; k * n];
    for j in 0..n {
        for kk in 0..k {
            out[kk * n + j] = rows[kk] * f32::from(q[j * k + kk]) * cols[j];
        }
    }
    out
}

/// Little-endian bytes of float32 values.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_scaled_by_their_largest_weight() {
        let w = [[0.5f32, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.5, -0.01]];
        let (q, s) = int8_channels(3, 3, |c, i| w[c][i]);
        assert_eq!(s, [1.0 / 127.0, 1.0, 3.0 / 127.0]);
        assert_eq!(q, [64, -127, 32, 0, 0, 0, 127, 64, 0]);
        let back = dequantized(&q, &s);
        for (c, row) in w.iter().enumerate() {
            for (i, &v) in row.iter().enumerate() {
                assert!((back[c * 3 + i] - v).abs() <= s[c] / 2.0 + 1e-7);
            }
        }
    }
}
