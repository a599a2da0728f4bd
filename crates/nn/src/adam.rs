use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Param;

/// Adam's hyperparameters; the defaults are Keras'.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the denominator.
    pub epsilon: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Adam (Kingma & Ba, 2015) in the form Keras uses:
/// `w −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    /// Hyperparameters.
    pub config: AdamConfig,
    /// Steps taken.
    pub step: u64,
    /// First moments, one buffer per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
}

impl Adam {
    /// An optimiser for parameters of these sizes.
    pub fn new(config: AdamConfig, sizes: &[usize]) -> Self {
        Self {
            config,
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// One update of every parameter from its gradient.
    pub fn update(&mut self, params: &mut [&mut Param]) {
        assert_eq!(
            params.len(),
            self.m.len(),
            "Adam was built for other parameters"
        );
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let lr_t = c.lr * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t));
        // Element-wise, so chunks run in parallel with the same result.
        const CHUNK: usize = 1 << 15;
        for ((p, m), v) in params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
            p.value
                .par_chunks_mut(CHUNK)
                .zip(p.grad.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((w, g), m), v)| {
                    adam_step(w, g, m, v, lr_t, c.beta1, c.beta2, c.epsilon)
                });
        }
    }
}

autocaption_tensor::simd_fn! {
    /// One Adam update of one parameter tensor.
    #[allow(clippy::too_many_arguments)]
    fn adam_step(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], lr_t: f32, beta1: f32, beta2: f32, eps: f32) {
        for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            *w -= lr_t * *m / (v.sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_steps_match_the_keras_formula() {
        // tf.keras.optimizers.Adam(): w=1.0, grads 0.5 then -0.25
        // step 1: m=0.05, v=2.5e-4, lr_t=1e-3*sqrt(1e-3)/0.1 → w = 1 - lr_t*m/(sqrt(v)+1e-7)
        let mut p = Param::new(&[1], vec![1.0]);
        let mut adam = Adam::new(AdamConfig::default(), &[1]);
        p.grad = vec![0.5];
        adam.update(&mut [&mut p]);
        let lr_t = 1e-3f64 * (1.0 - 0.999f64).sqrt() / (1.0 - 0.9);
        let want = 1.0 - lr_t * 0.05 / (2.5e-4f64.sqrt() + 1e-7);
        assert!(
            (p.value[0] as f64 - want).abs() < 1e-7,
            "{} vs {want}",
            p.value[0]
        );
        p.grad = vec![-0.25];
        adam.update(&mut [&mut p]);
        let (m, v) = (0.9 * 0.05 + 0.1 * -0.25, 0.999 * 2.5e-4 + 0.001 * 0.0625);
        let lr_t = 1e-3 * (1.0 - 0.999f64.powi(2)).sqrt() / (1.0 - 0.9f64.powi(2));
        let want2 = want - lr_t * m / (f64::sqrt(v) + 1e-7);
        assert!((p.value[0] as f64 - want2).abs() < 1e-6);
    }
}
