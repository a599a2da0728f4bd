use std::path::PathBuf;

/// Why a model could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The weights file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A tensor is missing, has the wrong shape, or is not f32.
    #[error("{path}: tensor {name:?}: {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What was wrong.
        message: String,
    },
    /// The configuration file is invalid.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A weight does not fit half precision.
    #[error(
        "layer {layer}: weight [{row}, {column}] = {value:e} is beyond half precision (±65504); decode in f32"
    )]
    HalfPrecision {
        /// The layer.
        layer: String,
        /// Row of its (stacked input and recurrent) kernel.
        row: usize,
        /// Column.
        column: usize,
        /// The value.
        value: f32,
    },
    /// A weight that is not finite cannot be rounded to int8.
    #[error("layer {layer}: weight [{row}, {column}] = {value} is not finite; int8 needs finite weights")]
    NotFinite {
        /// The layer.
        layer: String,
        /// Row of its (stacked input and recurrent) kernel.
        row: usize,
        /// Column.
        column: usize,
        /// The value.
        value: f32,
    },
}
