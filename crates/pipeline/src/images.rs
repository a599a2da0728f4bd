//! Finding images on disk.

use std::path::{Path, PathBuf};

use autocaption_data::{is_image_name, IMAGE_EXTENSIONS};

use crate::{Error, Result};

/// Image file names in `dir` (not recursive), sorted.
pub fn list_images(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::file(dir, format!("cannot read the image folder: {e}")))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_image_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Photos to caption: files as given, folders expanded to their images (sorted); a folder
/// without images is an error.
pub fn expand_photos(photos: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in photos {
        if p.is_dir() {
            let names = list_images(p)?;
            if names.is_empty() {
                return Err(Error::file(
                    p,
                    format!(
                        "no images in this folder (looked for {})",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                ));
            }
            out.extend(names.into_iter().map(|n| p.join(n)));
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}
