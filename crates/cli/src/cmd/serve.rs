//! `autocaption serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use autocaption_pipeline::{Captioner, EncoderSource};
use autocaption_serve::{run_until_signal, ServeEvent, ServeSettings};

use crate::decode_args::DecodeArgs;
use crate::Global;

/// Serve captions over HTTP: `POST /v1/captions` with a photo as the body (or several as
/// multipart/form-data) answers JSON with the caption, its score, the other beams and where
/// the time went.
///
/// Also `GET /` (a page to pick or drop a photo), `/healthz`, `/readyz` (model loaded),
/// `/metrics` (Prometheus) and `/openapi.json`. Requests that arrive together are encoded and
/// captioned in one batch. Every resource is bounded: a full queue answers 503 with
/// Retry-After, an oversized body or image 413, an undecodable image 400, a wrong content type
/// 415, a bad option 422, a slow body 408. SIGTERM or Ctrl-C drains: requests in flight finish,
/// new ones get 503.
///
/// Example: `curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg'
/// 'http://127.0.0.1:8080/v1/captions?beam=3&alternatives=true'`
#[derive(Debug, clap::Args)]
#[command(long_about)]
pub struct Args {
    /// Model directory (from `autocaption train`).
    #[arg(long, short)]
    model: PathBuf,

    /// The encoder weights the model's features were made with, or `random` with --seed; by
    /// default the encoder the model records.
    #[arg(long)]
    weights: Option<String>,

    /// Seed of `--weights random`.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Address to listen on (use 0.0.0.0:PORT to accept other machines).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// Beam width of a request that names none (1: greedy).
    #[arg(long, default_value_t = 3)]
    beam: usize,

    #[command(flatten)]
    decode: DecodeArgs,

    /// Widest beam a request may ask for.
    #[arg(long, default_value_t = 16)]
    max_beam: usize,

    /// Most images encoded and captioned together (1: no batching).
    #[arg(long, default_value_t = 8)]
    max_batch: usize,

    /// How long a batch waits for requests still being read or decoded, in ms (a lone
    /// request never waits).
    #[arg(long, default_value_t = 5)]
    batch_wait_ms: u64,

    /// Most requests admitted at once; the next gets 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,

    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 20 << 20)]
    max_body_bytes: usize,

    /// Largest image, in pixels (checked from its header, before decoding).
    #[arg(long, default_value_t = 40_000_000)]
    max_pixels: u64,

    /// Most images in one multipart request.
    #[arg(long, default_value_t = 32)]
    max_images: usize,

    /// Time to read a request's headers, and its body, in ms (408 beyond).
    #[arg(long, default_value_t = 10_000)]
    read_timeout_ms: u64,

    /// Time from a request's body to its caption, in ms (503 beyond).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,

    /// Most open connections.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,

    /// Images decoded at once (default: one a core).
    #[arg(long)]
    decoders: Option<usize>,

    /// How long a shutdown waits for requests in flight, in ms.
    #[arg(long, default_value_t = 30_000)]
    grace_ms: u64,
}

impl Args {
    /// The settings, checked.
    pub fn settings(&self) -> anyhow::Result<ServeSettings> {
        let base = ServeSettings::default();
        let s = ServeSettings {
            max_batch: self.max_batch,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            queue: self.queue,
            max_body_bytes: self.max_body_bytes,
            max_pixels: self.max_pixels,
            max_images: self.max_images,
            max_beam: self.max_beam,
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            max_connections: self.max_connections,
            decoders: self.decoders.unwrap_or(base.decoders),
            grace: Duration::from_millis(self.grace_ms),
            defaults: self.decode.options(self.beam)?,
        };
        s.validate()?;
        Ok(s)
    }
}

/// Runs `serve` until SIGINT or SIGTERM.
pub fn run(args: Args, global: Global) -> anyhow::Result<()> {
    let settings = args.settings()?;
    if !args.model.join("config.json").is_file() {
        anyhow::bail!(
            "{}: not a model directory (no config.json); train one with `autocaption train`",
            args.model.display()
        );
    }
    let weights = args
        .weights
        .as_deref()
        .map(|w| EncoderSource::parse(w, args.seed));
    let model = args.model.clone();
    let loader = Box::new(move || {
        Captioner::load(&model, weights.as_ref())
            .map(Arc::new)
            .map_err(|e| e.to_string())
    });
    let quiet = global.quiet;
    let on_event = Arc::new(move |e: ServeEvent| {
        if quiet {
            return;
        }
        match e {
            ServeEvent::Listening(a) => eprintln!("listening on http://{a} (loading the model)"),
            ServeEvent::Ready(t) => {
                eprintln!("ready: model loaded in {:.1} s", t.as_secs_f64())
            }
            ServeEvent::Draining => eprintln!("shutting down: finishing requests in flight"),
            ServeEvent::Stopped => eprintln!("stopped"),
        }
    });
    run_until_signal(args.addr, loader, settings, on_event)?;
    Ok(())
}
