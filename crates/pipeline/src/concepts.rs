//! Training the concept CNN (an encoder learnt from a dataset's own captions, for when no
//! pretrained one can be had) and the features it gives every image.

use std::path::{Path, PathBuf};

use autocaption_concepts::{
    pixels, train, word_targets, ConceptConfig, ConceptNet, Epoch, Examples, TrainOptions,
};
use autocaption_data::{Prepared, Split};
use autocaption_features::FeatureStore;
use autocaption_io::Progress;

use crate::encoder::Encoder;
use crate::{Error, Result};

/// Settings of [`train_concepts`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConceptSettings {
    /// Passes over the training images.
    pub epochs: usize,
    /// Input side in pixels (a multiple of 16).
    pub size: usize,
    /// Seed of the initial weights and of the order of the images.
    pub seed: u64,
}

impl ConceptSettings {
    /// Checks the settings without touching disk.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::Invalid("--epochs must be at least 1".into()));
        }
        if self.size < 16 || !self.size.is_multiple_of(16) || self.size > 1024 {
            return Err(Error::Invalid(format!(
                "--size must be a multiple of 16 from 16 to 1024, got {}",
                self.size
            )));
        }
        Ok(())
    }
}

/// What [`train_concepts`] made.
#[derive(Debug, Clone)]
pub struct ConceptOutcome {
    /// The trained network as an encoder (its weights saved).
    pub encoder: Encoder,
    /// Features of every image with a file, recording the encoder.
    pub features: FeatureStore,
    /// Loss per epoch.
    pub epochs: Vec<Epoch>,
}

/// Trains the concept CNN on the training images of `prepared` (`source` names it in
/// errors) to predict the words of their captions, saves its weights to `weights_out`, and
/// computes the features of every image that has a file. `on_epoch` gets each epoch.
pub fn train_concepts(
    prepared: &Prepared,
    source: &Path,
    s: &ConceptSettings,
    weights_out: &Path,
    progress: &dyn Progress,
    on_epoch: &mut dyn FnMut(usize, &Epoch),
) -> Result<ConceptOutcome> {
    s.validate()?;
    let words = prepared.tokenizer.vocab.len();
    let skip: Vec<u32> = [0]
        .into_iter()
        .chain(prepared.tokenizer.start_index())
        .chain(prepared.tokenizer.end_index())
        .collect();
    let config = ConceptConfig {
        size: s.size,
        ..ConceptConfig::small(words)
    };
    let px = config.size * config.size * 3;
    let mut names = Vec::new();
    let mut images = Vec::new();
    let mut sets: [(Vec<f32>, Vec<f32>, usize); 2] = Default::default();
    progress.start("images", prepared.images.len() as u64);
    for im in &prepared.images {
        progress.advance(1);
        let Some(path) = &im.path else { continue };
        let img = autocaption_vision::load_rgb(path)
            .map_err(|e| Error::file(source, format!("image {}: {e}", im.name)))?;
        let x = pixels(&img, config.size as u32);
        let set = match im.split {
            Some(Split::Train) => Some(0),
            Some(Split::Dev) => Some(1),
            _ => None,
        };
        if let Some(k) = set {
            sets[k].0.extend_from_slice(&x);
            sets[k].1.extend(word_targets(&im.tokens, words, &skip));
            sets[k].2 += 1;
        }
        names.push(im.name.clone());
        images.extend(x);
    }
    progress.finish();
    let [(tx, tt, tn), (vx, vt, vn)] = &sets;
    if *tn == 0 {
        return Err(Error::file(
            source,
            "no training images with files; the concept network learns from them",
        ));
    }
    let mut net = ConceptNet::new(config.clone(), s.seed);
    let opts = TrainOptions {
        epochs: s.epochs,
        seed: s.seed,
        ..TrainOptions::default()
    };
    let val = (*vn > 0).then_some(Examples {
        images: vx,
        targets: vt,
        n: *vn,
    });
    let train_set = Examples {
        images: tx,
        targets: tt,
        n: *tn,
    };
    progress.start("concept epochs", s.epochs as u64);
    let epochs = train(&mut net, train_set, val, &opts, &mut |e, ep| {
        progress.advance(1);
        on_epoch(e, &ep);
    });
    progress.finish();
    let mut data = Vec::with_capacity(names.len() * config.feature_dim());
    for chunk in images.chunks(64 * px) {
        data.extend(net.features(chunk, chunk.len() / px));
    }
    let bytes = net.weights_bytes();
    autocaption_io::write_atomic(weights_out, &bytes)?;
    let encoder = Encoder::concept(net, weights_out, &bytes);
    let features =
        FeatureStore::new(names, config.feature_dim(), data).with_encoder(encoder.spec().clone());
    Ok(ConceptOutcome {
        encoder,
        features,
        epochs,
    })
}

/// Where `concepts` keeps the network beside features written to `features`:
/// `NAME.encoder.safetensors`.
pub fn default_weights_path(features: &Path) -> PathBuf {
    features.with_extension("encoder.safetensors")
}
