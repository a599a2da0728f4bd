//! ROUGE-L: C.-Y. Lin (2004), "ROUGE: A Package for Automatic Evaluation of Summaries",
//! ACL Workshop on Text Summarization Branches Out. The F-measure of the longest common
//! subsequence, as coco-caption computes it: the best precision and the best recall over the
//! references (taken separately), β = 1.2.

use crate::Sample;

/// Length of the longest common subsequence of two token lists.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ROUGE-L of one image. An empty hypothesis scores 0 (coco-caption splits "" into one
/// empty token, which matches nothing).
fn image(s: &Sample) -> f64 {
    const BETA: f64 = 1.2;
    let hyp_len = s.hypothesis.len().max(1) as f64;
    let (mut prec, mut rec) = (0.0f64, 0.0f64);
    for r in &s.references {
        let l = lcs(r, &s.hypothesis) as f64;
        prec = prec.max(l / hyp_len);
        rec = rec.max(l / r.len().max(1) as f64);
    }
    if prec != 0.0 && rec != 0.0 {
        ((1.0 + BETA * BETA) * prec * rec) / (rec + BETA * BETA * prec)
    } else {
        0.0
    }
}

/// ROUGE-L: the corpus mean and each image's score.
pub fn rouge_l(samples: &[Sample]) -> (f64, Vec<f64>) {
    let per: Vec<f64> = samples.iter().map(image).collect();
    (mean(&per), per)
}

pub(crate) fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        0.0
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_by_hand() {
        let t = |s: &'static str| s.split_whitespace().collect::<Vec<_>>();
        assert_eq!(lcs(&t("a b c d"), &t("a c d")), 3);
        assert_eq!(lcs(&t("a b"), &t("c d")), 0);
        assert_eq!(lcs(&t(""), &t("a")), 0);
        assert_eq!(lcs(&t("the cat the mat"), &t("the the the")), 2);
    }
}
