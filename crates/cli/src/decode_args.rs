//! Decoding options `caption` and `evaluate` share (each has its own `--beam`).

use autocaption_pipeline::CaptionOptions;
use autocaption_tensor::WeightFormat;

/// How captions are generated, as arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DecodeArgs {
    /// Most words in a caption.
    #[arg(long, default_value_t = 30)]
    max_words: usize,

    /// Length normalisation of beam scores: log p / length^alpha (`evaluate` takes a
    /// comma-separated list to compare).
    #[arg(long, default_value = "0.7", value_delimiter = ',', num_args = 1)]
    length_alpha: Vec<f64>,

    /// How the decoder holds the weights each word reads: f32 (the trained values); f16
    /// (half the bytes, so about twice as fast at batch 1 with AVX-512; log-probabilities
    /// move by about 1e-4, so a caption rarely changes); or int8 (a quarter of the bytes:
    /// equalised per-column int8 weights, each word's inputs rounded to 16-bit integers,
    /// sums in integers; about 4× as fast at batch 1, and about 8 captions in 100 change by
    /// a word or more).
    #[arg(long, default_value = "f32", value_name = "f32|f16|int8")]
    decoder_weights: WeightFormat,
}

impl DecodeArgs {
    /// The options for beam width `beam`, checked (one --length-alpha only).
    pub fn options(&self, beam: usize) -> anyhow::Result<CaptionOptions> {
        let [length_alpha] = self.length_alpha[..] else {
            anyhow::bail!(
                "--length-alpha takes one value here, got {}",
                self.length_alpha.len()
            );
        };
        let opts = CaptionOptions {
            max_words: self.max_words,
            beam,
            length_alpha,
            weights: self.decoder_weights,
        };
        opts.validate()?;
        Ok(opts)
    }

    /// Every --length-alpha given.
    pub fn length_alphas(&self) -> &[f64] {
        &self.length_alpha
    }

    /// Most words in a caption.
    pub fn max_words(&self) -> usize {
        self.max_words
    }

    /// How the decoder holds its weights.
    pub fn weights(&self) -> WeightFormat {
        self.decoder_weights
    }
}
