//! `autocaption evaluate`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use autocaption_data::{Prepared, PreparedImage, Split};
use autocaption_features::FeatureStore;
use autocaption_io::{AtomicDir, Progress};
use autocaption_metrics::{score, Sample, Scores};
use autocaption_model::{DecodeOptions, Hypothesis};
use autocaption_tensor::WeightFormat;
use serde::Serialize;
use serde_json::json;

use crate::captioner::{Captioner, DecodeArgs};
use crate::progress::Bar;
use crate::Global;

/// Caption a split of a prepared dataset and score the captions against its references.
///
/// Decodes every image of the split greedily and with beam search, prints BLEU-1..4,
/// CIDEr-D and ROUGE-L (coco-caption's definitions; NLTK's corpus BLEU-4 beside them) for
/// both, and writes into --out: metrics.json, COCO result files (results_greedy.json,
/// results_beam3.json: [{"image_id", "caption"}]), captions.jsonl (each image's generated
/// and reference captions with its scores) and samples.html (the best and worst images by
/// CIDEr-D, generated against reference captions).
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Model directory (from `autocaption train`).
    #[arg(long, short)]
    model: PathBuf,

    /// Prepared dataset directory (from `autocaption prepare`).
    #[arg(long)]
    data: PathBuf,

    /// Image features; by default the file the model was trained with.
    #[arg(long, value_name = "FILE")]
    features: Option<PathBuf>,

    /// Split to evaluate.
    #[arg(long, default_value = "test")]
    split: Split,

    /// Beam width of the beam-search row (0: greedy only).
    #[arg(long, default_value_t = 3)]
    beam: usize,

    #[command(flatten)]
    decode: DecodeArgs,

    /// Output directory [default: MODEL/eval-SPLIT].
    #[arg(long, short)]
    out: Option<PathBuf>,

    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,

    /// Images shown in samples.html, best and worst each.
    #[arg(long, default_value_t = 6)]
    samples: usize,
}

/// One decoder's captions and scores.
pub(crate) struct Row {
    /// `greedy` or `beam 3`.
    pub label: String,
    /// File-name form of the label: `greedy`, `beam3`.
    pub key: String,
    /// The best hypothesis of each image.
    pub captions: Vec<String>,
    /// Scores over the split.
    pub scores: Scores,
}

/// What `evaluate` measured.
pub(crate) struct Evaluation {
    /// Images evaluated.
    pub images: usize,
    /// Greedy, then beam search (if asked for).
    pub rows: Vec<Row>,
}

/// Settings of [`evaluate`].
pub(crate) struct Settings {
    pub split: Split,
    pub beam: usize,
    pub max_words: usize,
    pub length_alpha: f64,
    pub samples: usize,
    pub decoder_weights: WeightFormat,
}

