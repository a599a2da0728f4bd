use autocaption_nn::{Dense, Param};
use autocaption_tensor::{sigmoid, uniform, Rng};
use serde::{Deserialize, Serialize};

use crate::ops::{
    avg_pool, avg_pool_backward, col2im, conv_backward, conv_forward, im2col, max_pool,
    max_pool_backward,
};

/// Shape of the concept network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConceptConfig {
    /// Input images are `size × size` RGB (a multiple of 16).
    pub size: usize,
    /// Output channels of the four 3×3 convolutions.
    pub channels: [usize; 4],
    /// Words predicted (the head's outputs).
    pub words: usize,
}

impl ConceptConfig {
    /// The demo's network: 64×64 inputs, 16 → 32 → 64 → 64 channels.
    pub fn small(words: usize) -> Self {
        Self {
            size: 64,
            channels: [16, 32, 64, 64],
            words,
        }
    }

    /// Width of the features: the last map average-pooled to a 4×4 grid (for 64×64
    /// inputs), so where things are survives along with what they are.
    pub fn feature_dim(&self) -> usize {
        let g = self.size / 16;
        g * g * self.channels[3]
    }

    /// Side of the map convolution `i` runs on.
    fn side(&self, i: usize) -> usize {
        self.size >> i
    }

    fn inputs(&self, i: usize) -> usize {
        if i == 0 {
            3
        } else {
            self.channels[i - 1]
        }
    }
}

/// Four 3×3 convolutions with ReLU, each of the first three followed by 2×2 max pooling and
/// the last by 2×2 average pooling into the feature grid; then a Dense layer whose sigmoid
/// outputs say, per vocabulary word, how likely the image's captions are to use it.
/// (H. Fang et al., "From Captions to Visual Concepts and Back", CVPR 2015, train word
/// detectors the same way, from captions alone.)
#[derive(Debug, Clone)]
pub struct ConceptNet {
    /// The shape.
    pub config: ConceptConfig,
    /// Per convolution: weights `[9·cin, cout]` in (ky, kx, cin) row order, and bias.
    pub convs: Vec<(Param, Param)>,
    /// Features → word logits.
    pub head: Dense,
    /// The last training forward, its buffers reused by the next.
    trace: Trace,
}

/// What the backward pass needs from the forward.
#[derive(Debug, Clone, Default)]
struct Trace {
    cols: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
    argmax: Vec<Vec<u32>>,
    features: Vec<f32>,
    logits: Vec<f32>,
    /// Backward scratch: the patch gradient of a convolution.
    dcol: Vec<f32>,
}

impl ConceptNet {
    /// He-uniform convolutions and a Glorot-uniform head, from `seed`.
    pub fn new(config: ConceptConfig, seed: u64) -> Self {
        assert!(
            config.size >= 16 && config.size.is_multiple_of(16),
            "input size must be a multiple of 16"
        );
        let mut rng = Rng::new(seed);
        let convs = (0..4)
            .map(|i| {
                let (k, cout) = (9 * config.inputs(i), config.channels[i]);
                let limit = (6.0 / k as f32).sqrt();
                (
                    Param::new(&[k, cout], uniform(&mut rng, k * cout, limit)),
                    Param::new(&[cout], vec![0.0; cout]),
                )
            })
            .collect();
        let head = Dense::new(config.feature_dim(), config.words, false, &mut rng);
        Self {
            config,
            convs,
            head,
            trace: Trace::default(),
        }
    }

