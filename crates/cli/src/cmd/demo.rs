//! `autocaption demo`: the offline pipeline on data of its own, as far as it is built.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use autocaption_data::{load, LoadOptions, PrepareOptions, Prepared, Split};
use autocaption_io::AtomicDir;
use autocaption_synth::{generate, SynthOptions};
use autocaption_viz::SheetOptions;

use crate::cmd::show::{write_sheet, Candidate};
use crate::progress::Bar;
use crate::report::{self, thousands};
use crate::Global;

/// Run the pipeline end to end, offline, on a synthetic dataset it generates itself:
/// synth → prepare → a contact sheet of held-out test images.
///
/// Everything goes into one report directory: data/ (the generated images and captions),
/// prepared/ (the prepared dataset), test_samples.png and summary.txt. The same --seed gives
/// the same bytes. Stages still to come (feature extraction, training, evaluation, the
/// blind baseline and C compilation) are added to this command as they land.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Report directory.
    #[arg(long, short, default_value = "autocaption-demo")]
    out: PathBuf,

    /// Replace the report directory if it exists.
    #[arg(long)]
    force: bool,

    /// A smaller run, for smoke tests.
    #[arg(long)]
    quick: bool,

    /// Seed for everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `demo`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = AtomicDir::new(&args.out, args.force)?;
    let say = |s: &str| {
        if !global.quiet {
            println!("{s}");
        }
    };

    let synth = SynthOptions {
        count: if args.quick { 200 } else { 2000 },
        seed: args.seed,
        ..SynthOptions::default()
    };
    say(&format!(
        "[1/3] synth: {} images of coloured shapes, 5 captions each",
        synth.count
    ));
    let data = dir.path().join("data");
    generate(&data, &synth, false, &Bar::new(global.quiet))?;

    say("[2/3] prepare: clean, tokenize, vocabulary from the training split");
    let ds = load(&data, &LoadOptions::default())?;
    let prepared = Prepared::build(&ds, &PrepareOptions::default())?;
    prepared.write(&dir.path().join("prepared"), false)?;

    say("[3/3] show: contact sheet of held-out test images");
    let test: Vec<Candidate> = prepared
        .images
        .iter()
        .filter(|i| i.split == Some(Split::Test))
        .filter_map(|i| {
            Some(Candidate {
                name: i.name.clone(),
                path: i.path.clone()?,
                captions: i.captions.clone(),
            })
        })
        .collect();
    let sheet_opts = SheetOptions {
        columns: 4,
        thumb: 192,
        ..SheetOptions::default()
    };
    write_sheet(test, 8, sheet_opts, &dir.path().join("test_samples.png"))?;

    let mut summary = report::prepared(&prepared.manifest);
    summary.push_str(&format!(
        "\nRan synth, prepare and show in {:.1} s (seed {}).\n",
        started.elapsed().as_secs_f64(),
        args.seed
    ));
    let p = dir.path().join("summary.txt");
    std::fs::write(&p, &summary).with_context(|| format!("cannot write {}", p.display()))?;
    let out = dir.commit()?;
    let m = &prepared.manifest.stats;
    say(&format!(
        "\nDone: {} images, vocabulary {}, report in {}/ (summary.txt, test_samples.png)",
        thousands(m.images.values().sum()),
        m.vocab_size,
        out.display()
    ));
    Ok(())
}
