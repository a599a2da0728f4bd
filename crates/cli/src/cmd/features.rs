//! `autocaption features`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use autocaption_pipeline::summary::thousands;
use autocaption_pipeline::{
    calibration_sample, extract, int8_encoder, save_calibration, CalibrationSource, Encoder,
    EncoderSource, ExtractEvent, ExtractSettings, DEFAULT_RANGES, PERCENTILE_RANGES,
};

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

    /// Arithmetic of the encoder: f32, or int8: 8-bit per-channel weights (7-bit on a CPU
    /// without VNNI) and 8-bit activations whose ranges are measured on calibration images
    /// (several times faster than f32; README, "int8 encoder", has the measurements). The
    /// precision and the ranges are recorded in the features file (and in every model
    /// trained on it), so int8 and f32 features are never mixed in one file, and `caption`
    /// of photos runs the encoder the model was trained with. A model trained on f32
    /// features also reads int8 features of the same weights (`evaluate --features`): that
    /// is how to measure what int8 costs. The ranges are also written beside OUT as
    /// OUT.calibration.json, for --calibration.
    #[arg(long, default_value = "f32", value_parser = ["f32", "int8"])]
    precision: String,

    /// With --precision int8: measure the ranges on every image of this folder (a few
    /// dozen typical photos are plenty). Default: 16 images of --images, spread evenly.
    #[arg(long, value_name = "DIR", conflicts_with = "calibration")]
    calibrate: Option<PathBuf>,

    /// With --precision int8: the ranges of an earlier run (its OUT.calibration.json),
    /// which must have been measured on the same weights.
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,

    /// With --precision int8: how a map's range is chosen from its values on the
    /// calibration images: `min-max` (the largest value: nothing is clipped) or
    /// `percentile` (the 99.99th: the rarest large values are clipped, the rest get finer
    /// steps). min-max measured as close or closer on both encoders (README, "int8
    /// encoder").
    #[arg(long, default_value = "min-max", value_parser = ["min-max", "percentile"])]
    calibration_method: String,
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
    let int8 = args.precision == "int8";
    if !int8 && (args.calibrate.is_some() || args.calibration.is_some()) {
        bail!("--calibrate and --calibration go with --precision int8");
    }
    let calibration_out = {
        let mut name = args.out.file_name().unwrap_or_default().to_os_string();
        name.push(".calibration.json");
        args.out.with_file_name(name)
    };
    if int8 {
        let mut inputs = vec![args.images.as_path(), weights_file];
        inputs.extend(args.calibrate.as_deref());
        if args.calibration.as_ref() != Some(&calibration_out) {
            autocaption_io::refuse_input(&calibration_out, &inputs)?;
        }
    }
    let mut encoder = Encoder::load(&EncoderSource::parse(weights, args.seed))?;
    let bar = Bar::new(global.quiet);
    if int8 {
        let source = match (&args.calibrate, &args.calibration) {
            (_, Some(file)) => CalibrationSource::File(file.clone()),
            (Some(dir), None) => CalibrationSource::Images(autocaption_pipeline::expand_photos(
                std::slice::from_ref(dir),
            )?),
            (None, None) => CalibrationSource::Images(calibration_sample(&args.images, 16)?),
        };
        let method = match args.calibration_method.as_str() {
            "percentile" => PERCENTILE_RANGES,
            _ => DEFAULT_RANGES,
        };
        encoder = int8_encoder(&encoder, &source, method, &bar)?;
    }
    let report = extract(&encoder, &settings, &bar, &mut |e| {
        if let ExtractEvent::Skipped(f) = e {
            eprintln!("warning: skipping {}", f.error);
        }
    })?;
    if int8 && args.calibration.as_ref() != Some(&calibration_out) {
        save_calibration(&calibration_out, &encoder)?;
    }
    autocaption_io::write_atomic(
        &report_path,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    if !global.quiet {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "Wrote {} ({} images × {}, {}: {} new, {} from an earlier run) in {secs:.1} s ({:.1} images/s); report in {}",
            args.out.display(),
            thousands(report.rows),
            encoder.dim(),
            encoder.precision(),
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
