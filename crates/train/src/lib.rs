//! Training the merge model (DESIGN.md section 2): one pass per caption with the loss at
//! every real position, batches of similar lengths so padded positions cost nothing, Adam
//! with Keras' defaults, validation each epoch (loss, and with a [`DevScorer`] the CIDEr-D
//! and BLEU-4 of greedy dev captions), weights kept and early stopping by the [`Select`]ed
//! measure, learning-rate schedules ([`LrSchedule`]), atomic checkpoints and an exact resume.

mod batching;
mod checkpoint;
mod config;
mod dataset;
mod error;
pub mod files;
mod flops;
mod history;
mod trainer;

pub use batching::bucketed_batches;
pub use checkpoint::Checkpoint;
pub use config::{LrSchedule, Select, TrainConfig};
pub use dataset::{CaptionSet, FeatureScaling};
pub use error::TrainError;
pub use flops::train_flops_per_batch;
pub use history::{best_epoch, EpochRecord, History};
pub use trainer::{evaluate, train, DevScorer, DevScores, Event, Outcome};
