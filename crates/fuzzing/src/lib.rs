//! Fuzz targets: one function per parser, taking arbitrary bytes. `fuzz/` (cargo-fuzz, on
//! nightly) drives them with libFuzzer; `tests/regressions.rs` runs every input checked in
//! under `fuzz/regressions/TARGET/` and `fuzz/seeds/TARGET/` through them on stable Rust in CI.
//!
//! A target passes when the parser returns, `Ok` or `Err`: a panic, an abort, a hang or an
//! allocation past the fuzzer's limit is the bug being looked for. Parsers that take a path
//! get the bytes as a file in a per-thread scratch directory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use autocaption_data::{Format, LoadOptions, Prepared};

/// A fuzz target: arbitrary bytes in, nothing out (it must return).
pub type Target = fn(&[u8]);

/// Every target, by name (the file names under `fuzz/fuzz_targets/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("flickr8k", flickr8k),
    ("flickr30k", flickr30k),
    ("coco", coco),
    ("karpathy", karpathy),
    ("csv_captions", csv_captions),
    ("prepared", prepared),
    ("tokenizer", tokenizer),
    ("model_dir", model_dir),
    ("features", features),
    ("checkpoint", checkpoint),
    ("encoder_weights", encoder_weights),
    ("onnx_compile", onnx_compile),
    ("image", image),
    ("keras_model", keras_model),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

thread_local! {
    static SCRATCH: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

/// Runs `f` on a scratch directory holding `files` (name, bytes), emptied before each call.
fn with_files<R>(files: &[(&str, &[u8])], f: impl FnOnce(&Path) -> R) -> R {
    let dir: PathBuf = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let d = s.get_or_insert_with(|| tempfile::tempdir().expect("a scratch directory"));
        d.path().to_path_buf()
    });
    for entry in std::fs::read_dir(&dir).expect("the scratch directory is readable") {
        let p = entry.expect("a directory entry").path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("the scratch directory is writable");
    }
    f(&dir)
}

/// Splits `data` into up to `n` parts at the separator line `\n--\n` (the last part takes
/// the rest), so one input can stand for several files.
fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    const SEP: &[u8] = b"\n--\n";
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    while out.len() < n {
        out.push(&[]);
    }
    out
}

/// Loads `data` as the caption file `name` the way `prepare` does (splits and images looked
/// for beside it). The first byte's low bits choose strict or lenient reading and whether
/// the format is given or detected.
fn dataset(data: &[u8], name: &str, format: Format) {
    let flags = data.first().copied().unwrap_or(0);
    let opts = LoadOptions {
        format: (flags & 2 == 0).then_some(format),
        lenient: flags & 1 == 1,
        ..LoadOptions::default()
    };
    with_files(&[(name, data)], |d| {
        let _ = autocaption_data::load(&d.join(name), &opts);
    });
}

/// Flickr8k `Flickr8k.token.txt` lines.
pub fn flickr8k(data: &[u8]) {
    dataset(data, "Flickr8k.token.txt", Format::Flickr8k);
}

/// Flickr30k `results.csv` (pipe-separated).
pub fn flickr30k(data: &[u8]) {
    dataset(data, "results.csv", Format::Flickr30k);
}

/// COCO `captions_*.json`.
pub fn coco(data: &[u8]) {
    dataset(data, "captions_val2017.json", Format::Coco);
}

/// Karpathy's `dataset_*.json`.
pub fn karpathy(data: &[u8]) {
    dataset(data, "dataset_flickr8k.json", Format::Karpathy);
}

/// Kaggle's `captions.txt` and the two-column `image,caption` CSV (the first byte's third
/// bit picks which).
pub fn csv_captions(data: &[u8]) {
    let kaggle = data.first().is_some_and(|b| b & 4 != 0);
    if kaggle {
        dataset(data, "captions.txt", Format::Kaggle);
    } else {
        dataset(data, "captions.csv", Format::Csv);
    }
}

