//! `autocaption caption`.

use std::path::PathBuf;

use anyhow::bail;
use autocaption_features::FeatureStore;
use autocaption_model::Hypothesis;
use autocaption_vision::{batch, load_rgb, Preset};
use rayon::prelude::*;
use serde::Serialize;

use crate::captioner::{Captioner, DecodeArgs};
use crate::cmd::features::{list_images, load_encoder};
use crate::Global;

/// Caption photos with a trained model: photo → ResNet-50 features → sentence.
///
/// PHOTO may be image files or folders of images. Prints one caption per photo (with several
/// photos, `name<TAB>caption`), or with --json one JSON object per line: image, caption, score
/// (the length-normalised log-probability) and, with --alternatives, the other beams. A photo
/// that cannot be read is named in a warning and the others go on. With --features, captions
/// the rows of a features file (from `autocaption features`) instead of photos.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Photos, or folders of photos.
    #[arg(required_unless_present = "features")]
    photos: Vec<PathBuf>,

    /// Model directory (from `autocaption train`).
    #[arg(long, short)]
    model: PathBuf,

    /// Encoder weights the model's features were made with (Keras HDF5 or torchvision
    /// safetensors), or `random` with --seed.
    #[arg(long, conflicts_with = "features")]
    weights: Option<String>,

    /// Seed of `--weights random`.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Caption the rows of this features file instead of photos (only those named by PHOTO,
    /// if any are given).
    #[arg(long, value_name = "FILE")]
    features: Option<PathBuf>,

    /// Beam width (1: greedy).
    #[arg(long, default_value_t = 3)]
    beam: usize,

    #[command(flatten)]
    decode: DecodeArgs,

    /// One JSON object per line instead of plain text.
    #[arg(long)]
    json: bool,

    /// With --json, also list the other beams with their scores.
    #[arg(long, requires = "json")]
    alternatives: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    image: &'a str,
    caption: String,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    alternatives: Option<Vec<Alternative>>,
}

#[derive(Serialize)]
struct Alternative {
    caption: String,
    score: f64,
}

/// Photos to caption: files as given, folders expanded to their images (sorted).
fn expand(photos: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in photos {
        if p.is_dir() {
            let names = list_images(p)?;
            if names.is_empty() {
                bail!("{}: no images in this folder", p.display());
            }
            out.extend(names.into_iter().map(|n| p.join(n)));
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Runs `caption`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    if args.beam == 0 {
        bail!("--beam must be at least 1 (1: greedy)");
    }
    let opts = args.decode.options(args.beam)?;
    let captioner = Captioner::load(&args.model)?;
    let dim = captioner.feature_dim();
    let (names, features, failed) = match &args.features {
        Some(path) => {
            let store = FeatureStore::load(path)?;
            if store.dim() != dim {
                bail!(
                    "{}: {}-d features, but the model reads {dim}-d",
                    path.display(),
                    store.dim()
                );
            }
            let wanted: Vec<String> = if args.photos.is_empty() {
                store.names().to_vec()
            } else {
                args.photos
                    .iter()
                    .map(|p| {
                        p.file_name()
                            .unwrap_or(p.as_os_str())
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect()
            };
            let mut data = Vec::new();
            let mut failed = 0;
            let mut names = Vec::new();
            for n in wanted {
                match store.get(&n) {
                    Some(row) => {
                        data.extend_from_slice(row);
                        names.push(n);
                    }
                    None => {
                        eprintln!("warning: {n}: not in {}", path.display());
                        failed += 1;
                    }
                }
            }
            (names, data, failed)
        }
        None => encode(&args, dim)?,
    };
    let total = names.len() + failed;
    if names.is_empty() {
        bail!("none of the {total} photo(s) could be captioned");
    }
    let results = captioner.caption(&features, &opts, args.decode.decoder_weights, &mut |_| {})?;
    let several = names.len() > 1;
    for (name, hyps) in names.iter().zip(&results) {
        let best: &Hypothesis = &hyps[0];
        if args.json {
            let line = Line {
                image: name,
                caption: captioner.text(best),
                score: best.score,
                alternatives: args.alternatives.then(|| {
                    hyps[1..]
                        .iter()
                        .map(|h| Alternative {
                            caption: captioner.text(h),
                            score: h.score,
                        })
                        .collect()
                }),
            };
            println!("{}", serde_json::to_string(&line)?);
        } else if several {
            println!("{name}\t{}", captioner.text(best));
        } else {
            println!("{}", captioner.text(best));
        }
    }
    if failed > 0 && !global.quiet {
        eprintln!("warning: {failed} of {total} photo(s) could not be captioned (named above)");
    }
    Ok(())
}

/// Reads and encodes the photos: names, features, and how many could not be read (each
/// named in a warning).
fn encode(args: &Args, dim: usize) -> anyhow::Result<(Vec<String>, Vec<f32>, usize)> {
    let encoder = load_encoder(args.weights.as_deref(), args.seed)?;
    let net = encoder.net;
    if net.config.features() != dim {
        bail!(
            "the encoder gives {}-d features, but the model reads {dim}-d",
            net.config.features()
        );
    }
    let preset = Preset::for_layout(net.config.layout);
    let photos = expand(&args.photos)?;
    let (mut names, mut features, mut failed) = (Vec::new(), Vec::new(), 0);
    for chunk in photos.chunks(8) {
        let decoded: Vec<(String, Result<Vec<f32>, String>)> = chunk
            .par_iter()
            .map(|p| {
                let r = load_rgb(p)
                    .map(|img| preset.apply(&img))
                    .map_err(|e| e.to_string());
                (p.display().to_string(), r)
            })
            .collect();
        let mut inputs = Vec::new();
        for (name, r) in decoded {
            match r {
                Ok(x) => {
                    names.push(name);
                    inputs.push(x);
                }
                Err(e) => {
                    eprintln!("warning: skipping {e}");
                    failed += 1;
                }
            }
        }
        if !inputs.is_empty() {
            features.extend(net.forward(&batch(&inputs, preset.size())));
        }
    }
    Ok((names, features, failed))
}
