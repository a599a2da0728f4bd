//! `autocaption serve` as a library: captions over HTTP from one shared
//! [`Captioner`](autocaption_pipeline::Captioner).
//!
//! - `POST /v1/captions`: an image as the body (or several as `multipart/form-data`), options
//!   `beam`, `max_words`, `length_alpha`, `alternatives` in the query → JSON with the caption,
//!   its score, the alternatives and where the time went.
//! - `GET /healthz`, `/readyz` (model loaded, not draining), `/metrics` (Prometheus),
//!   `/openapi.json`, and a page at `/` to pick or drop a photo.
//!
//! Requests that arrive together are encoded and captioned in one batch on an engine thread
//! of their own, off the async runtime; images are decoded on the blocking pool, a bounded
//! number at once. Every resource is bounded ([`ServeSettings`]): body bytes, pixels, images
//! a request, requests admitted (`503` with `Retry-After` beyond), connections, and the time
//! to read a request and to answer it. SIGTERM drains: new requests get `503`, those in
//! flight finish.

mod api;
pub mod bench;
pub mod client;
mod engine;
mod metrics;
mod openapi;
mod server;
mod settings;

pub use openapi::spec as openapi_spec;
pub use server::{run_until_signal, start, Loader, Running, ServeEvent};
pub use settings::ServeSettings;

/// What can go wrong starting or running a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The model could not be loaded.
    #[error("{0}")]
    Load(String),
    /// The runtime could not start, or a benchmark's client failed.
    #[error("{0}")]
    Runtime(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
