//! The file names of a model directory, all in one place (DESIGN.md section 5).

/// Architecture, training settings, the data it came from and its encoder's identity.
pub const CONFIG: &str = "config.json";
/// The tokenizer (vocabulary and cleaning pipeline).
pub const VOCAB: &str = "vocab.json";
/// The best weights (the feature standardisation folded in).
pub const WEIGHTS: &str = "weights.safetensors";
/// Where a killed run resumes from.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// Per-epoch losses and accuracies.
pub const HISTORY: &str = "history.json";
/// The plot of the history.
pub const PLOT: &str = "training.png";
/// A copy of the encoder's weights, where they are small enough to keep beside the model
/// (the concept CNN's).
pub const ENCODER: &str = "encoder.safetensors";
