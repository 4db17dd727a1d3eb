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

const VIEWER_HTML: &str = include_str!("../../../consumers/viewer/index.html");
const VIEWER_JS: &str = include_str!("../../../consumers/viewer/viewer.js");
const WORKER_JS: &str = include_str!("../../../consumers/viewer/worker.js");

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
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

async fn ws_handler(
    State(app): State<Arc<App>>,
    Query(pairs): Pairs,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Refusal> {
    authorize(&app, &pairs, &headers)?;
    let update = settings_from(&app, &pairs)?;
    let slot = take_slot(&app, "ws")?;
    let mut settings = Settings::default();
    settings.apply(&update);
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| connection(app, socket, settings, slot)))
}

/// The close frame a session's [`Close`] is sent as (none when the connection is gone).
fn close_frame(close: &Close) -> Option<CloseFrame> {
    let (code, reason) = match close {
        Close::Stopping => (1001, "server stopping".into()),
        Close::Done => (1000, "bye".into()),
        Close::Violation { code, reason } => (u16::try_from(*code).unwrap_or(1008), reason.clone()),
        Close::Lost => return None,
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// Whether a read error is a message over the size limit.
fn too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

/// A WebSocket client's control messages: its text messages.
struct WsControl<'a> {
    stream: futures_util::stream::SplitStream<WebSocket>,
    metrics: &'a Metrics,
}

impl ControlSource for WsControl<'_> {
    async fn next(&mut self) -> Incoming {
        match self.stream.next().await {
            None | Some(Ok(Message::Close(_))) => Incoming::End(None),
            Some(Ok(Message::Text(text))) => Incoming::Text(text.as_str().to_owned()),
            Some(Ok(Message::Binary(_))) => {
                self.metrics.protocol_errors.inc();
                Incoming::End(Some(Close::Violation {
                    code: CLOSE_UNSUPPORTED_DATA.into(),
                    reason: "binary messages are not accepted".into(),
                }))
            }
            Some(Ok(_)) => Incoming::Nothing, // ping and pong: tungstenite answers pings
            Some(Err(e)) => {
                self.metrics.protocol_errors.inc();
                if too_big(e) {
                    return Incoming::End(Some(Close::Violation {
                        code: CLOSE_MESSAGE_TOO_BIG.into(),
                        reason: format!("messages are limited to {MAX_CLIENT_MESSAGE} bytes"),
                    }));
                }
                Incoming::End(None)
            }
        }
    }
}

