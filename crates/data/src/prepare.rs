//! The prepared dataset: a directory with `manifest.json` (where the data came from, the
//! settings and statistics), `vocab.json` (the tokenizer) and `captions.jsonl` (one image a
//! line with its raw and encoded captions). Training and evaluation read this.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use autocaption_io::AtomicDir;
use autocaption_text::{CleanPipeline, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset, Format, Report, Split};

/// Manifest format version.
const MANIFEST_VERSION: u32 = 1;
/// Name of the manifest file inside a prepared directory.
pub const MANIFEST_FILE: &str = "manifest.json";
const VOCAB_FILE: &str = "vocab.json";
const CAPTIONS_FILE: &str = "captions.jsonl";

/// Vocabulary settings for [`Prepared::build`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareOptions {
    /// How captions are cleaned.
    #[serde(skip)]
    pub pipeline: CleanPipeline,
    /// Words seen fewer times than this in the training split are left out.
    pub min_count: u64,
    /// Largest vocabulary, padding (and OOV) included.
    pub max_words: Option<usize>,
    /// Token standing for words outside the vocabulary; without one they are dropped.
    pub oov_token: Option<String>,
}

impl Default for PrepareOptions {
    /// The seed's settings: its cleaning, words seen at least twice, no OOV token.
    fn default() -> Self {
        Self {
            pipeline: CleanPipeline::default(),
            min_count: 2,
            max_words: None,
            oov_token: None,
        }
    }
}

/// Where a prepared dataset came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The caption file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Caption records in the file.
    pub records_read: usize,
    /// Distinct image names in the file.
    pub names_read: usize,
}

/// Caption length statistics, in cleaned words (start and end tokens included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    /// Shortest caption.
    pub min: usize,
    /// Longest caption: the padding length a fixed-length model needs.
    pub max: usize,
    /// Mean length.
    pub mean: f64,
    /// `histogram[n]` captions have `n` words.
    pub histogram: Vec<u64>,
}

/// What is in a prepared dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedStats {
    /// Images per split (`train`, `dev`, `test`, `none`).
    pub images: BTreeMap<String, usize>,
    /// Captions per split.
    pub captions: BTreeMap<String, usize>,
    /// Vocabulary size, padding index included: the model's embedding and output size.
    pub vocab_size: usize,
    /// Distinct cleaned words in the training split, plus one for padding: the vocabulary
    /// size with no minimum count.
    pub vocab_size_all_words: usize,
    /// Share of dev and test tokens that are outside the vocabulary.
    pub heldout_oov_rate: f64,
    /// Caption lengths over all splits.
    pub lengths: LengthStats,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub version: u32,
    /// The autocaption version that wrote it.
    pub autocaption_version: String,
    /// Where the captions came from.
    pub source: SourceInfo,
    /// Vocabulary settings (the cleaning pipeline is in `vocab.json`).
    pub settings: PrepareOptions,
    /// Counts and lengths.
    pub stats: PreparedStats,
    /// Quirks met while reading.
    pub report: Report,
}

/// One line of `captions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedImage {
    /// Image file name.
    pub name: String,
    /// Numeric id (COCO), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Image file, when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Split, if any.
    pub split: Option<Split>,
    /// Raw captions.
    pub captions: Vec<String>,
    /// Encoded captions (start and end tokens included, no padding), one per raw caption.
    pub tokens: Vec<Vec<u32>>,
}

/// A prepared dataset in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Provenance, settings and statistics.
    pub manifest: Manifest,
    /// The tokenizer fitted on the training split.
    pub tokenizer: Tokenizer,
    /// Every image with its captions.
    pub images: Vec<PreparedImage>,
}

fn split_key(s: Option<Split>) -> String {
    s.map_or("none", Split::as_str).to_string()
}

