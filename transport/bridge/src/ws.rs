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

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    ClientMessage, ProducerStatus, Quality, ServerMessage, Settings, SettingsUpdate,
    CLOSE_MESSAGE_TOO_BIG, CLOSE_UNSUPPORTED_DATA, DEFAULT_MAX_CLIENTS, DEFAULT_QUALITY,
    MAX_CLIENT_MESSAGE, STATS_INTERVAL_MS,
};
use camring_shm::clock::now_ns;
use futures_util::{SinkExt, StreamExt};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::time::{timeout, Instant};

use crate::encode::{Frame, Variant};
use crate::metrics::{self, Metrics};
use crate::ring::{self, Feed};
use crate::session::{self, Offer, Session};

/// Unsent bytes the kernel may hold per connection (`TCP_NOTSENT_LOWAT`): what a slow
/// client has queued beyond its two frames in flight stays small, so its latency cannot
/// grow with a deep socket buffer. Bytes sent and not yet acknowledged are not limited.
pub const NOTSENT_LOWAT: u32 = 128 * 1024;
/// A client that takes no bytes for this long is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame older than this is not sent to a client that just connected.
const STALE_NS: u64 = 2_000_000_000;
/// Text messages queued for one client beyond which stats are dropped.
const MAX_QUEUED_TEXTS: usize = 32;
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
    feed: Arc<Feed>,
    metrics: Arc<Metrics>,
    clients: AtomicUsize,
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
        let feed = Feed::new();
        let metrics = Arc::new(Metrics::new());
        let ring_thread =
            ring::spawn(config.ring.clone(), Arc::clone(&feed), Arc::clone(&metrics))?;
        let (shutdown, rx) = watch::channel(false);
        let app = Arc::new(App {
            config,
            feed,
            metrics,
            clients: AtomicUsize::new(0),
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
        // SYNC POINT: Relaxed: a count of live clients; nothing is read through it.
        while app.clients.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
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

/// A client's place among `max_clients`; given back on drop.
#[derive(Debug)]
struct Slot {
    app: Arc<App>,
    kind: &'static str,
}

impl Slot {
    fn take(app: &Arc<App>, kind: &'static str) -> Result<Slot, Refusal> {
        // SYNC POINT: Relaxed: a count; the compare-exchange alone keeps it within the
        // limit, nothing else is published through it.
        let taken = app
            .clients
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < app.config.max_clients).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refusal::new(
                app,
                StatusCode::SERVICE_UNAVAILABLE,
                "full",
                format!("too many clients (at most {})", app.config.max_clients),
            ));
        }
        app.metrics
            .clients
            .get_or_create(&metrics::kind(kind))
            .inc();
        app.metrics
            .connections
            .get_or_create(&metrics::kind(kind))
            .inc();
        Ok(Slot {
            app: Arc::clone(app),
            kind,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.app
            .metrics
            .clients
            .get_or_create(&metrics::kind(self.kind))
            .dec();
        // SYNC POINT: Relaxed, see `Slot::take`.
        self.app.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn ws_handler(
    State(app): State<Arc<App>>,
    Query(pairs): Pairs,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Refusal> {
    authorize(&app, &pairs, &headers)?;
    let update = settings_from(&app, &pairs)?;
    let slot = Slot::take(&app, "ws")?;
    let mut settings = Settings::default();
    settings.apply(&update);
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| connection(app, socket, settings, slot)))
}

/// What the connection task hands its writer.
#[derive(Debug, Default)]
struct Outbox {
    state: Mutex<Pending>,
    wake: Notify,
    writer_gone: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    frame: Option<Arc<Frame>>,
    texts: VecDeque<String>,
    close: Option<Option<CloseFrame>>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn text(&self, text: String) {
        let mut p = self.lock();
        if p.texts.len() >= MAX_QUEUED_TEXTS {
            p.texts.pop_front();
        }
        p.texts.push_back(text);
        drop(p);
        self.wake.notify_one();
    }

    /// Makes `frame` the pending one; returns the one it replaced.
    fn frame(&self, frame: Arc<Frame>) -> Option<Arc<Frame>> {
        let old = self.lock().frame.replace(frame);
        self.wake.notify_one();
        old
    }

    fn close(&self, frame: Option<CloseFrame>) {
        self.lock().close = Some(frame);
        self.wake.notify_one();
    }
}

enum Work {
    Close(Option<CloseFrame>),
    Text(String),
    Frame(Arc<Frame>),
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

fn state_message(app: &App, session: &Mutex<Session>) -> String {
    let status = app.feed.status.borrow().clone();
    session::state_message(&app.config.ring, &status, &lock(session)).to_json()
}

fn producer_log(ring: &str, producer: ProducerStatus) -> String {
    session::producer_log(ring, producer).to_json()
}

fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
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

async fn connection(app: Arc<App>, socket: WebSocket, settings: Settings, _slot: Slot) {
    let (sink, mut stream) = socket.split();
    let session = Arc::new(Mutex::new(Session::new(settings)));
    let out = Arc::new(Outbox::default());
    let _demand = app.feed.demand();
    let mut writer = tokio::spawn(write_loop(
        Arc::clone(&app),
        sink,
        Arc::clone(&out),
        Arc::clone(&session),
    ));
    out.text(state_message(&app, &session));
    let mut frames = app.feed.frames.subscribe();
    let mut status = app.feed.status.subscribe();
    let mut shutdown = app.shutdown.clone();
    let period = Duration::from_millis(STATS_INTERVAL_MS);
    let mut stats = tokio::time::interval_at(Instant::now() + period, period);
    // The newest frame at once, unless it is stale.
    if let Some(f) = frames.borrow_and_update().clone() {
        if now_ns().saturating_sub(f.ring.read_ns) < STALE_NS {
            offer(&app, &session, &out, f);
        }
    }
    let close = loop {
        tokio::select! {
            changed = frames.changed() => {
                if changed.is_err() {
                    break close_frame(1001, "server stopping");
                }
                let frame = frames.borrow_and_update().clone();
                if let Some(f) = frame {
                    offer(&app, &session, &out, f);
                }
            }
            changed = status.changed() => {
                if changed.is_ok() {
                    let producer = status.borrow_and_update().producer;
                    out.text(producer_log(&app.config.ring, producer));
                    out.text(state_message(&app, &session));
                }
            }
            message = stream.next() => match message {
                None | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(Message::Text(text))) => match ClientMessage::from_json(&text) {
                    Ok(m) => {
                        if m == ClientMessage::Pause {
                            // Nothing may follow the `state` that says paused: the
                            // pending frame goes (one being written is sent before it).
                            out.lock().frame = None;
                        }
                        lock(&session).control(&m);
                        out.text(state_message(&app, &session));
                    }
                    Err(e) => {
                        app.metrics.control_errors.inc();
                        out.text(ServerMessage::error(&e).to_json());
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    app.metrics.protocol_errors.inc();
                    break close_frame(CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted");
                }
                Some(Ok(_)) => {} // ping and pong: tungstenite answers pings itself
                Some(Err(e)) => {
                    app.metrics.protocol_errors.inc();
                    if too_big(e) {
                        let reason = format!("messages are limited to {MAX_CLIENT_MESSAGE} bytes");
                        break close_frame(CLOSE_MESSAGE_TOO_BIG, &reason);
                    }
                    break None;
                }
            },
            _ = stats.tick() => {
                let (stats, changed) = lock(&session).stats(std::time::Instant::now());
                out.text(ServerMessage::Stats(stats).to_json());
                if changed {
                    out.text(state_message(&app, &session));
                }
            }
            _ = out.writer_gone.notified() => break None,
            _ = shutdown.changed() => break close_frame(1001, "server stopping"),
        }
    };
    out.close(close);
    if timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Offers `frame` to a client: makes it the pending frame if the client wants it.
fn offer(app: &App, session: &Mutex<Session>, out: &Outbox, frame: Arc<Frame>) {
    let mut s = lock(session);
    if s.offer(std::time::Instant::now()) == Offer::Pass || frame.mask(|id| s.wants_camera(id)) == 0
    {
        return;
    }
    drop(s);
    if let Some(old) = out.frame(frame) {
        let mut s = lock(session);
        let ids: Vec<u32> = old
            .ring
            .cameras
            .iter()
            .map(|c| c.info.camera_id)
            .filter(|&id| s.wants_camera(id))
            .collect();
        s.dropped(ids);
        app.metrics
            .frames_dropped
            .get_or_create(&metrics::kind("ws"))
            .inc();
    }
}

async fn write_loop(
    app: Arc<App>,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    out: Arc<Outbox>,
    session: Arc<Mutex<Session>>,
) {
    let kind = metrics::kind("ws");
    loop {
        let work = loop {
            {
                let mut p = out.lock();
                if let Some(close) = p.close.take() {
                    break Work::Close(close);
                }
                if let Some(text) = p.texts.pop_front() {
                    break Work::Text(text);
                }
                if let Some(frame) = p.frame.take() {
                    break Work::Frame(frame);
                }
            }
            out.wake.notified().await;
        };
        let message = match work {
            Work::Close(frame) => {
                if let Some(frame) = frame {
                    let _ = timeout(
                        Duration::from_secs(1),
                        sink.send(Message::Close(Some(frame))),
                    )
                    .await;
                }
                let _ = timeout(Duration::from_secs(1), sink.close()).await;
                return;
            }
            Work::Text(text) => Message::Text(text.into()),
            Work::Frame(frame) => {
                let (variant, mask) = {
                    let s = lock(&session);
                    let (w, h) = largest(&frame);
                    (s.variant(w, h), frame.mask(|id| s.wants_camera(id)))
                };
                let Some(built) = frame.message(variant, mask, &app.metrics).await else {
                    continue;
                };
                match timeout(
                    SEND_TIMEOUT,
                    sink.send(Message::Binary(built.bytes.clone())),
                )
                .await
                {
                    Ok(Ok(())) => {
                        lock(&session).sent(&built, now_ns());
                        app.metrics.frames_sent.get_or_create(&kind).inc();
                        app.metrics
                            .bytes_sent
                            .get_or_create(&kind)
                            .inc_by(built.bytes.len() as u64);
                        continue;
                    }
                    _ => {
                        out.writer_gone.notify_one();
                        return;
                    }
                }
            }
        };
        if !matches!(timeout(SEND_TIMEOUT, sink.send(message)).await, Ok(Ok(()))) {
            out.writer_gone.notify_one();
            return;
        }
    }
}

/// The widest and tallest camera of a frame (what `quality=auto` scales).
fn largest(frame: &Frame) -> (u32, u32) {
    frame.ring.cameras.iter().fold((0, 0), |(w, h), c| {
        (w.max(c.info.width), h.max(c.info.height))
    })
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
async fn fresh_frame(app: &Arc<App>, wait: Duration) -> Option<Arc<Frame>> {
    let newest = app.feed.ring_head().map_or(0, |(frame, _)| frame);
    let mut frames = app.feed.frames.subscribe();
    let fresh = |f: &Option<Arc<Frame>>| f.as_ref().is_some_and(|f| f.number() >= newest);
    let found = match timeout(wait, frames.wait_for(fresh)).await {
        Ok(Ok(f)) => f.clone(),
        _ => None,
    };
    found
}

fn camera_index(frame: &Frame, id: u32) -> Option<usize> {
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
    let slot = Slot::take(&app, "mjpeg")?;
    let mut settings = Settings::default();
    settings.apply(&update);
    let stream = MjpegStream {
        variant: request_variant(&update),
        session: Session::new(settings),
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
    session: Session,
    id: u32,
    last: Option<u64>,
    frames: watch::Receiver<Option<Arc<Frame>>>,
    shutdown: watch::Receiver<bool>,
    _demand: ring::Demand,
    _slot: Slot,
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
            if self.session.offer(std::time::Instant::now()) == Offer::Pass {
                continue;
            }
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
        // SYNC POINT: Relaxed, see `Slot::take`.
        "clients": app.clients.load(Ordering::Relaxed),
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
