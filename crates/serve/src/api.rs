//! The HTTP API: routes, request checks, and JSON answers and errors.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use autocaption_pipeline::{Caption, CaptionOptions, Captioner, MAX_WORDS};
use autocaption_vision::ImageError;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tokio::sync::{oneshot, Semaphore};

use crate::engine::{Done, Engine, Job};
use crate::metrics::Metrics;
use crate::settings::ServeSettings;

/// The loaded model and its engine.
pub(crate) struct Ready {
    pub captioner: Arc<Captioner>,
    pub engine: Engine,
    pub model: String,
    pub encoder: String,
}

/// What every handler shares.
pub(crate) struct App {
    pub settings: ServeSettings,
    pub metrics: Arc<Metrics>,
    pub ready: OnceLock<Ready>,
    pub draining: AtomicBool,
    /// Requests admitted whose images are not yet queued for the engine.
    pub upstream: Arc<AtomicUsize>,
    pub decoders: Semaphore,
}

impl App {
    pub(crate) fn new(settings: ServeSettings) -> Self {
        let decoders = Semaphore::new(settings.decoders);
        Self {
            settings,
            metrics: Arc::new(Metrics::new()),
            ready: OnceLock::new(),
            draining: AtomicBool::new(false),
            upstream: Arc::new(AtomicUsize::new(0)),
            decoders,
        }
    }
}

/// The routes, with request counting around them.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/captions", post(captions))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// The routes a metric names (anything else is "other").
const ROUTES: [&str; 6] = [
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/v1/captions",
];

async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| ROUTES.iter().find(|r| **r == m.as_str()))
        .copied()
        .unwrap_or("other");
    let response = next.run(req).await;
    app.metrics.count(route, response.status().as_u16());
    if route == "/v1/captions" {
        app.metrics.latency.observe(started.elapsed().as_secs_f64());
    }
    response
}

/// An error as JSON: `{"error": {"status", "code", "message"}}`, with `Retry-After` on 503.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn detail(&self) -> ErrorDetail<'_> {
        ErrorDetail {
            status: self.status.as_u16(),
            code: self.code,
            message: &self.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(ErrorBody {
                error: self.detail(),
            }),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {}; see /openapi.json",
            req.uri().path().chars().take(200).collect::<String>()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed here; see /openapi.json", req.method()),
    )
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "draining"})),
        )
            .into_response();
    }
    match app.ready.get() {
        Some(r) => Json(serde_json::json!({
            "status": "ready",
            "model": r.model,
            "encoder": r.encoder,
            "defaults": {
                "beam": app.settings.defaults.beam,
                "max_words": app.settings.defaults.max_words,
                "length_alpha": app.settings.defaults.length_alpha,
            },
            "max_beam": app.settings.max_beam,
            "max_body_bytes": app.settings.max_body_bytes,
            "max_pixels": app.settings.max_pixels,
        }))
        .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "loading"})),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let ready = app.ready.get().is_some() && !app.draining.load(Ordering::Acquire);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(ready),
    )
        .into_response()
}

async fn openapi(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(crate::openapi::spec(&app.settings))
}

/// Decreases a counter when dropped.
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn take(c: &'a AtomicUsize) -> (Self, usize) {
        let now = c.fetch_add(1, Ordering::AcqRel) + 1;
        (Self(c), now)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Time spent on each stage of one image, in milliseconds.
#[derive(Debug, Serialize)]
struct Timings {
    read_ms: f64,
    decode_ms: f64,
    queue_ms: f64,
    encode_ms: f64,
    caption_ms: f64,
    total_ms: f64,
    /// Images encoded together with this one.
    batch: usize,
}

/// One image's answer.
#[derive(Debug, Serialize)]
struct Captioned {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    caption: String,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    alternatives: Option<Vec<Caption>>,
    timings: Timings,
}

/// One image of a multipart request that could not be captioned.
#[derive(Serialize)]
struct Failed<'a> {
    name: String,
    error: ErrorDetail<'a>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Decoding options from the query string; anything unknown or out of range is a 422.
fn options(query: Option<&str>, s: &ServeSettings) -> Result<(CaptionOptions, bool), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_option", m);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| bad(format!("the query string cannot be read: {e}")))?;
    let mut opts = s.defaults;
    let mut alternatives = false;
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &pairs {
        if seen.contains(&k.as_str()) {
            return Err(bad(format!("option {k:?} is given twice")));
        }
        seen.push(k);
        let int = |lo: usize, hi: usize| -> Result<usize, ApiError> {
            v.parse::<usize>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "{k} must be a whole number from {lo} to {hi}, got {v:?}"
                    ))
                })
        };
        match k.as_str() {
            "beam" => opts.beam = int(1, s.max_beam)?,
            "max_words" => opts.max_words = int(1, MAX_WORDS)?,
            "length_alpha" => {
                opts.length_alpha = v
                    .parse::<f64>()
                    .ok()
                    .filter(|a| a.is_finite() && (0.0..=10.0).contains(a))
                    .ok_or_else(|| {
                        bad(format!(
                            "length_alpha must be a number from 0 to 10, got {v:?}"
                        ))
                    })?
            }
            "alternatives" => {
                alternatives = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(bad(format!(
                            "alternatives must be true or false, got {v:?}"
                        )))
                    }
                }
            }
            _ => {
                return Err(bad(format!(
                    "unknown option {:?} (known: beam, max_words, length_alpha, alternatives)",
                    k.chars().take(100).collect::<String>()
                )))
            }
        }
    }
    Ok((opts, alternatives))
}

