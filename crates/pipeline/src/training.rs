//! A training run into a model directory: a new run (settings checked, data read and
//! matched before anything on disk is touched) or the resumption of a killed one.

use std::path::{Path, PathBuf};

use autocaption_data::{Prepared, Split};
use autocaption_features::{sha256_id, EncoderKind, EncoderSpec, FeatureStore};
use autocaption_io::Progress;
use autocaption_model::Decoder;
use autocaption_model::{MergeConfig, MergeModel};
use autocaption_nn::Adam;
use autocaption_tensor::Precision;
use autocaption_text::Tokenizer;
use autocaption_train::{
    best_epoch, train, CaptionSet, Checkpoint, DevScorer, DevScores, EpochRecord, Event,
    TrainConfig, TrainError,
};

use crate::evaluate::score_against;
use crate::model_dir::{files, references, start_end, Counts, ModelConfig};
use crate::{Error, Result};

/// Something worth telling the user about a run.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// The run is about to start.
    Started {
        /// Sizes of the training and validation data.
        counts: Counts,
        /// Trainable parameters.
        parameters: usize,
        /// Arithmetic of the matrix products.
        precision: Precision,
        /// Where a resumed run goes on: (epochs done, batches done of the next).
        resumed_at: Option<(usize, usize)>,
    },
    /// From the training loop: an epoch ended, or early stopping.
    Progress(Event),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// The model directory.
    pub dir: PathBuf,
    /// The best validation loss.
    pub best_val_loss: Option<f64>,
    /// The epoch whose weights were kept (best by the run's selection measure).
    pub best: Option<EpochRecord>,
    /// Its configuration as saved.
    pub config: ModelConfig,
}

/// The data of a new run, already read; the paths are recorded in the model.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    /// The prepared dataset.
    pub prepared: &'a Prepared,
    /// Its directory.
    pub prepared_path: &'a Path,
    /// The image features.
    pub features: &'a FeatureStore,
    /// Their file.
    pub features_path: &'a Path,
    /// Where the encoder's weights are now, if not at the path the features record (the
    /// demo builds its report under a temporary name).
    pub encoder_file: Option<&'a Path>,
}

/// Checks training settings without touching disk.
pub fn validate(training: &TrainConfig) -> Result<()> {
    if !(1..=100_000).contains(&training.epochs) || !(1..=65_536).contains(&training.batch_size) {
        return Err(Error::Invalid(format!(
            "--epochs {} and --batch-size {}: expected 1 to 100000 epochs and 1 to 65536 \
             captions a batch",
            training.epochs, training.batch_size
        )));
    }
    let lr = training.adam.lr;
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(Error::Invalid(format!(
            "--lr must be a positive number, got {lr}"
        )));
    }
    training
        .lr_schedule
        .validate(lr, training.epochs)
        .map_err(Error::Invalid)
}

/// Words in a dev caption at most, as `evaluate` caps them.
const DEV_MAX_WORDS: usize = 30;

/// Greedy captions of the dev split scored against its references: what selects a run's
/// weights by BLEU-4 or CIDEr-D.
struct DevCaptions {
    tokenizer: Tokenizer,
    start: u32,
    end: u32,
    /// Each dev image's references (cleaned as training captions), in the order of the dev
    /// caption set's feature rows.
    references: Vec<Vec<String>>,
}

impl DevCaptions {
    fn new(prepared: &Prepared) -> Result<Self> {
        let tokenizer = prepared.tokenizer.clone();
        let (start, end) = start_end(&tokenizer).map_err(|m| Error::Invalid(m.into()))?;
        let references = prepared
            .images
            .iter()
            .filter(|i| i.split == Some(Split::Dev))
            .map(|i| references(&tokenizer, &i.captions))
            .collect();
        Ok(Self {
            tokenizer,
            start,
            end,
            references,
        })
    }
}

impl DevScorer for DevCaptions {
    fn score(
        &self,
        model: &MergeModel,
        features: &[f32],
    ) -> std::result::Result<DevScores, TrainError> {
        let decoder = Decoder::new(model, self.start, self.end);
        let dim = model.config.feature_dim;
        let mut texts = Vec::with_capacity(self.references.len());
        for chunk in features.chunks(256 * dim) {
            for h in decoder.greedy(chunk, DEV_MAX_WORDS) {
                texts.push(self.tokenizer.decode(&h.tokens));
            }
        }
        let pairs = texts
            .iter()
            .zip(&self.references)
            .filter(|(_, r)| !r.is_empty())
            .map(|(t, r)| (t.as_str(), r.as_slice()));
        if pairs.clone().next().is_none() {
            return Err(TrainError::Data(
                "the dev split has no reference captions to score".into(),
            ));
        }
        let s = score_against(pairs);
        Ok(DevScores {
            bleu4: s.bleu.corpus[3],
            cider: s.cider_d,
        })
    }
}

