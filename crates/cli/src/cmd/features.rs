//! `autocaption features`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context};
use autocaption_data::{is_image_name, IMAGE_EXTENSIONS};
use autocaption_features::FeatureStore;
use autocaption_io::Progress;
use autocaption_vision::{batch, keras_preprocess, load_rgb, Layout, ResNet, ResNetConfig};
use rayon::prelude::*;
use serde::Serialize;

use crate::progress::Bar;
use crate::report::thousands;
use crate::Global;

/// Extract ResNet-50 image features for every image in a folder, into a safetensors file of
/// `[N, 2048]` with the image names beside them (what `train` and `caption` read).
///
/// Images are decoded on one thread while the network runs on the others. A rerun with the
/// same --out skips the images already done, so an interrupted run loses little (progress
/// is saved every few hundred images). An unreadable or corrupt image is named in a warning
/// and in the JSON report, and skipped; the run goes on.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Folder of images (jpg, png, …; not searched recursively).
    #[arg(long)]
    images: PathBuf,

    /// Encoder weights: `random` for seeded random weights (with --seed). Pretrained weight
    /// files (Keras HDF5, torchvision safetensors) are not readable yet in this build.
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

    /// JSON report of what was done and what failed; default: OUT with `.report.json`.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Serialize)]
struct Failure {
    image: String,
    error: String,
}

#[derive(Serialize)]
struct Report {
    images_found: usize,
    already_done: usize,
    extracted: usize,
    failed: Vec<Failure>,
    weights: String,
    preprocessing: &'static str,
    feature_dim: usize,
}

const SAVE_EVERY: usize = 256;

fn list_images(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the image folder {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_image_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Runs `features`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let started = Instant::now();
    let Some(weights) = args.weights.as_deref() else {
        bail!(
            "no encoder weights given: pass --weights random --seed N for seeded random weights \
             (features that still carry colour and layout), or a pretrained ResNet-50 file once \
             the loaders land (see README, \"Encoder weights\")"
        );
    };
    if weights != "random" {
        bail!(
            "{weights}: reading pretrained ResNet-50 weight files (Keras HDF5, torchvision \
             safetensors) is not available in this build yet; use --weights random --seed N"
        );
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let net = ResNet::random(ResNetConfig::resnet50(Layout::Keras), args.seed);
    let dim = net.config.features();
    let names = list_images(&args.images)?;
    if names.is_empty() {
        bail!(
            "{}: no images found (looked for {})",
            args.images.display(),
            IMAGE_EXTENSIONS.join(", ")
        );
    }

    // Resume: keep what an earlier run with the same output already extracted.
    let (mut done_names, mut done_data) = (Vec::new(), Vec::new());
    if args.out.exists() {
        let old = FeatureStore::load(&args.out)?;
        if old.dim() != dim {
            bail!(
                "{}: holds {}-d features, this encoder gives {dim}; choose another --out",
                args.out.display(),
                old.dim()
            );
        }
        for (i, n) in old.names().iter().enumerate() {
            done_names.push(n.clone());
            done_data.extend_from_slice(old.row(i));
        }
    }
    let already: std::collections::HashSet<String> = done_names.iter().cloned().collect();
    let todo: Vec<String> = names
        .iter()
        .filter(|n| !already.contains(*n))
        .cloned()
        .collect();
    let already_done = names.len() - todo.len();

    let bar = Bar::new(global.quiet);
    bar.start("features", todo.len() as u64);
    let mut failed = Vec::new();
    let mut since_save = 0;
    let save = |names: &[String], data: &[f32]| -> anyhow::Result<()> {
        FeatureStore::new(names.to_vec(), dim, data.to_vec()).save(&args.out)?;
        Ok(())
    };
    // Decode (in parallel) on a producer thread while the network runs here.
    let (tx, rx) = mpsc::sync_channel::<Vec<(String, Result<Vec<f32>, String>)>>(2);
    let dir = args.images.clone();
    let chunks: Vec<Vec<String>> = todo
        .chunks(args.batch_size)
        .map(<[String]>::to_vec)
        .collect();
    let producer = std::thread::spawn(move || {
        for chunk in chunks {
            let decoded: Vec<(String, Result<Vec<f32>, String>)> = chunk
                .into_par_iter()
                .map(|name| {
                    let r = load_rgb(&dir.join(&name))
                        .map(|img| keras_preprocess(&img, 224))
                        .map_err(|e| e.to_string());
                    (name, r)
                })
                .collect();
            if tx.send(decoded).is_err() {
                return;
            }
        }
    });
    for decoded in rx {
        let count = decoded.len();
        let mut ok_names = Vec::new();
        let mut inputs = Vec::new();
        for (name, r) in decoded {
            match r {
                Ok(x) => {
                    ok_names.push(name);
                    inputs.push(x);
                }
                Err(error) => {
                    eprintln!("warning: skipping {error}");
                    failed.push(Failure { image: name, error });
                }
            }
        }
        bar.advance(count as u64);
        if inputs.is_empty() {
            continue;
        }
        let feats = rayon::scope(|_| net.forward(&batch(&inputs, 224)));
        since_save += ok_names.len();
        done_names.extend(ok_names);
        done_data.extend_from_slice(&feats);
        if since_save >= SAVE_EVERY {
            save(&done_names, &done_data)?;
            since_save = 0;
        }
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the image decoding thread failed"))?;
    bar.finish();
    save(&done_names, &done_data)?;

    let extracted = todo.len() - failed.len();
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| args.out.with_extension("report.json"));
    let report = Report {
        images_found: names.len(),
        already_done,
        extracted,
        failed,
        weights: format!("random (seed {})", args.seed),
        preprocessing: "keras (load_img 224×224 nearest + resnet50.preprocess_input)",
        feature_dim: dim,
    };
    autocaption_io::write_atomic(
        &report_path,
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    if !global.quiet {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "Wrote {} ({} images × {dim}: {} new, {} from an earlier run) in {secs:.1} s ({:.1} images/s); report in {}",
            args.out.display(),
            thousands(done_names.len()),
            thousands(extracted),
            thousands(already_done),
            extracted as f64 / secs.max(1e-9),
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
