//! `autocaption concepts`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use autocaption_concepts::{
    pixels, train, word_targets, ConceptConfig, ConceptNet, Epoch, Examples, TrainOptions,
};
use autocaption_data::{Prepared, Split};
use autocaption_features::FeatureStore;
use autocaption_io::Progress;

use crate::progress::Bar;
use crate::Global;

/// Image features without pretrained weights: train a small CNN on the training images of a
/// prepared dataset to predict which words their captions use (visual concept detectors),
/// then write features of every image for `train`.
///
/// For collections where no pretrained encoder can be had. The network is four 3×3
/// convolutions on images shrunk to --size pixels; the features are its last map pooled to a
/// 4×4 grid (for 64×64 inputs: 1,024 values), which keeps where things are as well as what.
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

impl Args {
    /// The arguments the demo passes.
    pub fn new(data: PathBuf, out: PathBuf, epochs: usize, seed: u64) -> Self {
        Self {
            data,
            out,
            epochs,
            size: 64,
            seed,
        }
    }
}

/// Runs `concepts`; returns the epochs' losses.
pub fn run(args: Args, global: Global) -> anyhow::Result<Vec<Epoch>> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if args.size < 16 || !args.size.is_multiple_of(16) {
        bail!("--size must be a multiple of 16, got {}", args.size);
    }
    let started = Instant::now();
    let prepared = Prepared::load(&args.data)?;
    let words = prepared.tokenizer.vocab.len();
    let skip: Vec<u32> = [0]
        .into_iter()
        .chain(prepared.tokenizer.start_index())
        .chain(prepared.tokenizer.end_index())
        .collect();
    let config = ConceptConfig {
        size: args.size,
        ..ConceptConfig::small(words)
    };
    let px = config.size * config.size * 3;
    let mut names = Vec::new();
    let mut images = Vec::new();
    let mut sets: [(Vec<f32>, Vec<f32>, usize); 2] = Default::default();
    let bar = Bar::new(global.quiet);
    bar.start("images", prepared.images.len() as u64);
    for im in &prepared.images {
        bar.advance(1);
        let Some(path) = &im.path else { continue };
        let img = autocaption_vision::load_rgb(path)
            .with_context(|| format!("image {} of {}", im.name, args.data.display()))?;
        let x = pixels(&img, config.size as u32);
        let set = match im.split {
            Some(Split::Train) => Some(0),
            Some(Split::Dev) => Some(1),
            _ => None,
        };
        if let Some(s) = set {
            sets[s].0.extend_from_slice(&x);
            sets[s].1.extend(word_targets(&im.tokens, words, &skip));
            sets[s].2 += 1;
        }
        names.push(im.name.clone());
        images.extend(x);
    }
    bar.finish();
    let [(tx, tt, tn), (vx, vt, vn)] = &sets;
    if *tn == 0 {
        bail!(
            "{}: no training images with files; the concept network learns from them",
            args.data.display()
        );
    }
    let mut net = ConceptNet::new(config.clone(), args.seed);
    let opts = TrainOptions {
        epochs: args.epochs,
        seed: args.seed,
        ..TrainOptions::default()
    };
    let val = (*vn > 0).then_some(Examples {
        images: vx,
        targets: vt,
        n: *vn,
    });
    let train_set = Examples {
        images: tx,
        targets: tt,
        n: *tn,
    };
    bar.start("concept epochs", args.epochs as u64);
    let epochs = train(&mut net, train_set, val, &opts, &mut |e, ep| {
        bar.advance(1);
        if !global.quiet {
            let val = ep
                .val_loss
                .map_or(String::new(), |v| format!(", dev {v:.4}"));
            println!("epoch {:>3}: loss {:.4}{val}", e + 1, ep.train_loss);
        }
    });
    bar.finish();
    let mut data = Vec::with_capacity(names.len() * config.feature_dim());
    for chunk in images.chunks(64 * px) {
        data.extend(net.features(chunk, chunk.len() / px));
    }
    FeatureStore::new(names, config.feature_dim(), data).save(&args.out)?;
    if !global.quiet {
        println!(
            "{} images, {}-d features, in {} ({:.1} s)",
            images.len() / px,
            config.feature_dim(),
            args.out.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(epochs)
}
