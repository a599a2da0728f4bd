use autocaption_nn::AdamConfig;
use autocaption_tensor::Precision;
use serde::{Deserialize, Serialize};

use crate::EpochRecord;

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
    /// What picks the weights kept and counts towards `patience`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub select: Select,
    /// How the learning rate moves from `adam.lr`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub lr_schedule: LrSchedule,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// What selects the weights a run keeps (and what `patience` waits for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// The lowest validation loss.
    #[default]
    Loss,
    /// The highest CIDEr-D of greedy captions of the dev split.
    Cider,
    /// The highest BLEU-4 of greedy captions of the dev split.
    Bleu4,
}

impl Select {
    /// The name used on the command line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::Cider => "cider",
            Self::Bleu4 => "bleu4",
        }
    }

    /// The epoch's value of this measure, higher is better (`None` where the epoch did not
    /// measure it).
    pub fn value(self, r: &EpochRecord) -> Option<f64> {
        match self {
            Self::Loss => Some(-r.val_loss),
            Self::Cider => r.val_cider,
            Self::Bleu4 => r.val_bleu4,
        }
    }
}

/// How the learning rate moves over a run. Every rate is a function of the run's history
/// and position, so a resumed run uses the same rates.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LrSchedule {
    /// `adam.lr` throughout.
    #[default]
    Constant,
    /// Multiply by `factor` after `patience` epochs in a row without a better selection
    /// measure (counting again from each cut), never below `floor`.
    Plateau {
        /// Epochs without improvement before a cut.
        patience: usize,
        /// Multiplier of a cut, in (0, 1).
        factor: f32,
        /// The lowest rate.
        floor: f32,
    },
    /// A linear warm-up from near zero over `warmup_epochs`, then half a cosine from
    /// `adam.lr` down to `floor` at the last epoch; batch by batch.
    Cosine {
        /// Epochs of warm-up (may be fractional; 0: none).
        warmup_epochs: f32,
        /// The rate at the end.
        floor: f32,
    },
}

fn check_floor(floor: f32, lr: f32) -> Result<(), String> {
    if floor >= 0.0 && floor <= lr {
        Ok(())
    } else {
        Err(format!(
            "the learning-rate floor must be from 0 to the rate {lr}, got {floor}"
        ))
    }
}

impl LrSchedule {
    /// Checks the values, naming the wrong one.
    pub fn validate(&self, lr: f32, epochs: usize) -> Result<(), String> {
        match *self {
            Self::Constant => Ok(()),
            Self::Plateau {
                patience,
                factor,
                floor,
            } => {
                if patience == 0 {
                    Err("the plateau schedule's patience must be at least 1 epoch".into())
                } else if !(factor > 0.0 && factor < 1.0) {
                    Err(format!(
                        "the plateau factor must be in (0, 1), got {factor}"
                    ))
                } else {
                    check_floor(floor, lr)
                }
            }
            Self::Cosine {
                warmup_epochs,
                floor,
            } => {
                if !(warmup_epochs >= 0.0 && warmup_epochs < epochs as f32) {
                    Err(format!(
                        "the warm-up must be from 0 to fewer than the {epochs} epochs, got {warmup_epochs}"
                    ))
                } else {
                    check_floor(floor, lr)
                }
            }
        }
    }

