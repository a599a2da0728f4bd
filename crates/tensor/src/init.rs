//! Seeded initialisers with Keras' definitions.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded random source: the same seed gives the same numbers on every platform.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.0.random::<f32>()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1: f64 = 1.0 - self.0.random::<f64>();
        let u2: f64 = self.0.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Uniform integer in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    /// A fair coin with probability `p` of true.
    pub fn bernoulli(&mut self, p: f32) -> bool {
        self.0.random::<f32>() < p
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.0.random_range(0..=i);
            v.swap(i, j);
        }
    }

    /// The generator's full state, for checkpoints.
    pub fn state(&self) -> ([u8; 32], u64, u128) {
        (
            self.0.get_seed(),
            self.0.get_stream(),
            self.0.get_word_pos(),
        )
    }

    /// Restores a state from [`Rng::state`].
    pub fn from_state(seed: [u8; 32], stream: u64, word_pos: u128) -> Self {
        let mut r = ChaCha8Rng::from_seed(seed);
        r.set_stream(stream);
        r.set_word_pos(word_pos);
        Self(r)
    }
}

/// `n` values uniform in `[-limit, limit)`.
pub fn uniform(rng: &mut Rng, n: usize, limit: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-limit, limit)).collect()
}

/// Keras `glorot_uniform` for a `[fan_in, fan_out]` kernel.
pub fn glorot_uniform(rng: &mut Rng, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    uniform(rng, fan_in * fan_out, limit)
}

/// Keras `orthogonal` for a `[rows, cols]` matrix: the Q of a QR decomposition of a normal
/// matrix, sign-corrected so the distribution is uniform (Haar); rows orthonormal when
/// rows ≤ cols, columns orthonormal otherwise.
pub fn orthogonal(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
    // The tall orientation [big, small], stored column by column so that the Gram–Schmidt
    // dot products run over contiguous memory: cols[j] is column j.
    let (big, small) = (rows.max(cols), rows.min(cols));
    let mut a: Vec<f64> = (0..big * small).map(|_| rng.normal() as f64).collect();
    for j in 0..small {
        let (done, rest) = a.split_at_mut(j * big);
        let col = &mut rest[..big];
        for p in 0..j {
            let q = &done[p * big..(p + 1) * big];
            let dot: f64 = col.iter().zip(q).map(|(x, y)| x * y).sum();
            for (x, y) in col.iter_mut().zip(q) {
                *x -= dot * y;
            }
        }
        let norm = col.iter().map(|x| x * x).sum::<f64>().sqrt();
        for x in col.iter_mut() {
            *x /= norm;
        }
    }
    // Q is [big, small] with orthonormal columns; Keras returns it for rows ≥ cols and its
    // transpose (orthonormal rows) otherwise.
    let mut out = vec![0.0f32; rows * cols];
    for j in 0..small {
        for i in 0..big {
            let v = a[j * big + i] as f32;
            if rows >= cols {
                out[i * cols + j] = v;
            } else {
                out[j * cols + i] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_is_orthonormal_both_ways() {
        let mut rng = Rng::new(3);
        for (r, c) in [(8, 8), (4, 16), (16, 4)] {
            let q = orthogonal(&mut rng, r, c);
            let (outer, inner, by_rows) = if r <= c { (r, c, true) } else { (c, r, false) };
            for x in 0..outer {
                for y in 0..outer {
                    let dot: f32 = (0..inner)
                        .map(|k| {
                            if by_rows {
                                q[x * c + k] * q[y * c + k]
                            } else {
                                q[k * c + x] * q[k * c + y]
                            }
                        })
                        .sum();
                    let want = if x == y { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{r}x{c}: {dot}");
                }
            }
        }
    }

    #[test]
    fn rng_state_round_trip() {
        let mut a = Rng::new(9);
        a.normal();
        let (s, st, w) = a.state();
        let mut b = Rng::from_state(s, st, w);
        assert_eq!(a.uniform(0.0, 1.0), b.uniform(0.0, 1.0));
    }
}
