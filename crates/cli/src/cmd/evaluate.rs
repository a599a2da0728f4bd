//! `autocaption evaluate`.

use std::path::PathBuf;

use autocaption_data::{Prepared, Split};
use autocaption_io::AtomicDir;
use autocaption_pipeline::{evaluate, Captioner, EvalSettings, FeatureStore};

use crate::decode_args::DecodeArgs;
use crate::progress::Bar;
use crate::Global;

/// Caption a split of a prepared dataset and score the captions against its references.
///
/// Decodes every image of the split greedily and with beam search, prints BLEU-1..4,
/// CIDEr-D and ROUGE-L (coco-caption's definitions; NLTK's corpus BLEU-4 beside them) for
/// each, and writes into --out: metrics.json, COCO result files (results_greedy.json,
/// results_beam3.json: [{"image_id", "caption"}]), captions.jsonl (each image's generated
/// and reference captions with its scores) and samples.html (the best and worst images by
/// CIDEr-D, generated against reference captions).
///
/// Lists compare decoders in one table: `--beam 1,3,5 --length-alpha 0,0.7,1` runs greedy and
/// every beam width with every length normalisation (tune on --split dev, report test).
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

    /// Beam widths besides greedy, comma-separated (0 or 1: greedy only).
    #[arg(long, default_value = "3", value_delimiter = ',', num_args = 1)]
    beam: Vec<usize>,

    #[command(flatten)]
    decode: DecodeArgs,

    /// Output directory [default: MODEL/eval-SPLIT].
    #[arg(long, short)]
    out: Option<PathBuf>,

    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,

    /// Evaluate the weights `compile --quantize int8` gives the decoder: every Dense and
    /// LSTM kernel rounded to per-output-channel int8 (computed in f32 here, as the
    /// compiled code computes), to see what int8 costs in caption quality.
    #[arg(long)]
    int8: bool,

    /// Images shown in samples.html, best and worst each.
    #[arg(long, default_value_t = 6)]
    samples: usize,
}

/// Runs `evaluate`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let settings = EvalSettings {
        split: args.split,
        beams: args.beam.clone(),
        length_alphas: args.decode.length_alphas().to_vec(),
        max_words: args.decode.max_words(),
        decoder_weights: args.decode.weights(),
        int8_weights: args.int8,
    };
    settings.validate()?;
    if args.samples > 1000 {
        anyhow::bail!("--samples {}: expected 0 to 1000 images", args.samples);
    }
    let cap = Captioner::load_for_features(&args.model)?;
    let features = args
        .features
        .clone()
        .unwrap_or_else(|| cap.model().config.features.clone());
    if features.as_os_str().is_empty() {
        anyhow::bail!(
            "{}: the model records no features file (an imported model); pass --features",
            args.model.display()
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.join(format!("eval-{}", args.split)));
    let dir = AtomicDir::new(
        &out,
        args.force,
        "metrics.json",
        &[&args.model, &args.data, &features],
    )?;
    let prepared = Prepared::load(&args.data)?;
    let store = FeatureStore::load(&features)?;
    let e = evaluate(&cap, &prepared, &store, &settings, &Bar::new(global.quiet))?;
    e.write(dir.path(), args.samples)?;
    let out = dir.commit()?;
    println!("{} split, {} images", args.split, e.images.len());
    print!("{}", e.table());
    if e.rows.len() > 2 {
        let best = e.best_by_cider();
        println!("Best CIDEr-D: {} ({:.4})", best.label, best.scores.cider_d);
    }
    if !global.quiet {
        println!(
            "Wrote {}/ (metrics.json, results_*.json, captions.jsonl, samples.html)",
            out.display()
        );
    }
    Ok(())
}
