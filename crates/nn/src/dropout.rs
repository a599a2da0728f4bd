use autocaption_tensor::Rng;

/// Inverted dropout: in training, each value is zeroed with probability `rate` and the
/// survivors scaled by 1/(1 − rate); at inference it is the identity.
#[derive(Debug, Clone, Default)]
pub struct Dropout {
    /// Probability of dropping a value.
    pub rate: f32,
    mask: Vec<f32>,
}

impl Dropout {
    /// Dropout with the given rate.
    pub fn new(rate: f32) -> Self {
        assert!((0.0..1.0).contains(&rate), "dropout rate must be in [0, 1)");
        Self {
            rate,
            mask: Vec::new(),
        }
    }

    /// Applies dropout to `x` in place when `training`, remembering the mask.
    pub fn forward(&mut self, x: &mut [f32], training: bool, rng: &mut Rng) {
        self.mask.clear();
        if !training || self.rate == 0.0 {
            return;
        }
        let keep = 1.0 / (1.0 - self.rate);
        self.mask
            .extend((0..x.len()).map(|_| if rng.bernoulli(self.rate) { 0.0 } else { keep }));
        for (v, m) in x.iter_mut().zip(&self.mask) {
            *v *= m;
        }
    }

    /// Passes the gradient back through the last mask, in place.
    pub fn backward(&self, dx: &mut [f32]) {
        if self.mask.is_empty() {
            return;
        }
        for (g, m) in dx.iter_mut().zip(&self.mask) {
            *g *= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_expectation_and_masks_gradient() {
        let mut d = Dropout::new(0.5);
        let mut rng = Rng::new(4);
        let mut x = vec![1.0f32; 100_000];
        d.forward(&mut x, true, &mut rng);
        let mean = x.iter().sum::<f32>() / x.len() as f32;
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
        let mut g = vec![1.0f32; 100_000];
        d.backward(&mut g);
        assert_eq!(g, x);
        let mut y = vec![3.0f32; 4];
        d.forward(&mut y, false, &mut rng);
        assert_eq!(y, vec![3.0; 4]);
    }
}
