//! `autocaption model`.

use std::path::PathBuf;

use autocaption_model::{summary, MergeConfig, MergeModel};
use autocaption_pipeline::ModelConfig;

use crate::Global;

/// Inspect caption models.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Print a Keras-style table of the model's layers, output shapes and parameter counts.
    Summary {
        /// A trained model directory; without it, the seed's model for --vocab.
        #[arg(long, conflicts_with = "vocab")]
        model: Option<PathBuf>,
        /// Vocabulary size of the seed's model to describe.
        #[arg(long, default_value_t = 4487)]
        vocab: usize,
    },
}

/// Runs `model`.
pub fn run(args: Args, _global: Global) -> anyhow::Result<()> {
    match args.what {
        What::Summary { model, vocab } => {
            let config = match model {
                Some(dir) => ModelConfig::read(&dir)?.model,
                None => MergeConfig::seed(vocab),
            };
            print!("{}", summary(&MergeModel::new(config, 0)));
            Ok(())
        }
    }
}
