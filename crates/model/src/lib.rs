//! The seed notebook's "merge" caption model, exactly: a text branch (Embedding → LSTM →
//! Dropout → per-step Dense) and an image branch (Dense + ReLU → Dropout → repeated over
//! time) concatenated, image first, into LSTM → LSTM → Dense → softmax. Trained on whole
//! captions with the loss at every real position (DESIGN.md section 2).

mod config;
mod decode;
mod error;
mod merge;
mod summary;
mod weights;

pub use config::MergeConfig;
pub use decode::{DecodeOptions, Decoder, Hypothesis};
pub use error::ModelError;
pub use merge::MergeModel;
pub use summary::summary;
