//! Small shared pieces for autocaption's libraries: atomic writes (so a kill never leaves a
//! half-written artifact) and the progress callback through which libraries report long work
//! without printing.

mod atomic;
mod progress;

pub use atomic::{write_atomic, AtomicDir, IoError};
pub use progress::{NoProgress, Progress};
