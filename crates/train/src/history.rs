use serde::{Deserialize, Serialize};

use crate::Select;

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
    /// BLEU-4 of greedy captions of the dev split (where the run measured it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_bleu4: Option<f64>,
    /// CIDEr-D of greedy captions of the dev split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_cider: Option<f64>,
    /// Mean learning rate over the epoch's batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

/// Every epoch so far (`history.json`).
pub type History = Vec<EpochRecord>;

/// The epoch whose weights a run keeps: the best by `select`, the earliest of equals.
pub fn best_epoch(history: &[EpochRecord], select: Select) -> Option<&EpochRecord> {
    let v = |r: &EpochRecord| select.value(r).unwrap_or(f64::NEG_INFINITY);
    history.iter().rev().max_by(|a, b| v(a).total_cmp(&v(b)))
}
