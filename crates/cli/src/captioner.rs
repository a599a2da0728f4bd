//! A trained model directory made ready to caption: the merge model, its tokenizer and the
//! start and end tokens, with batched greedy or beam decoding.

use std::path::Path;

use anyhow::{bail, Context};
use autocaption_model::{DecodeOptions, Decoder, Hypothesis, MergeModel};
use autocaption_tensor::WeightFormat;
use autocaption_text::Tokenizer;

use crate::cmd::train::RunConfig;

/// Decoding options `caption` and `evaluate` share (each has its own `--beam`).
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
    pub decoder_weights: WeightFormat,
}

impl DecodeArgs {
    /// The decoder's options for beam width `beam`, after checking the limits.
    pub fn options(&self, beam: usize) -> anyhow::Result<DecodeOptions> {
        if self.max_words == 0 {
            bail!("--max-words must be at least 1");
        }
        if !(self.length_alpha.is_finite() && self.length_alpha >= 0.0) {
            bail!(
                "--length-alpha must be a number ≥ 0, got {}",
                self.length_alpha
            );
        }
        Ok(DecodeOptions {
            max_words: self.max_words,
            beam,
            length_alpha: self.length_alpha,
        })
    }
}

/// Images decoded together (the decoder's batch).
const BATCH: usize = 64;

/// A model directory loaded for captioning.
pub struct Captioner {
    /// The directory's `config.json`.
    pub config: RunConfig,
    /// The model with its trained weights.
    pub model: MergeModel,
    /// The tokenizer the model was trained with.
    pub tokenizer: Tokenizer,
    start: u32,
    end: u32,
}

impl Captioner {
    /// Loads `config.json`, `vocab.json` and `weights.safetensors` from `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let p = dir.join("config.json");
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{}: not a model directory (no config.json; make one with `autocaption train`)",
                dir.display()
            )
        })?;
        let config: RunConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a model configuration", p.display()))?;
        let tokenizer = Tokenizer::load(&dir.join("vocab.json"))?;
        if tokenizer.vocab.len() != config.model.vocab_size {
            bail!(
                "{}: the vocabulary has {} words but the model expects {}",
                dir.join("vocab.json").display(),
                tokenizer.vocab.len(),
                config.model.vocab_size
            );
        }
        let (Some(start), Some(end)) = (tokenizer.start_index(), tokenizer.end_index()) else {
            bail!(
                "{}: the tokenizer has no start and end tokens; captions cannot be generated",
                dir.join("vocab.json").display()
            );
        };
        let mut model = MergeModel::new(config.model.clone(), 0);
        let weights = dir.join("weights.safetensors");
        if !weights.exists() {
            bail!(
                "{}: missing (training has not finished an epoch yet?)",
                weights.display()
            );
        }
        model.load_weights(&weights)?;
        Ok(Self {
            config,
            model,
            tokenizer,
            start,
            end,
        })
    }

    /// Width of the image features the model reads.
    pub fn feature_dim(&self) -> usize {
        self.model.config.feature_dim
    }

    /// Captions for `features` (`[n, feature_dim]`), in batches: per image, the hypotheses
    /// best first (one for greedy, up to `beam` for beam search), the per-word weights held in
    /// `format`. `progress` gets the number of images done after each batch.
    pub fn caption(
        &self,
        features: &[f32],
        opts: &DecodeOptions,
        format: WeightFormat,
        progress: &mut dyn FnMut(usize),
    ) -> anyhow::Result<Vec<Vec<Hypothesis>>> {
        let decoder = Decoder::with_format(&self.model, self.start, self.end, format)?;
        let dim = self.feature_dim();
        let mut out = Vec::with_capacity(features.len() / dim);
        for chunk in features.chunks(BATCH * dim) {
            if opts.beam <= 1 {
                out.extend(
                    decoder
                        .greedy(chunk, opts.max_words)
                        .into_iter()
                        .map(|h| vec![h]),
                );
            } else {
                out.extend(decoder.beam(chunk, opts));
            }
            progress(chunk.len() / dim);
        }
        Ok(out)
    }

    /// The sentence of a hypothesis, without start and end tokens.
    pub fn text(&self, h: &Hypothesis) -> String {
        self.tokenizer.decode(&h.tokens)
    }

    /// A reference caption as the metrics compare it: cleaned like the training captions,
    /// without the start and end tokens.
    pub fn reference_words(&self, raw: &str) -> Vec<String> {
        let wrap = self.tokenizer.pipeline.wrap_tokens();
        self.tokenizer
            .pipeline
            .words(raw)
            .into_iter()
            .filter(|w| wrap.is_none_or(|(s, e)| w != s && w != e))
            .collect()
    }
}
