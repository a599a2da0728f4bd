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
use crate::model_dir::references;
use crate::{Error, Result};

/// Settings of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// The split to caption.
    pub split: Split,
    /// Beam widths to decode with besides greedy (widths of 0 or 1 add nothing: greedy
    /// always runs).
    pub beams: Vec<usize>,
    /// Length normalisations of beam scores to try with each beam width.
    pub length_alphas: Vec<f64>,
    /// Most words in a caption.
    pub max_words: usize,
    /// How the decoder holds its per-word weights.
    pub decoder_weights: WeightFormat,
    /// Evaluate the weights `compile --quantize int8` gives the decoder (simulated in f32;
    /// see [`crate::quantize`]).
    pub int8_weights: bool,
}

impl EvalSettings {
    /// Greedy and one beam width with one length normalisation.
    pub fn single(split: Split, beam: usize, length_alpha: f64, max_words: usize) -> Self {
        Self {
            split,
            beams: vec![beam],
            length_alphas: vec![length_alpha],
            max_words,
            decoder_weights: WeightFormat::F32,
            int8_weights: false,
        }
    }

    /// Checks the limits.
    pub fn validate(&self) -> Result<()> {
        if self.length_alphas.is_empty() {
            return Err(Error::Invalid(
                "--length-alpha needs at least one value".into(),
            ));
        }
        if self.beams.len() > 16 || self.length_alphas.len() > 16 {
            return Err(Error::Invalid(
                "--beam and --length-alpha take at most 16 values each".into(),
            ));
        }
        for o in self.decoders() {
            o.validate()?;
        }
        Ok(())
    }

    /// Every decoder to run: greedy, then each beam width (ascending, once) with each
    /// length normalisation.
    pub fn decoders(&self) -> Vec<CaptionOptions> {
        let options = |beam, length_alpha| CaptionOptions {
            max_words: self.max_words,
            beam,
            length_alpha,
            weights: self.decoder_weights,
        };
        let mut beams: Vec<usize> = self.beams.iter().copied().filter(|&b| b > 1).collect();
        beams.sort_unstable();
        beams.dedup();
        let mut alphas = self.length_alphas.clone();
        alphas.dedup();
        let mut out = vec![options(1, alphas.first().copied().unwrap_or(0.7))];
        for b in beams {
            out.extend(alphas.iter().map(|&a| options(b, a)));
        }
        out
    }

    /// A decoder's name in tables and file names: `greedy`, `beam 3`, and with several
    /// length normalisations `beam 3 α0.7`.
    fn names(&self, o: &CaptionOptions) -> (String, String) {
        let label = o.label();
        let key = label.replace(' ', "");
        if o.beam > 1 && self.length_alphas.len() > 1 {
            (
                format!("{label} α{}", o.length_alpha),
                format!("{key}_alpha{}", o.length_alpha),
            )
        } else {
            (label, key)
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
    /// `greedy`, `beam 3`, or in a sweep of length normalisations `beam 3 α0.7`.
    pub label: String,
    /// File-name form of the label: `greedy`, `beam3`, `beam3_alpha0.7`.
    pub key: String,
    /// How its captions were generated.
    pub options: CaptionOptions,
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

/// The metrics of generated captions, each with its image's references.
pub(crate) fn score_against<'a>(pairs: impl Iterator<Item = (&'a str, &'a [String])>) -> Scores {
    let samples: Vec<Sample> = pairs
        .map(|(text, refs)| {
            let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
            Sample::new(text, &refs)
        })
        .collect();
    score(&samples)
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
    let quantized;
    let captioner = if s.int8_weights {
        let mut c = captioner.clone();
        c.simulate_int8();
        quantized = c;
        &quantized
    } else {
        captioner
    };
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
            references: references(&model.tokenizer, &i.captions),
        })
        .collect();
    let mut rows = Vec::new();
    for opts in s.decoders() {
        let captions: Vec<Caption> = captioner
            .caption_features(&features, &opts, progress)?
            .into_iter()
            .map(|mut c| c.swap_remove(0))
            .collect();
        let scores = score_against(
            captions
                .iter()
                .zip(&images)
                .map(|(c, i)| (c.text.as_str(), i.references.as_slice())),
        );
        let (label, key) = s.names(&opts);
        rows.push(EvalRow {
            label,
            key,
            options: opts,
            captions,
            scores,
        });
    }
    Ok(Evaluation {
        settings: s.clone(),
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

    /// The row with the highest CIDEr-D (the earliest of equals).
    pub fn best_by_cider(&self) -> &EvalRow {
        self.rows
            .iter()
            .rev()
            .max_by(|a, b| a.scores.cider_d.total_cmp(&b.scores.cider_d))
            .expect("greedy at least")
    }

    /// The metrics table, one row per decoder.
    pub fn table(&self) -> String {
        let w = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(0)
            .max(10);
        let mut s = format!(
            "{:<w$} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>12}\n",
            "decoder", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L", "NLTK BLEU-4"
        );
        for r in &self.rows {
            let b = r.scores.bleu.corpus;
            let _ = writeln!(
                s,
                "{:<w$} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8.4} {:>8.4} {:>12.4}",
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
