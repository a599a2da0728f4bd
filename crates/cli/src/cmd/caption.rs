//! `autocaption caption`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use autocaption_pipeline::{
    expand_photos, Caption, CaptionOptions, Captioner, EncoderSource, FeatureStore, PhotoResult,
};
use serde::Serialize;

use crate::decode_args::DecodeArgs;
use crate::progress::Bar;
use crate::Global;

/// Caption photos with a trained model: photo → image features → sentence.
///
/// The model knows the encoder its features came from (it is recorded in its config.json,
/// with the weights' SHA-256): it is found by itself — seeded random weights, the concept
/// CNN saved in the model directory, or the weights file where training recorded it. Give
/// --weights when the file has moved; weights other than the model's are refused.
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

    /// The encoder weights the model's features were made with (Keras HDF5, torchvision
    /// safetensors or a concept CNN's safetensors), or `random` with --seed; by default the
    /// encoder the model records.
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
    caption: &'a str,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    alternatives: Option<&'a [Caption]>,
}

/// Runs `caption`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let opts = args.decode.options(args.beam)?;
    let bar = Bar::new(global.quiet);
    let (names, results) = match &args.features {
        Some(path) => caption_rows(&args, path, &opts, &bar)?,
        None => {
            let photos = expand_photos(&args.photos)?;
            let weights = args
                .weights
                .as_deref()
                .map(|w| EncoderSource::parse(w, args.seed));
            let captioner = Captioner::load(&args.model, weights.as_ref())?;
            let results = captioner.caption_files(&photos, &opts, &bar)?;
            let names = photos.iter().map(|p| p.display().to_string()).collect();
            (names, results)
        }
    };
    let total = names.len();
    let several = total > 1;
    let mut failed = 0;
    for (name, result) in names.iter().zip(&results) {
        let captions = match result {
            PhotoResult::Captions(c) => c,
            PhotoResult::Unreadable(why) => {
                eprintln!("warning: skipping {why}");
                failed += 1;
                continue;
            }
        };
        let best = &captions[0];
        if args.json {
            let line = Line {
                image: name,
                caption: &best.text,
                score: best.score,
                alternatives: args.alternatives.then(|| &captions[1..]),
            };
            println!("{}", serde_json::to_string(&line)?);
        } else if several {
            println!("{name}\t{}", best.text);
        } else {
            println!("{}", best.text);
        }
    }
    if failed == total {
        bail!("none of the {total} photo(s) could be captioned");
    }
    if failed > 0 && !global.quiet {
        eprintln!("warning: {failed} of {total} photo(s) could not be captioned (named above)");
    }
    Ok(())
}

/// Captions of the rows of a features file: all of them, or those PHOTO names.
fn caption_rows(
    args: &Args,
    path: &Path,
    opts: &CaptionOptions,
    bar: &Bar,
) -> anyhow::Result<(Vec<String>, Vec<PhotoResult>)> {
    let captioner = Captioner::load_for_features(&args.model)?;
    let store = FeatureStore::load(path)?;
    captioner.model().check_features(&store)?;
    let names: Vec<String> = if args.photos.is_empty() {
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
    let present: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| store.get(n).is_some())
        .collect();
    let rows = store.gather(&present)?;
    let mut captions = captioner.caption_features(&rows, opts, bar)?.into_iter();
    let results = names
        .iter()
        .map(|n| match store.get(n) {
            Some(_) => PhotoResult::Captions(captions.next().expect("one result a row")),
            None => PhotoResult::Unreadable(format!("{n}: not in {}", path.display())),
        })
        .collect();
    Ok((names, results))
}
