use autocaption_tensor::{glorot_uniform, matmul, Precision, Rng, Trans};

use crate::Param;

/// Keras `Dense`: `y = x·W + b`, optionally followed by ReLU.
#[derive(Debug, Clone)]
pub struct Dense {
    /// `[in, out]`, Keras name `kernel`.
    pub kernel: Param,
    /// `[out]`, Keras name `bias`.
    pub bias: Param,
    /// Apply ReLU after the affine map.
    pub relu: bool,
    /// Arithmetic of the matrix products.
    pub precision: Precision,
}

impl Dense {
    /// Glorot-uniform kernel, zero bias (Keras' defaults).
    pub fn new(inputs: usize, outputs: usize, relu: bool, rng: &mut Rng) -> Self {
        Self {
            kernel: Param::new(&[inputs, outputs], glorot_uniform(rng, inputs, outputs)),
            bias: Param::new(&[outputs], vec![0.0; outputs]),
            relu,
            precision: Precision::F32,
        }
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.kernel.shape[0]
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.kernel.shape[1]
    }

    /// `x` is `[rows, in]`; `y` becomes `[rows, out]`.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut Vec<f32>) {
        let (i, o) = (self.inputs(), self.outputs());
        y.clear();
        y.reserve(rows * o);
        for _ in 0..rows {
            y.extend_from_slice(&self.bias.value);
        }
        matmul(
            self.precision,
            rows,
            i,
            o,
            1.0,
            x,
            Trans::No,
            &self.kernel.value,
            Trans::No,
            1.0,
            y,
        );
        if self.relu {
            for v in y.iter_mut() {
                *v = v.max(0.0);
            }
        }
    }

    /// Given the forward's input `x` and output `y`, and `dy` (overwritten: ReLU's gate is
    /// applied in place), accumulates the parameter gradients and, if `dx` is given,
    /// writes the input gradient `[rows, in]` into it.
    pub fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        rows: usize,
        dx: Option<&mut Vec<f32>>,
    ) {
        let (i, o) = (self.inputs(), self.outputs());
        if self.relu {
            for (g, v) in dy.iter_mut().zip(y) {
                if *v <= 0.0 {
                    *g = 0.0;
                }
            }
        }
        matmul(
            self.precision,
            i,
            rows,
            o,
            1.0,
            x,
            Trans::Yes,
            dy,
            Trans::No,
            1.0,
            &mut self.kernel.grad,
        );
        for r in 0..rows {
            for (b, g) in self.bias.grad.iter_mut().zip(&dy[r * o..(r + 1) * o]) {
                *b += g;
            }
        }
        if let Some(dx) = dx {
            dx.clear();
            dx.resize(rows * i, 0.0);
            matmul(
                self.precision,
                rows,
                o,
                i,
                1.0,
                dy,
                Trans::No,
                &self.kernel.value,
                Trans::Yes,
                0.0,
                dx,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::check_eps;

    fn loss(d: &Dense, x: &[f32], rows: usize, probe: &[f32]) -> f64 {
        let mut y = Vec::new();
        d.forward(x, rows, &mut y);
        y.iter()
            .zip(probe)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        for relu in [false, true] {
            let mut rng = Rng::new(2);
            let (rows, i, o) = (5, 4, 3);
            let mut d = Dense::new(i, o, relu, &mut rng);
            d.bias.value = (0..o).map(|_| rng.uniform(-0.3, 0.3)).collect();
            let x: Vec<f32> = (0..rows * i).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let probe: Vec<f32> = (0..rows * o).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let mut y = Vec::new();
            d.forward(&x, rows, &mut y);
            let mut dy = probe.clone();
            let mut dx = Vec::new();
            d.backward(&x, &y, &mut dy, rows, Some(&mut dx));
            let (gk, gb) = (d.kernel.grad.clone(), d.bias.grad.clone());
            let base = d.clone();
            let eps = if relu { 1e-3 } else { 1e-2 };
            let check = |what: &str, v: &mut [f32], g: &[f32], f: &mut dyn FnMut(&[f32]) -> f64| {
                check_eps(what, eps, v, g, f)
            };
            check(
                &format!("dense x (relu {relu})"),
                &mut x.clone(),
                &dx,
                &mut |xv| loss(&base, xv, rows, &probe),
            );
            let mut k = base.kernel.value.clone();
            check("dense kernel", &mut k, &gk, &mut |kv| {
                let mut e = base.clone();
                e.kernel.value = kv.to_vec();
                loss(&e, &x, rows, &probe)
            });
            let mut b = base.bias.value.clone();
            check("dense bias", &mut b, &gb, &mut |bv| {
                let mut e = base.clone();
                e.bias.value = bv.to_vec();
                loss(&e, &x, rows, &probe)
            });
        }
    }
}