/// How the body carries its images.
enum Carrier {
    One,
    Multipart(String),
}

/// Media types taken as one image (the bytes decide the format).
const IMAGE_TYPES: [&str; 8] = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/x-portable-anymap",
    "application/octet-stream",
];

fn carrier(headers: &HeaderMap) -> Result<Carrier, ApiError> {
    let unsupported = |m: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            m,
        )
    };
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported(
            "no Content-Type: send the image's bytes as image/jpeg, image/png, … or \
             application/octet-stream, or several images as multipart/form-data"
                .into(),
        ));
    };
    let ct = ct
        .to_str()
        .map_err(|_| unsupported("Content-Type is not text".into()))?;
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if IMAGE_TYPES.contains(&essence.as_str()) {
        return Ok(Carrier::One);
    }
    if essence == "multipart/form-data" {
        return multer::parse_boundary(ct)
            .map(Carrier::Multipart)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_multipart",
                    format!("multipart/form-data: {e}"),
                )
            });
    }
    Err(unsupported(format!(
        "Content-Type {:?} is not an image: send the image's bytes as image/jpeg, image/png, … \
         or application/octet-stream, or several images as multipart/form-data",
        essence.chars().take(100).collect::<String>()
    )))
}

fn too_large(what: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", what)
}

async fn read_body(body: Body, s: &ServeSettings) -> Result<Bytes, ApiError> {
    let limited = Limited::new(body, s.max_body_bytes);
    match tokio::time::timeout(s.read_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "read_timeout",
            format!(
                "the body did not arrive within {} ms",
                s.read_timeout.as_millis()
            ),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(format!(
            "the body is larger than the limit of {} bytes",
            s.max_body_bytes
        ))),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("the body could not be read: {e}"),
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// The images of a multipart body, with their names.
async fn parts(
    body: Bytes,
    boundary: String,
    s: &ServeSettings,
) -> Result<Vec<(String, Bytes)>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", m);
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                if out.len() == s.max_images {
                    return Err(too_large(format!(
                        "more than {} images in one request",
                        s.max_images
                    )));
                }
                let name = field
                    .file_name()
                    .or(field.name())
                    .map(|n| n.chars().take(200).collect())
                    .unwrap_or_else(|| format!("image {}", out.len() + 1));
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| bad(format!("multipart/form-data: {e}")))?;
                out.push((name, data));
            }
            Ok(None) => break,
            Err(e) => return Err(bad(format!("multipart/form-data: {e}"))),
        }
    }
    if out.is_empty() {
        return Err(bad("the multipart body holds no image".into()));
    }
    Ok(out)
}

/// Decodes and preprocesses one image off the runtime's threads, a bounded number at once.
async fn decode(app: &App, ready: &Ready, name: &str, bytes: Bytes) -> Result<Vec<f32>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_image",
            format!("{name}: the image is empty (0 bytes)"),
        ));
    }
    let _permit = app.decoders.acquire().await.map_err(|_| shutting_down())?;
    let captioner = ready.captioner.clone();
    let max_pixels = app.settings.max_pixels;
    let label = std::path::PathBuf::from(name);
    let r = tokio::task::spawn_blocking(move || {
        let img = autocaption_vision::decode_rgb(&bytes, &label, max_pixels)?;
        let encoder = captioner
            .encoder()
            .expect("a serving captioner has an encoder");
        Ok::<_, ImageError>(encoder.preprocess(&img))
    })
    .await;
    match r {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e @ ImageError::TooLarge { .. })) => Err(too_large(e.to_string())),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_image",
            e.to_string(),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_image",
            format!("{name}: the decoder failed on this image"),
        )),
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is shutting down",
    )
}

/// Decodes, queues and waits for one image.
async fn one(
    app: &App,
    ready: &Ready,
    name: String,
    bytes: Bytes,
    opts: CaptionOptions,
    upstream: Held<'_>,
) -> Result<(Done, Duration), ApiError> {
    let t = Instant::now();
    let input = decode(app, ready, &name, bytes).await?;
    let decoded = t.elapsed();
    let (tx, rx) = oneshot::channel();
    let job = Job {
        input,
        opts,
        reply: tx,
        queued_at: Instant::now(),
    };
    // No longer on its way: a batch the engine is gathering must not wait for this image on
    // its account (it is in the channel at once, or in the next batch).
    drop(upstream);
    if !ready.engine.submit(job) {
        return Err(shutting_down());
    }
    match rx.await {
        Ok(Ok(done)) => Ok((done, decoded)),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "engine",
            e,
        )),
        Err(_) => Err(shutting_down()),
    }
}

