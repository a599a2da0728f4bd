//! A trained model directory (DESIGN.md sections 5 and 8): its configuration, tokenizer and
//! weights, and the identity of the encoder whose features it reads.

use std::path::{Path, PathBuf};

use autocaption_features::{EncoderKind, EncoderSpec, FeatureStore};
use autocaption_model::{MergeConfig, MergeModel};
use autocaption_text::Tokenizer;
use autocaption_train::TrainConfig;
use serde::{Deserialize, Serialize};

pub use autocaption_train::files;

use crate::{Error, Result};

/// `config.json` of a model directory: everything that defines the run and its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The autocaption version that trained it.
    pub autocaption_version: String,
    /// Layer sizes.
    pub model: MergeConfig,
    /// Training settings (`standardize_features`: the feature standardisation, fitted on the
    /// training images and folded into the saved image Dense, so the model reads raw
    /// features of its encoder).
    pub training: TrainConfig,
    /// The prepared dataset (absolute).
    pub data: PathBuf,
    /// The features file (absolute).
    pub features: PathBuf,
    /// Training and validation captions and images.
    pub counts: Counts,
    /// The encoder whose features the model reads; absent in models trained before it was
    /// recorded (those need `--weights` to caption photos, checked by width only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderSpec>,
    /// How captions are decoded (absent: incremental, as every model trained here).
    #[serde(default, skip_serializing_if = "Decoding::is_incremental")]
    pub decoding: Decoding,
}

/// How a model's captions are decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    /// One word at a time, carrying the LSTM states: models trained with padding masked
    /// (every model `train` makes, and Keras models whose Embedding has `mask_zero`).
    #[default]
    Incremental,
    /// The whole pre-padded window of the last `max_len` tokens again for every word, as
    /// the seed's `model.predict` loop does: models trained on the seed's (prefix, next
    /// word) pairs without a mask (imported seed models). Greedy and beam search.
    Prefix,
}

impl Decoding {
    fn is_incremental(&self) -> bool {
        *self == Decoding::Incremental
    }
}

/// Sizes of the training data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Training captions.
    pub train_captions: usize,
    /// Training images.
    pub train_images: usize,
    /// Validation captions.
    pub dev_captions: usize,
    /// Validation images.
    pub dev_images: usize,
}

impl ModelConfig {
    /// Reads `config.json` of `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let p = dir.join(files::CONFIG);
        if !p.is_file() {
            return Err(Error::file(
                dir,
                format!(
                    "not a model directory (no {}; make one with `autocaption train`)",
                    files::CONFIG
                ),
            ));
        }
        let bytes = autocaption_io::read(&p)?;
        let config: Self = serde_json::from_slice(&bytes)
            .map_err(|e| Error::file(&p, format!("not a model configuration: {e}")))?;
        config
            .model
            .check()
            .map_err(|e| Error::file(&p, format!("model.{e}")))?;
        Ok(config)
    }

    /// Writes `config.json` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("the config serialises") + "\n";
        autocaption_io::write_atomic(&dir.join(files::CONFIG), text.as_bytes())?;
        Ok(())
    }

    /// What identifies the run for its checkpoint: model, training settings and data sizes.
    pub fn run_id(&self) -> String {
        serde_json::to_string(&(&self.model, &self.training, &self.counts)).expect("serialises")
    }
}

/// A model directory loaded: configuration, tokenizer and the model with its weights.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// Where it was read from.
    pub path: PathBuf,
    /// `config.json`.
    pub config: ModelConfig,
    /// The tokenizer the model was trained with.
    pub tokenizer: Tokenizer,
    /// The model with its trained weights.
    pub model: MergeModel,
    /// Token ids that start and end a caption.
    start: u32,
    end: u32,
}

