//! `autocaption show`.

use std::path::PathBuf;

use anyhow::bail;
use autocaption_data::{Prepared, Split};
use autocaption_pipeline::summary::thousands;
use autocaption_pipeline::{pick_for_sheet, write_sheet};
use autocaption_viz::SheetOptions;

use crate::dataset_args::DatasetArgs;
use crate::Global;

/// Draw a contact sheet: a PNG grid of images with their captions rendered under each, so a
/// person can check that captions match images (the seed notebook's visualisation step).
///
/// DATASET is a caption dataset (as for `prepare`) or a prepared directory. Only images
/// whose file is found are shown.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    #[command(flatten)]
    dataset: DatasetArgs,

    /// Output PNG file.
    #[arg(long, short)]
    out: PathBuf,

    /// Replace --out if it is a sheet drawn earlier (any other file is never replaced).
    #[arg(long)]
    force: bool,

    /// Number of images (at most 10,000; the sheet at most 100 million pixels).
    #[arg(long, short = 'n', default_value_t = 12)]
    count: usize,

    /// Images per row.
    #[arg(long, default_value_t = 4)]
    columns: usize,

    /// Only images of this split (train, dev, test).
    #[arg(long)]
    split: Option<Split>,

    /// Pick a random sample with this seed instead of the first images.
    #[arg(long)]
    seed: Option<u64>,

    /// Picture size in each cell, in pixels.
    #[arg(long, default_value_t = 256)]
    thumb: u32,

    /// Caption font size in pixels.
    #[arg(long, default_value_t = 13.0)]
    font_size: f32,
}

/// The images of DATASET with their split, as the pipeline picks from them.
type Offered = (String, Option<PathBuf>, Option<Split>, Vec<String>);

fn offered(args: &Args) -> anyhow::Result<Vec<Offered>> {
    Ok(if Prepared::is_prepared_dir(&args.dataset.dataset) {
        Prepared::load(&args.dataset.dataset)?
            .images
            .into_iter()
            .map(|i| (i.name, i.path, i.split, i.captions))
            .collect()
    } else {
        args.dataset
            .load()?
            .images
            .into_iter()
            .map(|i| (i.name, i.path, i.split, i.captions))
            .collect()
    })
}

/// Runs `show`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&args.count) || !(1..=1_000).contains(&args.columns) {
        bail!("--count must be 1 to 10000 and --columns 1 to 1000");
    }
    autocaption_io::check_output(
        &args.out,
        args.force,
        autocaption_io::Ours::FileMentioning(autocaption_pipeline::SHEET_SOFTWARE),
        &args.dataset.inputs(),
    )?;
    if !(16..=4096).contains(&args.thumb) || !(4.0..=200.0).contains(&args.font_size) {
        bail!("--thumb must be 16 to 4096 pixels and --font-size 4 to 200");
    }
    let (found, total) = pick_for_sheet(offered(&args)?, args.split, args.seed);
    if found.is_empty() {
        bail!(
            "none of the {} images of {} has an image file that could be found; pass --images DIR",
            thousands(total),
            args.dataset.dataset.display()
        );
    }
    let opts = SheetOptions {
        columns: args.columns,
        thumb: args.thumb,
        font_px: args.font_size,
        ..SheetOptions::default()
    };
    let sheet = write_sheet(found, args.count, opts, &args.out)?;
    for (path, why) in &sheet.skipped {
        eprintln!("warning: skipping {}: {why}", path.display());
    }
    if !global.quiet {
        println!(
            "Wrote {} ({}x{} pixels, {} images)",
            args.out.display(),
            sheet.width,
            sheet.height,
            sheet.images
        );
    }
    Ok(())
}
