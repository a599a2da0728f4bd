//! Small shared pieces for autocaption's libraries: atomic writes (so a kill never leaves a
//! half-written artifact), the progress callback through which libraries report long work
//! without printing, and number formatting for people.

mod atomic;
mod fmt;
mod guard;
mod progress;

pub use atomic::{
    check_regular_file, host_tag, read, read_limit, read_to_string, remove_staging, remove_stale,
    set_read_limit, write_atomic, write_atomic_with, write_files_atomic, AtomicDir, IoError,
    StagingLock, DEFAULT_READ_LIMIT,
};
pub use fmt::{f32_from_le_bytes, f32_to_le_bytes, first_non_finite, thousands};
pub use guard::{check_output, refuse_input, resolved, Ours};
pub use progress::{NoProgress, Progress};
