use std::path::PathBuf;

/// Why training could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] autocaption_io::IoError),
    /// The model's weights could not be used.
    #[error(transparent)]
    Model(#[from] autocaption_model::ModelError),
    /// The data cannot be trained on as given.
    #[error("{0}")]
    Data(String),
    /// A checkpoint is unreadable or belongs to another run.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}
