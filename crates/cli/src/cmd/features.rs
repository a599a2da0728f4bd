//! `autocaption features`.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context};
use autocaption_data::{is_image_name, IMAGE_EXTENSIONS};
use autocaption_features::FeatureStore;
use autocaption_io::Progress;
use autocaption_vision::{batch, load_rgb, load_weights, Layout, Preset, ResNet, ResNetConfig};
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

    /// Encoder weights: a ResNet-50 file — Keras HDF5 (the seed's
    /// resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5; Keras preprocessing) or a
    /// torchvision / timm state dict saved as safetensors (torchvision preprocessing), told
    /// apart by content — or `random` for seeded random weights (with --seed).
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
    /// What resume compares: `sha256:…` of the weights file, or the random seed.
    encoder_id: String,
    layout: Layout,
    preprocessing: &'static str,
    feature_dim: usize,
}

const SAVE_EVERY: usize = 256;

pub(crate) fn list_images(dir: &Path) -> anyhow::Result<Vec<String>> {
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

/// An image encoder and what identifies it.
pub(crate) struct Encoder {
    pub net: ResNet,
    /// For people: the file's absolute path, or `random (seed N)`.
    pub description: String,
    /// For resume checks: `sha256:<hex>` of the weights file (so a moved file still
    /// matches), or `random (seed N)`.
    pub id: String,
}

/// The encoder `--weights` names.
pub(crate) fn load_encoder(weights: Option<&str>, seed: u64) -> anyhow::Result<Encoder> {
    let Some(weights) = weights else {
        bail!(
            "no encoder weights given: pass --weights FILE with a pretrained ResNet-50 (Keras' \
             resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, or a torchvision / timm \
             state dict as safetensors; see README, \"Encoder weights\"), or --weights random \
             --seed N for seeded random weights"
        );
    };
    if weights == "random" {
        let net = ResNet::random(ResNetConfig::resnet50(Layout::Keras), seed);
        let description = format!("random (seed {seed})");
        return Ok(Encoder {
            net,
            id: description.clone(),
            description,
        });
    }
    use sha2::{Digest, Sha256};
    let path = PathBuf::from(weights);
    let bytes = autocaption_io::read(&path)?;
    let id = format!("sha256:{:x}", Sha256::digest(&bytes));
    let net = load_weights(bytes, &path)?;
    let shown = std::path::absolute(&path).unwrap_or(path);
    Ok(Encoder {
        net,
        description: shown.display().to_string(),
        id,
    })
}

/// Runs `features`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let Encoder {
        net,
        description: weights,
        id: encoder_id,
    } = load_encoder(args.weights.as_deref(), args.seed)?;
    let preset = Preset::for_layout(net.config.layout);
    let dim = net.config.features();
    let names = list_images(&args.images)?;
    if names.is_empty() {
        bail!(
            "{}: no images found (looked for {})",
            args.images.display(),
            IMAGE_EXTENSIONS.join(", ")
        );
    }

    // Resume: keep what an earlier run with the same output already extracted, if the
    // same encoder made it (its report says which).
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| args.out.with_extension("report.json"));
    let (mut done_names, mut done_data) = (Vec::new(), Vec::new());
    if args.out.exists() {
        if let Some(earlier) = std::fs::read(&report_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            let id = earlier["encoder_id"].as_str().unwrap_or_default();
            if id != encoder_id {
                bail!(
                    "{}: made with other encoder weights ({}, per {}) than this run's ({weights}); \
                     choose another --out to keep features from different encoders apart",
                    args.out.display(),
                    earlier["weights"].as_str().unwrap_or("unknown"),
                    report_path.display()
                );
            }
        }
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
                        .map(|img| preset.apply(&img))
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
        let feats = rayon::scope(|_| net.forward(&batch(&inputs, preset.size())));
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
    let report = Report {
        images_found: names.len(),
        already_done,
        extracted,
        failed,
        weights,
        encoder_id,
        layout: net.config.layout,
        preprocessing: preset.describe(),
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
