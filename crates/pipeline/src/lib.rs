//! The captioning pipeline as a library (DESIGN.md section 8), under the `autocaption`
//! binary, `serve` and a user's own program:
//!
//! - [`ModelDir`]: a trained model directory (config, tokenizer, weights, and the identity
//!   of the encoder whose features it reads); every file name in [`files`].
//! - [`Encoder`]: images → features for every encoder (ResNet-50 in both layouts, seeded
//!   random, the concept CNN), with the identity a model records.
//! - [`Captioner`]: a model and its encoder → captions, greedy or beam; `&self` and
//!   `Send + Sync`, so one serves many threads.
//! - [`extract()`]: features of a folder into a feature file, resumable at a constant cost a
//!   save; [`train_new`] / [`train_resume`]: a training run; [`evaluate()`]: metrics and
//!   per-image results; [`run_demo`]: the whole pipeline offline.
//!
//! ```no_run
//! use autocaption_pipeline::{CaptionOptions, Captioner};
//! use autocaption_io::NoProgress;
//!
//! let captioner = Captioner::load("autocaption-demo/model".as_ref(), None)?;
//! let photos = vec!["photo.png".into()];
//! let results = captioner.caption_files(&photos, &CaptionOptions::default(), &NoProgress)?;
//! println!("{results:?}");
//! # Ok::<(), autocaption_pipeline::Error>(())
//! ```
//!
//! Libraries report progress through [`autocaption_io::Progress`] and never print.

pub mod bench;
pub mod bench_compiled;
mod captioner;
mod collection;
mod concepts;
mod demo;
pub mod device;
mod encoder;
mod error;
mod eval_files;
mod evaluate;
mod extract;
mod images;
mod import;
mod model_dir;
pub mod quantize;
mod sheet;
pub mod summary;
mod training;
pub mod xmp;

pub use autocaption_features::{EncoderKind, EncoderSpec, FeatureStore};
pub use captioner::{Caption, CaptionOptions, Captioner, PhotoResult, MAX_BEAM, MAX_WORDS};
pub use collection::{
    caption_collection, merge, parts_dir, read_record, CaptionRecord, CollectionEvent,
    CollectionReport, CollectionSettings, MergeReport, Shard,
};
pub use concepts::{default_weights_path, train_concepts, ConceptOutcome, ConceptSettings};
pub use demo::{run_demo, DemoReport, DemoSettings};
pub use encoder::{
    calibration_sample, int8_encoder, save_calibration, CalibrationSource, EncodedBatch, Encoder,
    EncoderSource, Network, DEFAULT_RANGES, PERCENTILE_RANGES,
};
pub use error::{Error, Result};
pub use evaluate::{evaluate, EvalImage, EvalRow, EvalSettings, Evaluation};
pub use extract::{extract, ExtractEvent, ExtractReport, ExtractSettings, Failure, Save};
pub use images::{expand_photos, list_images};
pub use import::{import_keras, ImportOutcome, VocabSource};
pub use model_dir::{files, reference_words, Counts, Decoding, ModelConfig, ModelDir};
pub use sheet::{pick_for_sheet, write_sheet, Candidate, SheetOutcome, SHEET_SOFTWARE};
pub use training::{
    model_config, read_overrides, train_new, train_resume, validate as validate_training,
    TrainData, TrainEvent, TrainOutcome,
};
