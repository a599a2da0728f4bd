//! `autocaption train`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use autocaption_data::{Prepared, Split};
use autocaption_features::FeatureStore;
use autocaption_model::{MergeConfig, MergeModel};
use autocaption_nn::{Adam, AdamConfig};
use autocaption_tensor::{bf16_is_faster, Precision};
use autocaption_train::{train, CaptionSet, Checkpoint, Event, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::progress::Bar;
use crate::report::thousands;
use crate::Global;

/// Train the merge caption model on a prepared dataset and its image features.
///
/// Each caption is one training sequence with the loss at every word (the seed's prefix
/// samples, done in one pass). Validation loss and accuracy are measured on the dev split
/// after every epoch; the best weights are kept; training stops early when validation has not
/// improved for --patience epochs. MODEL_DIR receives config.json, vocab.json,
/// weights.safetensors, history.json, training.png and checkpoint.safetensors; a killed run
/// continues exactly where it stopped with --resume.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Prepared dataset directory (from `autocaption prepare`).
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,

    /// Image features (safetensors [N, D] with image names, from `autocaption features`).
    #[arg(long, required_unless_present = "resume")]
    features: Option<PathBuf>,

    /// Model directory to write.
    #[arg(long, short)]
    out: PathBuf,

    /// Continue the run in --out from its last checkpoint, with its saved settings.
    #[arg(long, conflicts_with = "force")]
    resume: bool,

    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,

    /// Most epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,

    /// Captions per batch.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,

    /// Stop after this many epochs without a better validation loss (0: never).
    #[arg(long, default_value_t = 3)]
    patience: usize,

    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f32,

    /// Write a checkpoint every N batches within an epoch (0: only at epoch ends).
    #[arg(long, default_value_t = 200, value_name = "N")]
    checkpoint_every: usize,

    /// Arithmetic of the matrix products: bf16 operands with f32 accumulation and f32
    /// weights (mixed precision), or plain f32. `auto` picks bf16 where it is the faster
    /// (CPUs whose AVX512_BF16 dot product outruns f32 FMA: AMD Zen 4 and later, about 1.4x)
    /// and f32 elsewhere (Intel Xeons with AVX512_BF16 included: slower there); the choice
    /// is saved in config.json.
    /// Validation always runs in f32.
    #[arg(long, default_value = "auto", value_parser = ["auto", "f32", "bf16"])]
    precision: String,

    /// JSON file overriding layer sizes of the seed's model, e.g.
    /// {"text_lstm": 128, "decoder_lstm": 256, "dropout": 0.3}.
    #[arg(long, value_name = "FILE")]
    model_config: Option<PathBuf>,

    /// Feed the image features to the model as they are. By default each feature dimension
    /// is standardised (zero mean, unit variance over the training images) before the model
    /// sees it, and that map is folded into the saved image Dense, so the saved model takes
    /// raw features like any other. Features of very different scales (e.g. from an
    /// encoder with random weights) train far better standardised.
    #[arg(long)]
    raw_features: bool,
}

impl Args {
    /// Settings for another command's use (`demo`): a fresh run into `out`.
    pub(crate) fn new(
        data: PathBuf,
        features: PathBuf,
        out: PathBuf,
        epochs: usize,
        seed: u64,
        model_config: Option<PathBuf>,
    ) -> Self {
        Self {
            data: Some(data),
            features: Some(features),
            out,
            resume: false,
            force: true,
            epochs,
            batch_size: 64,
            patience: 3,
            seed,
            lr: 1e-3,
            checkpoint_every: 0,
            precision: "auto".into(),
            model_config,
            raw_features: false,
        }
    }
}

/// `config.json` of a model directory: everything that defines the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The autocaption version that trained it.
    pub autocaption_version: String,
    /// Layer sizes.
    pub model: MergeConfig,
    /// Training settings.
    pub training: TrainConfig,
    /// The prepared dataset.
    pub data: PathBuf,
    /// The features file.
    pub features: PathBuf,
    /// Training and validation captions and images.
    pub counts: Counts,
}

/// Sizes of the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Training captions.
    pub train_captions: usize,
    /// Training images.
    pub train_images: usize,
    /// Validation captions.
    pub dev_captions: usize,
    /// Validation images.
    pub dev_images: usize,
}

fn model_config(args: &Args, vocab: usize, dim: usize) -> anyhow::Result<MergeConfig> {
    let mut cfg = MergeConfig::seed(vocab);
    cfg.feature_dim = dim;
    if let Some(path) = &args.model_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let overrides: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let mut merged = serde_json::to_value(&cfg)?;
        let Some(obj) = overrides.as_object() else {
            bail!("{}: expected a JSON object of layer sizes", path.display());
        };
        for (k, v) in obj {
            if matches!(k.as_str(), "vocab_size" | "feature_dim") {
                bail!(
                    "{}: {k} comes from the data and cannot be set",
                    path.display()
                );
            }
            merged[k] = v.clone();
        }
        cfg = serde_json::from_value(merged)
            .with_context(|| format!("{}: invalid model configuration", path.display()))?;
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        bail!("dropout must be in [0, 1), got {}", cfg.dropout);
    }
    Ok(cfg)
}

