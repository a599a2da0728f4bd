use autocaption_nn::AdamConfig;
use autocaption_tensor::Precision;
use serde::{Deserialize, Serialize};

/// How to train; saved in the model directory beside the model's own configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Most epochs to run.
    pub epochs: usize,
    /// Captions per batch.
    pub batch_size: usize,
    /// Stop after this many epochs without a better validation loss (0: never stop early).
    pub patience: usize,
    /// Everything random (initialisation, shuffling, dropout) derives from this.
    pub seed: u64,
    /// Optimiser settings.
    pub adam: AdamConfig,
    /// Write a checkpoint every this many batches within an epoch (0: only at epoch ends).
    pub checkpoint_every: usize,
    /// Arithmetic of the matrix products; validation always runs in f32.
    #[serde(default)]
    pub precision: Precision,
    /// Standardise every feature dimension (zero mean, unit variance over the training
    /// images) before the model sees it; the map is folded into the saved image Dense, so
    /// the saved model still takes raw features.
    #[serde(default)]
    pub standardize_features: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 64,
            patience: 3,
            seed: 0,
            adam: AdamConfig::default(),
            checkpoint_every: 200,
            precision: Precision::F32,
            standardize_features: false,
        }
    }
}
