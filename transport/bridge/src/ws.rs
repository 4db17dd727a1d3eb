//! `camring bridge ws`: WebSocket and HTTP on one port.
//!
//! - `/ws`: the binary multi-frame messages and JSON side messages of docs/protocol.md,
//!   per-client settings from the URL and from control messages.
//! - `/`, `/viewer.js`, `/worker.js`: the browser viewer.
//! - `/snapshot/{camera}.jpg`: the newest image of a camera.
//! - `/mjpeg/{camera}`: `multipart/x-mixed-replace`, as `<img>` tags and VLC play it.
//! - `/metrics` (Prometheus text format), `/healthz`.
//!
//! With a token set, `/ws`, `/snapshot`, `/mjpeg` and `/metrics` need it, as the `token`
//! query parameter or an `Authorization: Bearer` header; the viewer page and `/healthz`
//! do not (they reveal nothing of the cameras).

mod client;
mod http;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use camring_protocol::control::{
    ProducerStatus, Quality, Settings, SettingsUpdate, CLOSE_MESSAGE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA, DEFAULT_MAX_CLIENTS, DEFAULT_QUALITY, MAX_CLIENT_MESSAGE,
};
use camring_shm::clock::now_ns;
use futures_util::{SinkExt, StreamExt};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use crate::driver::{self, ClientSlot, Clients, ControlSource, Driver, Incoming};
use crate::encode::{CachedFrame, Variant};
use crate::metrics::{self, Metrics};
use crate::ring::{self, RingFeed};
use camring_protocol::session::{Cadence, Close, Offer, Output, Session};
use client::ws_handler;
use http::{healthz, metrics_page, mjpeg, page, snapshot, VIEWER_HTML, VIEWER_JS, WORKER_JS};

/// Unsent bytes the kernel may hold per connection (`TCP_NOTSENT_LOWAT`): what a slow
/// client has queued beyond its two frames in flight stays small, so its latency cannot
/// grow with a deep socket buffer. Bytes sent and not yet acknowledged are not limited.
pub const NOTSENT_LOWAT: u32 = 128 * 1024;
/// A client that takes no bytes for this long is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once (HTTP and upgraded); more are closed as they come.
pub const MAX_CONNECTIONS: usize = 1024;
/// Largest request head hyper buffers.
const MAX_REQUEST_BUFFER: usize = 64 * 1024;
/// The multipart boundary of `/mjpeg`.
const BOUNDARY: &str = "camringframe";

/// What `camring bridge ws` serves, and how.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// The ring's name.
    pub ring: String,
    /// Address to listen on (localhost by default).
    pub listen: SocketAddr,
    /// The token every client must present, if any.
    pub token: Option<String>,
    /// Most clients (WebSocket and MJPEG) served at once.
    pub max_clients: usize,
}