/// Layer-size overrides of the seed's model from a JSON file, checked against a model of
/// one word and one feature (so a bad file is refused before any data is read).
pub fn read_overrides(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let bytes = autocaption_io::read(path)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
    let serde_json::Value::Object(obj) = v else {
        return Err(Error::file(path, "expected a JSON object of layer sizes"));
    };
    for k in obj.keys() {
        if matches!(k.as_str(), "vocab_size" | "feature_dim") {
            return Err(Error::file(
                path,
                format!("{k} comes from the data and cannot be set"),
            ));
        }
    }
    model_config(3, 1, &obj).map_err(|e| Error::file(path, e.to_string()))?;
    Ok(obj)
}

/// The seed's model for `vocab` words and `dim`-d features, with `overrides` applied.
pub fn model_config(
    vocab: usize,
    dim: usize,
    overrides: &serde_json::Map<String, serde_json::Value>,
) -> Result<MergeConfig> {
    let mut cfg = MergeConfig::seed(vocab);
    cfg.feature_dim = dim;
    if !overrides.is_empty() {
        let mut merged = serde_json::to_value(&cfg).expect("the config serialises");
        for (k, v) in overrides {
            merged[k] = v.clone();
        }
        cfg = serde_json::from_value(merged)
            .map_err(|e| Error::Invalid(format!("invalid model configuration: {e}")))?;
    }
    cfg.check()
        .map_err(|e| Error::Invalid(format!("invalid model configuration: {e}")))?;
    Ok(cfg)
}

fn counts(train: &CaptionSet, dev: &CaptionSet) -> Counts {
    Counts {
        train_captions: train.captions.len(),
        train_images: train.images,
        dev_captions: dev.captions.len(),
        dev_images: dev.images,
    }
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Trains a new model into `out`. Everything is checked first (settings, overrides, that
/// every training and validation image has features); only then is an existing `out`
/// replaced (with `replace`; without it, an existing `out` is an error).
pub fn train_new(
    data: TrainData<'_>,
    out: &Path,
    replace: bool,
    overrides: &serde_json::Map<String, serde_json::Value>,
    training: TrainConfig,
    progress: &dyn Progress,
    on_event: &mut (dyn FnMut(TrainEvent) + Send),
) -> Result<TrainOutcome> {
    validate(&training)?;
    autocaption_io::refuse_input(out, &[data.prepared_path, data.features_path])?;
    if out.exists() {
        if !replace {
            return Err(Error::file(
                out,
                "already exists (pass --force to replace it, or --resume to continue it)",
            ));
        }
        refuse_foreign(out)?;
    }
    let store = data.features;
    let model = model_config(data.prepared.tokenizer.vocab.len(), store.dim(), overrides)?;
    let train_set = CaptionSet::from_prepared(data.prepared, Split::Train, store)?;
    let dev_set = CaptionSet::from_prepared(data.prepared, Split::Dev, store)?;
    let scorer = DevCaptions::new(data.prepared)?;
    let encoder = store
        .encoder()
        .cloned()
        .unwrap_or_else(|| EncoderSpec::external(store.dim()));
    let config = ModelConfig {
        autocaption_version: env!("CARGO_PKG_VERSION").into(),
        model,
        training,
        data: absolute(data.prepared_path),
        features: absolute(data.features_path),
        counts: counts(&train_set, &dev_set),
        encoder: Some(encoder),
        decoding: crate::Decoding::Incremental,
    };
    let encoder_copy = small_encoder_weights(config.encoder.as_ref(), data.encoder_file);

    // Everything is checked: now the directory.
    if out.exists() {
        std::fs::remove_dir_all(out)
            .map_err(|e| Error::file(out, format!("cannot remove to replace it: {e}")))?;
    }
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, format!("cannot create: {e}")))?;
    config.write(out)?;
    autocaption_io::write_atomic(
        &out.join(files::VOCAB),
        data.prepared.tokenizer.to_json().as_bytes(),
    )?;
    if let Some(bytes) = encoder_copy {
        autocaption_io::write_atomic(&out.join(files::ENCODER), &bytes)?;
    }
    let state = Checkpoint::start(config.run_id());
    let sets = (&train_set, &dev_set, &scorer);
    run(config, out, sets, state, progress, on_event)
}

