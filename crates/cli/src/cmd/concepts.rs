//! `autocaption concepts`.

use std::path::PathBuf;
use std::time::Instant;

use autocaption_data::Prepared;
use autocaption_pipeline::{default_weights_path, train_concepts, ConceptSettings};

use crate::progress::Bar;
use crate::Global;

/// Image features without pretrained weights: train a small CNN on the training images of a
/// prepared dataset to predict which words their captions use (visual concept detectors),
/// then write features of every image for `train`.
///
/// For collections where no pretrained encoder can be had. The network is four 3×3
/// convolutions on images shrunk to --size pixels; the features are its last map pooled to a
/// 4×4 grid (for 64×64 inputs: 1,024 values), which keeps where things are as well as what.
/// Its weights are saved beside the features (--encoder-out), and the features record them,
/// so a model trained on them can caption new photos (`train` keeps a copy in the model).
/// Each epoch prints the loss on the training images and on the dev split. The same data and
/// --seed give the same bytes.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Prepared dataset directory (from `autocaption prepare`), with its images found.
    #[arg(long)]
    data: PathBuf,

    /// Features file to write (safetensors, as `autocaption features` writes).
    #[arg(long, short)]
    out: PathBuf,

    /// Where to save the network's weights; default: OUT with `.encoder.safetensors`.
    #[arg(long, value_name = "FILE")]
    encoder_out: Option<PathBuf>,

    /// Replace --out and --encoder-out if they are earlier outputs (safetensors files).
    #[arg(long)]
    force: bool,

    /// Passes over the training images.
    #[arg(long, default_value_t = 20)]
    epochs: usize,

    /// Input side in pixels (a multiple of 16).
    #[arg(long, default_value_t = 64)]
    size: usize,

    /// Seed of the initial weights and of the order of the images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `concepts`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let settings = ConceptSettings {
        epochs: args.epochs,
        size: args.size,
        seed: args.seed,
    };
    settings.validate()?;
    let weights_out = args
        .encoder_out
        .clone()
        .unwrap_or_else(|| default_weights_path(&args.out));
    if weights_out == args.out {
        anyhow::bail!(
            "--encoder-out and --out are the same file ({})",
            args.out.display()
        );
    }
    for out in [&args.out, &weights_out] {
        autocaption_io::check_output(
            out,
            args.force,
            autocaption_io::Ours::FileMentioning("__metadata__"),
            &[&args.data],
        )?;
    }
    let started = Instant::now();
    let prepared = Prepared::load(&args.data)?;
    let bar = Bar::new(global.quiet);
    let outcome = train_concepts(
        &prepared,
        &args.data,
        &settings,
        &weights_out,
        &bar,
        &mut |e, ep| {
            if !global.quiet {
                let val = ep
                    .val_loss
                    .map_or(String::new(), |v| format!(", dev {v:.4}"));
                println!("epoch {:>3}: loss {:.4}{val}", e + 1, ep.train_loss);
            }
        },
    )?;
    outcome.features.save(&args.out)?;
    if !global.quiet {
        println!(
            "{} images, {}-d features, in {}; the network in {} ({:.1} s)",
            outcome.features.len(),
            outcome.features.dim(),
            args.out.display(),
            weights_out.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
