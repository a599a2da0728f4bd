//! Finding the caption file, telling its format, and loading it with splits and images.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::formats::{coco, csv_captions, flickr30k, flickr8k, karpathy};
use crate::lines::{excerpt, TextFile};
use crate::splits::{apply_split_files, find_split_files, report_unsplit};
use crate::{is_image_name, DataError, Dataset, Format, NoteKind};

/// How to load a dataset.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The format; detected from the file when `None`.
    pub format: Option<Format>,
    /// Skip (and count) malformed lines instead of failing on the first.
    pub lenient: bool,
    /// Directory holding split files; by default the caption file's directory.
    pub splits: Option<PathBuf>,
    /// Directory holding the images; by default a usual folder beside the caption file.
    pub images: Option<PathBuf>,
}

/// Caption file names looked for inside a directory, with the format each implies.
const KNOWN_FILES: &[(&str, Option<Format>)] = &[
    ("Flickr8k.token.txt", Some(Format::Flickr8k)),
    ("captions.txt", None),
    ("results.csv", Some(Format::Flickr30k)),
    ("results_20130124.token", Some(Format::Flickr8k)),
    ("captions.csv", None),
];

/// Image folders looked for beside a caption file.
const IMAGE_DIRS: &[&str] = &[
    "images",
    "Images",
    "Flicker8k_Dataset",
    "Flickr8k_Dataset",
    "flickr30k_images",
];

/// Loads a dataset from a caption file or a directory holding one.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    // The metadata's own error: "not found", "too many levels of symbolic links", …
    let meta = std::fs::metadata(path).map_err(DataError::io(path))?;
    let file = if meta.is_dir() {
        find_caption_file(path, opts.format)?
    } else {
        path.to_path_buf()
    };
    let format = match opts.format {
        Some(f) => f,
        None => detect_format(&file)?,
    };
    let mut ds = match format {
        Format::Flickr8k => flickr8k::read(&file, opts.lenient)?,
        Format::Kaggle | Format::Csv => csv_captions::read(&file, format, opts.lenient)?,
        Format::Coco => coco::read(&file)?,
        Format::Karpathy => karpathy::read(&file)?,
        Format::Flickr30k => flickr30k::read(&file, opts.lenient)?,
    };
    let beside = file.parent().unwrap_or(Path::new(".")).to_path_buf();

    if format != Format::Karpathy {
        let dir = opts.splits.clone().unwrap_or_else(|| beside.clone());
        let files = find_split_files(&dir);
        if files.is_empty() && opts.splits.is_some() {
            return Err(DataError::Invalid {
                path: dir,
                message: "no split files found (looked for Flickr_8k.trainImages.txt, train.txt, dev.txt, val.txt, test.txt, …)".into(),
            });
        }
        apply_split_files(&mut ds, &files)?;
    }
    report_unsplit(&mut ds);

    let images = match &opts.images {
        Some(d) if !d.is_dir() => {
            let message = match std::fs::metadata(d) {
                Ok(_) => "is a file; --images takes the directory holding the images".into(),
                Err(e) => format!("image directory: {e}"),
            };
            return Err(DataError::Invalid {
                path: d.clone(),
                message,
            });
        }
        Some(d) => Some(d.clone()),
        None if format == Format::Csv => Some(beside.clone()),
        None => IMAGE_DIRS
            .iter()
            .map(|n| beside.join(n))
            .find(|p| p.is_dir()),
    };
    if let Some(dir) = images {
        attach_images(&mut ds, &dir, format == Format::Csv)?;
    }
    Ok(ds)
}

/// Sets each image's path where its file exists in `dir`. Where the folder defines the
/// dataset (`folder_is_dataset`), captioned names without a file are dropped and files
/// without captions are reported; otherwise missing files are only counted.
fn attach_images(ds: &mut Dataset, dir: &Path, folder_is_dataset: bool) -> Result<(), DataError> {
    // Absolute paths keep a prepared dataset usable from any working directory.
    let dir = &dir.canonicalize().map_err(DataError::io(dir))?;
    let mut missing = Vec::new();
    for entry in &mut ds.images {
        let p = dir.join(&entry.name);
        if p.is_file() {
            entry.path = Some(p);
        } else {
            missing.push(entry.name.clone());
        }
    }
    if let Some(first) = missing.first().cloned() {
        let kind = if folder_is_dataset {
            NoteKind::ImageFileMissingDropped
        } else {
            NoteKind::ImageFileMissing
        };
        let shown = dir.display().to_string();
        ds.report
            .add_many(kind, missing.len(), || format!("{first} (not in {shown})"));
    }
    if folder_is_dataset {
        ds.images.retain(|e| e.path.is_some());
        let named: HashSet<&str> = ds.images.iter().map(|e| e.name.as_str()).collect();
        let mut orphans: Vec<String> = std::fs::read_dir(dir)
            .map_err(DataError::io(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_image_name(n) && !named.contains(n.as_str()))
            .collect();
        orphans.sort();
        if let Some(first) = orphans.first().cloned() {
            ds.report
                .add_many(NoteKind::ImageWithoutCaptions, orphans.len(), || first);
        }
    }
    Ok(())
}

fn find_caption_file(dir: &Path, format: Option<Format>) -> Result<PathBuf, DataError> {
    let fits = |f: Option<Format>| format.is_none() || f.is_none() || f == format;
    for (name, implied) in KNOWN_FILES {
        let p = dir.join(name);
        if p.is_file() && fits(*implied) {
            return Ok(p);
        }
    }
    // COCO and Karpathy JSON files have variable names.
    let mut json: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(DataError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.ends_with(".json")
                && ((n.starts_with("captions_") && fits(Some(Format::Coco)))
                    || (n.starts_with("dataset_") && fits(Some(Format::Karpathy))))
        })
        .collect();
    json.sort();
    json.into_iter().next().ok_or_else(|| DataError::UnknownFormat {
        path: dir.to_path_buf(),
        message: "no caption file found in this directory (looked for Flickr8k.token.txt, captions.txt, results.csv, captions.csv, captions_*.json, dataset_*.json); pass the caption file itself".into(),
    })
}

