use autocaption_tensor::{uniform, Rng};

use crate::Param;

/// Keras `Embedding`: row `i` of the table is the vector of token `i`.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// `[vocab, dim]`, Keras name `embeddings`.
    pub table: Param,
}

impl Embedding {
    /// Keras' default initialisation: uniform in [-0.05, 0.05].
    pub fn new(vocab: usize, dim: usize, rng: &mut Rng) -> Self {
        Self {
            table: Param::new(&[vocab, dim], uniform(rng, vocab * dim, 0.05)),
        }
    }

    /// Width of a vector.
    pub fn dim(&self) -> usize {
        self.table.shape[1]
    }

    /// Looks up `ids`, giving `[ids.len(), dim]`. Panics on an id outside the table (callers
    /// validate ids against the vocabulary first).
    pub fn forward(&self, ids: &[u32], out: &mut Vec<f32>) {
        let d = self.dim();
        out.clear();
        out.reserve(ids.len() * d);
        for &id in ids {
            let id = id as usize;
            out.extend_from_slice(&self.table.value[id * d..(id + 1) * d]);
        }
    }

    /// Adds the gradient of the rows used back into the table's gradient.
    pub fn backward(&mut self, ids: &[u32], d_out: &[f32]) {
        let d = self.dim();
        for (r, &id) in ids.iter().enumerate() {
            let g = &mut self.table.grad[id as usize * d..(id as usize + 1) * d];
            for (a, b) in g.iter_mut().zip(&d_out[r * d..(r + 1) * d]) {
                *a += b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check;

    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = Rng::new(1);
        let mut e = Embedding::new(7, 3, &mut rng);
        let ids = [1u32, 4, 1, 6, 0];
        let probe: Vec<f32> = (0..15).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mut out = Vec::new();
        e.forward(&ids, &mut out);
        e.table.zero_grad();
        e.backward(&ids, &probe);
        let analytic = e.table.grad.clone();
        check("embedding table", &mut e.table.value, &analytic, |t| {
            let mut f = Embedding {
                table: crate::Param::new(&[7, 3], t.to_vec()),
            };
            f.table.zero_grad();
            let mut o = Vec::new();
            f.forward(&ids, &mut o);
            o.iter()
                .zip(&probe)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        });
    }
}
