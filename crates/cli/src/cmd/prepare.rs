//! `autocaption prepare`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use autocaption_data::{assign_splits, PrepareOptions, Prepared, SplitFractions};
use autocaption_text::{CleanPipeline, Stage};

use crate::dataset_args::DatasetArgs;
use autocaption_pipeline::summary as report;

use crate::Global;

/// Read a caption dataset, clean and tokenize its captions, build the vocabulary from the
/// training split, and write a prepared dataset directory (manifest.json, vocab.json,
/// captions.jsonl) with statistics.
///
/// The defaults reproduce the seed notebook: lowercase, strip punctuation, drop one-letter
/// words, wrap in `startseq … endseq`, keep numbers, and keep words seen at least twice.
/// On Flickr8k this gives the seed model's 4,487-word vocabulary.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    #[command(flatten)]
    dataset: DatasetArgs,

    /// Output directory for the prepared dataset.
    #[arg(long, short)]
    out: PathBuf,

    /// Replace the output directory if it exists.
    #[arg(long)]
    force: bool,

    /// Keep only words seen at least this many times in the training split.
    #[arg(long, default_value_t = 2, value_name = "N")]
    min_count: u64,

    /// Largest vocabulary, padding (and OOV token) included, like Keras' `num_words`.
    #[arg(long, value_name = "N")]
    max_words: Option<usize>,

    /// Token for words outside the vocabulary (Keras' `oov_token`); by default such words
    /// are dropped.
    #[arg(long, value_name = "TOKEN")]
    oov_token: Option<String>,

    /// Give images that have no split one: train,dev,test shares, e.g. 0.8,0.1,0.1.
    /// Deterministic from --seed and the image names.
    #[arg(long, value_name = "TRAIN,DEV,TEST")]
    auto_split: Option<SplitFractions>,

    /// Seed for --auto-split.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Read the whole cleaning pipeline from a JSON file (the `pipeline` of a vocab.json, or
    /// `{"stages": [...]}`) instead of the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_lowercase", "keep_punctuation", "min_word_len", "drop_numbers", "no_wrap", "start_token", "end_token"])]
    pipeline: Option<PathBuf>,

    /// Keep the captions' letter case.
    #[arg(long)]
    no_lowercase: bool,

    /// Keep punctuation inside words.
    #[arg(long)]
    keep_punctuation: bool,

    /// Drop words shorter than this many characters (the seed drops one-letter words).
    #[arg(long, default_value_t = 2, value_name = "N")]
    min_word_len: usize,

    /// Drop words that are not purely alphabetic (numbers among them).
    #[arg(long)]
    drop_numbers: bool,

    /// Do not wrap captions in start and end tokens.
    #[arg(long)]
    no_wrap: bool,

    /// Start token.
    #[arg(long, default_value = "startseq")]
    start_token: String,

    /// End token.
    #[arg(long, default_value = "endseq")]
    end_token: String,

    /// Print the statistics as JSON on stdout instead of a human summary.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn pipeline(&self) -> anyhow::Result<CleanPipeline> {
        if let Some(path) = &self.pipeline {
            let text = autocaption_io::read_to_string(path)?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))?;
            // Accept a whole vocab.json as well as a bare pipeline.
            let inner = value.get("pipeline").cloned().unwrap_or(value);
            return serde_json::from_value(inner)
                .with_context(|| format!("{}: not a cleaning pipeline", path.display()));
        }
        let mut stages = Vec::new();
        if !self.no_lowercase {
            stages.push(Stage::Lowercase);
        }
        if !self.keep_punctuation {
            stages.push(Stage::StripPunctuation);
        }
        if self.min_word_len > 1 {
            stages.push(Stage::DropShortWords {
                min_len: self.min_word_len,
            });
        }
        if self.drop_numbers {
            stages.push(Stage::DropNonAlphabetic);
        }
        if !self.no_wrap {
            if self.start_token.split_whitespace().count() != 1
                || self.end_token.split_whitespace().count() != 1
            {
                bail!("--start-token and --end-token must each be one word");
            }
            stages.push(Stage::Wrap {
                start: self.start_token.clone(),
                end: self.end_token.clone(),
            });
        }
        Ok(CleanPipeline { stages })
    }
}

/// Runs `prepare`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let started = Instant::now();
    let pipeline = args.pipeline()?;
    if args.min_count == 0 {
        bail!("--min-count must be at least 1");
    }
    let inputs = args.dataset.inputs();
    autocaption_io::check_output(
        &args.out,
        args.force,
        autocaption_io::Ours::DirWith(autocaption_data::MANIFEST_FILE),
        &inputs,
    )?;
    let mut ds = args.dataset.load()?;
    if let Some(f) = args.auto_split {
        assign_splits(&mut ds, f, args.seed);
    }
    let opts = PrepareOptions {
        pipeline,
        min_count: args.min_count,
        max_words: args.max_words,
        oov_token: args.oov_token.clone(),
    };
    let prepared = Prepared::build(&ds, &opts)?;
    let dir = prepared
        .write(&args.out, args.force, &inputs)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&prepared.manifest)?);
    } else if !global.quiet {
        print!("{}", report::prepared(&prepared.manifest));
        let q = report::quirks(&ds.report);
        if !q.is_empty() {
            print!("\n{q}");
        }
        println!(
            "\nWrote {} (manifest.json, vocab.json, captions.jsonl) in {:.2} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
