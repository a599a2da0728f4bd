//! A model directory and its encoder, ready to caption photos or feature rows. Shareable
//! across threads (`&self`, `Send + Sync`), so a server holds one for all its requests.

use std::path::{Path, PathBuf};

use autocaption_io::Progress;
use autocaption_model::{DecodeOptions, Decoder, Hypothesis};
use autocaption_tensor::WeightFormat;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::encoder::{Encoder, EncoderSource};
use crate::model_dir::ModelDir;
use crate::{Error, Result};

/// The widest beam: each image keeps this many hypotheses, each with its LSTM states and a
/// vocabulary of scores a word (wider beams score worse here; see README).
pub const MAX_BEAM: usize = 64;

/// The most words a caption may have (the seed's captions have at most 34 tokens).
pub const MAX_WORDS: usize = 200;

/// How captions are generated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptionOptions {
    /// Most words in a caption.
    pub max_words: usize,
    /// Beam width (1: greedy).
    pub beam: usize,
    /// Length normalisation of beam scores: log p / length^alpha.
    pub length_alpha: f64,
    /// How the decoder holds the weights each word reads (f16: half the bytes, about twice
    /// as fast at batch 1, log-probabilities move by about 1e-4; int8: a quarter, summed in
    /// integers).
    pub weights: WeightFormat,
}

impl Default for CaptionOptions {
    fn default() -> Self {
        Self {
            max_words: 30,
            beam: 3,
            length_alpha: 0.7,
            weights: WeightFormat::F32,
        }
    }
}

impl CaptionOptions {
    /// Checks the limits.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_WORDS).contains(&self.max_words) {
            return Err(Error::Invalid(format!(
                "--max-words must be from 1 to {MAX_WORDS}, got {}",
                self.max_words
            )));
        }
        if !(1..=MAX_BEAM).contains(&self.beam) {
            return Err(Error::Invalid(format!(
                "--beam must be from 1 (greedy) to {MAX_BEAM}, got {}",
                self.beam
            )));
        }
        if !(self.length_alpha.is_finite() && self.length_alpha >= 0.0) {
            return Err(Error::Invalid(format!(
                "--length-alpha must be a number ≥ 0, got {}",
                self.length_alpha
            )));
        }
        Ok(())
    }

    /// `greedy` or `beam N`.
    pub fn label(&self) -> String {
        if self.beam <= 1 {
            "greedy".into()
        } else {
            format!("beam {}", self.beam)
        }
    }

    fn decode(&self) -> DecodeOptions {
        DecodeOptions {
            max_words: self.max_words,
            beam: self.beam,
            length_alpha: self.length_alpha,
        }
    }
}

/// One generated caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caption {
    /// The sentence, without start and end tokens.
    pub text: String,
    /// Length-normalised log-probability (higher is better).
    pub score: f64,
}

/// What happened to one photo of [`Captioner::caption_files`].
#[derive(Debug, Clone, PartialEq)]
pub enum PhotoResult {
    /// Its captions, best first (one for greedy, up to the beam width for beam search).
    Captions(Vec<Caption>),
    /// It could not be read: why.
    Unreadable(String),
}

/// Images decoded together (the decoder's batch).
const BATCH: usize = 64;

/// A model directory with its encoder, ready to caption.
#[derive(Debug, Clone)]
pub struct Captioner {
    model: ModelDir,
    encoder: Option<Encoder>,
}

impl Captioner {
    /// The model in `dir` with its encoder: `weights` where given (checked against the
    /// model's record), else the encoder the model records (see [`Encoder::for_model`]).
    pub fn load(dir: &Path, weights: Option<&EncoderSource>) -> Result<Self> {
        let model = ModelDir::load(dir)?;
        let encoder = Encoder::for_model(&model, weights)?;
        Ok(Self {
            model,
            encoder: Some(encoder),
        })
    }

    /// The model in `dir` without an encoder: it captions feature rows only.
    pub fn load_for_features(dir: &Path) -> Result<Self> {
        Ok(Self::from_model(ModelDir::load(dir)?))
    }

    /// A loaded model without an encoder.
    pub fn from_model(model: ModelDir) -> Self {
        Self {
            model,
            encoder: None,
        }
    }

    /// Replaces the caption model's Dense and LSTM weights by the per-channel int8 ones
    /// `compile --quantize int8` gives its decoder (see [`crate::quantize`]).
    pub fn simulate_int8(&mut self) {
        crate::quantize::simulate_int8(&mut self.model.model);
    }

    /// The model directory.
    pub fn model(&self) -> &ModelDir {
        &self.model
    }

    /// The encoder, when photos can be captioned.
    pub fn encoder(&self) -> Option<&Encoder> {
        self.encoder.as_ref()
    }

    /// Width of the features the model reads.
    pub fn feature_dim(&self) -> usize {
        self.model.feature_dim()
    }

