//! Parity with coco-caption (pycocoevalcap 1.2) and NLTK 3.10.4 on the numbers
//! `fixtures/metrics/make_fixture.py` wrote: 32 corpora, 251 hypothesis/reference sets, edge
//! cases included (empty and one-word hypotheses, hypotheses longer than every reference,
//! repeated words, no overlap, a one-image corpus, length ties).

use autocaption_metrics::{score, Sample};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

/// Checks one number and keeps the largest difference seen in `worst`.
fn check(worst: &mut f64, what: String, ours: f64, want: &Value) {
    let want = want.as_f64().expect("a number");
    let diff = (ours - want).abs();
    assert!(diff <= TOLERANCE, "{what}: ours {ours}, reference {want}");
    *worst = worst.max(diff);
}

#[test]
fn every_metric_matches_its_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/metrics/expected.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let (mut sets, mut worst) = (0, 0.0f64);
    for (i, c) in fixture["corpora"].as_array().unwrap().iter().enumerate() {
        let hyps = strings(&c["hypotheses"]);
        let refs: Vec<Vec<String>> = c["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(strings)
            .collect();
        let samples: Vec<Sample> = hyps
            .iter()
            .zip(&refs)
            .map(|(h, r)| Sample::new(h, &r.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        sets += samples.len();
        let s = score(&samples);
        let w = &mut worst;
        for n in 0..4 {
            check(
                w,
                format!("corpus {i} BLEU-{}", n + 1),
                s.bleu.corpus[n],
                &c["bleu"][n],
            );
            let nltk = &c["nltk_bleu"][n];
            check(
                w,
                format!("corpus {i} NLTK BLEU-{}", n + 1),
                s.bleu_nltk[n],
                nltk,
            );
        }
        check(w, format!("corpus {i} CIDEr-D"), s.cider_d, &c["cider_d"]);
        check(w, format!("corpus {i} ROUGE-L"), s.rouge_l, &c["rouge_l"]);
        for j in 0..samples.len() {
            let at = format!("corpus {i} image {j}");
            check(
                w,
                format!("{at} BLEU-4"),
                s.bleu.per_image[j][3],
                &c["bleu4_per_image"][j],
            );
            check(
                w,
                format!("{at} CIDEr-D"),
                s.cider_d_per_image[j],
                &c["cider_d_per_image"][j],
            );
            check(
                w,
                format!("{at} ROUGE-L"),
                s.rouge_l_per_image[j],
                &c["rouge_l_per_image"][j],
            );
        }
    }
    assert!(sets >= 200, "only {sets} sets");
    eprintln!("{sets} sets, largest difference from the references {worst:.1e}");
}

#[test]
fn perfect_captions_score_one() {
    let refs = ["a dog runs on the grass", "a dog is running"];
    let samples = vec![Sample::new("a dog runs on the grass", &refs)];
    let s = score(&samples);
    for b in s.bleu.corpus {
        assert!((b - 1.0).abs() < 1e-6, "{b}");
    }
    assert!((s.bleu_nltk[3] - 1.0).abs() < 1e-12);
    assert!((s.rouge_l - 1.0).abs() < 1e-12);
}
