//! Decoding options `caption` and `evaluate` share (each has its own `--beam`).

use autocaption_pipeline::CaptionOptions;
use autocaption_tensor::WeightFormat;

/// How captions are generated, as arguments.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DecodeArgs {
    /// Most words in a caption.
    #[arg(long, default_value_t = 30)]
    max_words: usize,

    /// Length normalisation of beam scores: log p / length^alpha.
    #[arg(long, default_value_t = 0.7)]
    length_alpha: f64,

    /// How the decoder holds the weights each word reads: f32 (the trained values), or f16
    /// (half the bytes, so about twice as fast at batch 1; log-probabilities move by about
    /// 1e-4, so a caption rarely changes).
    #[arg(long, default_value = "f32", value_name = "f32|f16")]
    decoder_weights: WeightFormat,
}

impl DecodeArgs {
    /// The options for beam width `beam`, checked.
    pub fn options(&self, beam: usize) -> autocaption_pipeline::Result<CaptionOptions> {
        let opts = CaptionOptions {
            max_words: self.max_words,
            beam,
            length_alpha: self.length_alpha,
            weights: self.decoder_weights,
        };
        opts.validate()?;
        Ok(opts)
    }
}
