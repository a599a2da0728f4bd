//! `autocaption import keras`: the seed's own Keras model (an HDF5 file from
//! `model.save("model.h5")`) and its vocabulary become a model directory like any other.

use std::path::{Path, PathBuf};

use autocaption_data::Prepared;
use autocaption_io::{AtomicDir, Ours};
use autocaption_keras::{read_model_file, read_tokenizer_file};
use autocaption_text::Tokenizer;
use autocaption_train::TrainConfig;

use crate::model_dir::files;
use crate::{Counts, Decoding, Error, ModelConfig, Result};

/// Where the imported model's vocabulary comes from.
#[derive(Debug, Clone)]
pub enum VocabSource {
    /// A Keras `Tokenizer.to_json()` file, with the start and end tokens its captions were
    /// wrapped in.
    KerasTokenizer {
        /// The JSON file.
        path: PathBuf,
        /// The start token (the seed's `startseq`).
        start: String,
        /// The end token (the seed's `endseq`).
        end: String,
    },
    /// A prepared dataset (`autocaption prepare` reproduces Keras' tokenizer on the same
    /// captions).
    Prepared(PathBuf),
}

impl VocabSource {
    fn path(&self) -> &Path {
        match self {
            VocabSource::KerasTokenizer { path, .. } | VocabSource::Prepared(path) => path,
        }
    }
}

/// What [`import_keras`] made.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// The model directory.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: ModelConfig,
    /// Each layer of the file (`name (Class)`) with the part it plays.
    pub layers: Vec<(String, String)>,
    /// Parameters imported.
    pub parameters: usize,
    /// The file's `keras_version`.
    pub keras_version: Option<String>,
}

/// Imports the Keras HDF5 model `h5` with the vocabulary of `vocab` into the model
/// directory `out` (replaced, with `replace`, only when it is an earlier model directory;
/// never when it holds an input). Everything is read and checked before `out` is touched.
pub fn import_keras(
    h5: &Path,
    vocab: &VocabSource,
    out: &Path,
    replace: bool,
) -> Result<ImportOutcome> {
    autocaption_io::check_output(
        out,
        replace,
        Ours::DirWith(files::CONFIG),
        &[h5, vocab.path()],
    )?;
    let keras = read_model_file(h5).map_err(|e| Error::Invalid(e.to_string()))?;
    let (tokenizer, data): (Tokenizer, PathBuf) = match vocab {
        VocabSource::KerasTokenizer { path, start, end } => (
            read_tokenizer_file(path, start, end).map_err(|e| Error::Invalid(e.to_string()))?,
            PathBuf::new(),
        ),
        VocabSource::Prepared(dir) => (
            Prepared::load(dir)?.tokenizer,
            std::path::absolute(dir).unwrap_or_else(|_| dir.clone()),
        ),
    };
    let model = keras.model;
    if tokenizer.vocab.len() != model.config.vocab_size {
        return Err(Error::file(
            vocab.path(),
            format!(
                "the vocabulary has {} indices (padding included) but the model's output \
                 layer has {}: not the tokenizer this model was trained with",
                tokenizer.vocab.len(),
                model.config.vocab_size
            ),
        ));
    }
    crate::model_dir::start_end(&tokenizer).map_err(|m| Error::file(vocab.path(), m))?;
    let config = ModelConfig {
        autocaption_version: env!("CARGO_PKG_VERSION").into(),
        model: model.config.clone(),
        training: TrainConfig {
            epochs: 0,
            ..TrainConfig::default()
        },
        data,
        features: PathBuf::new(),
        counts: Counts::default(),
        encoder: None,
        decoding: if keras.mask_zero {
            Decoding::Incremental
        } else {
            Decoding::Prefix
        },
    };
    let dir = AtomicDir::new(out, replace, files::CONFIG, &[h5, vocab.path()])?;
    config.write(dir.path())?;
    autocaption_io::write_atomic(
        &dir.path().join(files::VOCAB),
        tokenizer.to_json().as_bytes(),
    )?;
    model.save_weights(&dir.path().join(files::WEIGHTS))?;
    let dir = dir.commit()?;
    Ok(ImportOutcome {
        dir,
        config,
        layers: keras.layers,
        parameters: model.parameter_count(),
        keras_version: keras.keras_version,
    })
}