/// Decodes `split` of `prepared` with `store`'s features, scores it, and writes the result
/// files into `dir` (which must exist).
pub(crate) fn evaluate(
    cap: &Captioner,
    prepared: &Prepared,
    store: &FeatureStore,
    s: &Settings,
    dir: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<Evaluation> {
    if store.dim() != cap.feature_dim() {
        bail!(
            "the features are {}-d but the model reads {}-d",
            store.dim(),
            cap.feature_dim()
        );
    }
    let images: Vec<&PreparedImage> = prepared
        .images
        .iter()
        .filter(|i| i.split == Some(s.split) && !i.captions.is_empty())
        .collect();
    if images.is_empty() {
        bail!("the dataset has no {} images with captions", s.split);
    }
    let mut features = Vec::with_capacity(images.len() * store.dim());
    let mut missing = Vec::new();
    for img in &images {
        match store.get(&img.name) {
            Some(row) => features.extend_from_slice(row),
            None => missing.push(img.name.as_str()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{} {} images have no features (e.g. {}); extract features for the whole dataset",
            missing.len(),
            s.split,
            missing[..missing.len().min(3)].join(", ")
        );
    }
    let references: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            i.captions
                .iter()
                .map(|c| cap.reference_words(c).join(" "))
                .collect()
        })
        .collect();

    let mut decoders = vec![(1usize, "greedy".to_string(), "greedy".to_string())];
    if s.beam > 1 {
        decoders.push((
            s.beam,
            format!("beam {}", s.beam),
            format!("beam{}", s.beam),
        ));
    }
    let mut rows = Vec::new();
    let mut all_hyps: Vec<Vec<Vec<Hypothesis>>> = Vec::new();
    for (beam, label, key) in decoders {
        let opts = DecodeOptions {
            max_words: s.max_words,
            beam,
            length_alpha: s.length_alpha,
        };
        progress.start(&format!("captions ({label})"), images.len() as u64);
        let hyps = cap.caption(&features, &opts, s.decoder_weights, &mut |n| {
            progress.advance(n as u64)
        })?;
        progress.finish();
        let captions: Vec<String> = hyps.iter().map(|h| cap.text(&h[0])).collect();
        let samples: Vec<Sample> = captions
            .iter()
            .zip(&references)
            .map(|(h, r)| Sample::new(h, &r.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        let scores = score(&samples);
        write_results(dir, &key, &images, &captions)?;
        rows.push(Row {
            label,
            key,
            captions,
            scores,
        });
        all_hyps.push(hyps);
    }
    write_metrics(dir, s, images.len(), &rows)?;
    write_per_image(dir, &images, &references, &rows, &all_hyps)?;
    write_samples_html(
        dir,
        s.samples,
        &images,
        &references,
        rows.last().expect("greedy"),
    )?;
    Ok(Evaluation {
        images: images.len(),
        rows,
    })
}

/// The COCO results file: `[{"image_id", "caption"}]`, the numeric id for COCO images and
/// the file name otherwise.
fn write_results(
    dir: &Path,
    key: &str,
    images: &[&PreparedImage],
    captions: &[String],
) -> anyhow::Result<()> {
    let results: Vec<serde_json::Value> = images
        .iter()
        .zip(captions)
        .map(|(img, c)| {
            let id = img.id.map_or_else(|| json!(img.name), |n| json!(n));
            json!({"image_id": id, "caption": c})
        })
        .collect();
    let path = dir.join(format!("results_{key}.json"));
    autocaption_io::write_atomic(
        &path,
        (serde_json::to_string_pretty(&results)? + "\n").as_bytes(),
    )?;
    Ok(())
}

#[derive(Serialize)]
struct MetricsRow<'a> {
    decoder: &'a str,
    bleu: [f64; 4],
    nltk_bleu: [f64; 4],
    cider_d: f64,
    rouge_l: f64,
}

fn write_metrics(dir: &Path, s: &Settings, images: usize, rows: &[Row]) -> anyhow::Result<()> {
    let list: Vec<MetricsRow> = rows
        .iter()
        .map(|r| MetricsRow {
            decoder: &r.label,
            bleu: r.scores.bleu.corpus,
            nltk_bleu: r.scores.bleu_nltk,
            cider_d: r.scores.cider_d,
            rouge_l: r.scores.rouge_l,
        })
        .collect();
    let v = json!({
        "split": s.split.as_str(),
        "images": images,
        "max_words": s.max_words,
        "length_alpha": s.length_alpha,
        "decoder_weights": s.decoder_weights,
        "metrics": "BLEU-1..4, CIDEr-D and ROUGE-L as coco-caption computes them; nltk_bleu: NLTK corpus_bleu, uniform weights, no smoothing",
        "decoders": list,
    });
    autocaption_io::write_atomic(
        &dir.join("metrics.json"),
        (serde_json::to_string_pretty(&v)? + "\n").as_bytes(),
    )?;
    Ok(())
}

fn write_per_image(
    dir: &Path,
    images: &[&PreparedImage],
    references: &[Vec<String>],
    rows: &[Row],
    hyps: &[Vec<Vec<Hypothesis>>],
) -> anyhow::Result<()> {
    let mut out = String::new();
    for (i, img) in images.iter().enumerate() {
        let mut generated = serde_json::Map::new();
        for (r, h) in rows.iter().zip(hyps) {
            generated.insert(
                r.key.clone(),
                json!({
                    "caption": r.captions[i],
                    "score": h[i][0].score,
                    "bleu4": r.scores.bleu.per_image[i][3],
                    "cider_d": r.scores.cider_d_per_image[i],
                    "rouge_l": r.scores.rouge_l_per_image[i],
                }),
            );
        }
        let line = json!({"image": img.name, "generated": generated, "references": references[i]});
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    autocaption_io::write_atomic(&dir.join("captions.jsonl"), out.as_bytes())?;
    Ok(())
}

/// An HTML page of the best and worst images by CIDEr-D with generated and reference
/// captions; thumbnails are embedded, so the page stands alone.
fn write_samples_html(
    dir: &Path,
    count: usize,
    images: &[&PreparedImage],
    references: &[Vec<String>],
    row: &Row,
) -> anyhow::Result<()> {
    let mut order: Vec<usize> = (0..images.len()).collect();
    let cider = &row.scores.cider_d_per_image;
    order.sort_by(|&a, &b| cider[b].total_cmp(&cider[a]).then(a.cmp(&b)));
    let best: Vec<usize> = order.iter().copied().take(count).collect();
    let worst: Vec<usize> = order.iter().rev().copied().take(count).collect();
    let mut html = String::from(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>autocaption: samples</title>\n<style>\
         body{font-family:sans-serif;margin:2em;max-width:70em}\
         .s{display:flex;gap:1em;margin:1em 0;border-bottom:1px solid #ddd;padding-bottom:1em}\
         .g{font-weight:bold}.r{color:#555;margin:0}img{width:192px;height:auto}</style>\n",
    );
    let _ = writeln!(
        html,
        "<h1>Samples ({}: {} images)</h1>\n<p>CIDEr-D {:.3}, BLEU-4 {:.3}, ROUGE-L {:.3}</p>",
        row.label,
        images.len(),
        row.scores.cider_d,
        row.scores.bleu.corpus[3],
        row.scores.rouge_l
    );
    for (title, set) in [("Best by CIDEr-D", &best), ("Worst by CIDEr-D", &worst)] {
        let _ = writeln!(html, "<h2>{title}</h2>");
        for &i in set {
            let img = images[i];
            let thumb = img
                .path
                .as_deref()
                .and_then(|p| thumbnail(p).ok())
                .map(|b64| {
                    format!(
                        "<img src=\"data:image/png;base64,{b64}\" alt=\"{}\">",
                        escape(&img.name)
                    )
                })
                .unwrap_or_else(|| "<div>(image not found)</div>".into());
            let _ = writeln!(
                html,
                "<div class=\"s\">{thumb}<div><p>{} — CIDEr-D {:.3}</p><p class=\"g\">{}</p>{}</div></div>",
                escape(&img.name),
                cider[i],
                escape(&row.captions[i]),
                references[i]
                    .iter()
                    .map(|r| format!("<p class=\"r\">{}</p>", escape(r)))
                    .collect::<String>()
            );
        }
    }
    autocaption_io::write_atomic(&dir.join("samples.html"), html.as_bytes())?;
    Ok(())
}

/// A 192-pixel-wide PNG of the image, base64.
fn thumbnail(path: &Path) -> anyhow::Result<String> {
    let img = autocaption_vision::load_rgb(path)?;
    let h = (192 * img.height() / img.width().max(1)).max(1);
    let small = image::imageops::thumbnail(&img, 192, h);
    let mut png = Vec::new();
    small.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(base64(&png))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The metrics table, one row per decoder.
pub(crate) fn table(e: &Evaluation) -> String {
    let mut s = format!(
        "{:<10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>12}\n",
        "decoder", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L", "NLTK BLEU-4"
    );
    for r in &e.rows {
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

/// Runs `evaluate`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let limits = args.decode.options(1)?;
    let cap = Captioner::load(&args.model)?;
    let prepared = Prepared::load(&args.data)?;
    let features = args
        .features
        .clone()
        .unwrap_or_else(|| cap.config.features.clone());
    let store = FeatureStore::load(&features)
        .with_context(|| format!("features for {}", args.data.display()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.join(format!("eval-{}", args.split)));
    let dir = AtomicDir::new(&out, args.force)?;
    let settings = Settings {
        split: args.split,
        beam: args.beam,
        max_words: limits.max_words,
        length_alpha: limits.length_alpha,
        samples: args.samples,
        decoder_weights: args.decode.decoder_weights,
    };
    let e = evaluate(
        &cap,
        &prepared,
        &store,
        &settings,
        dir.path(),
        &Bar::new(global.quiet),
    )?;
    let out = dir.commit()?;
    println!("{} split, {} images", args.split, e.images);
    print!("{}", table(&e));
    if !global.quiet {
        println!(
            "Wrote {}/ (metrics.json, results_*.json, captions.jsonl, samples.html)",
            out.display()
        );
    }
    Ok(())
}
