//! `autocaption features`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use autocaption_pipeline::summary::thousands;
use autocaption_pipeline::{extract, Encoder, EncoderSource, ExtractEvent, ExtractSettings};

use crate::progress::Bar;
use crate::Global;

/// Extract image features for every image in a folder, into a safetensors file of `[N, D]`
/// with the image names beside them and the encoder's identity (kind, weights SHA-256,
/// preprocessing) in its metadata: what `train` records in the model, and `caption` checks.
///
/// Images are decoded on one thread while the network runs on the others. Every
/// --save-every images are saved as a part file beside the output (OUT.parts/), so a save
/// costs the same at the end of a long run as at its start; at the end the parts are merged
/// into OUT and removed. A rerun with the same --out skips the images already done (in OUT
/// or its parts), so an interrupted run loses little; features of another encoder are
/// refused. An unreadable or corrupt image is named in a warning and in the JSON report, and
/// skipped; the run goes on.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Folder of images (jpg, png, …; not searched recursively).
    #[arg(long)]
    images: PathBuf,

    /// Encoder weights: a ResNet-50 file — Keras HDF5 (the seed's
    /// resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5; Keras preprocessing) or a
    /// torchvision / timm state dict saved as safetensors (torchvision preprocessing) — or a
    /// concept CNN from `autocaption concepts`, told apart by content; or `random` for seeded
    /// random ResNet-50 weights (with --seed).
    #[arg(long)]
    weights: Option<String>,

    /// Seed for `--weights random`.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Output features file.
    #[arg(long, short)]
    out: PathBuf,

    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,

    /// Images between two saves of the work done so far.
    #[arg(long, default_value_t = 256, value_name = "N")]
    save_every: usize,

    /// Only shard I of N (0 ≤ I < N): the images whose file name hashes to I, so that N
    /// machines share a folder; `autocaption merge` joins their outputs into exactly the file
    /// one run writes.
    #[arg(long, value_name = "I/N")]
    shard: Option<autocaption_pipeline::Shard>,

    /// JSON report of what was done and what failed (with the time of every save); default:
    /// OUT with `.report.json`.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// Runs `features`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = ExtractSettings {
        images: args.images.clone(),
        out: args.out.clone(),
        batch_size: args.batch_size,
        save_every: args.save_every,
        shard: args.shard,
    };
    settings.validate()?;
    let Some(weights) = args.weights.as_deref() else {
        bail!(
            "no encoder weights given: pass --weights FILE with a pretrained ResNet-50 (Keras' \
             resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, or a torchvision / timm \
             state dict as safetensors; see README, \"Encoder weights\"), or --weights random \
             --seed N for seeded random weights"
        );
    };
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| args.out.with_extension("report.json"));
    let weights_file = std::path::Path::new(weights);
    for out in [&args.out, &report_path] {
        autocaption_io::refuse_input(out, &[&args.images, weights_file])?;
    }
    if report_path == args.out {
        bail!(
            "--report and --out are the same file ({})",
            args.out.display()
        );
    }
    let encoder = Encoder::load(&EncoderSource::parse(weights, args.seed))?;
    let bar = Bar::new(global.quiet);
    let report = extract(&encoder, &settings, &bar, &mut |e| {
        if let ExtractEvent::Skipped(f) = e {
            eprintln!("warning: skipping {}", f.error);
        }
    })?;
    autocaption_io::write_atomic(
        &report_path,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    if !global.quiet {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "Wrote {} ({} images × {}: {} new, {} from an earlier run) in {secs:.1} s ({:.1} images/s); report in {}",
            args.out.display(),
            thousands(report.rows),
            encoder.dim(),
            thousands(report.extracted),
            thousands(report.already_done),
            report.extracted as f64 / secs.max(1e-9),
            report_path.display()
        );
    }
    if !report.failed.is_empty() {
        eprintln!(
            "warning: {} image(s) could not be read; see {}",
            report.failed.len(),
            report_path.display()
        );
    }
    Ok(())
}