    /// Captions of feature rows (`[n, feature_dim]`), in batches; `progress` counts rows.
    pub fn caption_features(
        &self,
        features: &[f32],
        opts: &CaptionOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<Caption>>> {
        opts.validate()?;
        let dim = self.feature_dim();
        if !features.len().is_multiple_of(dim) {
            return Err(Error::Invalid(format!(
                "{} feature values are not whole rows of {dim}",
                features.len()
            )));
        }
        let (start, end) = self.model.start_end();
        if self.model.config.decoding == crate::Decoding::Prefix {
            return self.caption_prefix(features, opts, progress);
        }
        let decoder = Decoder::with_format(&self.model.model, start, end, opts.weights)?;
        let mut out = Vec::with_capacity(features.len() / dim);
        progress.start(
            &format!("captions ({})", opts.label()),
            (features.len() / dim) as u64,
        );
        for chunk in features.chunks(BATCH * dim) {
            let hyps: Vec<Vec<Hypothesis>> = if opts.beam <= 1 {
                decoder
                    .greedy(chunk, opts.max_words)
                    .into_iter()
                    .map(|h| vec![h])
                    .collect()
            } else {
                decoder.beam(chunk, &opts.decode())
            };
            out.extend(
                hyps.iter()
                    .map(|hs| hs.iter().map(|h| self.caption(h)).collect()),
            );
            progress.advance((chunk.len() / dim) as u64);
        }
        progress.finish();
        Ok(out)
    }

    /// Captions of a model decoded over pre-padded windows (see [`crate::Decoding::Prefix`]),
    /// greedy or by beam search; `opts.max_words` words at most, the end token besides.
    fn caption_prefix(
        &self,
        features: &[f32],
        opts: &CaptionOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<Caption>>> {
        if opts.weights != WeightFormat::F32 {
            return Err(Error::Invalid(format!(
                "{}: this model is decoded over pre-padded windows, in f32 only; leave out \
                 --decoder-weights",
                self.model.path.display()
            )));
        }
        let dim = self.feature_dim();
        let (start, end) = self.model.start_end();
        // The forward pass keeps its activations in the model: a copy for this call.
        let mut model = self.model.model.clone();
        let mut out = Vec::with_capacity(features.len() / dim);
        progress.start(
            &format!("captions ({}, prefix)", opts.label()),
            (features.len() / dim) as u64,
        );
        for chunk in features.chunks(BATCH * dim) {
            if opts.beam > 1 {
                let hyps = model.beam_prefix(chunk, start, end, &opts.decode());
                out.extend(
                    hyps.iter()
                        .map(|hs| hs.iter().map(|h| self.caption(h)).collect()),
                );
            } else {
                // One more prediction than words, for the end token only; a caption that
                // has not ended by then is cut at max_words, unfinished.
                let hyps = model.greedy_prefix(chunk, start, end, opts.max_words + 1, true);
                out.extend(hyps.iter().map(|h| vec![self.caption(h)]));
            }
            progress.advance((chunk.len() / dim) as u64);
        }
        progress.finish();
        Ok(out)
    }

    /// Captions of decoded images.
    pub fn caption_images(
        &self,
        images: &[RgbImage],
        opts: &CaptionOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<Caption>>> {
        opts.validate()?;
        let features = self.needs_encoder()?.encode(images, progress);
        self.caption_features(&features, opts, progress)
    }

    /// Captions of image files; a file that cannot be read gets why, and the others go on.
    pub fn caption_files(
        &self,
        paths: &[PathBuf],
        opts: &CaptionOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<PhotoResult>> {
        self.caption_files_batched(paths, opts, false, progress)
    }

    /// [`Captioner::caption_files`], with every forward pass of the encoder in full batches
    /// (see [`Encoder::encode_files`]): a photo's caption and score are then the same bytes
    /// whatever photos share the run, at the cost of a padded last batch.
    pub fn caption_files_batched(
        &self,
        paths: &[PathBuf],
        opts: &CaptionOptions,
        fixed_batches: bool,
        progress: &dyn Progress,
    ) -> Result<Vec<PhotoResult>> {
        opts.validate()?;
        let encoder = self.needs_encoder()?;
        let mut results: Vec<PhotoResult> =
            vec![PhotoResult::Unreadable(String::new()); paths.len()];
        let (mut done, mut features) = (Vec::new(), Vec::new());
        encoder.encode_files(
            paths,
            encoder.batch_size(),
            fixed_batches,
            progress,
            &mut |b| {
                for (i, why) in b.failed {
                    results[i] = PhotoResult::Unreadable(why);
                }
                done.extend(b.done);
                features.extend(b.features);
                Ok(())
            },
        )?;
        let captions = self.caption_features(&features, opts, progress)?;
        for (i, c) in done.into_iter().zip(captions) {
            results[i] = PhotoResult::Captions(c);
        }
        Ok(results)
    }

    fn needs_encoder(&self) -> Result<&Encoder> {
        self.encoder.as_ref().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: loaded without an encoder; only feature rows can be captioned",
                self.model.path.display()
            ))
        })
    }

    fn caption(&self, h: &Hypothesis) -> Caption {
        Caption {
            text: self.model.tokenizer.decode(&h.tokens),
            score: h.score,
        }
    }
}