fn answer(
    name: Option<String>,
    done: Done,
    decode: Duration,
    read: Duration,
    started: Instant,
    alternatives: bool,
) -> Captioned {
    let mut captions = done.captions.into_iter();
    let best = captions.next().unwrap_or(Caption {
        text: String::new(),
        score: f64::NEG_INFINITY,
    });
    Captioned {
        name,
        caption: best.text,
        score: if best.score.is_finite() {
            best.score
        } else {
            -1e300
        },
        alternatives: alternatives.then(|| captions.collect()),
        timings: Timings {
            read_ms: ms(read),
            decode_ms: ms(decode),
            queue_ms: ms(done.queue),
            encode_ms: ms(done.encode),
            caption_ms: ms(done.caption),
            total_ms: ms(started.elapsed()),
            batch: done.batch,
        },
    }
}

async fn captions(State(app): State<Arc<App>>, req: Request) -> Response {
    match caption_request(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn caption_request(app: &App, req: Request) -> Result<Response, ApiError> {
    let started = Instant::now();
    if app.draining.load(Ordering::Acquire) {
        return Err(shutting_down());
    }
    let Some(ready) = app.ready.get() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "loading",
            "the model is still loading",
        ));
    };
    let s = &app.settings;
    let (_admitted, count) = Held::take(&app.metrics.in_flight);
    if count > s.queue {
        app.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            format!("{} requests are already in the queue; retry later", s.queue),
        ));
    }
    let (opts, alternatives) = options(req.uri().query(), s)?;
    let carrier = carrier(req.headers())?;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > s.max_body_bytes as u64 {
            return Err(too_large(format!(
                "the body ({len} bytes) is larger than the limit of {} bytes",
                s.max_body_bytes
            )));
        }
    }
    let (upstream, _) = Held::take(&app.upstream);
    let body = read_body(req.into_body(), s).await?;
    let read = started.elapsed();
    let deadline = tokio::time::Instant::from_std(started + s.timeout);
    let timed_out = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "no caption within {} ms; retry later",
                s.timeout.as_millis()
            ),
        )
    };
    match carrier {
        Carrier::One => {
            let work = one(app, ready, "the image".into(), body, opts, upstream);
            let (done, decode) = tokio::time::timeout_at(deadline, work)
                .await
                .map_err(|_| timed_out())??;
            app.metrics.images.fetch_add(1, Ordering::Relaxed);
            Ok(Json(answer(None, done, decode, read, started, alternatives)).into_response())
        }
        Carrier::Multipart(boundary) => {
            let images = parts(body, boundary, s).await?;
            let work = async {
                // Each image is on its way on its own account from here.
                let jobs: Vec<_> = images
                    .into_iter()
                    .map(|(name, bytes)| {
                        let (u, _) = Held::take(&app.upstream);
                        async move {
                            let r = one(app, ready, name.clone(), bytes, opts, u).await;
                            (name, r)
                        }
                    })
                    .collect();
                drop(upstream);
                futures_util::future::join_all(jobs).await
            };
            let results = tokio::time::timeout_at(deadline, work)
                .await
                .map_err(|_| timed_out())?;
            let mut out = Vec::with_capacity(results.len());
            let mut first_error = None;
            let mut any = false;
            for (name, r) in results {
                match r {
                    Ok((done, decode)) => {
                        any = true;
                        app.metrics.images.fetch_add(1, Ordering::Relaxed);
                        let c = answer(Some(name), done, decode, read, started, alternatives);
                        out.push(serde_json::to_value(c).unwrap_or_default());
                    }
                    Err(e) => {
                        let f = Failed {
                            name,
                            error: e.detail(),
                        };
                        out.push(serde_json::to_value(f).unwrap_or_default());
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) if !any => Err(e),
                _ => Ok(Json(serde_json::json!({ "results": out })).into_response()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_named() {
        let s = ServeSettings::default();
        let (o, alt) = options(Some("beam=1&max_words=5&alternatives=true"), &s).unwrap();
        assert_eq!((o.beam, o.max_words, alt), (1, 5, true));
        for (q, needle) in [
            ("beam=0", "beam must be a whole number from 1 to 16"),
            ("beam=17", "from 1 to 16"),
            ("max_words=x", "max_words must be"),
            ("length_alpha=nan", "length_alpha must be"),
            ("alternatives=maybe", "alternatives must be"),
            ("colour=red", "unknown option \"colour\""),
            ("beam=1&beam=2", "given twice"),
        ] {
            let e = options(Some(q), &s).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
            assert!(e.message.contains(needle), "{q}: {}", e.message);
        }
    }

    #[test]
    fn content_types_decide_the_carrier() {
        let mut h = HeaderMap::new();
        assert_eq!(
            carrier(&h).err().unwrap().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("IMAGE/JPEG; q=1"),
        );
        assert!(matches!(carrier(&h), Ok(Carrier::One)));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(
            carrier(&h).err().unwrap().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=xyz"),
        );
        assert!(matches!(carrier(&h), Ok(Carrier::Multipart(b)) if b == "xyz"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data"),
        );
        assert_eq!(carrier(&h).err().unwrap().status, StatusCode::BAD_REQUEST);
    }
}
