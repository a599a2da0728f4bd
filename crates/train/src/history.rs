use serde::{Deserialize, Serialize};

/// Metrics of one epoch. Losses are mean cross-entropy per predicted word; accuracies the
/// share of positions whose most probable word is the right one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Training loss, with dropout, averaged over the epoch.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_accuracy: f64,
    /// Validation loss, without dropout.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
}

/// Every epoch so far (`history.json`).
pub type History = Vec<EpochRecord>;