fn read_config(dir: &Path) -> anyhow::Result<RunConfig> {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("cannot resume: {} is missing", p.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a model configuration", p.display()))
}

fn run_id(cfg: &RunConfig) -> String {
    serde_json::to_string(&(&cfg.model, &cfg.training, &cfg.counts)).expect("serialises")
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Runs `train`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let (run_cfg, prepared, store) = if args.resume {
        let cfg = read_config(&args.out)?;
        for (given, saved, what) in [
            (&args.data, &cfg.data, "--data"),
            (&args.features, &cfg.features, "--features"),
        ] {
            if let Some(g) = given {
                if absolute(g) != *saved {
                    bail!(
                        "{what} {} differs from the run's {}; resume with the same data",
                        g.display(),
                        saved.display()
                    );
                }
            }
        }
        let prepared = Prepared::load(&cfg.data)?;
        let store = FeatureStore::load(&cfg.features)?;
        (cfg, prepared, store)
    } else {
        if args.out.exists() {
            if !args.force {
                bail!(
                    "{} already exists (pass --force to replace it, or --resume to continue it)",
                    args.out.display()
                );
            }
            std::fs::remove_dir_all(&args.out)
                .with_context(|| format!("cannot remove {}", args.out.display()))?;
        }
        if args.epochs == 0 || args.batch_size == 0 {
            bail!("--epochs and --batch-size must be at least 1");
        }
        if !(args.lr > 0.0 && args.lr.is_finite()) {
            bail!("--lr must be a positive number");
        }
        let (data, features) = (
            args.data.clone().expect("clap requires it"),
            args.features.clone().expect("clap requires it"),
        );
        let prepared = Prepared::load(&data)?;
        let store = FeatureStore::load(&features)?;
        let model = model_config(&args, prepared.tokenizer.vocab.len(), store.dim())?;
        let training = TrainConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            patience: args.patience,
            seed: args.seed,
            adam: AdamConfig {
                lr: args.lr,
                ..AdamConfig::default()
            },
            checkpoint_every: args.checkpoint_every,
            precision: match args.precision.as_str() {
                "f32" => Precision::F32,
                "bf16" => Precision::Bf16,
                _ if bf16_is_faster() => Precision::Bf16,
                _ => Precision::F32,
            },
            standardize_features: !args.raw_features,
        };
        let counts = Counts {
            train_captions: 0,
            train_images: 0,
            dev_captions: 0,
            dev_images: 0,
        };
        let cfg = RunConfig {
            autocaption_version: env!("CARGO_PKG_VERSION").into(),
            model,
            training,
            data: absolute(&data),
            features: absolute(&features),
            counts,
        };
        (cfg, prepared, store)
    };
    let train_set = CaptionSet::from_prepared(&prepared, Split::Train, &store)?;
    let dev_set = CaptionSet::from_prepared(&prepared, Split::Dev, &store)?;
    let counts = Counts {
        train_captions: train_set.captions.len(),
        train_images: train_set.images,
        dev_captions: dev_set.captions.len(),
        dev_images: dev_set.images,
    };
    let mut run_cfg = run_cfg;
    if args.resume && run_cfg.counts != counts {
        bail!(
            "the data in {} changed since the run started; start a new run",
            run_cfg.data.display()
        );
    }
    run_cfg.counts = counts;

    let mut model = MergeModel::new(run_cfg.model.clone(), run_cfg.training.seed);
    let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
    let mut adam = Adam::new(run_cfg.training.adam, &sizes);
    let state = if args.resume {
        let path = args.out.join("checkpoint.safetensors");
        let state = Checkpoint::load(&path, &mut model, &mut adam)?;
        if state.run != run_id(&run_cfg) {
            bail!("{}: the checkpoint belongs to another run", path.display());
        }
        state
    } else {
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        let config = serde_json::to_string_pretty(&run_cfg)? + "\n";
        autocaption_io::write_atomic(&args.out.join("config.json"), config.as_bytes())?;
        autocaption_io::write_atomic(
            &args.out.join("vocab.json"),
            prepared.tokenizer.to_json().as_bytes(),
        )?;
        Checkpoint::start(run_id(&run_cfg))
    };

    let say = !global.quiet;
    if say {
        let c = &run_cfg.counts;
        println!(
            "Training {} parameters ({} products) on {} captions ({} images); validating on {} captions ({} images)",
            thousands(model.parameter_count()),
            match run_cfg.training.precision {
                Precision::F32 => "f32",
                Precision::Bf16 => "bf16",
            },
            thousands(c.train_captions),
            thousands(c.train_images),
            thousands(c.dev_captions),
            thousands(c.dev_images)
        );
        if args.resume {
            println!(
                "Resuming after epoch {}, batch {}",
                state.epoch, state.next_batch
            );
        }
        println!(
            "{:>5}  {:>10} {:>9}  {:>10} {:>9}  {:>10}",
            "epoch", "loss", "accuracy", "val loss", "val acc", "captions/s"
        );
    }
    let bar = Bar::new(global.quiet);
    let outcome = train(
        &mut model,
        &mut adam,
        &run_cfg.training,
        &train_set,
        &dev_set,
        &args.out,
        state,
        &bar,
        &mut |e| {
            if !say {
                return;
            }
            match e {
                Event::Epoch {
                    record: r,
                    improved,
                    captions_per_second,
                } => println!(
                    "{:>5}  {:>10.4} {:>9.4}  {:>10.4} {:>9.4}  {:>10.0}{}",
                    r.epoch,
                    r.train_loss,
                    r.train_accuracy,
                    r.val_loss,
                    r.val_accuracy,
                    captions_per_second,
                    if improved { "  *" } else { "" }
                ),
                Event::EarlyStop { best_epoch } => {
                    println!("Early stop: no better validation loss since epoch {best_epoch}")
                }
            }
        },
    )?;
    if say {
        let best = outcome.checkpoint.best_val_loss.unwrap_or(f64::NAN);
        println!(
            "Done. Best validation loss {best:.4}; model in {} (weights.safetensors, history.json, training.png)",
            args.out.display()
        );
    }
    Ok(())
}
