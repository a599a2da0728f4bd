use autocaption_nn::{Adam, AdamConfig};
use autocaption_tensor::Rng;

use crate::ConceptNet;

/// How to train the concept network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainOptions {
    /// Passes over the images.
    pub epochs: usize,
    /// Images per update.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Seed of the order of the images.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch: 32,
            lr: 2e-3,
            seed: 0,
        }
    }
}

/// Trains `net` on `n` images (`[n, size, size, 3]`) with their word targets
/// (`[n, words]`), reporting each epoch's mean loss to `epoch_done`; returns the losses.
pub fn train(
    net: &mut ConceptNet,
    images: &[f32],
    targets: &[f32],
    n: usize,
    opts: &TrainOptions,
    epoch_done: &mut dyn FnMut(usize, f64),
) -> Vec<f64> {
    let px = net.config.size * net.config.size * 3;
    let words = net.config.words;
    assert_eq!(images.len(), n * px, "images");
    assert_eq!(targets.len(), n * words, "targets");
    let sizes: Vec<usize> = net.params_mut().iter().map(|p| p.len()).collect();
    let mut adam = Adam::new(
        AdamConfig {
            lr: opts.lr,
            ..AdamConfig::default()
        },
        &sizes,
    );
    let mut rng = Rng::new(opts.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut losses = Vec::new();
    for epoch in 0..opts.epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut seen) = (0.0f64, 0usize);
        for batch in order.chunks(opts.batch.max(1)) {
            let mut x = Vec::with_capacity(batch.len() * px);
            let mut t = Vec::with_capacity(batch.len() * words);
            for &i in batch {
                x.extend_from_slice(&images[i * px..(i + 1) * px]);
                t.extend_from_slice(&targets[i * words..(i + 1) * words]);
            }
            net.params_mut().into_iter().for_each(|p| p.zero_grad());
            sum += net.backward(&x, batch.len(), &t) * batch.len() as f64;
            seen += batch.len();
            adam.update(&mut net.params_mut());
        }
        let mean = sum / seen.max(1) as f64;
        losses.push(mean);
        epoch_done(epoch, mean);
    }
    losses
}