impl WsConfig {
    /// Ring `ring` on 127.0.0.1:8080, no token, [`DEFAULT_MAX_CLIENTS`].
    pub fn new(ring: impl Into<String>) -> WsConfig {
        WsConfig {
            ring: ring.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// The state every request shares.
#[derive(Debug)]
struct App {
    config: WsConfig,
    feed: Arc<RingFeed>,
    metrics: Arc<Metrics>,
    clients: Arc<Clients>,
    shutdown: watch::Receiver<bool>,
}

/// A bound WebSocket adapter; [`WsBridge::run`] serves until told to stop.
#[derive(Debug)]
pub struct WsBridge {
    listener: TcpListener,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
    ring_thread: std::thread::JoinHandle<()>,
}

impl WsBridge {
    /// Binds `config.listen` and starts reading the ring (which need not exist yet).
    pub async fn bind(config: WsConfig) -> std::io::Result<WsBridge> {
        let listener = TcpListener::bind(config.listen).await?;
        let feed = RingFeed::new();
        let metrics = Arc::new(Metrics::new());
        let ring_thread =
            ring::spawn(config.ring.clone(), Arc::clone(&feed), Arc::clone(&metrics))?;
        let (shutdown, rx) = watch::channel(false);
        let clients = Arc::new(Clients::new(config.max_clients, Arc::clone(&metrics)));
        let app = Arc::new(App {
            config,
            feed,
            metrics,
            clients,
            shutdown: rx,
        });
        Ok(WsBridge {
            listener,
            app,
            shutdown,
            ring_thread,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Its counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.app.metrics)
    }

    /// Serves until `stop` completes; then closes every client (WebSocket close 1001,
    /// MJPEG streams end) and stops reading the ring.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let WsBridge {
            listener,
            app,
            shutdown,
            ring_thread,
        } = self;
        let router = router(Arc::clone(&app));
        let shutdown = Arc::new(shutdown);
        let stopping = {
            let shutdown = Arc::clone(&shutdown);
            tokio::spawn(async move {
                stop.await;
                let _ = shutdown.send(true);
            })
        };
        let served = accept_loop(listener, router, app.shutdown.clone()).await;
        stopping.abort();
        let _ = shutdown.send(true);
        // Upgraded connections are not the server's any more: give them a moment to send
        // their close frames.
        let deadline = Instant::now() + Duration::from_secs(2);
        while app.clients.count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        app.feed.stop();
        let _ = tokio::task::spawn_blocking(move || ring_thread.join()).await;
        served
    }
}

/// Accepts connections until `shutdown`, each served by hyper (HTTP/1.1 with upgrades)
/// under `router`. A connection must send its request headers within
/// [`HEADER_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are open at once (upgraded WebSockets
/// and MJPEG streams are further limited by `--max-clients`).
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return Ok(()),
        };
        // SYNC POINT: Relaxed: a count of open connections; nothing is read through it.
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            continue; // dropping the stream closes it
        }
        if let Err(e) = tune(&tcp) {
            tracing::debug!("socket options: {e}");
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut shutdown = shutdown.clone();
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BUFFER);
            let io = hyper_util::rt::TokioIo::new(tcp);
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(conn);
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!("connection: {e}");
                    }
                }
                _ = stopped(&mut shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = timeout(Duration::from_secs(2), conn).await;
                }
            }
            // SYNC POINT: Relaxed, see above.
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Completes once shutdown is signalled (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Low latency for every accepted connection: no Nagle, little unsent data queued.
fn tune(tcp: &tokio::net::TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    socket2::SockRef::from(tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT)
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", VIEWER_HTML) }),
        )
        .route(
            "/viewer.js",
            get(|| async { page("text/javascript; charset=utf-8", VIEWER_JS) }),
        )
        .route(
            "/worker.js",
            get(|| async { page("text/javascript; charset=utf-8", WORKER_JS) }),
        )
        .route("/ws", get(ws_handler))
        .route("/snapshot/{file}", get(snapshot))
        .route("/mjpeg/{camera}", get(mjpeg))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .with_state(app)
}

/// A request refused before it is served: counted, answered with its status and text.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(app: &App, status: StatusCode, reason: &'static str, message: String) -> Refusal {
        app.metrics
            .refused
            .get_or_create(&metrics::reason(reason))
            .inc();
        Refusal { status, message }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let headers = [(header::CACHE_CONTROL, "no-store")];
        (self.status, headers, self.message + "\n").into_response()
    }
}

type Pairs = Query<Vec<(String, String)>>;

/// Checks the token (query `token` or `Authorization: Bearer`), in constant time.
fn authorize(app: &App, pairs: &[(String, String)], headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(expected) = &app.config.token else {
        return Ok(());
    };
    let given = pairs
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        });
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(Refusal::new(
            app,
            StatusCode::UNAUTHORIZED,
            "token",
            "wrong token".into(),
        )),
        None => Err(Refusal::new(
            app,
            StatusCode::UNAUTHORIZED,
            "token",
            "this server needs a token (?token=...)".into(),
        )),
    }
}

fn settings_from(app: &App, pairs: &[(String, String)]) -> Result<SettingsUpdate, Refusal> {
    SettingsUpdate::from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| Refusal::new(app, StatusCode::BAD_REQUEST, "parameter", e.to_string()))
}

/// A place among `--max-clients` for a client of `kind`, or a 503.
fn take_slot(app: &Arc<App>, kind: &'static str) -> Result<ClientSlot, Refusal> {
    app.clients.take(kind).ok_or_else(|| {
        Refusal::new(
            app,
            StatusCode::SERVICE_UNAVAILABLE,
            "full",
            format!("too many clients (at most {})", app.clients.max()),
        )
    })
}
