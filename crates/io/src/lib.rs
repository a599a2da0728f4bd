//! Small shared pieces for autocaption's libraries: atomic writes (so a kill never leaves a
//! half-written artifact), the progress callback through which libraries report long work
//! without printing, and number formatting for people.

mod atomic;
mod fmt;
mod progress;

pub use atomic::{read, write_atomic, AtomicDir, IoError};
pub use fmt::{f32_from_le_bytes, f32_to_le_bytes, thousands};
pub use progress::{NoProgress, Progress};