    /// The rate of batch `k` of `batches` in epoch `epoch` (0-based) of a run of `epochs`,
    /// after the completed epochs `history`, measured by `select`.
    pub fn rate(
        &self,
        lr: f32,
        epochs: usize,
        select: Select,
        history: &[EpochRecord],
        (epoch, k, batches): (usize, usize, usize),
    ) -> f32 {
        match *self {
            Self::Constant => lr,
            Self::Plateau {
                patience,
                factor,
                floor,
            } => {
                let (mut rate, mut best, mut since) = (lr, None::<f64>, 0);
                for r in &history[..epoch.min(history.len())] {
                    let v = select.value(r).unwrap_or(f64::NEG_INFINITY);
                    if best.is_none_or(|b| v > b) {
                        best = Some(v);
                        since = 0;
                    } else {
                        since += 1;
                        if since >= patience {
                            rate = (rate * factor).max(floor);
                            since = 0;
                        }
                    }
                }
                rate
            }
            Self::Cosine {
                warmup_epochs,
                floor,
            } => {
                let t = epoch as f64 + (k as f64 + 1.0) / batches.max(1) as f64;
                let warm = f64::from(warmup_epochs);
                if t <= warm {
                    return (f64::from(lr) * t / warm) as f32;
                }
                let p = ((t - warm) / (epochs as f64 - warm).max(1e-9)).clamp(0.0, 1.0);
                let (lr, floor) = (f64::from(lr), f64::from(floor));
                (floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32
            }
        }
    }
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
            select: Select::Loss,
            lr_schedule: LrSchedule::Constant,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, val_loss: f64, cider: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 0.0,
            train_accuracy: 0.0,
            val_loss,
            val_accuracy: 0.0,
            val_bleu4: Some(cider / 4.0),
            val_cider: Some(cider),
            lr: None,
        }
    }

    #[test]
    fn plateau_cuts_after_patience_and_counts_again() {
        let s = LrSchedule::Plateau {
            patience: 2,
            factor: 0.5,
            floor: 0.1,
        };
        // CIDEr: better, better, worse, worse (cut), worse, worse (cut), worse, worse (floor).
        let h: Vec<_> = [0.1, 0.2, 0.15, 0.15, 0.1, 0.19, 0.1, 0.1]
            .iter()
            .enumerate()
            .map(|(i, &c)| record(i + 1, 1.0 - c, c))
            .collect();
        let at = |e| s.rate(1.0, 20, Select::Cider, &h, (e, 0, 10));
        let rates: Vec<f32> = (0..=8).map(at).collect();
        assert_eq!(rates, [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]);
        // By loss the same history improves until epoch 2 as well (loss is 1 − CIDEr here).
        assert_eq!(s.rate(1.0, 20, Select::Loss, &h, (4, 0, 10)), 0.5);
        // Never below the floor.
        let long: Vec<_> = (0..40).map(|i| record(i + 1, 1.0, 0.0)).collect();
        assert_eq!(s.rate(1.0, 50, Select::Cider, &long, (40, 0, 10)), 0.1);
    }

    #[test]
    fn cosine_warms_up_then_falls_to_the_floor() {
        let s = LrSchedule::Cosine {
            warmup_epochs: 1.0,
            floor: 0.0,
        };
        let at = |e, k| s.rate(1.0, 5, Select::Cider, &[], (e, k, 4));
        assert_eq!(at(0, 0), 0.25);
        assert_eq!(at(0, 3), 1.0);
        assert!((at(2, 3) - 0.5).abs() < 1e-6, "{}", at(2, 3));
        assert!(at(4, 3).abs() < 1e-6);
        for e in 1..5 {
            for k in 0..4 {
                let next = if k == 3 { at(e + 1, 0) } else { at(e, k + 1) };
                assert!(e == 4 && k == 3 || next < at(e, k));
            }
        }
    }

    #[test]
    fn schedules_are_checked() {
        let bad = [
            LrSchedule::Plateau {
                patience: 0,
                factor: 0.5,
                floor: 0.0,
            },
            LrSchedule::Plateau {
                patience: 1,
                factor: 1.0,
                floor: 0.0,
            },
            LrSchedule::Plateau {
                patience: 1,
                factor: 0.5,
                floor: 2e-3,
            },
            LrSchedule::Cosine {
                warmup_epochs: 5.0,
                floor: 0.0,
            },
            LrSchedule::Cosine {
                warmup_epochs: f32::NAN,
                floor: 0.0,
            },
        ];
        for s in bad {
            assert!(s.validate(1e-3, 5).is_err(), "{s:?}");
        }
        assert!(LrSchedule::Constant.validate(1e-3, 1).is_ok());
    }

    #[test]
    fn old_configs_read_as_loss_selected_and_constant() {
        let mut json = serde_json::to_value(TrainConfig::default()).unwrap();
        assert!(json.get("select").is_none() && json.get("lr_schedule").is_none());
        let old: TrainConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(old, TrainConfig::default());
        json["select"] = "cider".into();
        json["lr_schedule"] =
            serde_json::json!({"kind": "plateau", "patience": 2, "factor": 0.5, "floor": 1e-5});
        let new: TrainConfig = serde_json::from_value(json).unwrap();
        assert_eq!(new.select, Select::Cider);
        assert!(matches!(
            new.lr_schedule,
            LrSchedule::Plateau { patience: 2, .. }
        ));
    }
}