impl ModelDir {
    /// Loads `config.json`, `vocab.json` and `weights.safetensors` from `dir`, checking that
    /// they agree.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = ModelConfig::read(dir)?;
        let vocab = dir.join(files::VOCAB);
        let tokenizer = Tokenizer::load(&vocab)?;
        if tokenizer.vocab.len() != config.model.vocab_size {
            return Err(Error::file(
                &vocab,
                format!(
                    "the vocabulary has {} words but the model expects {}",
                    tokenizer.vocab.len(),
                    config.model.vocab_size
                ),
            ));
        }
        let (start, end) = start_end(&tokenizer).map_err(|m| Error::file(&vocab, m))?;
        if let Some(e) = &config.encoder {
            if e.feature_dim != config.model.feature_dim {
                return Err(Error::file(
                    dir.join(files::CONFIG),
                    format!(
                        "the encoder gives {}-d features but the model reads {}-d",
                        e.feature_dim, config.model.feature_dim
                    ),
                ));
            }
        }
        let weights = dir.join(files::WEIGHTS);
        if !weights.exists() {
            return Err(Error::file(
                &weights,
                "missing (training has not finished an epoch yet?)",
            ));
        }
        let mut model = MergeModel::new(config.model.clone(), 0);
        model.load_weights(&weights)?;
        Ok(Self {
            path: dir.to_path_buf(),
            config,
            tokenizer,
            model,
            start,
            end,
        })
    }

    /// The directory's name, not its path: what outputs and clients are told.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Width of the features the model reads.
    pub fn feature_dim(&self) -> usize {
        self.model.config.feature_dim
    }

    /// Checks that `store` holds features this model reads: their width, and, where both
    /// record it, the same encoder's weights (at either precision: a model trained on f32
    /// features reads int8 ones of the same weights, and the other way round).
    pub fn check_features(&self, store: &FeatureStore) -> Result<()> {
        let shown = store
            .source()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the features".into());
        if store.dim() != self.feature_dim() {
            return Err(Error::Invalid(format!(
                "{shown}: {}-d features, but the model reads {}-d ({})",
                store.dim(),
                self.feature_dim(),
                self.path.display()
            )));
        }
        if let (Some(model), Some(made)) = (&self.config.encoder, store.encoder()) {
            let external =
                model.kind == EncoderKind::External || made.kind == EncoderKind::External;
            if !external && !model.same_weights(made) {
                return Err(Error::Invalid(format!(
                    "{shown}: made with {}, but the model in {} was trained on features of {}; \
                     its captions would be garbage",
                    made.describe(),
                    self.path.display(),
                    model.describe()
                )));
            }
        }
        Ok(())
    }

    /// The start and end token ids.
    pub fn start_end(&self) -> (u32, u32) {
        (self.start, self.end)
    }

    /// The encoder's weights kept beside the model, if there are any.
    pub fn encoder_copy(&self) -> Option<PathBuf> {
        let p = self.path.join(files::ENCODER);
        p.is_file().then_some(p)
    }

    /// A reference caption as the metrics compare it: cleaned like the training captions,
    /// without the start and end tokens.
    pub fn reference_words(&self, raw: &str) -> Vec<String> {
        reference_words(&self.tokenizer, raw)
    }
}

/// A caption cleaned as `tokenizer` cleans training captions, without start and end tokens.
pub fn reference_words(tokenizer: &Tokenizer, raw: &str) -> Vec<String> {
    let wrap = tokenizer.pipeline.wrap_tokens();
    tokenizer
        .pipeline
        .words(raw)
        .into_iter()
        .filter(|w| wrap.is_none_or(|(s, e)| w != s && w != e))
        .collect()
}

/// The ids of the tokens that start and end a caption.
pub(crate) fn start_end(tokenizer: &Tokenizer) -> std::result::Result<(u32, u32), &'static str> {
    match (tokenizer.start_index(), tokenizer.end_index()) {
        (Some(start), Some(end)) => Ok((start, end)),
        _ => Err("the tokenizer has no start and end tokens; captions cannot be generated"),
    }
}

/// An image's captions as the metrics compare them (see [`reference_words`]).
pub(crate) fn references(tokenizer: &Tokenizer, captions: &[String]) -> Vec<String> {
    captions
        .iter()
        .map(|c| reference_words(tokenizer, c).join(" "))
        .collect()
}
