//! `autocaption caption`.

use std::path::{Path, PathBuf};

use anyhow::bail;
use autocaption_pipeline::{
    caption_collection, expand_photos, Caption, CaptionOptions, Captioner, CollectionEvent,
    CollectionSettings, EncoderSource, FeatureStore, PhotoResult,
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

    /// Write the captions to this JSON Lines record (one object a photo: image, caption,
    /// score, alternatives; in the order of the photos' paths) instead of printing them. A
    /// part of it is saved every --save-every photos, so a rerun with the same --out resumes
    /// where a killed run stopped; `autocaption merge` joins the records of --shard runs.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "features")]
    out: Option<PathBuf>,

    /// Also write `image,caption,score` as CSV.
    #[arg(long, value_name = "FILE.csv", conflicts_with = "features")]
    csv: Option<PathBuf>,

    /// Also write an HTML gallery: each photo with its caption as alt text and visible text,
    /// its score and the other beams.
    #[arg(long, value_name = "FILE.html", conflicts_with = "features")]
    html: Option<PathBuf>,

    /// Write each caption into the photo's XMP sidecar (dc:description, and its content
    /// words as dc:subject keywords), merged into the sidecar that is there: every other
    /// field is kept, a description a person wrote stays, and a rerun replaces only what an
    /// earlier run wrote. The photo itself is never touched.
    #[arg(long, conflicts_with = "features")]
    xmp: bool,

    /// Sidecar names: ext (photo.jpg.xmp: darktable, digiKam) or base (photo.xmp: Lightroom,
    /// Capture One, exiftool).
    #[arg(long, default_value = "ext", value_name = "ext|base", requires = "xmp")]
    xmp_naming: autocaption_pipeline::xmp::SidecarNaming,

    /// Only shard I of N (0 ≤ I < N) of the photos: those whose file name hashes to I.
    #[arg(long, value_name = "I/N", conflicts_with = "features")]
    shard: Option<autocaption_pipeline::Shard>,

    /// Photos a chunk: captions are made and saved a chunk at a time (memory stays flat).
    #[arg(long, default_value_t = 256, value_name = "N")]
    save_every: usize,
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
    if args.out.is_some()
        || args.csv.is_some()
        || args.html.is_some()
        || args.xmp
        || args.shard.is_some()
    {
        return collection(&args, opts, &bar, global);
    }
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

/// Captions into files (record, CSV, gallery, sidecars), resumable and sharded.
fn collection(
    args: &Args,
    options: CaptionOptions,
    bar: &Bar,
    global: Global,
) -> anyhow::Result<()> {
    if args.json {
        bail!("--json prints captions; with --out, --csv, --html or --xmp they go to files");
    }
    let settings = CollectionSettings {
        photos: expand_photos(&args.photos)?,
        shard: args.shard,
        out: args.out.clone(),
        csv: args.csv.clone(),
        html: args.html.clone(),
        xmp: args.xmp.then_some(args.xmp_naming),
        options,
        save_every: args.save_every,
    };
    settings.validate()?;
    let weights = args
        .weights
        .as_deref()
        .map(|w| EncoderSource::parse(w, args.seed));
    let captioner = Captioner::load(&args.model, weights.as_ref())?;
    let started = std::time::Instant::now();
    let report = caption_collection(&captioner, &settings, bar, &mut |e| {
        if let CollectionEvent::Skipped(f) = e {
            eprintln!("warning: skipping {}", f.error);
        }
    })?;
    if report.captioned == 0 && report.already_done == 0 && report.photos > 0 {
        bail!("none of the {} photo(s) could be captioned", report.photos);
    }
    if !global.quiet {
        let secs = started.elapsed().as_secs_f64();
        let mut wrote: Vec<String> = [&args.out, &args.csv, &args.html]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        if report.sidecars > 0 {
            wrote.push(format!("{} XMP sidecars", report.sidecars));
        }
        eprintln!(
            "Captioned {} photos ({} from an earlier run, {} unreadable) in {secs:.1} s ({:.1} photos/s){}; wrote {}",
            report.captioned,
            report.already_done,
            report.failed.len(),
            report.captioned as f64 / secs.max(1e-9),
            args.shard
                .map(|s| format!(", shard {}/{} of {} given", s.index, s.count, settings.photos.len()))
                .unwrap_or_default(),
            wrote.join(", ")
        );
    }
    Ok(())
}
