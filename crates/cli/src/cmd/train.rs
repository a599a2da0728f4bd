//! `autocaption train`.

use std::path::PathBuf;

use anyhow::bail;
use autocaption_data::Prepared;
use autocaption_nn::AdamConfig;
use autocaption_pipeline::summary::thousands;
use autocaption_pipeline::{
    read_overrides, train_new, train_resume, validate_training, FeatureStore, TrainData,
    TrainEvent, TrainOutcome,
};
use autocaption_tensor::{bf16_is_faster, Precision};
use autocaption_train::{Event, LrSchedule, Select, TrainConfig};

use crate::progress::Bar;
use crate::Global;

/// Train the merge caption model on a prepared dataset and its image features.
///
/// Each caption is one training sequence with the loss at every word (the seed's prefix
/// samples, done in one pass). After every epoch the dev split is measured: loss and
/// next-word accuracy, and the CIDEr-D and BLEU-4 of its greedy captions. The weights of the
/// best epoch by --select are kept; training stops early when that has not improved for
/// --patience epochs. --lr-schedule lowers the rate on a plateau or along a cosine. MODEL_DIR receives config.json (which records the encoder
/// the features came from), vocab.json, weights.safetensors, history.json, training.png and
/// checkpoint.safetensors; a killed run continues exactly where it stopped with --resume.
/// Every argument and the data are checked before an existing MODEL_DIR is replaced.
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
    #[arg(long, short, value_name = "MODEL_DIR")]
    out: PathBuf,

    /// Continue the run in --out from its last checkpoint, with its saved settings: the
    /// training flags (--epochs, --lr, --seed, …) are refused with it, since the run's own
    /// are used; --data and --features may point to where the data has moved.
    #[arg(
        long,
        conflicts_with_all = [
            "force", "epochs", "batch_size", "patience", "select", "lr_schedule",
            "lr_patience", "lr_factor", "lr_floor", "warmup", "seed", "lr",
            "checkpoint_every", "precision", "model_config", "raw_features",
        ]
    )]
    resume: bool,

    /// Replace --out if it holds an earlier model (a folder that is not a model directory
    /// is never replaced).
    #[arg(long)]
    force: bool,

    /// Most epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,

    /// Captions per batch.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,

    /// Stop after this many epochs without a better --select measure (0: never).
    #[arg(long, default_value_t = 3)]
    patience: usize,

    /// What picks the weights kept (and what --patience waits for): CIDEr-D or BLEU-4 of
    /// greedy captions of the dev split, or the dev loss.
    #[arg(long, default_value = "cider", value_parser = ["cider", "bleu4", "loss"])]
    select: String,

    /// How the learning rate moves: `constant`; `plateau` (multiply by --lr-factor after
    /// --lr-patience epochs without a better --select measure, down to --lr-floor); `cosine`
    /// (linear warm-up over --warmup epochs, then half a cosine down to --lr-floor at the
    /// last epoch). The rate of every epoch is in history.json.
    #[arg(long, default_value = "constant", value_parser = ["constant", "plateau", "cosine"])]
    lr_schedule: String,

    /// Plateau schedule: epochs without improvement before the rate is cut.
    #[arg(long, default_value_t = 1, value_name = "EPOCHS")]
    lr_patience: usize,

    /// Plateau schedule: what a cut multiplies the rate by.
    #[arg(long, default_value_t = 0.5)]
    lr_factor: f32,

    /// Plateau and cosine schedules: the lowest rate (default: --lr / 20).
    #[arg(long)]
    lr_floor: Option<f32>,

    /// Cosine schedule: epochs of linear warm-up.
    #[arg(long, default_value_t = 1.0, value_name = "EPOCHS")]
    warmup: f32,

    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,

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
    fn training(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            patience: self.patience,
            seed: self.seed,
            adam: AdamConfig {
                lr: self.lr,
                ..AdamConfig::default()
            },
            checkpoint_every: self.checkpoint_every,
            precision: match self.precision.as_str() {
                "f32" => Precision::F32,
                "bf16" => Precision::Bf16,
                _ if bf16_is_faster() => Precision::Bf16,
                _ => Precision::F32,
            },
            standardize_features: !self.raw_features,
            select: match self.select.as_str() {
                "bleu4" => Select::Bleu4,
                "loss" => Select::Loss,
                _ => Select::Cider,
            },
            lr_schedule: {
                let floor = self.lr_floor.unwrap_or(self.lr / 20.0);
                match self.lr_schedule.as_str() {
                    "plateau" => LrSchedule::Plateau {
                        patience: self.lr_patience,
                        factor: self.lr_factor,
                        floor,
                    },
                    "cosine" => LrSchedule::Cosine {
                        warmup_epochs: self.warmup,
                        floor,
                    },
                    _ => LrSchedule::Constant,
                }
            },
        }
    }
}

