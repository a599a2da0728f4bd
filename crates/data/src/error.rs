use std::path::PathBuf;

/// Why a dataset could not be read or written. Every variant names the file, and the line
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading or writing failed.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A directory was given where a file was expected.
    #[error("{path}: is a directory, expected a {expected} file")]
    IsDirectory {
        /// The directory.
        path: PathBuf,
        /// What kind of file was expected.
        expected: &'static str,
    },
    /// The file has no content.
    #[error("{path}: file is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line is not valid UTF-8.
    #[error("{path} line {line}: invalid UTF-8 at byte {column}")]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based byte within the line.
        column: usize,
    },
    /// A line does not have the layout the format requires.
    #[error("{path} line {line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// A JSON file failed to parse or lacks a required field.
    #[error("{path} line {line}, column {column}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The format could not be recognised.
    #[error("{path}: {message}")]
    UnknownFormat {
        /// The file or directory.
        path: PathBuf,
        /// What was looked at, and how to say the format explicitly.
        message: String,
    },
    /// The data is readable but cannot be used as asked.
    #[error("{path}: {message}")]
    Invalid {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing an artifact failed.
    #[error(transparent)]
    Write(#[from] autocaption_io::IoError),
    /// A tokenizer file could not be read.
    #[error(transparent)]
    Text(#[from] autocaption_text::TextError),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
        let path = path.into();
        move |error| DataError::Io { path, error }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, e: serde_json::Error) -> DataError {
        DataError::Json {
            path: path.into(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}