    /// Every parameter, in a fixed order.
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut out = Vec::new();
        for (w, b) in &mut self.convs {
            out.push(w);
            out.push(b);
        }
        out.push(&mut self.head.kernel);
        out.push(&mut self.head.bias);
        out
    }

    /// The forward pass into `t`, whose buffers are reused.
    fn forward(&self, x: &[f32], n: usize, t: &mut Trace) {
        let c = &self.config;
        assert_eq!(
            x.len(),
            n * c.size * c.size * 3,
            "images are not {n}×{0}×{0}×3",
            c.size
        );
        t.cols.resize_with(4, Vec::new);
        t.outputs.resize_with(4, Vec::new);
        t.argmax.clear();
        let mut a = x.to_vec();
        for (i, (w, b)) in self.convs.iter().enumerate() {
            let s = c.side(i);
            im2col(&a, n, s, s, c.inputs(i), &mut t.cols[i]);
            conv_forward(&t.cols[i], n * s * s, &w.value, &b.value, &mut t.outputs[i]);
            if i < 3 {
                let (p, arg) = max_pool(&t.outputs[i], n, s, s, c.channels[i]);
                a = p;
                t.argmax.push(arg);
            } else {
                t.features = avg_pool(&t.outputs[i], n, s, s, c.channels[i]);
            }
        }
        self.head.forward(&t.features, n, &mut t.logits);
    }

    fn run(&self, x: &[f32], n: usize) -> Trace {
        let mut t = Trace::default();
        self.forward(x, n, &mut t);
        t
    }

    /// Features of `n` images (`[n, size, size, 3]`, see [`crate::pixels`]):
    /// `[n, feature_dim]`.
    pub fn features(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.run(x, n).features
    }

    /// Word probabilities of `n` images: `[n, words]`.
    pub fn predict(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.run(x, n).logits.iter().map(|&z| sigmoid(z)).collect()
    }

    /// Mean binary cross-entropy of the word predictions for `n` images against `targets`.
    pub fn loss(&self, x: &[f32], n: usize, targets: &[f32]) -> f64 {
        assert_eq!(targets.len(), n * self.config.words, "targets");
        bce(&self.run(x, n).logits, targets).0
    }

    /// Mean binary cross-entropy of the word predictions against `targets` (`[n, words]`,
    /// each in [0, 1]) and its gradient, added to the parameters' gradients.
    pub fn backward(&mut self, x: &[f32], n: usize, targets: &[f32]) -> f64 {
        let c = self.config.clone();
        assert_eq!(
            targets.len(),
            n * c.words,
            "targets are not {n}×{}",
            c.words
        );
        let mut t = std::mem::take(&mut self.trace);
        self.forward(x, n, &mut t);
        let (loss, mut dlogits) = bce(&t.logits, targets);
        let mut dfeat = Vec::new();
        self.head
            .backward(&t.features, &t.logits, &mut dlogits, n, Some(&mut dfeat));
        let s = c.side(3);
        let mut dy = avg_pool_backward(&dfeat, n, s, s, c.channels[3]);
        for i in (0..4).rev() {
            let s = c.side(i);
            let (w, b) = &mut self.convs[i];
            conv_backward(
                &t.cols[i],
                n * s * s,
                &w.value,
                &t.outputs[i],
                &mut dy,
                &mut w.grad,
                &mut b.grad,
                (i > 0).then_some(&mut t.dcol),
            );
            if i > 0 {
                let da = col2im(&t.dcol, n, s, s, c.inputs(i));
                dy = max_pool_backward(&da, &t.argmax[i - 1], t.outputs[i - 1].len());
            }
        }
        self.trace = t;
        loss
    }
}