/// Runs `train`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let say = !global.quiet;
    let bar = Bar::new(global.quiet);
    let mut on_event = |e: TrainEvent| {
        if say {
            print_event(&e);
        }
    };
    let outcome: TrainOutcome = if args.resume {
        train_resume(
            &args.out,
            args.data.as_deref(),
            args.features.as_deref(),
            &bar,
            &mut on_event,
        )?
    } else {
        // Every argument first; then the data; the library replaces --out only after both.
        let training = args.training();
        validate_training(&training)?;
        let overrides = match &args.model_config {
            Some(p) => read_overrides(p)?,
            None => Default::default(),
        };
        let (Some(data), Some(features)) = (&args.data, &args.features) else {
            bail!("--data and --features are needed for a new run");
        };
        let prepared = Prepared::load(data)?;
        let store = FeatureStore::load(features)?;
        train_new(
            TrainData {
                prepared: &prepared,
                prepared_path: data,
                features: &store,
                features_path: features,
                encoder_file: None,
            },
            &args.out,
            args.force,
            &overrides,
            training,
            &bar,
            &mut on_event,
        )?
    };
    if say {
        let kept = match &outcome.best {
            Some(r) => format!(
                "kept epoch {} by {}: dev loss {:.4}{}",
                r.epoch,
                outcome.config.training.select.as_str(),
                r.val_loss,
                match (r.val_cider, r.val_bleu4) {
                    (Some(c), Some(b)) => format!(", CIDEr-D {c:.4}, BLEU-4 {b:.4} (greedy)"),
                    _ => String::new(),
                }
            ),
            None => "no epoch run".into(),
        };
        println!(
            "Done: {kept}; model in {} (weights.safetensors, history.json, training.png)",
            outcome.dir.display()
        );
    }
    Ok(())
}

fn print_event(e: &TrainEvent) {
    match e {
        TrainEvent::Started {
            counts: c,
            parameters,
            precision,
            resumed_at,
        } => {
            println!(
                "Training {} parameters ({} products) on {} captions ({} images); validating on {} captions ({} images)",
                thousands(*parameters),
                match precision {
                    Precision::F32 => "f32",
                    Precision::Bf16 => "bf16",
                },
                thousands(c.train_captions),
                thousands(c.train_images),
                thousands(c.dev_captions),
                thousands(c.dev_images)
            );
            if let Some((epoch, batch)) = resumed_at {
                println!("Resuming after epoch {epoch}, batch {batch}");
            }
            println!(
                "{:>5}  {:>8} {:>8}  {:>8} {:>8} {:>8} {:>8}  {:>9} {:>10} {:>7}",
                "epoch",
                "loss",
                "accuracy",
                "val loss",
                "val acc",
                "CIDEr-D",
                "BLEU-4",
                "rate",
                "captions/s",
                "dev s"
            );
        }
        TrainEvent::Progress(Event::Epoch {
            record: r,
            improved,
            captions_per_second,
            dev_caption_seconds,
        }) => {
            let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
            println!(
                "{:>5}  {:>8.4} {:>8.4}  {:>8.4} {:>8.4} {:>8} {:>8}  {:>9} {:>10.0} {:>7}{}",
                r.epoch,
                r.train_loss,
                r.train_accuracy,
                r.val_loss,
                r.val_accuracy,
                opt(r.val_cider),
                opt(r.val_bleu4),
                r.lr.map_or("-".into(), |v| format!("{v:.2e}")),
                captions_per_second,
                dev_caption_seconds.map_or("-".into(), |s| format!("{s:.1}")),
                if *improved { "  *" } else { "" }
            )
        }
        TrainEvent::Progress(Event::EarlyStop { best_epoch }) => {
            println!("Early stop: nothing better since epoch {best_epoch}")
        }
    }
}
