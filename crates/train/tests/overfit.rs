//! The model can memorise a small task: 64 captions, each tied to its own image feature.

use autocaption_io::NoProgress;
use autocaption_model::{MergeConfig, MergeModel};
use autocaption_nn::{Adam, AdamConfig};
use autocaption_tensor::Rng;
use autocaption_train::{evaluate, train, CaptionSet, Checkpoint, Outcome, TrainConfig};

fn small_config(vocab: usize, dim: usize) -> MergeConfig {
    MergeConfig {
        vocab_size: vocab,
        feature_dim: dim,
        embed_dim: 32,
        text_lstm: 64,
        text_dense: 32,
        image_dense: 32,
        merge_lstm: 64,
        decoder_lstm: 96,
        dropout: 0.0,
        max_len: 12,
    }
}

fn task(n: usize, vocab: usize, dim: usize, seed: u64) -> CaptionSet {
    let mut rng = Rng::new(seed);
    let mut set = CaptionSet {
        captions: Vec::new(),
        image_of: Vec::new(),
        features: Vec::new(),
        dim,
        images: n,
    };
    for i in 0..n {
        let len = 4 + rng.below(6);
        let mut c = vec![1u32];
        c.extend((0..len).map(|_| 3 + rng.below(vocab - 3) as u32));
        c.push(2);
        set.captions.push(c);
        set.image_of.push(i);
        set.features.extend((0..dim).map(|_| rng.uniform(0.0, 1.0)));
    }
    set
}

/// Trains a fresh small model on `data` (validating on the same captions) with batches of 16
/// and a learning rate of 5e-3, into a temporary directory.
fn fit(
    data: &CaptionSet,
    vocab: usize,
    epochs: usize,
    precision: autocaption_tensor::Precision,
    standardize_features: bool,
) -> (Outcome, tempfile::TempDir) {
    let cfg = TrainConfig {
        epochs,
        batch_size: 16,
        patience: 0,
        seed: 3,
        adam: AdamConfig {
            lr: 5e-3,
            ..AdamConfig::default()
        },
        checkpoint_every: 0,
        precision,
        standardize_features,
        ..TrainConfig::default()
    };
    let mut model = MergeModel::new(small_config(vocab, data.dim), cfg.seed);
    let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
    let mut adam = Adam::new(cfg.adam, &sizes);
    let dir = tempfile::tempdir().unwrap();
    let out = train(
        &mut model,
        &mut adam,
        &cfg,
        data,
        data,
        None,
        dir.path(),
        Checkpoint::start("t".into()),
        &NoProgress,
        &mut |_| {},
    )
    .unwrap();
    (out, dir)
}