impl Prepared {
    /// Cleans `ds`, fits the vocabulary on its training split and encodes every caption.
    pub fn build(ds: &Dataset, opts: &PrepareOptions) -> Result<Self, DataError> {
        let train: Vec<&str> = ds
            .split(Split::Train)
            .flat_map(|i| i.captions.iter().map(String::as_str))
            .collect();
        let invalid = |message: String| DataError::Invalid {
            path: ds.source.clone(),
            message,
        };
        opts.pipeline.check().map_err(invalid)?;
        if ds.images.is_empty() {
            return Err(invalid(format!(
                "no usable caption was read ({} records, {} image names); is it a {} file? \
                 (pass --format to say which format it is, --lenient to skip bad lines)",
                ds.records_read,
                ds.names_read,
                ds.format.as_str()
            )));
        }
        if train.is_empty() {
            return Err(DataError::Invalid {
                path: ds.source.clone(),
                message: "no image is in the training split, so no vocabulary can be built: put split files beside the captions, pass --splits DIR, or pass --auto-split 0.8,0.1,0.1".into(),
            });
        }
        let tokenizer = Tokenizer::fit(
            opts.pipeline.clone(),
            train.iter().copied(),
            opts.min_count,
            opts.max_words,
            opts.oov_token.clone(),
        );
        let all_words = Tokenizer::fit(opts.pipeline.clone(), train.iter().copied(), 1, None, None);
        let special: Vec<&str> = opts
            .pipeline
            .wrap_tokens()
            .map(|(s, e)| vec![s, e])
            .unwrap_or_default()
            .into_iter()
            .chain(opts.oov_token.as_deref())
            .collect();
        let real_words = tokenizer
            .vocab
            .words()
            .iter()
            .filter(|w| !special.contains(&w.as_str()))
            .count();
        if real_words == 0 {
            return Err(invalid(format!(
                "no word is left in the vocabulary ({} distinct words in the training captions \
                 before --min-count {} and --max-words {}, after cleaning); loosen those options \
                 or the cleaning",
                all_words.vocab.len().saturating_sub(special.len() + 1),
                opts.min_count,
                opts.max_words.map_or("(none)".into(), |m| m.to_string())
            )));
        }

        let mut images_by = BTreeMap::new();
        let mut captions_by = BTreeMap::new();
        let mut histogram: Vec<u64> = Vec::new();
        let (mut heldout_tokens, mut heldout_oov) = (0usize, 0usize);
        let mut images = Vec::with_capacity(ds.images.len());
        for e in &ds.images {
            *images_by.entry(split_key(e.split)).or_insert(0) += 1;
            *captions_by.entry(split_key(e.split)).or_insert(0) += e.captions.len();
            let mut tokens = Vec::with_capacity(e.captions.len());
            for c in &e.captions {
                let words = opts.pipeline.words(c);
                if histogram.len() <= words.len() {
                    histogram.resize(words.len() + 1, 0);
                }
                histogram[words.len()] += 1;
                if matches!(e.split, Some(Split::Dev | Split::Test)) {
                    heldout_tokens += words.len();
                    heldout_oov += words
                        .iter()
                        .filter(|w| {
                            tokenizer.vocab.index_of(w).is_none()
                                || Some(w.as_str()) == opts.oov_token.as_deref()
                        })
                        .count();
                }
                tokens.push(tokenizer.vocab.encode(&words));
            }
            images.push(PreparedImage {
                name: e.name.clone(),
                id: e.id,
                path: e.path.clone(),
                split: e.split,
                captions: e.captions.clone(),
                tokens,
            });
        }
        let n: u64 = histogram.iter().sum();
        let total: u64 = histogram
            .iter()
            .enumerate()
            .map(|(l, c)| l as u64 * c)
            .sum();
        let lengths = LengthStats {
            min: histogram.iter().position(|&c| c > 0).unwrap_or(0),
            max: histogram.len().saturating_sub(1),
            mean: if n == 0 { 0.0 } else { total as f64 / n as f64 },
            histogram,
        };
        let stats = PreparedStats {
            images: images_by,
            captions: captions_by,
            vocab_size: tokenizer.vocab.len(),
            vocab_size_all_words: all_words.vocab.len(),
            heldout_oov_rate: if heldout_tokens == 0 {
                0.0
            } else {
                heldout_oov as f64 / heldout_tokens as f64
            },
            lengths,
        };
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            autocaption_version: env!("CARGO_PKG_VERSION").to_string(),
            source: SourceInfo {
                path: ds.source.clone(),
                format: ds.format,
                records_read: ds.records_read,
                names_read: ds.names_read,
            },
            settings: opts.clone(),
            stats,
            report: ds.report.clone(),
        };
        Ok(Self {
            manifest,
            tokenizer,
            images,
        })
    }

    /// Writes the prepared directory atomically: all of it appears at once, or nothing.
    /// An existing `dir` is replaced only with `replace` and only when it is an earlier
    /// prepared dataset; `dir` must not be or hold any of `inputs`.
    pub fn write(&self, dir: &Path, replace: bool, inputs: &[&Path]) -> Result<PathBuf, DataError> {
        let out = AtomicDir::new(dir, replace, MANIFEST_FILE, inputs)?;
        let manifest = serde_json::to_string_pretty(&self.manifest).expect("manifest serialises");
        let p = out.path().join(MANIFEST_FILE);
        std::fs::write(&p, manifest + "\n").map_err(DataError::io(&p))?;
        let p = out.path().join(VOCAB_FILE);
        std::fs::write(&p, self.tokenizer.to_json()).map_err(DataError::io(&p))?;
        let p = out.path().join(CAPTIONS_FILE);
        let mut w = std::io::BufWriter::new(std::fs::File::create(&p).map_err(DataError::io(&p))?);
        for img in &self.images {
            serde_json::to_writer(&mut w, img).expect("an image entry serialises");
            w.write_all(b"\n").map_err(DataError::io(&p))?;
        }
        w.flush().map_err(DataError::io(&p))?;
        Ok(out.commit()?)
    }

    /// True when `dir` looks like a prepared dataset.
    pub fn is_prepared_dir(dir: &Path) -> bool {
        dir.join(MANIFEST_FILE).is_file() && dir.join(CAPTIONS_FILE).is_file()
    }

    /// Reads a prepared directory written by [`Prepared::write`].
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let p = dir.join(MANIFEST_FILE);
        let text = autocaption_io::read_to_string(&p)?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| DataError::json(&p, e))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(DataError::Invalid {
                path: p,
                message: format!("manifest version {} is not supported", manifest.version),
            });
        }
        let tokenizer = Tokenizer::load(&dir.join(VOCAB_FILE))?;
        let p = dir.join(CAPTIONS_FILE);
        let text = autocaption_io::read_to_string(&p)?;
        let mut images = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let img: PreparedImage = serde_json::from_str(line).map_err(|e| DataError::Json {
                path: p.clone(),
                line: i + 1,
                column: e.column(),
                message: e.to_string(),
            })?;
            images.push(img);
        }
        Ok(Self {
            manifest,
            tokenizer,
            images,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageEntry, NoteKind};

    fn dataset() -> Dataset {
        let img = |name: &str, split, caps: &[&str]| ImageEntry {
            name: name.into(),
            id: None,
            path: None,
            split,
            captions: caps.iter().map(|c| c.to_string()).collect(),
        };
        let mut report = Report::default();
        report.add(NoteKind::BlankLine, || "x line 3".into());
        Dataset {
            source: "captions.txt".into(),
            format: Format::Kaggle,
            images: vec![
                img("a.jpg", Some(Split::Train), &["A red dog.", "A dog runs"]),
                img("b.jpg", Some(Split::Test), &["A blue cat"]),
                img("c.jpg", None, &["Nothing here at all"]),
            ],
            records_read: 4,
            names_read: 3,
            report,
        }
    }

    #[test]
    fn build_counts_and_encodes() {
        let p = Prepared::build(&dataset(), &PrepareOptions::default()).unwrap();
        let s = &p.manifest.stats;
        // startseq, endseq, dog seen twice; red, runs once.
        assert_eq!(s.vocab_size, 4);
        assert_eq!(s.vocab_size_all_words, 6);
        assert_eq!(s.images["train"], 1);
        assert_eq!(s.images["none"], 1);
        assert_eq!(s.lengths.max, 6);
        // "startseq blue cat endseq": 2 of 4 tokens unknown.
        assert!((s.heldout_oov_rate - 0.5).abs() < 1e-12);
        assert_eq!(p.images[1].tokens[0].len(), 2);
    }

    #[test]
    fn write_load_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("prep");
        let p = Prepared::build(&dataset(), &PrepareOptions::default()).unwrap();
        p.write(&dir, false, &[]).unwrap();
        assert!(Prepared::is_prepared_dir(&dir));
        assert_eq!(Prepared::load(&dir).unwrap(), p);
        assert!(p.write(&dir, false, &[]).is_err());
    }

    #[test]
    fn no_training_split_is_an_error() {
        let mut ds = dataset();
        ds.images[0].split = None;
        let e = Prepared::build(&ds, &PrepareOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--auto-split"), "{e}");
    }
}
