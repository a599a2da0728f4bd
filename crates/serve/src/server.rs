//! The listener: connections bounded in number and in the time their headers may take, each
//! served by hyper over the API's router, and a graceful drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use autocaption_pipeline::Captioner;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{oneshot, Semaphore};

use crate::api::{self, App, Ready};
use crate::engine::Engine;
use crate::{Error, Result, ServeSettings};

/// Loads the captioner (on a blocking thread, while `/healthz` already answers).
pub type Loader = Box<dyn FnOnce() -> std::result::Result<Arc<Captioner>, String> + Send>;

/// What a server reports as it goes.
#[derive(Debug, Clone)]
pub enum ServeEvent {
    /// Listening on this address.
    Listening(SocketAddr),
    /// The model is loaded (in this long); requests are taken.
    Ready(Duration),
    /// A shutdown began: no new requests, those in flight finish.
    Draining,
    /// Every connection is closed.
    Stopped,
}

/// Receives [`ServeEvent`]s.
pub type OnEvent = Arc<dyn Fn(ServeEvent) + Send + Sync>;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("autocaption-serve")
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the async runtime: {e}")))
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })?;
    l.set_nonblocking(true).map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })?;
    Ok(l)
}

/// Serves on `addr` until SIGINT or SIGTERM, then drains (up to `settings.grace`).
pub fn run_until_signal(
    addr: SocketAddr,
    loader: Loader,
    settings: ServeSettings,
    on_event: OnEvent,
) -> Result<()> {
    settings.validate()?;
    let listener = bind(addr)?;
    let rt = runtime()?;
    rt.block_on(serve(listener, loader, settings, on_event, signal()))
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// A server running on threads of its own (tests, benchmarks, a program embedding it).
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Running {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drains and stops it; the error that stopped it, if any.
    pub fn stop(mut self) -> Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(Error::Runtime("the server thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Starts a server on `addr` (port 0: any free port) on threads of its own.
pub fn start(
    addr: SocketAddr,
    loader: Loader,
    settings: ServeSettings,
    on_event: OnEvent,
) -> Result<Running> {
    settings.validate()?;
    let listener = bind(addr)?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let rt = runtime()?;
    let (tx, rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("autocaption-serve-main".into())
        .spawn(move || {
            rt.block_on(serve(listener, loader, settings, on_event, async {
                let _ = rx.await;
            }))
        })
        .map_err(|e| Error::Runtime(format!("cannot start the server thread: {e}")))?;
    Ok(Running {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}

async fn serve(
    listener: std::net::TcpListener,
    loader: Loader,
    settings: ServeSettings,
    on_event: OnEvent,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::Runtime(format!("cannot use the listener: {e}")))?;
    if let Ok(a) = listener.local_addr() {
        on_event(ServeEvent::Listening(a));
    }
    let (max_connections, read_timeout, grace) = (
        settings.max_connections,
        settings.read_timeout,
        settings.grace,
    );
    let app = Arc::new(App::new(settings));
    let router = api::router(app.clone());

    // Load the model while the listener already answers /healthz (and /readyz says 503).
    let (fail_tx, mut failed) = oneshot::channel::<String>();
    {
        let app = app.clone();
        let on_event = on_event.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            match tokio::task::spawn_blocking(loader).await {
                Ok(Ok(captioner)) => {
                    let Some(encoder) = captioner.encoder() else {
                        let _ = fail_tx.send(format!(
                            "{}: loaded without an encoder; a server captions photos",
                            captioner.model().path.display()
                        ));
                        return;
                    };
                    let encoder_name = serde_json::to_value(encoder.spec().kind)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    let s = &app.settings;
                    let engine = Engine::start(
                        captioner.clone(),
                        s.max_batch,
                        s.batch_wait,
                        app.upstream.clone(),
                        app.metrics.clone(),
                    );
                    // Not its path: clients need not know the server's file system.
                    let model = captioner.model().name();
                    let _ = app.ready.set(Ready {
                        captioner,
                        engine,
                        model,
                        encoder: encoder_name,
                    });
                    on_event(ServeEvent::Ready(t.elapsed()));
                }
                Ok(Err(e)) => {
                    let _ = fail_tx.send(e);
                }
                Err(_) => {
                    let _ = fail_tx.send("loading the model panicked".into());
                }
            }
        });
    }

    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(max_connections));
    let mut loading = true;
    tokio::pin!(shutdown);
    let outcome = loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Ok(()),
            },
            _ = &mut shutdown => break Ok(()),
            e = &mut failed, if loading => match e {
                Ok(why) => break Err(Error::Load(why)),
                Err(_) => { loading = false; continue; }
            },
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                // Out of file descriptors and the like: wait, then accept again.
                Err(_) => { tokio::time::sleep(Duration::from_millis(20)).await; continue; }
            },
            _ = &mut shutdown => break Ok(()),
            e = &mut failed, if loading => match e {
                Ok(why) => break Err(Error::Load(why)),
                Err(_) => { loading = false; continue; }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    };
    app.draining.store(true, Ordering::Release);
    on_event(ServeEvent::Draining);
    drop(listener);
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    on_event(ServeEvent::Stopped);
    outcome
}
