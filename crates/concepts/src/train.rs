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
    /// Seed of the order of the images and of the shifts.
    pub seed: u64,
    /// Each training image is shifted by up to this many pixels each way, at random each
    /// time it is seen (edges repeated): more distinct images than the set holds, so the
    /// network does not learn the training set by heart.
    pub shift: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch: 32,
            lr: 2e-3,
            seed: 0,
            shift: 6,
        }
    }
}

/// Images (`[n, size, size, 3]`, see [`crate::pixels`]) with their word targets
/// (`[n, words]`, see [`crate::word_targets`]).
#[derive(Debug, Clone, Copy)]
pub struct Examples<'a> {
    /// Pixels.
    pub images: &'a [f32],
    /// Targets.
    pub targets: &'a [f32],
    /// Number of images.
    pub n: usize,
}

/// One epoch's mean losses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// Over the training images, as they were trained on.
    pub train_loss: f64,
    /// Over the held-out images after the epoch, when given.
    pub val_loss: Option<f64>,
}

/// Trains `net` on `train`, reporting each epoch (and the loss on `val`, if given) to
/// `epoch_done`; returns the epochs. With `val`, `net` ends with the weights of the epoch
/// with the lowest validation loss.
pub fn train(
    net: &mut ConceptNet,
    train: Examples,
    val: Option<Examples>,
    opts: &TrainOptions,
    epoch_done: &mut dyn FnMut(usize, Epoch),
) -> Vec<Epoch> {
    let px = net.config.size * net.config.size * 3;
    let words = net.config.words;
    let Examples { images, targets, n } = train;
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
    assert!(
        opts.shift < net.config.size,
        "shift must be smaller than the image"
    );
    let mut order: Vec<usize> = (0..n).collect();
    let mut losses = Vec::new();
    let mut best: Option<(f64, ConceptNet)> = None;
    let side = net.config.size;
    for epoch in 0..opts.epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut seen) = (0.0f64, 0usize);
        for batch in order.chunks(opts.batch.max(1)) {
            let mut x = Vec::with_capacity(batch.len() * px);
            let mut t = Vec::with_capacity(batch.len() * words);
            for &i in batch {
                let s = opts.shift as isize;
                let (dy, dx) = if s == 0 {
                    (0, 0)
                } else {
                    let span = 2 * s as usize + 1;
                    (rng.below(span) as isize - s, rng.below(span) as isize - s)
                };
                shifted(&images[i * px..(i + 1) * px], side, dy, dx, &mut x);
                t.extend_from_slice(&targets[i * words..(i + 1) * words]);
            }
            net.params_mut().into_iter().for_each(|p| p.zero_grad());
            sum += net.backward(&x, batch.len(), &t) * batch.len() as f64;
            seen += batch.len();
            adam.update(&mut net.params_mut());
        }
        let e = Epoch {
            train_loss: sum / seen.max(1) as f64,
            val_loss: val.map(|v| {
                let per = 64 * px;
                let chunks = v.images.chunks(per).zip(v.targets.chunks(64 * words));
                let total: f64 = chunks
                    .map(|(x, t)| net.loss(x, x.len() / px, t) * (x.len() / px) as f64)
                    .sum();
                total / v.n.max(1) as f64
            }),
        };
        if let Some(v) = e.val_loss {
            if best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, net.clone()));
            }
        }
        losses.push(e);
        epoch_done(epoch, e);
    }
    if let Some((_, b)) = best {
        *net = b;
    }
    losses
}

/// Appends `img` (`side × side × 3`) moved down by `dy` and right by `dx` pixels, the
/// edge pixels repeated into the uncovered band.
fn shifted(img: &[f32], side: usize, dy: isize, dx: isize, out: &mut Vec<f32>) {
    let at = |v: isize| v.clamp(0, side as isize - 1) as usize;
    for y in 0..side as isize {
        let row = &img[at(y - dy) * side * 3..][..side * 3];
        for x in 0..side as isize {
            out.extend_from_slice(&row[at(x - dx) * 3..][..3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifting_moves_pixels_and_repeats_edges() {
        // 3×3 image whose red channel is 10·y + x.
        let img: Vec<f32> = (0..9)
            .flat_map(|i| [(10 * (i / 3) + i % 3) as f32, 0.0, 0.0])
            .collect();
        let mut out = Vec::new();
        shifted(&img, 3, 1, -1, &mut out);
        let red: Vec<f32> = out.chunks(3).map(|p| p[0]).collect();
        assert_eq!(red, vec![1.0, 2.0, 2.0, 1.0, 2.0, 2.0, 11.0, 12.0, 12.0]);
        let mut same = Vec::new();
        shifted(&img, 3, 0, 0, &mut same);
        assert_eq!(same, img);
    }
}
