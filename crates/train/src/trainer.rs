//! The training loop.

use std::path::Path;

use autocaption_io::{write_atomic, Progress};
use autocaption_model::MergeModel;
use autocaption_nn::{Adam, CrossEntropy};
use autocaption_tensor::{Precision, Rng};
use autocaption_viz::{line_charts, Panel, Series};

use crate::{
    best_epoch, bucketed_batches, CaptionSet, Checkpoint, EpochRecord, FeatureScaling, Select,
    TrainConfig, TrainError,
};

use crate::files::{CHECKPOINT as CHECKPOINT_FILE, HISTORY, PLOT, WEIGHTS as WEIGHTS_FILE};

/// Caption metrics of the dev split after an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DevScores {
    /// Corpus BLEU-4.
    pub bleu4: f64,
    /// CIDEr-D.
    pub cider: f64,
}

/// Captions the dev split with the model as it stands and scores the captions; given by the
/// caller, who holds the vocabulary and the references.
pub trait DevScorer: Sync {
    /// Scores `model` on the dev images' feature rows (`[images, dim]`, in the order of
    /// the dev [`CaptionSet`], already mapped as the model sees them in training).
    fn score(&self, model: &MergeModel, features: &[f32]) -> Result<DevScores, TrainError>;
}

/// Something worth telling the user about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An epoch ended.
    Epoch {
        /// Its metrics.
        record: EpochRecord,
        /// The selection measure is the best so far (the weights were saved).
        improved: bool,
        /// Training captions per second over the epoch's batches run in this process.
        captions_per_second: f64,
        /// Seconds spent captioning and scoring the dev split, where it was.
        dev_caption_seconds: Option<f64>,
    },
    /// Early stopping ended the run.
    EarlyStop {
        /// The epoch with the best selection measure.
        best_epoch: usize,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The final state (also in the checkpoint file).
    pub checkpoint: Checkpoint,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Loss and accuracy over a whole split, without dropout.
pub fn evaluate(model: &mut MergeModel, set: &CaptionSet, batch_size: usize) -> CrossEntropy {
    let mut order: Vec<usize> = (0..set.captions.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(set.captions[i].len()));
    let mut total = CrossEntropy::default();
    for ids in order.chunks(batch_size) {
        let (caps, feats) = set.batch(ids);
        let ce = model.evaluate_batch(&caps, &feats);
        total.loss_sum += ce.loss_sum;
        total.correct += ce.correct;
        total.rows += ce.rows;
    }
    total
}

fn plot(dir: &Path, history: &[EpochRecord]) -> Result<(), TrainError> {
    let series = |name: &str, f: &dyn Fn(&EpochRecord) -> f64| Series {
        name: name.into(),
        points: history
            .iter()
            .map(|r| (r.epoch as f32, f(r) as f32))
            .collect(),
    };
    let panels = [
        Panel {
            title: "loss (cross-entropy per word)".into(),
            x_label: "epoch".into(),
            series: vec![
                series("train", &|r| r.train_loss),
                series("validation", &|r| r.val_loss),
            ],
        },
        Panel {
            title: "next-word accuracy".into(),
            x_label: "epoch".into(),
            series: vec![
                series("train", &|r| r.train_accuracy),
                series("validation", &|r| r.val_accuracy),
            ],
        },
    ];
    let mut panels = panels.to_vec();
    if history.iter().any(|r| r.val_cider.is_some()) {
        panels.push(Panel {
            title: "dev captions (greedy)".into(),
            x_label: "epoch".into(),
            series: vec![
                series("CIDEr-D", &|r| r.val_cider.unwrap_or(f64::NAN)),
                series("BLEU-4", &|r| r.val_bleu4.unwrap_or(f64::NAN)),
            ],
        });
    }
    if history.iter().any(|r| r.lr.is_some()) {
        panels.push(Panel {
            title: "learning rate".into(),
            x_label: "epoch".into(),
            series: vec![series("rate", &|r| r.lr.unwrap_or(f64::NAN))],
        });
    }
    let img = line_charts(&panels, 550 * panels.len() as u32, 420);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| TrainError::Data(format!("cannot encode the training plot: {e}")))?;
    write_atomic(&dir.join(PLOT), &png)?;
    Ok(())
}

