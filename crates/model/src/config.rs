use serde::{Deserialize, Serialize};

/// Layer sizes of the merge model; the defaults are the seed's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// Vocabulary size, padding included (the seed's Flickr8k vocabulary: 4487).
    pub vocab_size: usize,
    /// Image feature width (ResNet-50 pooled: 2048).
    pub feature_dim: usize,
    /// Word embedding width.
    pub embed_dim: usize,
    /// Units of the text LSTM.
    pub text_lstm: usize,
    /// Width of the per-step Dense after the text LSTM.
    pub text_dense: usize,
    /// Width of the image Dense.
    pub image_dense: usize,
    /// Units of the LSTM over the merged sequence.
    pub merge_lstm: usize,
    /// Units of the last LSTM, whose state predicts the next word.
    pub decoder_lstm: usize,
    /// Dropout rate after the text LSTM and after the image Dense.
    pub dropout: f32,
    /// Sequence length of the seed's fixed-length interface (pre-padded to 30 tokens).
    pub max_len: usize,
}

impl MergeConfig {
    /// The seed's model for a vocabulary of `vocab_size`.
    pub fn seed(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            feature_dim: 2048,
            embed_dim: 128,
            text_lstm: 256,
            text_dense: 128,
            image_dense: 128,
            merge_lstm: 128,
            decoder_lstm: 512,
            dropout: 0.5,
            max_len: 30,
        }
    }
}
