use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{CleanPipeline, VocabBuilder, Vocabulary};

/// The file format version written into `vocab.json`.
const FORMAT_VERSION: u32 = 1;

/// Failure to read or parse a tokenizer file.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Io {
        /// The tokenizer file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file could not be read (missing, too large, not a regular file, …).
    #[error(transparent)]
    Read(#[from] autocaption_io::IoError),
    /// The tokenizer parses but cannot be used (its cleaning pipeline is unusable).
    #[error("{path}: {message}")]
    Invalid {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file is not a tokenizer this version understands.
    #[error("{path} line {line}, column {column}: not a valid tokenizer file: {message}")]
    Parse {
        /// The tokenizer file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// The file was written by a newer, incompatible version.
    #[error("{path}: tokenizer format version {found} is not supported (this build reads {FORMAT_VERSION})")]
    Version {
        /// The tokenizer file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
    },
}

/// Cleaning pipeline plus vocabulary: everything needed to turn a raw caption into indices
/// and back, saved whole to one JSON file that round-trips exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokenizer {
    /// File format version.
    pub version: u32,
    /// How raw captions are cleaned.
    pub pipeline: CleanPipeline,
    /// The word index.
    pub vocab: Vocabulary,
}

impl Tokenizer {
    /// Builds a tokenizer by cleaning `captions` with `pipeline` and counting their words.
    pub fn fit<'a>(
        pipeline: CleanPipeline,
        captions: impl IntoIterator<Item = &'a str>,
        min_count: u64,
        max_words: Option<usize>,
        oov_token: Option<String>,
    ) -> Self {
        let mut builder = VocabBuilder::new();
        for c in captions {
            builder.add(&pipeline.words(c));
        }
        let vocab = builder.build(min_count, max_words, oov_token);
        Self {
            version: FORMAT_VERSION,
            pipeline,
            vocab,
        }
    }

    /// A tokenizer over a given word index (`words[i]` has index `i + 1`, as in a Keras
    /// `Tokenizer`'s `word_index`), with the seed's cleaning wrapped in `start` … `end`.
    /// Fails when a word repeats, or the tokens are unusable.
    pub fn from_words(
        words: Vec<String>,
        counts: Vec<u64>,
        oov_token: Option<String>,
        start: &str,
        end: &str,
    ) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        if let Some(w) = words.iter().find(|w| !seen.insert(w.as_str())) {
            return Err(format!("the word {w:?} appears twice"));
        }
        let mut pipeline = CleanPipeline::default();
        for s in &mut pipeline.stages {
            if let crate::Stage::Wrap { start: s0, end: e0 } = s {
                *s0 = start.to_string();
                *e0 = end.to_string();
            }
        }
        pipeline.check()?;
        Ok(Self {
            version: FORMAT_VERSION,
            pipeline,
            vocab: Vocabulary::from_parts(words, counts, oov_token, 1),
        })
    }

    /// Cleans and encodes one raw caption.
    pub fn encode(&self, raw: &str) -> Vec<u32> {
        self.vocab.encode(&self.pipeline.words(raw))
    }

    /// Turns indices into a readable sentence, without padding or start/end tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        let wrap = self.pipeline.wrap_tokens();
        self.vocab
            .decode(ids)
            .into_iter()
            .filter(|w| wrap.is_none_or(|(s, e)| *w != s && *w != e))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Index of the start token, if the pipeline wraps captions and the token is known.
    pub fn start_index(&self) -> Option<u32> {
        self.pipeline
            .wrap_tokens()
            .and_then(|(s, _)| self.vocab.index_of(s))
    }

    /// Index of the end token, if the pipeline wraps captions and the token is known.
    pub fn end_index(&self) -> Option<u32> {
        self.pipeline
            .wrap_tokens()
            .and_then(|(_, e)| self.vocab.index_of(e))
    }

    /// The tokenizer as pretty JSON (deterministic: the same tokenizer gives the same bytes).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a tokenizer always serialises");
        s.push('\n');
        s
    }

    /// Parses a tokenizer from JSON text; `path` names the source in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, TextError> {
        let t: Tokenizer = serde_json::from_str(text).map_err(|e| TextError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if t.version != FORMAT_VERSION {
            return Err(TextError::Version {
                path: path.to_path_buf(),
                found: t.version,
            });
        }
        t.pipeline.check().map_err(|message| TextError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(t)
    }

    /// Reads a tokenizer file written by [`Tokenizer::to_json`].
    pub fn load(path: &Path) -> Result<Self, TextError> {
        let text = autocaption_io::read_to_string(path)?;
        Self::from_json(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Tokenizer {
        Tokenizer::fit(
            CleanPipeline::default(),
            ["A dog runs.", "A dog jumps!", "The cat sleeps"],
            1,
            None,
            None,
        )
    }

    #[test]
    fn encode_decode() {
        let t = sample();
        let ids = t.encode("a DOG runs");
        assert_eq!(ids.first().copied(), t.start_index());
        assert_eq!(ids.last().copied(), t.end_index());
        assert_eq!(t.decode(&ids), "dog runs");
    }

    #[test]
    fn json_round_trip_is_exact() {
        let t = sample();
        let json = t.to_json();
        let back = Tokenizer::from_json(&json, Path::new("vocab.json")).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.to_json(), json);
    }

    #[test]
    fn bad_json_names_the_file_and_line() {
        let err = Tokenizer::from_json("{\n\"version\": 1,\n\"oops\"", Path::new("v.json"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("v.json line 3"), "{err}");
    }

    proptest! {
        #[test]
        fn decode_inverts_encode_on_known_words(words in proptest::collection::vec("[a-z]{2,8}", 1..12)) {
            let caption = words.join(" ");
            let t = Tokenizer::fit(CleanPipeline::default(), [caption.as_str()], 1, None, None);
            prop_assert_eq!(t.decode(&t.encode(&caption)), caption);
        }

        #[test]
        fn save_load_round_trip(words in proptest::collection::vec("[a-zA-Z0-9'.,]{1,8}", 0..30), min in 1u64..3) {
            let caption = words.join(" ");
            let t = Tokenizer::fit(CleanPipeline::default(), [caption.as_str(), caption.as_str()], min, None, Some("<unk>".into()));
            let json = t.to_json();
            prop_assert_eq!(Tokenizer::from_json(&json, Path::new("x")).unwrap(), t);
        }
    }
}
