//! `autocaption export`.

use std::path::PathBuf;

use anyhow::bail;
use autocaption_pipeline::{Encoder, EncoderSource, ModelDir, Network};

use crate::Global;

/// Export a trained model to ONNX, in standard ops that ONNX Runtime and `autocaption
/// compile` take.
///
/// Writes into OUT: `decoder.onnx`, the seed's interface (inputs `embedding_input` [N, 30]
/// token ids as floats, pre-padded with 0, and `dense_input` [N, 2048] features; output
/// `activation_3` [N, vocab] next-word probabilities), built with the ONNX LSTM op;
/// `decoder_step.onnx`, one incremental step (`token` [N], `features` and the six LSTM
/// states → `log_probs` and the new states) for fast generation in other runtimes; and,
/// with --encoder (or --weights), `encoder.onnx` (preprocessed images [N, 224, 224, 3] →
/// features [N, 2048]; its large tensors in `encoder.onnx.data` beside it). With --weights
/// and no --model, only `encoder.onnx` (an encoder to run or quantize elsewhere).
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Model directory (from `autocaption train`); leave it out to export the encoder of
    /// --weights alone.
    #[arg(long, short)]
    model: Option<PathBuf>,

    /// Output directory (other files in it are left alone).
    #[arg(long, short)]
    out: PathBuf,

    /// Replace the ONNX files of an earlier `export` in --out (files it did not write are
    /// never replaced).
    #[arg(long)]
    force: bool,

    /// Also export the model's encoder (a ResNet-50), found as `caption` finds it.
    #[arg(long)]
    encoder: bool,

    /// Also export the encoder, with these weights (checked against the model's record):
    /// Keras HDF5, torchvision safetensors, or `random` with --seed.
    #[arg(long)]
    weights: Option<String>,

    /// Seed of `--weights random`.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Image size of the exported encoder's input (32 to 4096).
    #[arg(long, default_value_t = 224)]
    image_size: usize,
}

/// Runs `export`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    if !(32..=4096).contains(&args.image_size) {
        bail!("--image-size must be 32 to 4096, got {}", args.image_size);
    }
    if args.model.is_none() && args.weights.is_none() {
        bail!("nothing to export: give --model DIR (and --encoder or --weights for its encoder), or --weights alone for the encoder alone");
    }
    if args.model.is_none() && args.encoder {
        bail!("--encoder exports a model's encoder: give --model DIR, or name the weights with --weights");
    }
    {
        use autocaption_io::{check_output, Ours};
        let mut inputs: Vec<&std::path::Path> = args.model.iter().map(|m| m.as_path()).collect();
        if let Some(w) = args.weights.as_deref() {
            inputs.push(std::path::Path::new(w));
        }
        let ours = Ours::FileMentioning("autocaption");
        for f in ["decoder.onnx", "decoder_step.onnx", "encoder.onnx"] {
            check_output(&args.out.join(f), args.force, ours, &inputs)?;
        }
        // The data file goes with encoder.onnx, checked above.
        check_output(
            &args.out.join("encoder.onnx.data"),
            args.force,
            Ours::FileStarting(b""),
            &inputs,
        )?;
    }
    let model = args.model.as_deref().map(ModelDir::load).transpose()?;
    let given = args
        .weights
        .as_deref()
        .map(|w| EncoderSource::parse(w, args.seed));
    let encoder = match (&model, given) {
        (Some(model), given) if args.encoder || given.is_some() => {
            Some(Encoder::for_model(model, given.as_ref())?)
        }
        (None, Some(given)) => Some(Encoder::load(&given)?),
        _ => None,
    };
    let resnet = match encoder.as_ref().map(Encoder::network) {
        None => None,
        Some(Network::ResNet(net)) => Some((net, args.image_size)),
        Some(Network::Concept(_)) => bail!(
            "the encoder is the concept CNN, which cannot be exported to ONNX yet; export the \
             decoder alone (leave out --encoder and --weights)"
        ),
    };
    let files = autocaption_export::export(model.as_ref().map(|m| &m.model), resnet, &args.out)?;
    if !global.quiet {
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}
