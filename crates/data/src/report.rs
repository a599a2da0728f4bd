use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of real-world quirk met while reading a dataset. None of them stops the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// Captions given for a name that is not an image file (Flickr8k's `….jpg.1`); dropped.
    NotAnImage,
    /// A line repeating an earlier caption number of the same image; dropped.
    DuplicateLine,
    /// The same caption text twice for one image; kept (annotators can agree).
    DuplicateCaption,
    /// Blank lines; ignored.
    BlankLine,
    /// A caption with no text; dropped.
    EmptyCaption,
    /// A malformed line skipped because `--lenient` was given.
    SkippedMalformed,
    /// A line with a missing delimiter whose fields could still be recovered.
    RecoveredLine,
    /// Images that are in no split; kept, but not used for training or evaluation.
    NoSplit,
    /// Images listed in a split file that have no captions; ignored.
    SplitWithoutCaptions,
    /// Images listed in more than one split; the first listing is kept.
    InTwoSplits,
    /// Captioned images whose file was not found; kept, but features cannot be extracted.
    ImageFileMissing,
    /// Captioned images whose file was not found, in a layout where the folder is the
    /// dataset; dropped.
    ImageFileMissingDropped,
    /// Image files in the folder that have no captions; ignored.
    ImageWithoutCaptions,
    /// Annotations for an image id that `images[]` does not list; dropped.
    UnknownImageId,
    /// Karpathy's `restval` images, counted as training images.
    RestvalAsTrain,
    /// Images given a split by `--auto-split`.
    AutoSplit,
    /// The file does not end with a line break: it may have been cut short.
    NoFinalNewline,
}

impl NoteKind {
    /// What the quirk is and what was done about it.
    pub fn describe(self) -> &'static str {
        match self {
            NoteKind::NotAnImage => "captions for a name that is not an image file (dropped)",
            NoteKind::DuplicateLine => "duplicate caption lines (dropped)",
            NoteKind::DuplicateCaption => "the same caption text twice for one image (kept)",
            NoteKind::BlankLine => "blank lines (ignored)",
            NoteKind::EmptyCaption => "empty captions (dropped)",
            NoteKind::SkippedMalformed => "malformed lines (skipped, --lenient)",
            NoteKind::RecoveredLine => "lines with a missing delimiter (recovered)",
            NoteKind::NoSplit => "images in no split (kept, unused for training and evaluation)",
            NoteKind::SplitWithoutCaptions => "split-file entries with no captions (ignored)",
            NoteKind::InTwoSplits => "images listed in two splits (first kept)",
            NoteKind::ImageFileMissing => {
                "captioned images with no image file found (kept; no features for them)"
            }
            NoteKind::ImageFileMissingDropped => "captioned images with no image file (dropped)",
            NoteKind::ImageWithoutCaptions => "image files with no captions (ignored)",
            NoteKind::UnknownImageId => "annotations for an unknown image id (dropped)",
            NoteKind::RestvalAsTrain => "Karpathy 'restval' images (used as train)",
            NoteKind::AutoSplit => "images given a split by --auto-split",
            NoteKind::NoFinalNewline => "file ends without a line break (may be truncated)",
        }
    }
}

/// How many times one kind of quirk was met, with a few examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// What happened.
    pub kind: NoteKind,
    /// How often.
    pub count: usize,
    /// The first few occurrences ("file line 6731: …").
    pub examples: Vec<String>,
}

/// The quirks met while reading, grouped by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Report {
    notes: BTreeMap<NoteKind, Note>,
}

impl Report {
    /// Examples kept per kind.
    pub const EXAMPLES: usize = 5;

    /// Records one occurrence.
    pub fn add(&mut self, kind: NoteKind, example: impl FnOnce() -> String) {
        self.add_many(kind, 1, example);
    }

    /// Records `count` occurrences described by one example.
    pub fn add_many(&mut self, kind: NoteKind, count: usize, example: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        let note = self.notes.entry(kind).or_insert(Note {
            kind,
            count: 0,
            examples: Vec::new(),
        });
        note.count += count;
        if note.examples.len() < Self::EXAMPLES {
            note.examples.push(example());
        }
    }

    /// How often `kind` was met.
    pub fn count(&self, kind: NoteKind) -> usize {
        self.notes.get(&kind).map_or(0, |n| n.count)
    }

    /// All notes, in a fixed order.
    pub fn notes(&self) -> impl Iterator<Item = &Note> {
        self.notes.values()
    }

    /// True when nothing was noted.
    pub fn is_empty(&self) -> bool {
        self.notes.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in self.notes() {
            writeln!(f, "{:>8}  {}", n.count, n.kind.describe())?;
            for e in &n.examples {
                writeln!(f, "          e.g. {e}")?;
            }
        }
        Ok(())
    }
}
