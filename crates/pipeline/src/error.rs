//! The pipeline's one error type: every failure says what was wrong with which file or value.

use std::path::PathBuf;

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or contradicts another; nothing on disk was touched.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory is not what the step needs.
    #[error("{path}: {message}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The encoder given is not the one the model was trained with.
    #[error(
        "the encoder weights given ({given}) are not the ones the model in {model_dir} was \
         trained with ({expected}); its captions would be garbage. Use the model's own \
         encoder weights (or leave --weights out to find them)"
    )]
    EncoderMismatch {
        /// The model directory.
        model_dir: PathBuf,
        /// What the model records: kind and hash (or seed).
        expected: String,
        /// What was given: kind and hash (or seed).
        given: String,
    },
    /// The model's encoder cannot be found.
    #[error("{model_dir}: cannot find the model's encoder, {expected}: {why}")]
    EncoderNotFound {
        /// The model directory.
        model_dir: PathBuf,
        /// What the model records.
        expected: String,
        /// Where it was looked for, and what to do.
        why: String,
    },
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// A dataset could not be read.
    #[error(transparent)]
    Data(#[from] autocaption_data::DataError),
    /// A tokenizer could not be read.
    #[error(transparent)]
    Text(#[from] autocaption_text::TextError),
    /// A feature file could not be read, or rows are missing.
    #[error(transparent)]
    Features(#[from] autocaption_features::FeatureError),
    /// Model weights could not be read or the model refused its input.
    #[error(transparent)]
    Model(#[from] autocaption_model::ModelError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] autocaption_train::TrainError),
    /// ResNet-50 weights could not be read.
    #[error(transparent)]
    EncoderWeights(#[from] autocaption_vision::WeightError),
    /// Concept-network weights could not be read.
    #[error(transparent)]
    ConceptWeights(#[from] autocaption_concepts::ConceptWeightsError),
    /// An image could not be read.
    #[error(transparent)]
    Image(#[from] autocaption_vision::ImageError),
    /// Generating the synthetic dataset failed.
    #[error(transparent)]
    Synth(#[from] autocaption_synth::SynthError),
    /// Writing ONNX failed.
    #[error(transparent)]
    Onnx(#[from] autocaption_onnx::OnnxError),
}

impl Error {
    /// An [`Error::File`].
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::File {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The pipeline's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
