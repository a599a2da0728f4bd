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