/// A prepared dataset directory: manifest, tokenizer and captions (three parts).
pub fn prepared(data: &[u8]) {
    let p = parts(data, 3);
    let files = [
        ("manifest.json", p[0]),
        ("vocab.json", p[1]),
        ("captions.jsonl", p[2]),
    ];
    with_files(&files, |d| {
        let _ = Prepared::load(d);
    });
}

/// A tokenizer JSON file.
pub fn tokenizer(data: &[u8]) {
    with_files(&[("vocab.json", data)], |d| {
        let _ = autocaption_text::Tokenizer::load(&d.join("vocab.json"));
    });
}

/// A model directory: config.json, vocab.json and weights.safetensors (three parts).
pub fn model_dir(data: &[u8]) {
    let p = parts(data, 3);
    let files = [
        ("config.json", p[0]),
        ("vocab.json", p[1]),
        ("weights.safetensors", p[2]),
    ];
    with_files(&files, |d| {
        let _ = autocaption_pipeline::ModelDir::load(d);
    });
}

/// A features file (safetensors with names and the encoder's record).
pub fn features(data: &[u8]) {
    with_files(&[("f.safetensors", data)], |d| {
        let _ = autocaption_features::FeatureStore::load(&d.join("f.safetensors"));
    });
}

/// The model configuration the checkpoint target loads into: small, every layer present.
fn tiny_model() -> autocaption_model::MergeModel {
    let config = autocaption_model::MergeConfig {
        vocab_size: 12,
        feature_dim: 8,
        embed_dim: 4,
        text_lstm: 4,
        text_dense: 4,
        image_dense: 4,
        merge_lstm: 4,
        decoder_lstm: 4,
        dropout: 0.0,
        max_len: 6,
    };
    autocaption_model::MergeModel::new(config, 0)
}

/// A training checkpoint, loaded into a small model; and the same bytes as its weights.
pub fn checkpoint(data: &[u8]) {
    let mut model = tiny_model();
    let sizes: Vec<usize> = model.params_mut().iter().map(|p| p.value.len()).collect();
    let mut adam = autocaption_nn::Adam::new(autocaption_nn::AdamConfig::default(), &sizes);
    with_files(&[("ckpt.safetensors", data)], |d| {
        let path = d.join("ckpt.safetensors");
        let _ = autocaption_train::Checkpoint::load(&path, &mut model, &mut adam);
        let _ = model.load_weights_bytes(data, &path);
    });
}

/// Encoder weights as every reader takes them, told apart by content as `features
/// --weights` does: Keras HDF5, torchvision safetensors, the concept CNN.
pub fn encoder_weights(data: &[u8]) {
    let path = Path::new("weights");
    let _ = autocaption_vision::load_weights(data.to_vec(), path);
    let _ = autocaption_concepts::ConceptNet::from_bytes(data, path);
}

/// An ONNX model through the reader and the compiler's front end (shapes inferred with
/// batch 1, every node checked and planned), as `compile` does before writing C.
pub fn onnx_compile(data: &[u8]) {
    with_files(&[("m.onnx", data)], |d| {
        let Ok(model) = autocaption_onnx::read_model(&d.join("m.onnx")) else {
            return;
        };
        let opts = autocaption_compiler::Options {
            batch: Some(1),
            dims: HashMap::new(),
            ..autocaption_compiler::Options::default()
        };
        let _ = autocaption_compiler::compile(&model, &opts, "fuzz");
    });
}

/// An image file through the decoder every command uses.
pub fn image(data: &[u8]) {
    with_files(&[("image", data)], |d| {
        let _ = autocaption_vision::load_rgb(&d.join("image"));
    });
}

/// A Keras 2 HDF5 model (`autocaption import keras`), and the same bytes as a Keras
/// tokenizer JSON.
pub fn keras_model(data: &[u8]) {
    let path = Path::new("model.h5");
    let _ = autocaption_keras::read_model(data.to_vec(), path);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = autocaption_keras::read_tokenizer(text, path, "startseq", "endseq");
    }
}
