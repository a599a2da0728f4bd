//! Caption photos from your own program with a model directory from `autocaption train` or
//! `autocaption demo`:
//!
//! ```sh
//! cargo run --release -p autocaption-pipeline --example caption -- autocaption-demo/model photo.png
//! ```
//!
//! The model finds its own encoder (recorded in its config.json); one `Captioner` can be
//! shared between threads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use autocaption_io::NoProgress;
use autocaption_pipeline::{expand_photos, CaptionOptions, Captioner, PhotoResult};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((model, photos)) = args.split_first().filter(|(_, p)| !p.is_empty()) else {
        eprintln!("usage: caption MODEL_DIR PHOTO...");
        return ExitCode::from(2);
    };
    match run(model, photos) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(model: &Path, photos: &[PathBuf]) -> autocaption_pipeline::Result<()> {
    let captioner = Captioner::load(model, None)?;
    let photos = expand_photos(photos)?;
    let results = captioner.caption_files(&photos, &CaptionOptions::default(), &NoProgress)?;
    for (photo, result) in photos.iter().zip(results) {
        match result {
            PhotoResult::Captions(c) => println!("{}\t{}", photo.display(), c[0].text),
            PhotoResult::Unreadable(why) => eprintln!("{}: {why}", photo.display()),
        }
    }
    Ok(())
}
