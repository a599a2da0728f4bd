//! `autocaption import`.

use std::path::PathBuf;

use anyhow::bail;
use autocaption_pipeline::summary::thousands;
use autocaption_pipeline::{import_keras, Decoding, VocabSource};

use crate::Global;

/// Import a model made elsewhere into a model directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    from: From,
}

#[derive(Debug, clap::Subcommand)]
enum From {
    /// The seed's Keras model: a Keras 2 HDF5 file (`model.save("model.h5")`, TensorFlow up
    /// to 2.15; Keras 3 `.keras` files are not read).
    ///
    /// The graph must be the seed's merge model (its layers InputLayer, Embedding, Dense,
    /// LSTM, Dropout, RepeatVector, TimeDistributed(Dense), Concatenate, Activation; any other
    /// layer is reported, all of them at once). The vocabulary comes from the Keras
    /// Tokenizer the model was trained with (`tokenizer.to_json()`), or from a prepared
    /// dataset of the same captions; its size must match the model's output layer. A model
    /// whose Embedding has no `mask_zero` (the seed's) was trained on pre-padded windows and
    /// is decoded the way the seed does it, re-running the whole window for every word
    /// (recorded as `"decoding": "prefix"` in config.json). The model reads the features of
    /// the encoder it was trained with: caption photos with --weights naming it.
    #[command(long_about)]
    Keras(KerasArgs),
}

#[derive(Debug, clap::Args)]
struct KerasArgs {
    /// The Keras HDF5 model file.
    model: PathBuf,

    /// Model directory to write.
    #[arg(long, short)]
    out: PathBuf,

    /// Replace --out if it holds an earlier model.
    #[arg(long)]
    force: bool,

    /// The Keras Tokenizer, as `tokenizer.to_json()` wrote it.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "data",
        required_unless_present = "data"
    )]
    tokenizer: Option<PathBuf>,

    /// A prepared dataset (from `autocaption prepare`) whose vocabulary the model uses.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,

    /// With --tokenizer: the token the captions start with.
    #[arg(long, default_value = "startseq")]
    start_token: String,

    /// With --tokenizer: the token the captions end with.
    #[arg(long, default_value = "endseq")]
    end_token: String,
}

/// Runs `import`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let From::Keras(a) = args.from;
    let vocab = match (&a.tokenizer, &a.data) {
        (Some(t), None) => VocabSource::KerasTokenizer {
            path: t.clone(),
            start: a.start_token.clone(),
            end: a.end_token.clone(),
        },
        (None, Some(d)) => VocabSource::Prepared(d.clone()),
        _ => bail!("give the vocabulary with --tokenizer FILE or --data DIR"),
    };
    let o = import_keras(&a.model, &vocab, &a.out, a.force)?;
    if !global.quiet {
        for (layer, role) in &o.layers {
            println!("  {layer:<36} {role}");
        }
        println!(
            "Imported {} parameters (Keras {}) into {}; vocabulary of {}; decoding: {}",
            thousands(o.parameters),
            o.keras_version.as_deref().unwrap_or("?"),
            o.dir.display(),
            thousands(o.config.model.vocab_size),
            match o.config.decoding {
                Decoding::Prefix =>
                    "prefix (the whole pre-padded window for every word, as the seed)",
                Decoding::Incremental => "incremental",
            }
        );
    }
    Ok(())
}
