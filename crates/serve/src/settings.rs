//! What a server may take on: every limit is here, checked before anything binds or loads.

use std::time::Duration;

use autocaption_pipeline::{CaptionOptions, MAX_BEAM, MAX_WORDS};

use crate::{Error, Result};

/// How a server batches and what it refuses.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Most images encoded and captioned together.
    pub max_batch: usize,
    /// How long the first request of a batch waits for others while more are on their way
    /// (being read or decoded); with nothing on its way a batch goes at once.
    pub batch_wait: Duration,
    /// Most requests admitted at once (reading, decoding, waiting for or in a batch); the
    /// next gets `503` with `Retry-After` before its body is read.
    pub queue: usize,
    /// Largest request body, in bytes (`413` beyond).
    pub max_body_bytes: usize,
    /// Largest image, in pixels (`413` beyond), checked from its header before decoding.
    pub max_pixels: u64,
    /// Most images in one multipart request.
    pub max_images: usize,
    /// Widest beam a request may ask for.
    pub max_beam: usize,
    /// Time to read a request's headers, and its body (`408` beyond).
    pub read_timeout: Duration,
    /// Time from a request's body to its captions (`503` with `Retry-After` beyond).
    pub timeout: Duration,
    /// Most open connections; more wait in the listen backlog.
    pub max_connections: usize,
    /// Images decoded at once (each holds up to `max_pixels` × 3 bytes while it decodes).
    pub decoders: usize,
    /// How long a shutdown waits for requests in flight.
    pub grace: Duration,
    /// What a request that names no option gets.
    pub defaults: CaptionOptions,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            max_batch: 8,
            batch_wait: Duration::from_millis(5),
            queue: 64,
            max_body_bytes: 20 << 20,
            max_pixels: 40_000_000,
            max_images: 32,
            max_beam: 16,
            read_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_connections: 512,
            decoders: std::thread::available_parallelism().map_or(2, |n| n.get()),
            grace: Duration::from_secs(30),
            defaults: CaptionOptions::default(),
        }
    }
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    flag: &str,
    value: T,
    lo: T,
    hi: T,
    unit: &str,
) -> Result<()> {
    if value < lo || value > hi {
        return Err(Error::Invalid(format!(
            "{flag} must be from {lo} to {hi}{unit}, got {value}"
        )));
    }
    Ok(())
}

impl ServeSettings {
    /// Checks every limit, naming the flag that sets it.
    pub fn validate(&self) -> Result<()> {
        range("--max-batch", self.max_batch, 1, 256, "")?;
        range(
            "--batch-wait-ms",
            self.batch_wait.as_millis(),
            0,
            1000,
            " ms",
        )?;
        range("--queue", self.queue, 1, 100_000, "")?;
        range("--max-body-bytes", self.max_body_bytes, 1024, 1 << 30, "")?;
        range(
            "--max-pixels",
            self.max_pixels,
            1,
            autocaption_vision::MAX_PIXELS,
            "",
        )?;
        range("--max-images", self.max_images, 1, 1024, "")?;
        range("--max-beam", self.max_beam, 1, MAX_BEAM, "")?;
        range(
            "--read-timeout-ms",
            self.read_timeout.as_millis(),
            1,
            3_600_000,
            " ms",
        )?;
        range(
            "--timeout-ms",
            self.timeout.as_millis(),
            1,
            3_600_000,
            " ms",
        )?;
        range("--max-connections", self.max_connections, 1, 65_536, "")?;
        range("--decoders", self.decoders, 1, 1024, "")?;
        range("--grace-ms", self.grace.as_millis(), 0, 3_600_000, " ms")?;
        self.defaults
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if self.defaults.beam > self.max_beam {
            return Err(Error::Invalid(format!(
                "--beam {} is wider than --max-beam {}",
                self.defaults.beam, self.max_beam
            )));
        }
        debug_assert!(self.defaults.max_words <= MAX_WORDS);
        Ok(())
    }
}