/// Trains `model` on `train`, validating on `dev` after every epoch, writing into `dir`:
/// the best weights (`weights.safetensors`), `history.json`, `training.png`, and
/// `checkpoint.safetensors` every `checkpoint_every` batches and at each epoch's end.
/// `state` is where to start: [`Checkpoint::start`] or a loaded checkpoint (with `model`
/// and `adam` restored from it). With `scorer`, every epoch also captions and scores the dev
/// split (needed for `cfg.select` other than the loss).
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &mut MergeModel,
    adam: &mut Adam,
    cfg: &TrainConfig,
    train_set: &CaptionSet,
    dev: &CaptionSet,
    scorer: Option<&dyn DevScorer>,
    dir: &Path,
    state: Checkpoint,
    progress: &dyn Progress,
    on_event: &mut (dyn FnMut(Event) + Send),
) -> Result<Outcome, TrainError> {
    if cfg.select != Select::Loss && scorer.is_none() {
        return Err(TrainError::Data(format!(
            "selecting by {} needs the dev split captioned and scored, and no scorer was given",
            cfg.select.as_str()
        )));
    }
    cfg.lr_schedule
        .validate(cfg.adam.lr, cfg.epochs)
        .map_err(TrainError::Data)?;
    // Run on a worker of the thread pool: the products' parallel parts then fork from a
    // worker instead of waking the pool from outside for each product (14% faster here).
    let scaling = cfg
        .standardize_features
        .then(|| FeatureScaling::standardize(train_set));
    let mapped = scaling.as_ref().map(|s| (s.apply(train_set), s.apply(dev)));
    let (train_set, dev) = match &mapped {
        Some((t, d)) => (t, d),
        None => (train_set, dev),
    };
    let sets = Sets {
        train: train_set,
        dev,
        scaling: scaling.as_ref(),
        scorer,
    };
    rayon::scope(|_| train_here(model, adam, cfg, sets, dir, state, progress, on_event))
}

/// The data of a run, its features already mapped by `scaling` where there is one.
#[derive(Clone, Copy)]
struct Sets<'a> {
    train: &'a CaptionSet,
    dev: &'a CaptionSet,
    scaling: Option<&'a FeatureScaling>,
    scorer: Option<&'a dyn DevScorer>,
}

/// Saves `model`'s weights with `scaling` folded into them (the model itself is unchanged).
fn save_weights(
    model: &mut MergeModel,
    scaling: Option<&FeatureScaling>,
    path: &Path,
) -> Result<(), TrainError> {
    let Some(s) = scaling else {
        model.save_weights(path)?;
        return Ok(());
    };
    let d = &model.image_dense;
    let kept = (d.kernel.value.clone(), d.bias.value.clone());
    model.fold_feature_scaling(&s.mean, &s.scale);
    let saved = model.save_weights(path);
    (model.image_dense.kernel.value, model.image_dense.bias.value) = kept;
    Ok(saved?)
}

