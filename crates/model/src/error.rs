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
}