/// Mean binary cross-entropy of sigmoid(`logits`) against `targets`, and its gradient with
/// respect to the logits.
fn bce(logits: &[f32], targets: &[f32]) -> (f64, Vec<f32>) {
    let scale = 1.0 / logits.len().max(1) as f32;
    let mut loss = 0.0f64;
    let grad = logits
        .iter()
        .zip(targets)
        .map(|(&z, &y)| {
            // log σ(z) and log(1 − σ(z)) without overflow: −softplus(−z), −softplus(z).
            let softplus = |v: f32| v.max(0.0) + (-v.abs()).exp().ln_1p();
            loss += f64::from(y * softplus(-z) + (1.0 - y) * softplus(z));
            (sigmoid(z) - y) * scale
        })
        .collect();
    (loss * f64::from(scale), grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (ConceptNet, Vec<f32>, Vec<f32>) {
        let cfg = ConceptConfig {
            size: 16,
            channels: [3, 4, 5, 6],
            words: 4,
        };
        let mut net = ConceptNet::new(cfg, 3);
        let mut rng = Rng::new(4);
        // Biases off zero, so few ReLUs sit at their kink.
        for p in net.params_mut() {
            p.value
                .iter_mut()
                .for_each(|v| *v += rng.uniform(-0.05, 0.05));
        }
        let n = 2;
        let x: Vec<f32> = (0..n * 16 * 16 * 3)
            .map(|_| rng.uniform(-0.5, 0.5))
            .collect();
        let t: Vec<f32> = (0..n * 4).map(|i| [0.0, 1.0, 0.4, 0.8][i % 4]).collect();
        (net, x, t)
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (mut net, x, t) = tiny();
        net.backward(&x, 2, &t);
        let count = net.params_mut().len();
        for p in 0..count {
            let analytic = net.params_mut()[p].grad.clone();
            let values = net.params_mut()[p].value.clone();
            let loss = |v: &[f32]| {
                let mut probe = net.clone();
                probe.params_mut()[p].value.copy_from_slice(v);
                probe.params_mut().into_iter().for_each(|q| q.zero_grad());
                probe.backward(&x, 2, &t)
            };
            let stride = (values.len() / 60).max(1);
            let (mut diff, mut norm) = (0.0f64, 0.0f64);
            for i in (0..values.len()).step_by(stride) {
                let eps = 1e-3f32;
                let mut v = values.clone();
                v[i] += eps;
                let up = loss(&v);
                v[i] -= 2.0 * eps;
                let down = loss(&v);
                let fd = (up - down) / (2.0 * f64::from(eps));
                diff += (fd - f64::from(analytic[i])).powi(2);
                norm += fd * fd;
            }
            let rel = diff.sqrt() / norm.sqrt().max(1e-12);
            assert!(rel < 2e-3, "parameter {p}: relative error {rel:.2e}");
        }
    }

    #[test]
    fn learns_to_tell_two_patterns_apart() {
        // Left half bright vs right half bright: word 0 for one, word 1 for the other.
        let cfg = ConceptConfig {
            size: 16,
            channels: [4, 8, 8, 8],
            words: 2,
        };
        let mut net = ConceptNet::new(cfg, 5);
        let n = 8;
        let mut x = vec![0.0f32; n * 16 * 16 * 3];
        let mut t = vec![0.0f32; n * 2];
        for img in 0..n {
            let left = img % 2 == 0;
            for y in 0..16 {
                for xx in 0..16 {
                    let on = (xx < 8) == left && (y + img) % 3 != 0;
                    for ch in 0..3 {
                        x[((img * 16 + y) * 16 + xx) * 3 + ch] = if on { 0.5 } else { -0.5 };
                    }
                }
            }
            t[img * 2 + usize::from(!left)] = 1.0;
        }
        let sizes: Vec<usize> = net.params_mut().iter().map(|p| p.len()).collect();
        let mut adam = autocaption_nn::Adam::new(
            autocaption_nn::AdamConfig {
                lr: 1e-2,
                ..Default::default()
            },
            &sizes,
        );
        let first = net.clone().backward(&x, n, &t);
        let mut last = first;
        for _ in 0..60 {
            net.params_mut().into_iter().for_each(|p| p.zero_grad());
            last = net.backward(&x, n, &t);
            adam.update(&mut net.params_mut());
        }
        assert!(last < 0.1 * first, "loss {first} → {last}");
        let p = net.predict(&x, n);
        for img in 0..n {
            let want = usize::from(img % 2 != 0);
            assert!(
                p[img * 2 + want] > 0.8,
                "image {img}: {:?}",
                &p[img * 2..img * 2 + 2]
            );
        }
    }
}