fn memorise(precision: autocaption_tensor::Precision) {
    let (vocab, dim) = (40, 16);
    let data = task(64, vocab, dim, 1);
    let (out, dir) = fit(&data, vocab, 150, precision, false);
    let h = &out.checkpoint.history;
    let (first, last) = (&h[0], h.last().unwrap());
    eprintln!(
        "val loss {:.3} -> {:.4}, accuracy {:.3} -> {:.3}",
        first.val_loss, last.val_loss, first.val_accuracy, last.val_accuracy
    );
    assert!(
        first.val_loss > 2.5,
        "starts near ln(vocab): {}",
        first.val_loss
    );
    assert!(last.val_loss < 0.05, "memorised: loss {}", last.val_loss);
    assert!(
        last.val_accuracy > 0.99,
        "memorised: accuracy {}",
        last.val_accuracy
    );
    for f in [
        "weights.safetensors",
        "history.json",
        "training.png",
        "checkpoint.safetensors",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
}

#[test]
fn loss_falls_to_near_zero_on_64_captions() {
    memorise(autocaption_tensor::Precision::F32);
}

/// Mixed precision (bf16 products, f32 accumulation and weights) learns the same task.
#[test]
fn bf16_training_memorises_too() {
    memorise(autocaption_tensor::Precision::Bf16);
}

/// Features far from zero mean and unit scale (as an encoder with random weights gives):
/// standardised training still memorises the task, and the saved weights, which have the
/// map folded in, score raw features exactly as the training loop scored mapped ones.
#[test]
fn standardised_features_train_and_fold_into_the_saved_weights() {
    let (vocab, dim) = (40, 16);
    let mut data = task(64, vocab, dim, 2);
    for (k, x) in data.features.iter_mut().enumerate() {
        *x = 300.0 + 40.0 * (k % dim) as f32 + 200.0 * *x;
    }
    let (out, dir) = fit(&data, vocab, 60, autocaption_tensor::Precision::F32, true);
    let best = out.checkpoint.best_val_loss.unwrap();
    assert!(best < 1.0, "learnt: loss {best} (ln 40 = 3.7 at the start)");

    let mut saved = MergeModel::new(small_config(vocab, dim), 99);
    let bytes = std::fs::read(dir.path().join("weights.safetensors")).unwrap();
    saved
        .load_weights_bytes(&bytes, &dir.path().join("weights.safetensors"))
        .unwrap();
    let raw = evaluate(&mut saved, &data, 16);
    let raw = raw.loss_sum / raw.rows as f64;
    eprintln!("best validation loss {best:.6}, saved weights on raw features {raw:.6}");
    assert!(
        (raw - best).abs() < 1e-3 * best.max(1e-2),
        "{raw} vs {best}"
    );
}

/// Scores epochs from a script, one value an epoch.
struct Scripted(std::sync::Mutex<Vec<f64>>);

impl autocaption_train::DevScorer for Scripted {
    fn score(
        &self,
        _: &MergeModel,
        features: &[f32],
    ) -> Result<autocaption_train::DevScores, autocaption_train::TrainError> {
        assert!(!features.is_empty());
        let cider = self.0.lock().unwrap().remove(0);
        Ok(autocaption_train::DevScores {
            bleu4: cider / 4.0,
            cider,
        })
    }
}

#[test]
fn selection_by_cider_keeps_its_best_epoch_and_stops_on_it() {
    use autocaption_train::{Event, Select};
    let data = task(32, 20, 8, 5);
    let cfg = TrainConfig {
        epochs: 10,
        batch_size: 16,
        patience: 2,
        seed: 3,
        checkpoint_every: 0,
        select: Select::Cider,
        ..TrainConfig::default()
    };
    let run = |scorer: Option<&dyn autocaption_train::DevScorer>, dir: &std::path::Path| {
        let mut model = MergeModel::new(small_config(20, 8), cfg.seed);
        let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
        let mut adam = Adam::new(cfg.adam, &sizes);
        let mut events = Vec::new();
        let out = train(
            &mut model,
            &mut adam,
            &cfg,
            &data,
            &data,
            scorer,
            dir,
            Checkpoint::start("t".into()),
            &NoProgress,
            &mut |e| events.push(e),
        );
        (out, events)
    };
    let dir = tempfile::tempdir().unwrap();
    // The loss falls every epoch here; CIDEr peaks at epoch 2, so that epoch is kept.
    let scorer = Scripted(vec![0.1, 0.5, 0.2, 0.3, 0.9].into());
    let (out, events) = run(Some(&scorer), dir.path());
    let out = out.unwrap();
    let improved: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            Event::Epoch { improved, .. } => Some(*improved),
            _ => None,
        })
        .collect();
    assert_eq!(improved, [true, true, false, false]);
    assert!(events.contains(&Event::EarlyStop { best_epoch: 2 }));
    let h = &out.checkpoint.history;
    assert_eq!(h.len(), 4);
    assert!(
        h[3].val_loss < h[1].val_loss,
        "the loss alone would pick a later epoch"
    );
    assert_eq!(h[1].val_cider, Some(0.5));
    // Selecting by CIDEr without a scorer is refused before any epoch.
    let (refused, events) = run(None, dir.path());
    assert!(refused.is_err() && events.is_empty());
}
