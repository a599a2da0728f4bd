//! Generating the whole set and writing it in the Flickr8k layout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use autocaption_io::{AtomicDir, IoError, Progress};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::{captions, render, Scene};

/// Why a synthetic set could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Creating or writing a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// An image could not be encoded.
    #[error("{path}: cannot encode image: {error}")]
    Encode {
        /// The image file.
        path: PathBuf,
        /// The encoder's error.
        error: image::ImageError,
    },
    /// The options cannot produce a usable set.
    #[error("{0}")]
    Invalid(String),
}

/// What to generate.
#[derive(Debug, Clone, Serialize)]
pub struct SynthOptions {
    /// Number of images.
    pub count: usize,
    /// Everything is derived from this.
    pub seed: u64,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Share of images in the dev split.
    pub dev_fraction: f64,
    /// Share of images in the test split.
    pub test_fraction: f64,
    /// Write JPEG instead of PNG.
    pub jpeg: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            count: 1000,
            seed: 0,
            width: 224,
            height: 224,
            dev_fraction: 0.1,
            test_fraction: 0.1,
            jpeg: false,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// The output directory.
    pub dir: PathBuf,
    /// The caption file inside it.
    pub token_file: PathBuf,
    /// Images in train, dev and test.
    pub split_counts: [usize; 3],
    /// Captions written.
    pub captions: usize,
}

#[derive(Serialize)]
struct SceneRecord<'a> {
    image: &'a str,
    split: &'a str,
    #[serde(flatten)]
    scene: &'a Scene,
}

#[derive(Serialize)]
struct Provenance<'a> {
    generator: &'static str,
    autocaption_version: &'static str,
    options: &'a SynthOptions,
}

/// The scene and captions of image `index`: a pure function of the seed and the index, so
/// the set is the same whatever the thread count.
fn make(opts: &SynthOptions, index: usize) -> (Scene, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(index as u64);
    let scene = Scene::random(&mut rng);
    let caps = captions(&scene, &mut rng);
    (scene, caps)
}

fn split_of(i: usize, train: usize, dev: usize) -> &'static str {
    if i < train {
        "train"
    } else if i < train + dev {
        "dev"
    } else {
        "test"
    }
}

/// Generates the set into `out` (atomically: it appears complete or not at all).
pub fn generate(
    out: &Path,
    opts: &SynthOptions,
    replace: bool,
    progress: &dyn Progress,
) -> Result<SynthSummary, SynthError> {
    if opts.count == 0 || opts.count > 1_000_000 {
        return Err(SynthError::Invalid(format!(
            "--count {}: expected 1 to 1000000 images",
            opts.count
        )));
    }
    if !(16..=4096).contains(&opts.width) || !(16..=4096).contains(&opts.height) {
        return Err(SynthError::Invalid(format!(
            "image size {}x{} is out of range (16 to 4096 pixels a side)",
            opts.width, opts.height
        )));
    }
    let fractions_ok = |f: f64| (0.0..1.0).contains(&f);
    if !fractions_ok(opts.dev_fraction)
        || !fractions_ok(opts.test_fraction)
        || opts.dev_fraction + opts.test_fraction >= 1.0
    {
        return Err(SynthError::Invalid(
            "dev and test fractions must be in [0, 1) and leave room for training".into(),
        ));
    }
    let n_dev = (opts.count as f64 * opts.dev_fraction).round() as usize;
    let n_test = (opts.count as f64 * opts.test_fraction).round() as usize;
    let n_train = opts.count.saturating_sub(n_dev + n_test);
    if n_train == 0 {
        return Err(SynthError::Invalid(format!(
            "{} images leave none for training; ask for more",
            opts.count
        )));
    }

    let dir = AtomicDir::new(out, replace, "synth.json", &[])?;
    let images = dir.path().join("images");
    std::fs::create_dir(&images).map_err(|error| IoError::Io {
        path: images.clone(),
        error,
    })?;
    let ext = if opts.jpeg { "jpg" } else { "png" };
    let width = opts.count.to_string().len().max(5);

    progress.start("rendering", opts.count as u64);
    let made: Vec<(String, Scene, Vec<String>)> = (0..opts.count)
        .into_par_iter()
        .map(|i| {
            let name = format!("synth_{i:0width$}.{ext}");
            let (scene, caps) = make(opts, i);
            let img = render(&scene, opts.width, opts.height);
            let path = images.join(&name);
            let fmt = if opts.jpeg {
                image::ImageFormat::Jpeg
            } else {
                image::ImageFormat::Png
            };
            img.save_with_format(&path, fmt)
                .map_err(|error| SynthError::Encode { path, error })?;
            progress.advance(1);
            Ok((name, scene, caps))
        })
        .collect::<Result<_, SynthError>>()?;
    progress.finish();

    let mut tokens = String::new();
    let mut scenes = String::new();
    let mut lists = [String::new(), String::new(), String::new()];
    for (i, (name, scene, caps)) in made.iter().enumerate() {
        for (k, c) in caps.iter().enumerate() {
            let _ = writeln!(tokens, "{name}#{k}\t{c}");
        }
        let split = split_of(i, n_train, n_dev);
        let slot = ["train", "dev", "test"]
            .iter()
            .position(|s| *s == split)
            .unwrap_or(0);
        let _ = writeln!(lists[slot], "{name}");
        let record = SceneRecord {
            image: name,
            split,
            scene,
        };
        scenes.push_str(&serde_json::to_string(&record).expect("a scene serialises"));
        scenes.push('\n');
    }
    let write = |name: &str, text: &str| -> Result<(), SynthError> {
        let p = dir.path().join(name);
        std::fs::write(&p, text).map_err(|error| IoError::Io { path: p, error })?;
        Ok(())
    };
    write("Flickr8k.token.txt", &tokens)?;
    write("Flickr_8k.trainImages.txt", &lists[0])?;
    write("Flickr_8k.devImages.txt", &lists[1])?;
    write("Flickr_8k.testImages.txt", &lists[2])?;
    write("scenes.jsonl", &scenes)?;
    let provenance = Provenance {
        generator: "autocaption synth",
        autocaption_version: env!("CARGO_PKG_VERSION"),
        options: opts,
    };
    write(
        "synth.json",
        &(serde_json::to_string_pretty(&provenance).expect("options serialise") + "\n"),
    )?;
    let dir = dir.commit()?;
    Ok(SynthSummary {
        token_file: dir.join("Flickr8k.token.txt"),
        dir,
        split_counts: [n_train, n_dev, n_test],
        captions: made.iter().map(|m| m.2.len()).sum(),
    })
}
