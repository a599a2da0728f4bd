//! `autocaption bench serve`: a load generator on loopback against a server in this process,
//! with the library's own batch run and single-photo calls measured in the same sitting.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autocaption_io::{NoProgress, Progress};
use autocaption_pipeline::{CaptionOptions, Captioner, PhotoResult};
use bytes::Bytes;

use crate::client::Client;
use crate::{start, Error, Result, ServeSettings};

/// What to measure.
#[derive(Debug, Clone)]
pub struct ServeBench {
    /// Concurrent clients, one keep-alive connection each.
    pub concurrency: Vec<usize>,
    /// Requests a cell (after four unmeasured ones).
    pub requests: usize,
    /// Most seconds a cell runs.
    pub seconds: f64,
    /// The server's settings with batching; without batching, `max_batch` is 1.
    pub settings: ServeSettings,
    /// Decoding options of every request and of the reference runs.
    pub options: CaptionOptions,
}

/// One cell: a concurrency, with or without batching.
#[derive(Debug, Clone)]
pub struct ServeRow {
    /// Batching on.
    pub batching: bool,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Requests answered 200.
    pub ok: usize,
    /// Requests answered otherwise, or failed.
    pub failed: usize,
    /// Wall time of the cell.
    pub seconds: f64,
    /// Captions a second.
    pub per_second: f64,
    /// Latency percentiles, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Mean images a batch, as the answers report.
    pub mean_batch: f64,
}

/// The reference and every cell.
#[derive(Debug, Clone)]
pub struct ServeBenchReport {
    /// Photos cycled through.
    pub photos: usize,
    /// `caption` on every photo in one batch run (the library call `caption` makes),
    /// captions a second.
    pub batch_per_second: f64,
    /// One photo → caption, one call a photo: median, ms.
    pub single_median_ms: f64,
    /// The same, 99th percentile, ms.
    pub single_p99_ms: f64,
    /// The cells, without batching first.
    pub rows: Vec<ServeRow>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Measures `captioner` serving `photos` (read into memory first).
pub fn bench_serve(
    captioner: Arc<Captioner>,
    photos: &[PathBuf],
    s: &ServeBench,
    progress: &dyn Progress,
) -> Result<ServeBenchReport> {
    if photos.is_empty() {
        return Err(Error::Invalid("no photos to send".into()));
    }
    if s.concurrency.is_empty() || s.concurrency.iter().any(|&c| !(1..=1024).contains(&c)) {
        return Err(Error::Invalid(
            "--concurrency takes numbers from 1 to 1024".into(),
        ));
    }
    if !((1..=1_000_000).contains(&s.requests) && s.seconds > 0.0 && s.seconds <= 3600.0) {
        return Err(Error::Invalid(
            "--requests must be from 1 to 1000000 and --seconds from 0 to 3600".into(),
        ));
    }
    s.settings.validate()?;
    let bodies: Vec<Bytes> = photos
        .iter()
        .map(|p| autocaption_io::read(p).map(Bytes::from))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(e.to_string()))?;

