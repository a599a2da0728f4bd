//! Caption datasets: readers for the common layouts into one in-memory [`Dataset`], a
//! [`Report`] of the real-world quirks met on the way, split assignment, and the prepared
//! dataset directory that training reads.

mod builder;
mod dataset;
mod detect;
mod error;
pub mod formats;
mod lines;
mod prepare;
mod report;
mod splits;

pub use dataset::{Dataset, Format, ImageEntry, Split};
pub use detect::{load, LoadOptions};
pub use error::DataError;
pub use prepare::{
    LengthStats, Manifest, PrepareOptions, Prepared, PreparedImage, PreparedStats, SourceInfo,
    MANIFEST_FILE,
};
pub use report::{Note, NoteKind, Report};
pub use splits::{assign_splits, SplitFractions};

/// File extensions taken to be images.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp"];

/// True when `name` ends in one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn is_image_name(name: &str) -> bool {
    name.rsplit_once('.')
        .map(|(stem, ext)| {
            !stem.is_empty() && IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
        })
        .unwrap_or(false)
}
