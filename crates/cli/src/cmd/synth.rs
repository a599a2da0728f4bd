//! `autocaption synth`.

use std::path::PathBuf;
use std::time::Instant;

use autocaption_synth::{generate, SynthOptions};

use crate::progress::Bar;
use crate::Global;
use autocaption_pipeline::summary::thousands;

/// Generate a captioned image set of coloured shapes: one shape, two shapes in a spatial
/// relation ("a red circle above a small blue square"), or a group of the same kind ("three
/// green triangles"), each with five differently worded true captions.
///
/// The set is written in the Flickr8k layout (Flickr8k.token.txt, Flickr_8k.*Images.txt,
/// images/), plus scenes.jsonl (what each image shows) and synth.json (the options). The same
/// options and seed give the same bytes.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Output directory.
    #[arg(long, short)]
    out: PathBuf,

    /// Replace the output directory if it exists.
    #[arg(long)]
    force: bool,

    /// Number of images.
    #[arg(long, short = 'n', default_value_t = 1000)]
    count: usize,

    /// Seed for everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,

    /// Share of images in the dev split.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    dev: f64,

    /// Share of images in the test split.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    test: f64,

    /// Write JPEG files instead of PNG.
    #[arg(long)]
    jpeg: bool,
}

/// Runs `synth`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let started = Instant::now();
    let opts = SynthOptions {
        count: args.count,
        seed: args.seed,
        width: args.size,
        height: args.size,
        dev_fraction: args.dev,
        test_fraction: args.test,
        jpeg: args.jpeg,
    };
    let bar = Bar::new(global.quiet);
    let s = generate(&args.out, &opts, args.force, &bar)?;
    if !global.quiet {
        let [tr, dv, te] = s.split_counts;
        println!(
            "Wrote {} images ({} train, {} dev, {} test) with {} captions to {} in {:.1} s",
            thousands(tr + dv + te),
            thousands(tr),
            thousands(dv),
            thousands(te),
            thousands(s.captions),
            s.dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
