//! The files of an evaluation: `metrics.json`, COCO result files (`results_greedy.json`,
//! `results_beam3.json`), `captions.jsonl` (each image's generated and reference captions
//! with its scores) and `samples.html` (the best and worst images by CIDEr-D).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use crate::evaluate::{EvalImage, EvalRow, Evaluation};
use crate::Result;

impl Evaluation {
    /// Writes every result file into `dir` (which must exist), each atomically;
    /// `samples.html` shows the `samples` best and worst images.
    pub fn write(&self, dir: &Path, samples: usize) -> Result<()> {
        for row in &self.rows {
            write_results(dir, row, &self.images)?;
        }
        self.write_metrics(dir)?;
        self.write_per_image(dir)?;
        write_samples_html(
            dir,
            samples,
            &self.images,
            self.rows.last().expect("greedy at least"),
        )
    }

    fn write_metrics(&self, dir: &Path) -> Result<()> {
        #[derive(Serialize)]
        struct MetricsRow<'a> {
            decoder: &'a str,
            beam: usize,
            length_alpha: f64,
            bleu: [f64; 4],
            nltk_bleu: [f64; 4],
            cider_d: f64,
            rouge_l: f64,
        }
        let list: Vec<MetricsRow> = self
            .rows
            .iter()
            .map(|r| MetricsRow {
                decoder: &r.label,
                beam: r.options.beam,
                length_alpha: r.options.length_alpha,
                bleu: r.scores.bleu.corpus,
                nltk_bleu: r.scores.bleu_nltk,
                cider_d: r.scores.cider_d,
                rouge_l: r.scores.rouge_l,
            })
            .collect();
        let s = &self.settings;
        let v = json!({
            "split": s.split.as_str(),
            "images": self.images.len(),
            "max_words": s.max_words,
            "length_alphas": s.length_alphas,
            "decoder_weights": s.decoder_weights,
            "int8_weights": s.int8_weights,
            "metrics": "BLEU-1..4, CIDEr-D and ROUGE-L as coco-caption computes them; nltk_bleu: NLTK corpus_bleu, uniform weights, no smoothing",
            "decoders": list,
        });
        write_json(&dir.join("metrics.json"), &v)
    }

    fn write_per_image(&self, dir: &Path) -> Result<()> {
        let mut out = String::new();
        for (i, img) in self.images.iter().enumerate() {
            let mut generated = serde_json::Map::new();
            for r in &self.rows {
                generated.insert(
                    r.key.clone(),
                    json!({
                        "caption": r.captions[i].text,
                        "score": r.captions[i].score,
                        "bleu4": r.scores.bleu.per_image[i][3],
                        "cider_d": r.scores.cider_d_per_image[i],
                        "rouge_l": r.scores.rouge_l_per_image[i],
                    }),
                );
            }
            let line =
                json!({"image": img.name, "generated": generated, "references": img.references});
            out.push_str(&serde_json::to_string(&line).expect("JSON serialises"));
            out.push('\n');
        }
        autocaption_io::write_atomic(&dir.join("captions.jsonl"), out.as_bytes())?;
        Ok(())
    }
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).expect("JSON serialises") + "\n";
    autocaption_io::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// The COCO results file: `[{"image_id", "caption"}]`, the numeric id for COCO images and
/// the file name otherwise.
fn write_results(dir: &Path, row: &EvalRow, images: &[EvalImage]) -> Result<()> {
    let results: Vec<serde_json::Value> = images
        .iter()
        .zip(&row.captions)
        .map(|(img, c)| {
            let id = img.id.map_or_else(|| json!(img.name), |n| json!(n));
            json!({"image_id": id, "caption": c.text})
        })
        .collect();
    write_json(
        &dir.join(format!("results_{}.json", row.key)),
        &serde_json::Value::Array(results),
    )
}

/// An HTML page of the best and worst images by CIDEr-D with generated and reference
/// captions; thumbnails are embedded, so the page stands alone.
fn write_samples_html(dir: &Path, count: usize, images: &[EvalImage], row: &EvalRow) -> Result<()> {
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
            let img = &images[i];
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
                escape(&row.captions[i].text),
                img.references
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
fn thumbnail(path: &Path) -> Result<String> {
    let img = autocaption_vision::load_rgb(path)?;
    let h = (192 * img.height() / img.width().max(1)).max(1);
    let small = image::imageops::thumbnail(&img, 192, h);
    let mut png = Vec::new();
    small
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| crate::Error::file(path, format!("cannot make a thumbnail: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