    // The reference: the library's batch call, then one call a photo.
    let load = |r: Vec<PhotoResult>| -> Result<()> {
        match r.iter().find_map(|p| match p {
            PhotoResult::Unreadable(why) => Some(why.clone()),
            PhotoResult::Captions(_) => None,
        }) {
            Some(why) => Err(Error::Invalid(why)),
            None => Ok(()),
        }
    };
    progress.start("caption (one batch run)", 1);
    let _ = captioner.caption_files(&photos[..1], &s.options, &NoProgress);
    let t = Instant::now();
    load(
        captioner
            .caption_files(photos, &s.options, &NoProgress)
            .map_err(|e| Error::Invalid(e.to_string()))?,
    )?;
    let batch_per_second = photos.len() as f64 / t.elapsed().as_secs_f64();
    progress.finish();
    progress.start("caption (one photo a call)", photos.len() as u64);
    let mut single = Vec::with_capacity(photos.len());
    for p in photos {
        let t = Instant::now();
        load(
            captioner
                .caption_files(std::slice::from_ref(p), &s.options, &NoProgress)
                .map_err(|e| Error::Invalid(e.to_string()))?,
        )?;
        single.push(t.elapsed().as_secs_f64() * 1e3);
        progress.advance(1);
    }
    progress.finish();
    single.sort_by(f64::total_cmp);

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let mut rows = Vec::new();
    let widest = s.concurrency.iter().copied().max().unwrap_or(1);
    for batching in [false, true] {
        let mut settings = s.settings.clone();
        settings.queue = settings.queue.max(widest);
        settings.max_connections = settings.max_connections.max(widest + 8);
        if !batching {
            settings.max_batch = 1;
            settings.batch_wait = Duration::ZERO;
        }
        let c = captioner.clone();
        let server = start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            Box::new(move || Ok(c)),
            settings,
            Arc::new(|_| {}),
        )?;
        let addr = server.addr();
        client_rt.block_on(wait_ready(addr))?;
        for &conc in &s.concurrency {
            progress.start(
                &format!(
                    "serve, {} batching, concurrency {conc}",
                    if batching { "with" } else { "without" }
                ),
                s.requests as u64,
            );
            let row = client_rt.block_on(cell(addr, &bodies, conc, s, progress))?;
            progress.finish();
            rows.push(ServeRow { batching, ..row });
        }
        server.stop()?;
    }
    Ok(ServeBenchReport {
        photos: photos.len(),
        batch_per_second,
        single_median_ms: percentile(&single, 50.0),
        single_p99_ms: percentile(&single, 99.0),
        rows,
    })
}

async fn wait_ready(addr: SocketAddr) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(600);
    while Instant::now() < until {
        if let Ok(mut c) = Client::connect(addr).await {
            if matches!(c.get("/readyz").await, Ok(a) if a.status == 200) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(Error::Runtime("the server did not become ready".into()))
}

fn query(o: &CaptionOptions) -> String {
    format!(
        "/v1/captions?beam={}&max_words={}&length_alpha={}",
        o.beam, o.max_words, o.length_alpha
    )
}

async fn cell(
    addr: SocketAddr,
    bodies: &[Bytes],
    conc: usize,
    s: &ServeBench,
    progress: &dyn Progress,
) -> Result<ServeRow> {
    let path = Arc::new(query(&s.options));
    let bodies = Arc::new(bodies.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::<(bool, f64, usize)>::new()));
    // Unmeasured: a few requests to warm the server's pools and caches.
    let mut warm = Client::connect(addr).await.map_err(Error::Runtime)?;
    for body in bodies.iter().take(4) {
        let _ = warm
            .post(&path, "application/octet-stream", body.clone())
            .await;
    }
    drop(warm);
    let mut clients = Vec::new();
    for _ in 0..conc {
        clients.push(Client::connect(addr).await.map_err(Error::Runtime)?);
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(s.seconds);
    let mut tasks = Vec::new();
    for mut c in clients {
        let (path, bodies, next, results) =
            (path.clone(), bodies.clone(), next.clone(), results.clone());
        let total = s.requests;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let body = bodies[i % bodies.len()].clone();
                let t = Instant::now();
                let r = c.post(&path, "application/octet-stream", body).await;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let (ok, batch) = match r {
                    Ok(a) if a.status == 200 => {
                        let b = a.json()["timings"]["batch"].as_u64().unwrap_or(1) as usize;
                        (true, b)
                    }
                    _ => (false, 0),
                };
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((ok, ms, batch));
            }
        }));
    }
    let mut reported = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = results.lock().unwrap_or_else(|p| p.into_inner()).len();
        progress.advance((n - reported) as u64);
        reported = n;
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    let mut lat: Vec<f64> = results.iter().filter(|r| r.0).map(|r| r.1).collect();
    lat.sort_by(f64::total_cmp);
    let ok = lat.len();
    let batches: usize = results.iter().map(|r| r.2).sum();
    Ok(ServeRow {
        batching: false,
        concurrency: conc,
        ok,
        failed: results.len() - ok,
        seconds,
        per_second: ok as f64 / seconds,
        p50_ms: percentile(&lat, 50.0),
        p95_ms: percentile(&lat, 95.0),
        p99_ms: percentile(&lat, 99.0),
        mean_batch: if ok > 0 {
            batches as f64 / ok as f64
        } else {
            0.0
        },
    })
}