fn has_extension(file: &Path, ext: &str) -> bool {
    file.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Tells a caption file's format from its content.
pub fn detect_format(file: &Path) -> Result<Format, DataError> {
    let text = TextFile::read(file, "caption")?;
    let head = text.text.trim_start();
    if head.starts_with('{') {
        // Cheap content checks; the full parse happens once, in the reader.
        if head.contains("\"sentences\"") {
            return Ok(Format::Karpathy);
        }
        if head.contains("\"annotations\"") {
            return Ok(Format::Coco);
        }
        // Neither key: a broken file is better described by where its JSON breaks.
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(head) {
            return Err(DataError::json(file, e));
        }
        return Err(DataError::UnknownFormat {
            path: file.to_path_buf(),
            message:
                "JSON with neither COCO \"annotations\" nor Karpathy \"sentences\"; pass --format"
                    .into(),
        });
    }
    let first = text.first_line();
    if flickr30k::sniff(first) {
        Ok(Format::Flickr30k)
    } else if csv_captions::sniff_kaggle(first) && !has_extension(file, "csv") {
        // Kaggle's file is `captions.txt`; an `image,caption` .csv is a folder's own list.
        Ok(Format::Kaggle)
    } else if flickr8k::sniff(first) {
        Ok(Format::Flickr8k)
    } else if csv_captions::sniff_csv(first) {
        Ok(Format::Csv)
    } else {
        Err(DataError::UnknownFormat {
            path: file.to_path_buf(),
            message: format!(
                "cannot tell the caption format from the first line {}; pass --format (flickr8k, kaggle, coco, karpathy, flickr30k, csv)",
                excerpt(first)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Split;

    #[test]
    fn directory_with_splits_and_images() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join("Flickr8k.token.txt"),
            "a.jpg#0\tA\nb.jpg#0\tB\nc.jpg#0\tC\n",
        )
        .unwrap();
        std::fs::write(p.join("Flickr_8k.trainImages.txt"), "a.jpg\nzz.jpg\n").unwrap();
        std::fs::write(p.join("Flickr_8k.testImages.txt"), "b.jpg\na.jpg\n").unwrap();
        std::fs::create_dir(p.join("images")).unwrap();
        std::fs::write(p.join("images/a.jpg"), "").unwrap();
        let ds = load(p, &LoadOptions::default()).unwrap();
        assert_eq!(ds.format, Format::Flickr8k);
        assert_eq!(ds.images[0].split, Some(Split::Train));
        assert_eq!(ds.images[1].split, Some(Split::Test));
        assert_eq!(ds.images[2].split, None);
        assert!(ds.images[0].path.is_some() && ds.images[1].path.is_none());
        for (k, n) in [
            (NoteKind::SplitWithoutCaptions, 1),
            (NoteKind::InTwoSplits, 1),
            (NoteKind::NoSplit, 1),
            (NoteKind::ImageFileMissing, 2),
        ] {
            assert_eq!(ds.report.count(k), n, "{k:?}");
        }
    }

    #[test]
    fn csv_folder_drops_missing_and_reports_orphans() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join("captions.csv"),
            "image,caption\na.png,one\nb.png,two\n",
        )
        .unwrap();
        std::fs::write(p.join("a.png"), "").unwrap();
        std::fs::write(p.join("c.png"), "").unwrap();
        let ds = load(&p.join("captions.csv"), &LoadOptions::default()).unwrap();
        assert_eq!(ds.format, Format::Csv);
        assert_eq!(ds.images.len(), 1);
        assert_eq!(ds.report.count(NoteKind::ImageFileMissingDropped), 1);
        assert_eq!(ds.report.count(NoteKind::ImageWithoutCaptions), 1);
    }

    #[test]
    fn unknown_format_and_empty_directory() {
        let d = tempfile::tempdir().unwrap();
        let e = load(d.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no caption file found"), "{e}");
        std::fs::write(d.path().join("x.txt"), "just some words\n").unwrap();
        let e = load(&d.path().join("x.txt"), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot tell the caption format"), "{e}");
        std::fs::write(d.path().join("t.json"), "{\"images\": [{\"id\": 1,").unwrap();
        let e = load(&d.path().join("t.json"), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.json line 1, column") && e.contains("EOF"),
            "{e}"
        );
    }
}
