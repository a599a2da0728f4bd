//! BLEU: K. Papineni, S. Roukos, T. Ward and W.-J. Zhu (2002), "BLEU: a Method for Automatic
//! Evaluation of Machine Translation", ACL. Modified (clipped) n-gram precisions, their
//! geometric mean, and a brevity penalty against the closest reference length.

use std::collections::HashMap;

use crate::{closest_length, ngram_counts, Sample};

/// BLEU-1..4 as coco-caption reports them, corpus and per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// Corpus BLEU-1..4: n-gram matches and lengths summed over the corpus first.
    pub corpus: [f64; 4],
    /// Each image's BLEU-1..4 (coco-caption's sentence scores, with its tiny smoothing).
    pub per_image: Vec<[f64; 4]>,
}

/// Per-image statistics: hypothesis length, closest reference length, and for n = 1..4 the
/// clipped matches and the hypothesis n-grams.
struct Counts {
    hyp_len: usize,
    ref_len: usize,
    correct: [usize; 4],
    guess: [usize; 4],
}

fn counts(s: &Sample) -> Counts {
    let hyp = ngram_counts(&s.hypothesis, 4);
    let mut max_ref: HashMap<&[&str], usize> = HashMap::new();
    for r in &s.references {
        for (g, c) in ngram_counts(r, 4) {
            let m = max_ref.entry(g).or_insert(0);
            *m = (*m).max(c);
        }
    }
    let mut correct = [0; 4];
    for (g, c) in &hyp {
        correct[g.len() - 1] += c.min(max_ref.get(g).unwrap_or(&0));
    }
    let hyp_len = s.hypothesis.len();
    Counts {
        hyp_len,
        ref_len: closest_length(&s.references, hyp_len),
        correct,
        guess: std::array::from_fn(|k| hyp_len.saturating_sub(k)),
    }
}

/// coco-caption's formula (`BleuScorer.compute_score`, option "closest"): the running
/// product of (matches + 1e-15) / (n-grams + 1e-9), its (n)th root, times the brevity
/// penalty `exp(1 − r/c)` when the hypotheses are shorter than the references.
fn coco_formula(
    correct: [usize; 4],
    guess: [usize; 4],
    hyp_len: usize,
    ref_len: usize,
) -> [f64; 4] {
    const TINY: f64 = 1e-15;
    const SMALL: f64 = 1e-9;
    let mut out = [0.0; 4];
    let mut product = 1.0;
    for k in 0..4 {
        product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        out[k] = product.powf(1.0 / (k + 1) as f64);
    }
    let ratio = (hyp_len as f64 + TINY) / (ref_len as f64 + SMALL);
    if ratio < 1.0 {
        for v in &mut out {
            *v *= (1.0 - 1.0 / ratio).exp();
        }
    }
    out
}

/// BLEU-1..4 with coco-caption's semantics: corpus-level (matches, n-gram and length totals
/// summed over images before dividing), the closest reference length for the brevity
/// penalty.
pub fn bleu_coco(samples: &[Sample]) -> Bleu {
    let mut correct = [0; 4];
    let mut guess = [0; 4];
    let (mut hyp_len, mut ref_len) = (0, 0);
    let mut per_image = Vec::with_capacity(samples.len());
    for s in samples {
        let c = counts(s);
        for k in 0..4 {
            correct[k] += c.correct[k];
            guess[k] += c.guess[k];
        }
        hyp_len += c.hyp_len;
        ref_len += c.ref_len;
        per_image.push(coco_formula(c.correct, c.guess, c.hyp_len, c.ref_len));
    }
    Bleu {
        corpus: coco_formula(correct, guess, hyp_len, ref_len),
        per_image,
    }
}

/// BLEU-1..4 as NLTK's `corpus_bleu` computes them with weights `(1)`, `(½, ½)`,
/// `(⅓, ⅓, ⅓)` and `(¼, ¼, ¼, ¼)` and no smoothing: each sentence's n-gram count has a floor
/// of 1, a precision with no match counts as the smallest positive double (so the score is
/// ~0, not an error), no unigram match at all gives 0, and an empty corpus of hypotheses has
/// brevity penalty 0.
pub fn bleu_nltk(samples: &[Sample]) -> [f64; 4] {
    let mut num = [0usize; 4];
    let mut den = [0usize; 4];
    let (mut hyp_len, mut ref_len) = (0usize, 0usize);
    for s in samples {
        let c = counts(s);
        for k in 0..4 {
            num[k] += c.correct[k];
            den[k] += c.guess[k].max(1);
        }
        hyp_len += c.hyp_len;
        ref_len += c.ref_len;
    }
    if num[0] == 0 {
        return [0.0; 4];
    }
    let bp = if hyp_len > ref_len {
        1.0
    } else if hyp_len == 0 {
        0.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    };
    let log_p: Vec<f64> = (0..4)
        .map(|k| {
            if num[k] == 0 {
                f64::MIN_POSITIVE.ln()
            } else {
                (num[k] as f64 / den[k] as f64).ln()
            }
        })
        .collect();
    std::array::from_fn(|n| {
        let w = 1.0 / (n + 1) as f64;
        bp * log_p[..=n].iter().map(|l| w * l).sum::<f64>().exp()
    })
}
