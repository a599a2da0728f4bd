//! `autocaption demo`: the offline pipeline on data of its own.

use std::path::PathBuf;

use autocaption_pipeline::{run_demo, DemoSettings};

use crate::progress::Bar;
use crate::Global;

/// Run the pipeline end to end, offline, on a synthetic dataset it generates itself:
/// synth → prepare → features → train → evaluate, against a blind baseline.
///
/// No pretrained weights can be downloaded here, so the image features come from the concept
/// CNN (`autocaption concepts`), trained on the demo's own training images and captions;
/// ResNet-50 with seeded random weights runs too, and a linear probe shows what each passes
/// on. Everything goes into one report directory: data/ (the generated images and captions),
/// prepared/, features.safetensors (the concept features) and features.encoder.safetensors
/// (the concept CNN), resnet-features.safetensors, model/ (with its encoder, so `autocaption
/// caption PHOTO --model OUT/model` captions new photos) and model/eval-test/ (metrics, COCO result files,
/// per-image captions, samples.html), blind/ (the same training with every image feature set
/// to zero, and its evaluation), test_samples.png (held-out images with generated and
/// reference captions) and summary.txt. The blind baseline shows how much of the score
/// comes from looking at the image. The same --seed gives the same bytes.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Report directory.
    #[arg(long, short, default_value = "autocaption-demo")]
    out: PathBuf,

    /// Replace the report directory if it exists.
    #[arg(long)]
    force: bool,

    /// A smaller run, for smoke tests (under a minute).
    #[arg(long)]
    quick: bool,

    /// Seed for everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `demo`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let settings = DemoSettings {
        out: args.out,
        replace: args.force,
        quick: args.quick,
        seed: args.seed,
    };
    let say = |s: &str| {
        if !global.quiet {
            println!("{s}");
        }
    };
    let report = run_demo(&settings, &Bar::new(global.quiet), &mut |s| say(s))?;
    say(&format!("\n{}", report.summary));
    say(&format!(
        "Report in {}/ (summary.txt, test_samples.png, model/eval-test/samples.html, model/training.png)",
        report.out.display()
    ));
    Ok(())
}
