//! `autocaption export`.

use std::path::PathBuf;

use crate::captioner::Captioner;
use crate::cmd::features::load_encoder;
use crate::Global;

/// Export a trained model to ONNX, in standard ops that ONNX Runtime and `autocaption
/// compile` take.
///
/// Writes into OUT: `decoder.onnx`, the seed's interface (inputs `embedding_input` [N, 30]
/// token ids as floats, pre-padded with 0, and `dense_input` [N, 2048] features; output
/// `activation_3` [N, vocab] next-word probabilities), built with the ONNX LSTM op;
/// `decoder_step.onnx`, one incremental step (`token` [N], `features` and the six LSTM
/// states → `log_probs` and the new states) for fast generation in other runtimes; and,
/// with --weights, `encoder.onnx` (preprocessed images [N, 224, 224, 3] → features
/// [N, 2048]; its large tensors in `encoder.onnx.data` beside it).
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Model directory (from `autocaption train`).
    #[arg(long, short)]
    model: PathBuf,

    /// Output directory.
    #[arg(long, short)]
    out: PathBuf,

    /// Also export the encoder with these weights (Keras HDF5, torchvision safetensors,
    /// or `random` with --seed).
    #[arg(long)]
    weights: Option<String>,

    /// Seed of `--weights random`.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Image size of the exported encoder's input.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
}

/// Runs `export`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let captioner = Captioner::load(&args.model)?;
    let encoder = match &args.weights {
        Some(w) => Some(load_encoder(Some(w), args.seed)?),
        None => None,
    };
    let files = autocaption_export::export(
        &captioner.model,
        encoder.as_ref().map(|e| (&e.net, args.image_size)),
        &args.out,
    )?;
    if !global.quiet {
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}
