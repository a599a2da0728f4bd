use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Report;

/// Which part of a dataset an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to fit the vocabulary and the model.
    Train,
    /// Validation during training (Karpathy's and COCO's "val").
    Dev,
    /// Held out for the final evaluation.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "dev" | "val" | "valid" | "validation" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            other => Err(format!(
                "unknown split {other:?} (expected train, dev or test)"
            )),
        }
    }
}

/// The caption file layouts autocaption reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `Flickr8k.token.txt`: `name.jpg#n<TAB>caption`, with `Flickr_8k.*Images.txt` splits.
    Flickr8k,
    /// Kaggle's `captions.txt`: CSV with the header `image,caption`.
    Kaggle,
    /// COCO captions JSON: `images[]` and `annotations[]`.
    Coco,
    /// Karpathy's split JSON: `images[].{filename, split, sentences[].raw}`.
    Karpathy,
    /// Flickr30k `results.csv`: `image_name| comment_number| comment`.
    Flickr30k,
    /// A folder of images with a two-column CSV (`image,caption`; header optional).
    Csv,
}

impl Format {
    /// Every format, in detection order.
    pub const ALL: [Format; 6] = [
        Format::Flickr8k,
        Format::Kaggle,
        Format::Coco,
        Format::Karpathy,
        Format::Flickr30k,
        Format::Csv,
    ];

    /// The lowercase name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Flickr8k => "flickr8k",
            Format::Kaggle => "kaggle",
            Format::Coco => "coco",
            Format::Karpathy => "karpathy",
            Format::Flickr30k => "flickr30k",
            Format::Csv => "csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.as_str()).collect();
                format!(
                    "unknown format {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// One image and its captions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// File name as the caption file gives it (`1000268201_693b08cb0e.jpg`).
    pub name: String,
    /// Numeric id where the format has one (COCO `image_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Path of the image file, when it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The split, when one is known.
    pub split: Option<Split>,
    /// Raw captions in file order.
    pub captions: Vec<String>,
}

/// A caption dataset in memory, whatever file it came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The caption file read.
    pub source: PathBuf,
    /// Its format.
    pub format: Format,
    /// Images in first-seen order.
    pub images: Vec<ImageEntry>,
    /// Caption records read from the file, before anything was dropped.
    pub records_read: usize,
    /// Distinct image names read, before anything was dropped.
    pub names_read: usize,
    /// Quirks met while reading.
    pub report: Report,
}

impl Dataset {
    /// Number of captions kept.
    pub fn caption_count(&self) -> usize {
        self.images.iter().map(|i| i.captions.len()).sum()
    }

    /// Images of one split.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &ImageEntry> {
        self.images.iter().filter(move |i| i.split == Some(split))
    }
}
