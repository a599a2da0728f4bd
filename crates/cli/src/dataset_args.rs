//! The arguments that say which dataset to read, shared by every command that reads one.

use std::path::PathBuf;

use autocaption_data::{load, Dataset, Format, LoadOptions};

/// Where a caption dataset is and how to read it.
#[derive(Debug, Clone, clap::Args)]
pub struct DatasetArgs {
    /// Caption file, or a directory holding one (Flickr8k.token.txt, captions.txt,
    /// results.csv, captions.csv, captions_*.json, dataset_*.json).
    pub dataset: PathBuf,

    /// Caption file format; detected from the file when left out.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,

    /// Skip malformed lines (and count them) instead of stopping at the first.
    #[arg(long)]
    pub lenient: bool,

    /// Directory with split lists (Flickr_8k.trainImages.txt, …, or train.txt, dev.txt,
    /// test.txt); by default the caption file's directory.
    #[arg(long, value_name = "DIR")]
    pub splits: Option<PathBuf>,

    /// Directory with the images; by default `images/`, `Images/` or `Flicker8k_Dataset/`
    /// beside the caption file (for a plain CSV, the CSV's own directory).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

impl DatasetArgs {
    /// The paths read: the dataset and any --splits and --images folders (an output must
    /// not be or hold any of them).
    pub fn inputs(&self) -> Vec<&std::path::Path> {
        let mut v = vec![self.dataset.as_path()];
        v.extend(self.splits.as_deref());
        v.extend(self.images.as_deref());
        v
    }

    /// Reads the dataset.
    pub fn load(&self) -> anyhow::Result<Dataset> {
        let opts = LoadOptions {
            format: self.format,
            lenient: self.lenient,
            splits: self.splits.clone(),
            images: self.images.clone(),
        };
        // Every dataset error already names its file and line.
        Ok(load(&self.dataset, &opts)?)
    }
}
