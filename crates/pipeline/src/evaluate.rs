//! Evaluation: caption a split of a prepared dataset and score the captions against its
//! references (BLEU-1..4, CIDEr-D, ROUGE-L as coco-caption computes them; NLTK's BLEU
//! beside them), greedy and with beam search. [`Evaluation::write`] writes the result files.

use std::fmt::Write as _;
use std::path::PathBuf;

use autocaption_data::{Prepared, Split};
use autocaption_features::FeatureStore;
use autocaption_io::Progress;
use autocaption_metrics::{score, Sample, Scores};
use autocaption_tensor::WeightFormat;

use crate::captioner::{Caption, CaptionOptions, Captioner};
use crate::{Error, Result};

/// Settings of [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalSettings {
    /// The split to caption.
    pub split: Split,
    /// Beam width of the beam-search row (0 or 1: greedy only).
    pub beam: usize,
    /// Most words in a caption.
    pub max_words: usize,
    /// Length normalisation of beam scores.
    pub length_alpha: f64,
    /// How the decoder holds its per-word weights.
    pub decoder_weights: WeightFormat,
}

impl EvalSettings {
    /// Checks the limits.
    pub fn validate(&self) -> Result<()> {
        self.options(1).validate()
    }

    fn options(&self, beam: usize) -> CaptionOptions {
        CaptionOptions {
            max_words: self.max_words,
            beam,
            length_alpha: self.length_alpha,
            weights: self.decoder_weights,
        }
    }
}

/// One evaluated image.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalImage {
    /// Its name in the dataset.
    pub name: String,
    /// Its numeric id, for COCO images.
    pub id: Option<u64>,
    /// Its file, when found.
    pub path: Option<PathBuf>,
    /// Its reference captions, cleaned as the training captions were.
    pub references: Vec<String>,
}

/// One decoder's captions and scores.
#[derive(Debug, Clone)]
pub struct EvalRow {
    /// `greedy` or `beam 3`.
    pub label: String,
    /// File-name form of the label: `greedy`, `beam3`.
    pub key: String,
    /// The best caption of each image.
    pub captions: Vec<Caption>,
    /// Scores over the split, and per image.
    pub scores: Scores,
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Its settings.
    pub settings: EvalSettings,
    /// The images, in dataset order.
    pub images: Vec<EvalImage>,
    /// Greedy, then beam search (if asked for).
    pub rows: Vec<EvalRow>,
}

/// Captions `s.split` of `prepared` from `store`'s features and scores it.
pub fn evaluate(
    captioner: &Captioner,
    prepared: &Prepared,
    store: &FeatureStore,
    s: &EvalSettings,
    progress: &dyn Progress,
) -> Result<Evaluation> {
    s.validate()?;
    captioner.model().check_features(store)?;
    let chosen: Vec<_> = prepared
        .images
        .iter()
        .filter(|i| i.split == Some(s.split) && !i.captions.is_empty())
        .collect();
    if chosen.is_empty() {
        return Err(Error::Invalid(format!(
            "the dataset has no {} images with captions",
            s.split
        )));
    }
    let names: Vec<&str> = chosen.iter().map(|i| i.name.as_str()).collect();
    let features = store.gather(&names)?;
    let model = captioner.model();
    let images: Vec<EvalImage> = chosen
        .iter()
        .map(|i| EvalImage {
            name: i.name.clone(),
            id: i.id,
            path: i.path.clone(),
            references: i
                .captions
                .iter()
                .map(|c| model.reference_words(c).join(" "))
                .collect(),
        })
        .collect();
    let mut beams = vec![1];
    if s.beam > 1 {
        beams.push(s.beam);
    }
    let mut rows = Vec::new();
    for beam in beams {
        let opts = s.options(beam);
        let captions: Vec<Caption> = captioner
            .caption_features(&features, &opts, progress)?
            .into_iter()
            .map(|mut c| c.swap_remove(0))
            .collect();
        let samples: Vec<Sample> = captions
            .iter()
            .zip(&images)
            .map(|(c, i)| {
                let refs: Vec<&str> = i.references.iter().map(String::as_str).collect();
                Sample::new(&c.text, &refs)
            })
            .collect();
        let scores = score(&samples);
        rows.push(EvalRow {
            label: opts.label(),
            key: opts.label().replace(' ', ""),
            captions,
            scores,
        });
    }
    Ok(Evaluation {
        settings: *s,
        images,
        rows,
    })
}

impl Evaluation {
    /// The best BLEU-4 over the rows.
    pub fn best_bleu4(&self) -> f64 {
        self.rows
            .iter()
            .map(|r| r.scores.bleu.corpus[3])
            .fold(0.0, f64::max)
    }

    /// The metrics table, one row per decoder.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>12}\n",
            "decoder", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L", "NLTK BLEU-4"
        );
        for r in &self.rows {
            let b = r.scores.bleu.corpus;
            let _ = writeln!(
                s,
                "{:<10} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4} {:>12.4}",
                r.label,
                b[0],
                b[1],
                b[2],
                b[3],
                r.scores.cider_d,
                r.scores.rouge_l,
                r.scores.bleu_nltk[3]
            );
        }
        s
    }
}
