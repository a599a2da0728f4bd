use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Index 0 is reserved for padding, as in Keras.
pub const PAD_INDEX: u32 = 0;

/// Counts words in first-seen order and turns them into a [`Vocabulary`].
#[derive(Debug, Default, Clone)]
pub struct VocabBuilder {
    // word -> position in `order`
    seen: HashMap<String, usize>,
    order: Vec<(String, u64)>,
}

impl VocabBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the words of one cleaned caption.
    pub fn add<S: AsRef<str>>(&mut self, words: &[S]) {
        for w in words {
            let w = w.as_ref();
            match self.seen.get(w) {
                Some(&i) => self.order[i].1 += 1,
                None => {
                    self.seen.insert(w.to_string(), self.order.len());
                    self.order.push((w.to_string(), 1));
                }
            }
        }
    }

    /// Number of distinct words counted so far.
    pub fn distinct(&self) -> usize {
        self.order.len()
    }

    /// Builds the vocabulary with Keras `Tokenizer` ordering: by count, most frequent first,
    /// ties in first-seen order. Words seen fewer than `min_count` times are left out; with
    /// `max_words`, only that many indices (padding and OOV included) are kept, like Keras'
    /// `num_words`. The OOV token, if any, takes index 1.
    pub fn build(
        &self,
        min_count: u64,
        max_words: Option<usize>,
        oov_token: Option<String>,
    ) -> Vocabulary {
        let mut sorted: Vec<&(String, u64)> = self.order.iter().collect();
        // A stable sort keeps first-seen order among equal counts, as Keras' sorted() does.
        sorted.sort_by_key(|e| std::cmp::Reverse(e.1));
        let mut words = Vec::new();
        let mut counts = Vec::new();
        if let Some(oov) = &oov_token {
            words.push(oov.clone());
            counts.push(0);
        }
        for (w, c) in sorted {
            if *c < min_count || Some(w) == oov_token.as_ref() {
                continue;
            }
            words.push(w.clone());
            counts.push(*c);
        }
        if let Some(max) = max_words {
            let keep = max.saturating_sub(1);
            words.truncate(keep);
            counts.truncate(keep);
        }
        Vocabulary::from_parts(words, counts, oov_token, min_count)
    }
}

/// A word index: word `words[i]` has index `i + 1`; index 0 is padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "VocabFile", into = "VocabFile")]
pub struct Vocabulary {
    words: Vec<String>,
    counts: Vec<u64>,
    oov_token: Option<String>,
    min_count: u64,
    index: HashMap<String, u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    min_count: u64,
    oov_token: Option<String>,
    /// Words in index order, starting at index 1.
    words: Vec<String>,
    /// Training-set count of each word, in the same order.
    counts: Vec<u64>,
}

impl From<VocabFile> for Vocabulary {
    fn from(f: VocabFile) -> Self {
        Vocabulary::from_parts(f.words, f.counts, f.oov_token, f.min_count)
    }
}

impl From<Vocabulary> for VocabFile {
    fn from(v: Vocabulary) -> Self {
        VocabFile {
            min_count: v.min_count,
            oov_token: v.oov_token,
            words: v.words,
            counts: v.counts,
        }
    }
}

impl Vocabulary {
    pub(crate) fn from_parts(
        words: Vec<String>,
        counts: Vec<u64>,
        oov_token: Option<String>,
        min_count: u64,
    ) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32 + 1))
            .collect();
        Self {
            words,
            counts,
            oov_token,
            min_count,
            index,
        }
    }

    /// Number of indices, padding included: the size of an embedding or output layer.
    pub fn len(&self) -> usize {
        self.words.len() + 1
    }

    /// True when no word is known (only the padding index exists).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The index of `word`, or of the OOV token when the word is unknown and one is set.
    pub fn index_of(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied().or_else(|| {
            self.oov_token
                .as_ref()
                .and_then(|o| self.index.get(o).copied())
        })
    }

    /// The word at `index`; `None` for padding and out-of-range indices.
    pub fn word(&self, index: u32) -> Option<&str> {
        if index == PAD_INDEX {
            return None;
        }
        self.words.get(index as usize - 1).map(String::as_str)
    }

    /// Training-set count of the word at `index`.
    pub fn count(&self, index: u32) -> Option<u64> {
        if index == PAD_INDEX {
            return None;
        }
        self.counts.get(index as usize - 1).copied()
    }

    /// Words in index order (index 1 first).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The OOV token, if one is set.
    pub fn oov_token(&self) -> Option<&str> {
        self.oov_token.as_deref()
    }

    /// The minimum count the vocabulary was built with.
    pub fn min_count(&self) -> u64 {
        self.min_count
    }

    /// Maps words to indices; unknown words become the OOV index or, without one, are
    /// dropped (Keras `texts_to_sequences`).
    pub fn encode<S: AsRef<str>>(&self, words: &[S]) -> Vec<u32> {
        words
            .iter()
            .filter_map(|w| self.index_of(w.as_ref()))
            .collect()
    }

    /// Maps indices back to words, skipping padding and unknown indices.
    pub fn decode(&self, ids: &[u32]) -> Vec<&str> {
        ids.iter().filter_map(|&i| self.word(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(captions: &[&str], min: u64, oov: Option<&str>) -> Vocabulary {
        let mut b = VocabBuilder::new();
        for c in captions {
            b.add(&c.split(' ').collect::<Vec<_>>());
        }
        b.build(min, None, oov.map(str::to_string))
    }

    #[test]
    fn keras_ordering_count_then_first_seen() {
        // from keras.preprocessing.text import Tokenizer
        // t = Tokenizer(); t.fit_on_texts(["b a c", "c b d", "e"]); t.word_index
        // -> {'b': 1, 'c': 2, 'a': 3, 'd': 4, 'e': 5}
        let v = build(&["b a c", "c b d", "e"], 1, None);
        assert_eq!(v.words(), &["b", "c", "a", "d", "e"]);
        assert_eq!(v.len(), 6);
        assert_eq!(v.index_of("a"), Some(3));
    }

    #[test]
    fn oov_takes_index_one_and_min_count_filters() {
        let v = build(&["x y y", "z y x"], 2, Some("<unk>"));
        assert_eq!(v.words(), &["<unk>", "y", "x"]);
        assert_eq!(v.encode(&["x", "z", "q"]), vec![3, 1, 1]);
        let no_oov = build(&["x y y", "z y x"], 2, None);
        assert_eq!(no_oov.encode(&["x", "z", "y"]), vec![2, 1]);
    }

    #[test]
    fn max_words_counts_padding() {
        let mut b = VocabBuilder::new();
        b.add(&["a", "a", "a", "b", "b", "c"]);
        let v = b.build(1, Some(3), None);
        assert_eq!(v.len(), 3);
        assert_eq!(v.words(), &["a", "b"]);
    }

    #[test]
    fn decode_skips_padding() {
        let v = build(&["a b"], 1, None);
        assert_eq!(v.decode(&[0, 1, 2, 0, 99]), vec!["a", "b"]);
    }
}
