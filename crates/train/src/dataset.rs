use autocaption_data::{Prepared, Split};
use autocaption_features::FeatureStore;

use crate::TrainError;

/// The captions of one split, encoded, each with the feature row of its image.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionSet {
    /// Encoded captions (start … end), at least two tokens each.
    pub captions: Vec<Vec<u32>>,
    /// For each caption, its image's row in `features`.
    pub image_of: Vec<usize>,
    /// Feature rows of the split's images, `[images, dim]`.
    pub features: Vec<f32>,
    /// Feature width.
    pub dim: usize,
    /// Images in the split.
    pub images: usize,
}

impl CaptionSet {
    /// Gathers `split` of `prepared` with its features. Fails, naming a few, if images of the
    /// split have no features, or if a token is outside a vocabulary of `vocab_size`.
    pub fn from_prepared(
        prepared: &Prepared,
        split: Split,
        store: &FeatureStore,
    ) -> Result<Self, TrainError> {
        let vocab_size = prepared.tokenizer.vocab.len();
        let mut set = CaptionSet {
            captions: Vec::new(),
            image_of: Vec::new(),
            features: Vec::new(),
            dim: store.dim(),
            images: 0,
        };
        let mut missing = Vec::new();
        for img in prepared.images.iter().filter(|i| i.split == Some(split)) {
            let Some(row) = store.get(&img.name) else {
                missing.push(img.name.clone());
                continue;
            };
            set.features.extend_from_slice(row);
            for t in img.tokens.iter().filter(|t| t.len() >= 2) {
                if let Some(bad) = t.iter().find(|&&id| id as usize >= vocab_size) {
                    return Err(TrainError::Data(format!(
                        "{}: token {bad} is outside the vocabulary of {vocab_size}",
                        img.name
                    )));
                }
                set.captions.push(t.clone());
                set.image_of.push(set.images);
            }
            set.images += 1;
        }
        if !missing.is_empty() {
            let shown: Vec<_> = missing.iter().take(3).map(String::as_str).collect();
            return Err(TrainError::Data(format!(
                "{} {split} images have no features (e.g. {}); extract features for every image of the dataset",
                missing.len(),
                shown.join(", ")
            )));
        }
        Ok(set)
    }

    /// Caption lengths in tokens.
    pub fn lengths(&self) -> Vec<usize> {
        self.captions.iter().map(Vec::len).collect()
    }

    /// Token slices and the gathered feature rows for the captions `ids`.
    pub fn batch(&self, ids: &[usize]) -> (Vec<&[u32]>, Vec<f32>) {
        let caps = ids.iter().map(|&i| self.captions[i].as_slice()).collect();
        let mut feats = Vec::with_capacity(ids.len() * self.dim);
        for &i in ids {
            let r = self.image_of[i];
            feats.extend_from_slice(&self.features[r * self.dim..(r + 1) * self.dim]);
        }
        (caps, feats)
    }
}

/// A per-dimension affine map of the image features, `(x − mean) · scale`, applied before the
/// model during training and folded into its image Dense when the weights are saved (so that
/// the saved model takes raw features and nothing downstream needs to know).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureScaling {
    /// Subtracted from each dimension.
    pub mean: Vec<f32>,
    /// Then multiplied by.
    pub scale: Vec<f32>,
}

impl FeatureScaling {
    /// Zero mean and unit variance per dimension over the images of `set` (each image once,
    /// whatever its caption count). A dimension that hardly varies (standard deviation below
    /// 1e-3 of the dimensions' mean standard deviation) is centred and scaled by that floor
    /// instead, so that an unseen value cannot be blown up. A dimension that does not vary at
    /// all (a channel no training image lights) is scaled by 0: the model learns nothing from
    /// it, so its untrained weights must not act on a value it never saw. Training is the same
    /// either way (the centred values are 0); only the folded weights and unseen rows differ.
    pub fn standardize(set: &CaptionSet) -> Self {
        let (d, n) = (set.dim, set.images.max(1));
        let mut mean = vec![0f64; d];
        let mut range = vec![(f32::INFINITY, f32::NEG_INFINITY); d];
        for row in set.features.chunks(d) {
            for ((m, r), &x) in mean.iter_mut().zip(&mut range).zip(row) {
                *m += f64::from(x);
                *r = (r.0.min(x), r.1.max(x));
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0f64; d];
        for row in set.features.chunks(d) {
            for ((v, &x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (f64::from(x) - m).powi(2);
            }
        }
        let sd: Vec<f64> = var.iter().map(|v| (v / n as f64).sqrt()).collect();
        let typical = sd.iter().sum::<f64>() / d.max(1) as f64;
        let floor = if typical > 0.0 { 1e-3 * typical } else { 1.0 };
        Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            scale: sd
                .iter()
                .zip(&range)
                .map(|(&s, &(lo, hi))| {
                    if lo == hi {
                        0.0
                    } else {
                        (1.0 / s.max(floor)) as f32
                    }
                })
                .collect(),
        }
    }

    /// `set` with every feature row mapped.
    pub fn apply(&self, set: &CaptionSet) -> CaptionSet {
        let mut out = set.clone();
        for row in out.features.chunks_mut(set.dim) {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *x = (*x - m) * s;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rows: &[[f32; 3]]) -> CaptionSet {
        CaptionSet {
            captions: vec![vec![1, 2]; rows.len()],
            image_of: (0..rows.len()).collect(),
            features: rows.iter().flatten().copied().collect(),
            dim: 3,
            images: rows.len(),
        }
    }

    /// Varying dimensions get unit variance, a barely varying one the floor's scale, and one
    /// no training image changes a scale of 0, so that no value it takes later reaches the
    /// model.
    #[test]
    fn a_dimension_that_never_varies_is_scaled_by_zero() {
        let train = set(&[[1.0, 0.0, 5.0], [3.0, 0.0, 5.0 + 1e-6], [5.0, 0.0, 5.0]]);
        let s = FeatureScaling::standardize(&train);
        let sd = (8.0f64 / 3.0).sqrt();
        assert!((s.mean[0] - 3.0).abs() < 1e-6 && (s.scale[0] - (1.0 / sd) as f32).abs() < 1e-6);
        assert_eq!((s.mean[1], s.scale[1]), (0.0, 0.0));
        // The third varies by far less than the floor, 1e-3 of the mean deviation.
        let floor = 1e-3 * (sd + 4.7e-7) / 3.0;
        assert!(
            (s.scale[2] / (1.0 / floor) as f32 - 1.0).abs() < 1e-3,
            "{}",
            s.scale[2]
        );
        let unseen = s.apply(&set(&[[3.0, 1e4, 5.0]]));
        assert_eq!(unseen.features[..2], [0.0, 0.0]);
    }
}