#[allow(clippy::too_many_arguments)]
fn train_here(
    model: &mut MergeModel,
    adam: &mut Adam,
    cfg: &TrainConfig,
    sets: Sets<'_>,
    dir: &Path,
    mut state: Checkpoint,
    progress: &dyn Progress,
    on_event: &mut (dyn FnMut(Event) + Send),
) -> Result<Outcome, TrainError> {
    let (train_set, dev) = (sets.train, sets.dev);
    if train_set.captions.is_empty() {
        return Err(TrainError::Data(
            "the training split has no captions".into(),
        ));
    }
    if dev.captions.is_empty() {
        return Err(TrainError::Data(
            "the dev split has no captions: validation needs some".into(),
        ));
    }
    let lengths = train_set.lengths();
    model.set_precision(cfg.precision);
    let ckpt_path = dir.join(CHECKPOINT_FILE);
    while state.epoch < cfg.epochs && !state.stopped_early {
        let epoch = state.epoch;
        let batches = bucketed_batches(
            &lengths,
            cfg.batch_size,
            &mut Rng::new(mix(cfg.seed, epoch as u64)),
        );
        let done: usize = batches[..state.next_batch.min(batches.len())]
            .iter()
            .map(Vec::len)
            .sum();
        progress.start(
            &format!("epoch {}", epoch + 1),
            train_set.captions.len() as u64,
        );
        progress.advance(done as u64);
        let started = std::time::Instant::now();
        let mut run_here = 0usize;
        let rate = |k: usize| {
            let at = (epoch, k, batches.len());
            cfg.lr_schedule
                .rate(cfg.adam.lr, cfg.epochs, cfg.select, &state.history, at)
        };
        let rates: Vec<f32> = (0..batches.len()).map(rate).collect();
        for k in state.next_batch..batches.len() {
            // Dropout draws depend only on (seed, epoch, batch): a resumed run draws the same.
            let mut rng = Rng::new(mix(mix(cfg.seed, epoch as u64), k as u64 + 1));
            let (caps, feats) = train_set.batch(&batches[k]);
            model.zero_grad();
            let ce = model.train_batch(&caps, &feats, &mut rng);
            if !ce.loss_sum.is_finite() {
                return Err(TrainError::Data(format!(
                    "training diverged in epoch {}, batch {}: the loss is {}; the weights \
                     kept so far and the last checkpoint are as they were (try a lower --lr)",
                    epoch + 1,
                    k + 1,
                    ce.loss_sum
                )));
            }
            adam.config.lr = rates[k];
            adam.update(&mut model.params_mut());
            state.loss_sum += ce.loss_sum;
            state.correct += ce.correct;
            state.rows += ce.rows;
            state.next_batch = k + 1;
            state.adam_step = adam.step;
            run_here += caps.len();
            progress.advance(caps.len() as u64);
            if cfg.checkpoint_every > 0
                && (k + 1) % cfg.checkpoint_every == 0
                && k + 1 < batches.len()
            {
                state.save(&ckpt_path, model, adam)?;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        progress.finish();

        model.set_precision(Precision::F32);
        let val = evaluate(model, dev, cfg.batch_size);
        let scored_at = std::time::Instant::now();
        let scores = sets
            .scorer
            .map(|s| s.score(model, &dev.features))
            .transpose()?;
        let caption_seconds = scores.map(|_| scored_at.elapsed().as_secs_f64());
        model.set_precision(cfg.precision);
        let mean_rate =
            rates.iter().map(|&r| f64::from(r)).sum::<f64>() / rates.len().max(1) as f64;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: state.loss_sum / state.rows.max(1) as f64,
            train_accuracy: state.correct as f64 / state.rows.max(1) as f64,
            val_loss: val.loss_sum / val.rows.max(1) as f64,
            val_accuracy: val.correct as f64 / val.rows.max(1) as f64,
            val_bleu4: scores.map(|s| s.bleu4),
            val_cider: scores.map(|s| s.cider),
            lr: Some(mean_rate),
        };
        let value = cfg.select.value(&record).unwrap_or(f64::NEG_INFINITY);
        let best = best_epoch(&state.history, cfg.select).and_then(|r| cfg.select.value(r));
        let improved = best.is_none_or(|b| value > b);
        if state.best_val_loss.is_none_or(|b| record.val_loss < b) {
            state.best_val_loss = Some(record.val_loss);
        }
        if improved {
            state.epochs_without_improvement = 0;
            save_weights(model, sets.scaling, &dir.join(WEIGHTS_FILE))?;
        } else {
            state.epochs_without_improvement += 1;
        }
        state.history.push(record.clone());
        state.epoch += 1;
        state.next_batch = 0;
        state.loss_sum = 0.0;
        state.correct = 0;
        state.rows = 0;
        if cfg.patience > 0 && state.epochs_without_improvement >= cfg.patience {
            state.stopped_early = true;
        }
        let history =
            serde_json::to_string_pretty(&state.history).expect("history serialises") + "\n";
        write_atomic(&dir.join(HISTORY), history.as_bytes())?;
        plot(dir, &state.history)?;
        state.save(&ckpt_path, model, adam)?;
        on_event(Event::Epoch {
            record,
            improved,
            captions_per_second: run_here as f64 / seconds.max(1e-9),
            dev_caption_seconds: caption_seconds,
        });
        if state.stopped_early {
            let best_epoch = best_epoch(&state.history, cfg.select).map_or(0, |r| r.epoch);
            on_event(Event::EarlyStop { best_epoch });
        }
    }
    Ok(Outcome { checkpoint: state })
}
