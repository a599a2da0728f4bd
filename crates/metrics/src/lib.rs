//! Caption metrics, computed as the references compute them: BLEU-1..4, CIDEr-D and ROUGE-L
//! as in coco-caption (`pycocoevalcap`), and BLEU as NLTK's `corpus_bleu` (the numbers most
//! tutorials print). Each is checked against its reference to 1e-6 on 251 hypothesis /
//! reference sets (`fixtures/metrics`).
//!
//! Captions are compared as whitespace-separated tokens (cleaned, lower-case captions, as
//! coco-caption compares them after its tokenizer).

use std::collections::BTreeMap;

mod bleu;
mod cider;
mod rouge;

pub use bleu::{bleu_coco, bleu_nltk, Bleu};
pub use cider::cider_d;
pub use rouge::rouge_l;

/// One image: a generated caption and its reference captions, as tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The generated caption.
    pub hypothesis: Vec<&'a str>,
    /// The human captions (at least one).
    pub references: Vec<Vec<&'a str>>,
}

impl<'a> Sample<'a> {
    /// A sample from caption strings, split on whitespace.
    pub fn new(hypothesis: &'a str, references: &[&'a str]) -> Self {
        Self {
            hypothesis: hypothesis.split_whitespace().collect(),
            references: references
                .iter()
                .map(|r| r.split_whitespace().collect())
                .collect(),
        }
    }
}

/// Every metric over a corpus, with the per-image scores the corpus scores come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// BLEU-1..4, coco-caption.
    pub bleu: Bleu,
    /// BLEU-1..4, NLTK `corpus_bleu` with uniform weights over 1..n-grams, no smoothing.
    pub bleu_nltk: [f64; 4],
    /// CIDEr-D, coco-caption (its `Cider` class), corpus mean.
    pub cider_d: f64,
    /// CIDEr-D of each image.
    pub cider_d_per_image: Vec<f64>,
    /// ROUGE-L, coco-caption, corpus mean.
    pub rouge_l: f64,
    /// ROUGE-L of each image.
    pub rouge_l_per_image: Vec<f64>,
}

/// All metrics for `samples`.
pub fn score(samples: &[Sample]) -> Scores {
    let (cider_d, cider_d_per_image) = cider_d(samples);
    let (rouge_l, rouge_l_per_image) = rouge_l(samples);
    Scores {
        bleu: bleu_coco(samples),
        bleu_nltk: bleu_nltk(samples),
        cider_d,
        cider_d_per_image,
        rouge_l,
        rouge_l_per_image,
    }
}

/// Counts of every n-gram of `tokens` for n = 1..=`max_n`.
pub(crate) fn ngram_counts<'t, 'a>(
    tokens: &'t [&'a str],
    max_n: usize,
) -> BTreeMap<&'t [&'a str], usize> {
    let mut counts = BTreeMap::new();
    for n in 1..=max_n {
        for g in tokens.windows(n) {
            *counts.entry(g).or_insert(0) += 1;
        }
    }
    counts
}

/// The reference length closest to `len`, the shorter on a tie (coco-caption and NLTK agree).
pub(crate) fn closest_length(references: &[Vec<&str>], len: usize) -> usize {
    references
        .iter()
        .map(|r| r.len())
        .min_by_key(|&l| (l.abs_diff(len), l))
        .unwrap_or(0)
}
