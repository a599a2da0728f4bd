//! `autocaption merge`.

use std::path::PathBuf;

use crate::Global;

/// Join the outputs of sharded runs (`features --shard I/N` feature files, or `caption
/// --shard I/N --out` records) into exactly the file one run over every photo writes: rows in
/// the order of their names, each once. A row in two inputs must be the same in both, and
/// feature files must come from the same encoder.
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// The shard outputs (all feature files, or all caption records).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,

    /// The joined file.
    #[arg(long, short)]
    out: PathBuf,

    /// With caption records: also write the CSV `caption --csv` writes.
    #[arg(long, value_name = "FILE.csv")]
    csv: Option<PathBuf>,

    /// With caption records: also write the HTML gallery `caption --html` writes.
    #[arg(long, value_name = "FILE.html")]
    html: Option<PathBuf>,

    /// Replace --out if it exists (only an earlier feature file or caption record).
    #[arg(long)]
    force: bool,
}

/// Runs `merge`.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let r = autocaption_pipeline::merge(
        &args.inputs,
        &args.out,
        args.csv.as_deref(),
        args.html.as_deref(),
        args.force,
    )?;
    if !global.quiet {
        eprintln!(
            "Merged {} {} files into {} ({} rows)",
            r.inputs,
            r.kind,
            args.out.display(),
            r.rows
        );
    }
    Ok(())
}
