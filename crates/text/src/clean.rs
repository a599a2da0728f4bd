use serde::{Deserialize, Serialize};

/// One step of caption cleaning. The stages run in order over the caption's
/// whitespace-separated words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Stage {
    /// Lowercases every word (Unicode-aware, like Python's `str.lower`).
    Lowercase,
    /// Deletes ASCII punctuation characters inside words, like Python's
    /// `word.translate(str.maketrans('', '', string.punctuation))`: "don't" becomes "dont".
    StripPunctuation,
    /// Drops words shorter than `min_len` characters (the seed uses 2: "a" goes).
    DropShortWords {
        /// Shortest word kept, in characters.
        min_len: usize,
    },
    /// Drops words that are not purely alphabetic (Python's `str.isalpha`), numbers included.
    /// Off in the seed's pipeline, which keeps numbers.
    DropNonAlphabetic,
    /// Wraps the caption in a start and an end token.
    Wrap {
        /// Token put first (the seed's `startseq`).
        start: String,
        /// Token put last (the seed's `endseq`).
        end: String,
    },
}

/// The caption cleaning pipeline: a list of [`Stage`]s, serialisable as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanPipeline {
    /// The stages, applied in order.
    pub stages: Vec<Stage>,
}

impl Default for CleanPipeline {
    /// The seed notebook's cleaning: lowercase, strip punctuation, drop one-character words,
    /// wrap in `startseq … endseq`. Numbers are kept.
    fn default() -> Self {
        Self {
            stages: vec![
                Stage::Lowercase,
                Stage::StripPunctuation,
                Stage::DropShortWords { min_len: 2 },
                Stage::Wrap {
                    start: "startseq".into(),
                    end: "endseq".into(),
                },
            ],
        }
    }
}

impl CleanPipeline {
    /// Cleans one raw caption into its words.
    pub fn words(&self, raw: &str) -> Vec<String> {
        let mut words: Vec<String> = raw.split_whitespace().map(str::to_string).collect();
        for stage in &self.stages {
            match stage {
                Stage::Lowercase => {
                    for w in &mut words {
                        *w = w.to_lowercase();
                    }
                }
                Stage::StripPunctuation => {
                    for w in &mut words {
                        w.retain(|c| !c.is_ascii_punctuation());
                    }
                    words.retain(|w| !w.is_empty());
                }
                Stage::DropShortWords { min_len } => {
                    words.retain(|w| w.chars().count() >= *min_len);
                }
                Stage::DropNonAlphabetic => {
                    words.retain(|w| !w.is_empty() && w.chars().all(char::is_alphabetic));
                }
                Stage::Wrap { start, end } => {
                    words.insert(0, start.clone());
                    words.push(end.clone());
                }
            }
        }
        words
    }

    /// Cleans one raw caption into a single space-separated string.
    pub fn clean(&self, raw: &str) -> String {
        self.words(raw).join(" ")
    }

    /// Checks that the pipeline can give a usable vocabulary: start and end tokens that are
    /// single non-empty words and differ, and a word length limit of at most 64 characters.
    pub fn check(&self) -> Result<(), String> {
        for stage in &self.stages {
            match stage {
                Stage::Wrap { start, end } => {
                    for (what, t) in [("start", start), ("end", end)] {
                        if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            return Err(format!(
                                "the {what} token {t:?} must be one word (not empty, no spaces)"
                            ));
                        }
                    }
                    if start == end {
                        return Err(format!(
                            "the start and end tokens are both {start:?}; they must differ, or \
                             captions could not be told to end"
                        ));
                    }
                }
                Stage::DropShortWords { min_len } if *min_len > 64 => {
                    return Err(format!(
                        "a minimum word length of {min_len} characters drops every word \
                         (at most 64)"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The start and end tokens, if the pipeline wraps captions.
    pub fn wrap_tokens(&self) -> Option<(&str, &str)> {
        self.stages.iter().rev().find_map(|s| match s {
            Stage::Wrap { start, end } => Some((start.as_str(), end.as_str())),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_cleaning_matches_the_notebook_example() {
        let p = CleanPipeline::default();
        assert_eq!(
            p.clean("A child in a pink dress is climbing up a set of stairs in an entry way ."),
            "startseq child in pink dress is climbing up set of stairs in an entry way endseq"
        );
    }

    #[test]
    fn punctuation_is_deleted_not_split() {
        let p = CleanPipeline::default();
        assert_eq!(
            p.clean("Don't STOP, 2 dogs... 10-year-old"),
            "startseq dont stop dogs 10yearold endseq"
        );
    }

    #[test]
    fn alphabetic_filter_drops_numbers() {
        let p = CleanPipeline {
            stages: vec![Stage::Lowercase, Stage::DropNonAlphabetic],
        };
        assert_eq!(p.words("Two 2 dogs 3rd"), vec!["two", "dogs"]);
    }

    #[test]
    fn pipelines_that_leave_no_vocabulary_are_refused() {
        assert!(CleanPipeline::default().check().is_ok());
        let wrap = |s: &str, e: &str| CleanPipeline {
            stages: vec![Stage::Wrap {
                start: s.into(),
                end: e.into(),
            }],
        };
        assert!(wrap("x", "x").check().unwrap_err().contains("must differ"));
        assert!(wrap("", "e").check().unwrap_err().contains("one word"));
        assert!(wrap("a b", "e").check().is_err());
        let short = CleanPipeline {
            stages: vec![Stage::DropShortWords { min_len: 1000 }],
        };
        assert!(short.check().unwrap_err().contains("1000"));
    }

    #[test]
    fn empty_caption_is_just_the_wrap() {
        assert_eq!(CleanPipeline::default().clean(" . "), "startseq endseq");
    }
}