/// Refuses to replace `out` unless it is a model directory (or an empty one): `--force`
/// is for an old run, not for whatever folder a typo names.
fn refuse_foreign(out: &Path) -> Result<()> {
    if !out.is_dir() {
        return Err(Error::file(
            out,
            "exists and is not a directory; refusing to replace it",
        ));
    }
    let empty = std::fs::read_dir(out)
        .map_err(|e| Error::file(out, format!("cannot read: {e}")))?
        .next()
        .is_none();
    if empty || out.join(files::CONFIG).is_file() {
        Ok(())
    } else {
        Err(Error::file(
            out,
            format!(
                "is not a model directory (no {}); refusing to replace it, even with --force",
                files::CONFIG
            ),
        ))
    }
}

/// The concept CNN's weights (small enough to keep beside the model), read from where the
/// feature file records them and checked by hash; `None` for other encoders, or where the
/// file is gone or changed (the model then still records the encoder's identity).
fn small_encoder_weights(spec: Option<&EncoderSpec>, at: Option<&Path>) -> Option<Vec<u8>> {
    let spec = spec?;
    if spec.kind != EncoderKind::ConceptCnn {
        return None;
    }
    let path = match at {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(spec.weights.as_ref()?),
    };
    let bytes = autocaption_io::read(&path).ok()?;
    (Some(sha256_id(&bytes)) == spec.sha256).then_some(bytes)
}

/// Continues the run in `out` from its last checkpoint, with its saved settings and data
/// (`data` and `features`, where given, must be the run's).
pub fn train_resume(
    out: &Path,
    data: Option<&Path>,
    features: Option<&Path>,
    progress: &dyn Progress,
    on_event: &mut (dyn FnMut(TrainEvent) + Send),
) -> Result<TrainOutcome> {
    let config = ModelConfig::read(out).map_err(|e| match e {
        Error::File { path, .. } if path == out => {
            Error::file(out, "cannot resume: no run here (config.json is missing)")
        }
        other => other,
    })?;
    for (given, saved, what) in [
        (data, &config.data, "--data"),
        (features, &config.features, "--features"),
    ] {
        if let Some(g) = given {
            if absolute(g) != *saved {
                return Err(Error::Invalid(format!(
                    "{what} {} differs from the run's {}; resume with the same data",
                    g.display(),
                    saved.display()
                )));
            }
        }
    }
    let prepared = Prepared::load(&config.data)?;
    let store = FeatureStore::load(&config.features)?;
    let train_set = CaptionSet::from_prepared(&prepared, Split::Train, &store)?;
    let dev_set = CaptionSet::from_prepared(&prepared, Split::Dev, &store)?;
    if counts(&train_set, &dev_set) != config.counts {
        return Err(Error::Invalid(format!(
            "the data in {} changed since the run started; start a new run",
            config.data.display()
        )));
    }
    let ckpt = out.join(files::CHECKPOINT);
    if !ckpt.exists() {
        return Err(Error::file(
            &ckpt,
            "cannot resume: the checkpoint is missing",
        ));
    }
    let scorer = DevCaptions::new(&prepared)?;
    let state = Checkpoint::start(config.run_id());
    run(
        config,
        out,
        (&train_set, &dev_set, &scorer),
        state,
        progress,
        on_event,
    )
}

fn run(
    config: ModelConfig,
    out: &Path,
    (train_set, dev_set, scorer): (&CaptionSet, &CaptionSet, &DevCaptions),
    fresh: Checkpoint,
    progress: &dyn Progress,
    on_event: &mut (dyn FnMut(TrainEvent) + Send),
) -> Result<TrainOutcome> {
    let mut model = MergeModel::new(config.model.clone(), config.training.seed);
    let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
    let mut adam = Adam::new(config.training.adam, &sizes);
    let ckpt = out.join(files::CHECKPOINT);
    // A directory with config.json and a checkpoint is a run to resume; a new run starts
    // from `fresh` (train_new removed any old directory).
    let state = if ckpt.exists() {
        let state = Checkpoint::load(&ckpt, &mut model, &mut adam)?;
        if state.run != config.run_id() {
            return Err(Error::file(&ckpt, "the checkpoint belongs to another run"));
        }
        state
    } else {
        fresh
    };
    let resumed = (state.epoch, state.next_batch);
    on_event(TrainEvent::Started {
        counts: config.counts.clone(),
        parameters: model.parameter_count(),
        precision: config.training.precision,
        resumed_at: ckpt.exists().then_some(resumed),
    });
    let outcome = train(
        &mut model,
        &mut adam,
        &config.training,
        train_set,
        dev_set,
        Some(scorer),
        out,
        state,
        progress,
        &mut |e| on_event(TrainEvent::Progress(e)),
    )?;
    let select = config.training.select;
    let best = best_epoch(&outcome.checkpoint.history, select).cloned();
    Ok(TrainOutcome {
        dir: out.to_path_buf(),
        best_val_loss: outcome.checkpoint.best_val_loss,
        best,
        config,
    })
}
