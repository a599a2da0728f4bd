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

/// The most parameters a model may have (16 GiB of f32): a configuration asking for more
/// is refused before anything is allocated.
pub const MAX_PARAMETERS: u64 = 1 << 32;

impl MergeConfig {
    /// Checks every field against its range, naming the first one out of it: widths and
    /// lengths at least 1 (the vocabulary at least 3: padding, start, end), dropout in [0, 1),
    /// and at most [`MAX_PARAMETERS`] parameters in all.
    pub fn check(&self) -> Result<(), String> {
        let widths = [
            ("vocab_size", self.vocab_size, 3, 10_000_000),
            ("feature_dim", self.feature_dim, 1, 1 << 20),
            ("embed_dim", self.embed_dim, 1, 1 << 16),
            ("text_lstm", self.text_lstm, 1, 1 << 16),
            ("text_dense", self.text_dense, 1, 1 << 16),
            ("image_dense", self.image_dense, 1, 1 << 16),
            ("merge_lstm", self.merge_lstm, 1, 1 << 16),
            ("decoder_lstm", self.decoder_lstm, 1, 1 << 16),
            ("max_len", self.max_len, 1, 10_000),
        ];
        for (name, v, lo, hi) in widths {
            if v < lo || v > hi {
                return Err(format!("{name} is {v}; it must be from {lo} to {hi}"));
            }
        }
        if !(self.dropout.is_finite() && (0.0..1.0).contains(&self.dropout)) {
            return Err(format!(
                "dropout is {}; it must be at least 0 and below 1",
                self.dropout
            ));
        }
        let n = self.parameters();
        if n > MAX_PARAMETERS {
            return Err(format!(
                "the model would have {n} parameters, more than the {MAX_PARAMETERS} allowed"
            ));
        }
        Ok(())
    }

    /// Parameters of the model, counted in 64 bits (the fields are bounded by [`check`]).
    ///
    /// [`check`]: MergeConfig::check
    pub fn parameters(&self) -> u64 {
        let u = |v: usize| v as u64;
        let lstm = |i: u64, h: u64| 4 * h * (i + h + 1);
        let dense = |i: u64, o: u64| o * (i + 1);
        u(self.vocab_size) * u(self.embed_dim)
            + lstm(u(self.embed_dim), u(self.text_lstm))
            + dense(u(self.text_lstm), u(self.text_dense))
            + dense(u(self.feature_dim), u(self.image_dense))
            + lstm(u(self.image_dense + self.text_dense), u(self.merge_lstm))
            + lstm(u(self.merge_lstm), u(self.decoder_lstm))
            + dense(u(self.decoder_lstm), u(self.vocab_size))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_names_the_field_and_its_range() {
        assert_eq!(MergeConfig::seed(4487).check(), Ok(()));
        assert_eq!(MergeConfig::seed(4487).parameters(), 5_075_463);
        let bad = |f: &dyn Fn(&mut MergeConfig)| {
            let mut c = MergeConfig::seed(100);
            f(&mut c);
            c.check().unwrap_err()
        };
        assert_eq!(
            bad(&|c| c.dropout = 1.0),
            "dropout is 1; it must be at least 0 and below 1"
        );
        assert_eq!(
            bad(&|c| c.dropout = f32::NAN),
            "dropout is NaN; it must be at least 0 and below 1"
        );
        assert_eq!(
            bad(&|c| c.merge_lstm = 0),
            "merge_lstm is 0; it must be from 1 to 65536"
        );
        assert_eq!(
            bad(&|c| c.vocab_size = 2),
            "vocab_size is 2; it must be from 3 to 10000000"
        );
        assert!(bad(&|c| {
            c.decoder_lstm = 65536;
            c.merge_lstm = 65536;
        })
        .contains("parameters, more than the 4294967296 allowed"));
    }
}
