//! `autocaption`: the command-line front end. Raw arguments become validated settings here,
//! the libraries do the work, and this binary is the only place that prints.

mod cmd;
mod dataset_args;
mod decode_args;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Automatic image captioning: from a folder of captioned photos to a trained caption model.
///
/// Typical flow: `prepare` a caption dataset (Flickr8k, Flickr30k, COCO, Karpathy JSON, a
/// Kaggle CSV or your own CSV) and look at it with `show`; or make an offline dataset of your
/// own with `synth`. `demo` runs the whole pipeline offline on synthetic data.
#[derive(Debug, Parser)]
#[command(name = "autocaption", version, about, long_about, max_term_width = 100)]
struct Cli {
    /// Print nothing but errors and the requested output (no progress bars, no summaries).
    #[arg(long, short, global = true)]
    quiet: bool,

    /// Largest file any command reads whole (captions, JSON, weights, features, models,
    /// images), in bytes; a larger one is refused with this limit named.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = autocaption_io::DEFAULT_READ_LIMIT)]
    max_file_bytes: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure throughput on this machine (training speed, …).
    Bench(cmd::bench::Args),
    /// Run the pipeline end to end, offline, on a synthetic dataset of its own.
    Demo(cmd::demo::Args),
    /// Read a caption dataset, clean and tokenize it, and write a prepared dataset directory.
    Prepare(cmd::prepare::Args),
    /// Generate a captioned image set of coloured shapes, deterministically from a seed.
    Synth(cmd::synth::Args),
    /// Draw a contact sheet (PNG) of images with their captions, to check that they match.
    Show(cmd::show::Args),
    /// Extract ResNet-50 image features for a folder of images.
    Features(cmd::features::Args),
    /// Image features without pretrained weights: a small CNN trained from the captions.
    Concepts(cmd::concepts::Args),
    /// Train the merge caption model on a prepared dataset and image features.
    Train(cmd::train::Args),
    /// Inspect caption models (`model summary`).
    Model(cmd::model::Args),
    /// Caption photos (or a features file) with a trained model.
    Caption(cmd::caption::Args),
    /// Score a model's captions on a split: BLEU, CIDEr-D, ROUGE-L, greedy and beam.
    Evaluate(cmd::evaluate::Args),
    /// Export a trained model (and optionally the encoder) to ONNX.
    Export(cmd::export::Args),
    /// Compile an ONNX model (or the seed's Keras HDF5 model) ahead of time into
    /// dependency-free C99.
    Compile(cmd::compile::Args),
    /// Join the outputs of sharded `features` or `caption` runs into what one run writes.
    Merge(cmd::merge::Args),
    /// Serve captions over HTTP (JSON API, metrics, a web page), batching requests.
    Serve(cmd::serve::Args),
    /// Import a model made elsewhere (the seed's Keras HDF5 model) into a model directory.
    Import(cmd::import::Args),
}

/// Settings every command gets.
#[derive(Debug, Clone, Copy)]
pub struct Global {
    /// `--quiet` was given.
    pub quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    autocaption_io::set_read_limit(cli.max_file_bytes);
    // SIGINT, SIGTERM or SIGHUP: remove this run's unfinished outputs (staging folders and
    // temporary files), then exit; finished outputs and the previous ones stay as they were.
    // `serve` handles these signals itself: it drains, then exits 0.
    if !matches!(cli.command, Command::Serve(_)) {
        // Output into a closed pipe (`autocaption caption … | head`) ends the process
        // quietly, as it does any Unix tool's, instead of a panic on the failed print. (Not
        // for `serve`, which must outlive a client that hangs up.)
        #[cfg(unix)]
        // SAFETY: restoring a signal's default disposition at start-up, before any thread.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        let _ = ctrlc::set_handler(|| {
            let (_lock, _) = autocaption_io::remove_staging();
            eprintln!("\ninterrupted: unfinished output removed");
            std::process::exit(130);
        });
    }
    let global = Global { quiet: cli.quiet };
    let result = match cli.command {
        Command::Bench(a) => cmd::bench::run(a, global),
        Command::Demo(a) => cmd::demo::run(a, global),
        Command::Prepare(a) => cmd::prepare::run(a, global),
        Command::Synth(a) => cmd::synth::run(a, global),
        Command::Show(a) => cmd::show::run(a, global),
        Command::Features(a) => cmd::features::run(a, global),
        Command::Concepts(a) => cmd::concepts::run(a, global),
        Command::Train(a) => cmd::train::run(a, global),
        Command::Model(a) => cmd::model::run(a, global),
        Command::Caption(a) => cmd::caption::run(a, global),
        Command::Evaluate(a) => cmd::evaluate::run(a, global),
        Command::Export(a) => cmd::export::run(a, global),
        Command::Compile(a) => cmd::compile::run(a, global),
        Command::Import(a) => cmd::import::run(a, global),
        Command::Serve(a) => cmd::serve::run(a, global),
        Command::Merge(a) => cmd::merge::run(a, global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