async fn connection(app: Arc<App>, socket: WebSocket, settings: Settings, _slot: ClientSlot) {
    let (sink, stream) = socket.split();
    let status = app.feed.status.borrow().clone();
    let driver = Arc::new(Driver::new(
        &app.config.ring,
        status,
        settings,
        Cadence::default(),
        Arc::clone(&app.metrics),
        "ws",
    ));
    let _demand = app.feed.demand();
    let mut writer = tokio::spawn(write_loop(
        Arc::clone(&driver),
        sink,
        Arc::clone(&app.metrics),
    ));
    let mut control = WsControl {
        stream,
        metrics: &app.metrics,
    };
    driver
        .run_feed(&app.feed, &mut control, app.shutdown.clone())
        .await;
    if timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Sends what the session gives until it closes or the connection fails.
async fn write_loop(
    driver: Arc<Driver<Arc<CachedFrame>>>,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    metrics: Arc<Metrics>,
) {
    loop {
        let output = loop {
            if let Some(o) = driver.poll(|s| s.poll_output()) {
                break o;
            }
            driver.wake.notified().await;
        };
        let message = match output {
            Output::Close(close) => {
                if let Some(frame) = close_frame(&close) {
                    let _ = timeout(
                        Duration::from_secs(1),
                        sink.send(Message::Close(Some(frame))),
                    )
                    .await;
                    let _ = timeout(Duration::from_secs(1), sink.close()).await;
                }
                return;
            }
            Output::Text(text) => Message::Text(text.to_json().into()),
            Output::Frame(job) => {
                let Some(built) = job.frame.message(job.variant, job.mask, &metrics).await else {
                    driver.lost(&job.frame);
                    continue;
                };
                if matches!(
                    timeout(
                        SEND_TIMEOUT,
                        sink.send(Message::Binary(built.bytes.clone()))
                    )
                    .await,
                    Ok(Ok(()))
                ) {
                    driver.sent(&built);
                    continue;
                }
                driver.writer_gone();
                return;
            }
        };
        if !matches!(timeout(SEND_TIMEOUT, sink.send(message)).await, Ok(Ok(()))) {
            driver.writer_gone();
            return;
        }
    }
}

/// The variant a snapshot or MJPEG request asks for (auto means the default quality).
fn request_variant(update: &SettingsUpdate) -> Variant {
    Variant {
        quality: match update.quality {
            Some(Quality::Fixed(q)) => q,
            _ => DEFAULT_QUALITY,
        },
        max_width: update.max_width.unwrap_or(0),
        max_height: update.max_height.unwrap_or(0),
    }
}

/// The newest frame: one at least as new as the ring's newest when asked, waiting up to
/// `wait` for the ring thread to copy it (it copies only while some client wants frames).
async fn fresh_frame(app: &Arc<App>, wait: Duration) -> Option<Arc<CachedFrame>> {
    let newest = app.feed.ring_head().map_or(0, |(frame, _)| frame);
    let mut frames = app.feed.frames.subscribe();
    let fresh = |f: &Option<Arc<CachedFrame>>| f.as_ref().is_some_and(|f| f.number() >= newest);
    let found = match timeout(wait, frames.wait_for(fresh)).await {
        Ok(Ok(f)) => f.clone(),
        _ => None,
    };
    found
}

fn camera_index(frame: &CachedFrame, id: u32) -> Option<usize> {
    frame
        .ring
        .cameras
        .iter()
        .position(|c| c.info.camera_id == id)
}

async fn snapshot(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    Query(pairs): Pairs,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let Some(id) = file
        .strip_suffix(".jpg")
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return Ok((StatusCode::NOT_FOUND, "use /snapshot/{camera}.jpg\n").into_response());
    };
    authorize(&app, &pairs, &headers)?;
    let update = settings_from(&app, &pairs)?;
    let _demand = app.feed.demand();
    let Some(frame) = fresh_frame(&app, Duration::from_secs(2)).await else {
        let producer = app.feed.status.borrow().producer;
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no recent frame in ring {:?} (producer {producer:?})\n",
                app.config.ring
            ),
        )
            .into_response());
    };
    let Some(index) = camera_index(&frame, id) else {
        let count = frame.ring.cameras.len();
        return Ok((
            StatusCode::NOT_FOUND,
            format!("no camera {id}: the ring has {count}\n"),
        )
            .into_response());
    };
    let image = frame
        .image(request_variant(&update), index, &app.metrics)
        .await;
    if image.payload.is_empty() {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("camera {id} has no image in frame {}\n", frame.number()),
        )
            .into_response());
    }
    let kind = metrics::kind("snapshot");
    app.metrics.frames_sent.get_or_create(&kind).inc();
    app.metrics
        .bytes_sent
        .get_or_create(&kind)
        .inc_by(image.payload.len() as u64);
    let mut response = (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(image.payload.clone()),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("x-camring-frame", HeaderValue::from(frame.number()));
    h.insert(
        "x-camring-capture-ns",
        HeaderValue::from(image.info.capture_ns),
    );
    h.insert("x-camring-sequence", HeaderValue::from(image.info.sequence));
    Ok(response)
}

