//! CIDEr-D: R. Vedantam, C. L. Zitnick and D. Parikh (2015), "CIDEr: Consensus-based Image
//! Description Evaluation", CVPR. TF-IDF weighted n-gram vectors (n = 1..4), cosine
//! similarity with each reference, as coco-caption's `Cider` computes it (the D variant):
//! document frequencies from the evaluated images' references, hypothesis weights clipped to
//! the reference's, a Gaussian length penalty (σ = 6), the mean over n and references, × 10.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::rouge::mean;
use crate::{ngram_counts, Sample};

const SIGMA: f64 = 6.0;

/// TF-IDF vectors of one caption, one map per n, their norms, and coco-caption's "length"
/// (which counts the caption's bigrams, not its words: a quirk kept for parity). Sums run
/// in the n-grams' sorted order, so a score is the same to the last bit on every run.
struct Vector<'t, 'a> {
    weights: [BTreeMap<&'t [&'a str], f64>; 4],
    norms: [f64; 4],
    length: f64,
}

fn vector<'t, 'a>(
    tokens: &'t [&'a str],
    df: &HashMap<&[&str], f64>,
    log_images: f64,
) -> Vector<'t, 'a> {
    let mut weights: [BTreeMap<&[&str], f64>; 4] = Default::default();
    let mut norms = [0.0f64; 4];
    let mut length = 0.0;
    for (g, tf) in ngram_counts(tokens, 4) {
        let n = g.len() - 1;
        let idf = log_images - df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
        let w = tf as f64 * idf;
        weights[n].insert(g, w);
        norms[n] += w * w;
        if n == 1 {
            length += tf as f64;
        }
    }
    Vector {
        weights,
        norms: norms.map(f64::sqrt),
        length,
    }
}

/// Per-n similarity of a hypothesis with one reference, times the length penalty.
fn similarity(h: &Vector, r: &Vector) -> [f64; 4] {
    let delta = h.length - r.length;
    let penalty = (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
    std::array::from_fn(|n| {
        let mut v: f64 = h.weights[n]
            .iter()
            .map(|(g, &wh)| {
                let wr = r.weights[n].get(g).copied().unwrap_or(0.0);
                wh.min(wr) * wr
            })
            .sum();
        if h.norms[n] != 0.0 && r.norms[n] != 0.0 {
            v /= h.norms[n] * r.norms[n];
        }
        v * penalty
    })
}

/// CIDEr-D: the corpus mean and each image's score. Document frequencies come from the
/// references of the images given, so a score depends on the whole evaluated set (as in
/// coco-caption); a single image scores 0.
pub fn cider_d(samples: &[Sample]) -> (f64, Vec<f64>) {
    let mut df: HashMap<&[&str], f64> = HashMap::new();
    for s in samples {
        let mut seen: HashSet<&[&str]> = HashSet::new();
        for r in &s.references {
            seen.extend(ngram_counts(r, 4).into_keys());
        }
        for g in seen {
            *df.entry(g).or_insert(0.0) += 1.0;
        }
    }
    let log_images = (samples.len() as f64).ln();
    let per: Vec<f64> = samples
        .iter()
        .map(|s| {
            let h = vector(&s.hypothesis, &df, log_images);
            let mut sum = [0.0f64; 4];
            for r in &s.references {
                let rv = vector(r, &df, log_images);
                for (acc, v) in sum.iter_mut().zip(similarity(&h, &rv)) {
                    *acc += v;
                }
            }
            let refs = s.references.len().max(1) as f64;
            sum.iter().sum::<f64>() / 4.0 / refs * 10.0
        })
        .collect();
    (mean(&per), per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_captions_score_the_same_bits() {
        // Forty images, five references each, from a small vocabulary: many shared n-grams
        // with unequal weights.
        let words = [
            "a", "dog", "runs", "on", "the", "grass", "brown", "is", "in", "field", "two", "play",
            "ball", "with", "red", "man", "boy", "water", "jumps", "over",
        ];
        let mut state = 7u64;
        let mut sentence = |len: usize| {
            (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    words[(state >> 33) as usize % words.len()]
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let texts: Vec<(String, Vec<String>)> = (0..40)
            .map(|i| {
                (
                    sentence(6 + i % 7),
                    (0..5).map(|j| sentence(7 + j)).collect(),
                )
            })
            .collect();
        let samples: Vec<Sample> = texts
            .iter()
            .map(|(h, r)| {
                let refs: Vec<&str> = r.iter().map(String::as_str).collect();
                Sample::new(h, &refs)
            })
            .collect();
        let first = cider_d(&samples);
        // Hash maps are seeded afresh each time: sums in their order would differ in the
        // last bits from run to run.
        for _ in 0..20 {
            let again = cider_d(&samples);
            assert_eq!(first.0.to_bits(), again.0.to_bits());
            assert!(first
                .1
                .iter()
                .zip(&again.1)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