async fn mjpeg(
    State(app): State<Arc<App>>,
    Path(camera): Path<String>,
    Query(pairs): Pairs,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let Ok(id) = camera.parse::<u32>() else {
        return Ok((StatusCode::NOT_FOUND, "use /mjpeg/{camera}\n").into_response());
    };
    authorize(&app, &pairs, &headers)?;
    let update = settings_from(&app, &pairs)?;
    let cameras = app.feed.status.borrow().cameras.len();
    if cameras > 0 && id as usize >= cameras {
        return Ok((
            StatusCode::NOT_FOUND,
            format!("no camera {id}: the ring has {cameras}\n"),
        )
            .into_response());
    }
    let slot = take_slot(&app, "mjpeg")?;
    let mut settings = Settings::default();
    settings.apply(&update);
    let status = app.feed.status.borrow().clone();
    let stream = MjpegStream {
        variant: request_variant(&update),
        session: Session::new(
            &app.config.ring,
            status,
            settings,
            Cadence::default(),
            driver::now(),
        ),
        id,
        last: None,
        frames: app.feed.frames.subscribe(),
        shutdown: app.shutdown.clone(),
        _demand: app.feed.demand(),
        _slot: slot,
        app,
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let part = s.next_part().await?;
        Some((Ok::<_, Infallible>(part), s))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// One `/mjpeg` client. Its body is polled only when the connection can take more, so
/// each part is the newest frame at that moment; the frames in between are dropped.
struct MjpegStream {
    app: Arc<App>,
    variant: Variant,
    session: Session<Arc<CachedFrame>>,
    id: u32,
    last: Option<u64>,
    frames: watch::Receiver<Option<Arc<CachedFrame>>>,
    shutdown: watch::Receiver<bool>,
    _demand: ring::Demand,
    _slot: ClientSlot,
}

impl MjpegStream {
    async fn next_part(&mut self) -> Option<Bytes> {
        let kind = metrics::kind("mjpeg");
        loop {
            tokio::select! {
                changed = self.frames.changed() => changed.ok()?,
                _ = self.shutdown.changed() => return None,
            }
            let Some(frame) = self.frames.borrow_and_update().clone() else {
                continue;
            };
            // The session decides by skip factor and frame-rate cap; it also passes a
            // frame without this camera, which `camera_index` would skip anyway.
            if self.session.handle_frame(driver::now(), Arc::clone(&frame)) == Offer::Pass {
                continue;
            }
            self.session.poll_frame();
            let Some(index) = camera_index(&frame, self.id) else {
                continue;
            };
            let image = frame.image(self.variant, index, &self.app.metrics).await;
            if image.payload.is_empty() {
                continue;
            }
            if let Some(last) = self.last {
                let skipped = frame.number().saturating_sub(last + 1);
                if skipped > 0 {
                    self.app
                        .metrics
                        .frames_dropped
                        .get_or_create(&kind)
                        .inc_by(skipped);
                }
            }
            self.last = Some(frame.number());
            let mut part = format!(
                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Camring-Frame: {}\r\n\r\n",
                image.payload.len(),
                frame.number()
            )
            .into_bytes();
            part.extend_from_slice(&image.payload);
            part.extend_from_slice(b"\r\n");
            self.app.metrics.frames_sent.get_or_create(&kind).inc();
            self.app
                .metrics
                .bytes_sent
                .get_or_create(&kind)
                .inc_by(part.len() as u64);
            return Some(Bytes::from(part));
        }
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), plain text otherwise (a
/// browser shows it instead of downloading it).
fn metrics_type(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    }
}

async fn metrics_page(
    State(app): State<Arc<App>>,
    Query(pairs): Pairs,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    authorize(&app, &pairs, &headers)?;
    Ok((
        [(header::CONTENT_TYPE, metrics_type(&headers))],
        app.metrics.render(),
    )
        .into_response())
}

/// A producer whose last publish is older than this is reported stalled by `/healthz`.
const STALLED_NS: u64 = 5_000_000_000;

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let producer = app.feed.status.borrow().producer;
    let head = app.feed.ring_head();
    let age_ms = head.map(|(_, hb)| now_ns().saturating_sub(hb) / 1_000_000);
    let stalled = age_ms.is_none_or(|a| a * 1_000_000 > STALLED_NS);
    let status = match (producer, stalled) {
        (ProducerStatus::Live, false) => "ok",
        (ProducerStatus::Live, true) => "stalled",
        _ => "unavailable",
    };
    let body = serde_json::json!({
        "status": status,
        "ring": app.config.ring,
        "producer": producer,
        "frame": head.map(|(frame, _)| frame),
        "frame_age_ms": age_ms,
        "clients": app.clients.count(),
    });
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}
