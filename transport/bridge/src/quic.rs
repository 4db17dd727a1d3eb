//! `camring bridge quic`: the ring's multi-frames over QUIC (quinn, TLS 1.3 with rustls).
//!
//! A client opens one bidirectional *control stream* and sends a `hello` line (token and
//! settings); then JSON lines travel both ways on it, as the text messages of WebSocket do
//! ([`control`]). Each multi-frame goes on its own unidirectional stream, which carries
//! exactly one binary message (docs/protocol.md, 3) and ends with it.
//!
//! Backpressure per client ([`sender`]): at most two frame streams in flight (not yet
//! acknowledged), each newer one at a higher priority, so the newest frame is never stuck
//! behind an older one: quinn sends an older stream's bytes only when the newer one has
//! none to send. A third frame resets the oldest stream; a delivered frame resets every
//! older stream still in flight (the client would drop it anyway); a frame that cannot be
//! started replaces the pending one (dropped), as with WebSocket. So one lost packet delays
//! only its own frame, and a slow client gets fewer frames, never older ones.
//!
//! The server's certificate is generated at start ([`tls::Identity::generate`]) or read
//! from PEM files; its SHA-256 fingerprint is what a client pins.

pub mod control;
pub mod sender;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use camring_protocol::control::{Settings, DEFAULT_MAX_CLIENTS};
use quinn::{Connection, VarInt};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use crate::driver::{ClientSlot, Clients, ControlSource, Driver, Incoming};
use crate::encode::CachedFrame;
use crate::metrics::{self, Metrics};
use crate::ring::{self, RingFeed};
use camring_protocol::session::{Cadence, Close};
use control::{close, Hello, Line, LineReader, ReadLine, MAX_LINE};
use tls::{Identity, TlsError};

/// Time a client has for the QUIC handshake, and then again to open its control stream and
/// send its `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A client to which no frame could be delivered for this long (while there were frames
/// for it) is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection from which nothing (not even an acknowledgement) arrives for this long is
/// closed by QUIC itself.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections being set up or served at once; more are refused as they come.
pub const MAX_CONNECTIONS: usize = 1024;
/// UDP socket buffers asked for (`SO_RCVBUF`, `SO_SNDBUF`; the kernel caps them at
/// `net.core.rmem_max` and `wmem_max`). A multi-frame arrives as a burst of hundreds of
/// datagrams: in Linux's default 208 KiB receive buffer a burst overflows whenever the
/// receiving thread is not scheduled at once, and a lost last packet of a frame costs a
/// probe timeout (some 25 ms) to recover.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A packet counts as lost once a packet sent this many after it is acknowledged (RFC 9002
/// and quinn: 3). A multi-frame leaves as a burst of some twenty packets, and a path whose
/// delay varies by a few milliseconds delivers a burst's packets in any order: with 3, the
/// client's acknowledgements of reordered packets say "lost" many times a second, every one
/// retransmitted for nothing and, with a loss-based controller, cutting the window.
pub const PACKET_THRESHOLD: u32 = 8;
/// A packet counts as lost once a packet sent this many round trips after it is
/// acknowledged (RFC 9002 and quinn: 9/8). With 9/8, a 30 ms round trip whose delay varies
/// by ±5 ms each way took packets that were merely late for lost.
pub const TIME_THRESHOLD: f32 = 1.5;

/// The congestion controller of the bridge's connections (`camring bridge quic
/// --congestion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// BBR (quinn marks its BBR as experimental): sends at the bottleneck bandwidth and
    /// round trip it measures and does not take random loss for congestion. The only one
    /// of the three that keeps up with 30 fps on a lossy path with a real round trip
    /// (docs/bridge.md, "On a lossy path with a real round trip"); but after a client
    /// stalled for seconds (flow control) it was slow to come back up to speed, so it is
    /// not the default.
    Bbr,
    /// CUBIC (quinn's default, and the bridge's): cuts its window (× 0.7) at every loss; at
    /// a 30 ms round trip and 1 % loss it carries well under 0.65 MB/s.
    #[default]
    Cubic,
    /// NewReno: loss-based as CUBIC, and slower to grow back.
    NewReno,
}

impl Congestion {
    /// Every controller, by name.
    pub const ALL: [Congestion; 3] = [Congestion::Bbr, Congestion::Cubic, Congestion::NewReno];

    /// Its name on the command line: `bbr`, `cubic`, `newreno`.
    pub fn name(self) -> &'static str {
        match self {
            Congestion::Bbr => "bbr",
            Congestion::Cubic => "cubic",
            Congestion::NewReno => "newreno",
        }
    }

    fn factory(self) -> Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> {
        match self {
            Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
            Congestion::Cubic => Arc::new(quinn::congestion::CubicConfig::default()),
            Congestion::NewReno => Arc::new(quinn::congestion::NewRenoConfig::default()),
        }
    }
}

impl std::fmt::Display for Congestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Congestion, String> {
        Congestion::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown congestion controller {s:?} (bbr, cubic, newreno)"))
    }
}

/// A UDP socket bound to `addr` with [`SOCKET_BUFFER`]-sized buffers (as far as the
/// kernel allows), dual-stack when bound to an IPv6 address where the system allows it.
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    // Best effort: a smaller buffer only makes bursts likelier to overflow.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// What `camring bridge quic` serves, and how.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// The ring's name.
    pub ring: String,
    /// UDP address to listen on (localhost by default).
    pub listen: SocketAddr,
    /// The token every client must present in its `hello`, if any.
    pub token: Option<String>,
    /// Most clients served at once.
    pub max_clients: usize,
    /// The server's certificate and key.
    pub identity: Identity,
    /// Newest first (the default): each frame stream at a higher priority than the ones
    /// before it, older ones reset ([`sender`]). Otherwise frames go in order at one
    /// priority, a newer one waiting as pending while two are in flight: nothing half
    /// sent is thrown away when the client is saturated, but the newest frame may wait
    /// for an older one's bytes.
    pub newest_first: bool,
    /// The congestion controller ([`Congestion::Cubic`] by default).
    pub congestion: Congestion,
}

impl QuicConfig {
    /// Ring `ring` on 127.0.0.1:4433 with `identity`, no token, [`DEFAULT_MAX_CLIENTS`],
    /// newest first, CUBIC.
    pub fn new(ring: impl Into<String>, identity: Identity) -> QuicConfig {
        QuicConfig {
            ring: ring.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            token: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            identity,
            newest_first: true,
            congestion: Congestion::default(),
        }
    }
}

/// Errors starting the adapter.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The UDP socket could not be bound, or the ring thread not started.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The certificate or key was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Counters of the QUIC adapter that the shared [`Metrics`] do not have.
#[derive(Debug, Default)]
pub struct QuicCounters {
    /// Frame streams reset: superseded by newer frames, or stale once a newer one was
    /// delivered (each also counts in `frames_dropped{kind="quic"}`).
    pub streams_reset: AtomicU64,
    /// Frame streams the client stopped (it had a newer frame already).
    pub streams_stopped: AtomicU64,
    /// Connections that ended before they were served: handshake failed or timed out, no
    /// `hello`, refused.
    pub handshakes_failed: AtomicU64,
}

impl QuicCounters {
    fn add(counter: &AtomicU64) {
        // SYNC POINT: Relaxed: statistics counters; nothing is published through them.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        // SYNC POINT: Relaxed, see `add`.
        counter.load(Ordering::Relaxed)
    }

    /// The counters in the Prometheus text format, `camring_bridge_quic_` prefix.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, c) in [
            (
                "streams_reset",
                "Frame streams reset (superseded or stale)",
                &self.streams_reset,
            ),
            (
                "streams_stopped",
                "Frame streams the client stopped",
                &self.streams_stopped,
            ),
            (
                "handshakes_failed",
                "Connections that ended before they were served",
                &self.handshakes_failed,
            ),
        ] {
            out.push_str(&format!(
                "# HELP camring_bridge_quic_{name} {help}.\n# TYPE camring_bridge_quic_{name} counter\ncamring_bridge_quic_{name}_total {}\n",
                Self::get(c)
            ));
        }
        out
    }
}

/// The state every connection shares.
#[derive(Debug)]
struct App {
    ring: String,
    token: Option<String>,
    newest_first: bool,
    feed: Arc<RingFeed>,
    metrics: Arc<Metrics>,
    counters: Arc<QuicCounters>,
    clients: Arc<Clients>,
    shutdown: watch::Receiver<bool>,
}

/// A bound QUIC adapter; [`QuicBridge::run`] serves until told to stop.
#[derive(Debug)]
pub struct QuicBridge {
    endpoint: quinn::Endpoint,
    app: Arc<App>,
    fingerprint: String,
    shutdown: watch::Sender<bool>,
    ring_thread: std::thread::JoinHandle<()>,
}

/// The server's transport parameters: one control stream per client and nothing else
/// from it, small receive windows (a client sends only control lines), no datagrams;
/// streams of one priority sent in order, not round robin; loss detection that tolerates
/// reordering ([`PACKET_THRESHOLD`], [`TIME_THRESHOLD`]) and `congestion` control.
fn transport(congestion: Congestion) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.send_fairness(false);
    t.max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(64 * 1024))
        .receive_window(VarInt::from_u32(128 * 1024))
        .datagram_receive_buffer_size(None)
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("10 s fits"),
        ));
    t.packet_threshold(PACKET_THRESHOLD)
        .time_threshold(TIME_THRESHOLD)
        .congestion_controller_factory(congestion.factory());
    t
}

impl QuicBridge {
    /// Binds `config.listen` (UDP) and starts reading the ring (which need not exist yet).
    /// Must be called within a tokio runtime.
    pub async fn bind(config: QuicConfig) -> Result<QuicBridge, QuicError> {
        let mut server = quinn::ServerConfig::with_crypto(tls::server_crypto(&config.identity)?);
        server
            .transport_config(Arc::new(transport(config.congestion)))
            .max_incoming(MAX_CONNECTIONS);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            udp_socket(config.listen)?,
            Arc::new(quinn::TokioRuntime),
        )?;
        let feed = RingFeed::new();
        let metrics = Arc::new(Metrics::new());
        let ring_thread =
            ring::spawn(config.ring.clone(), Arc::clone(&feed), Arc::clone(&metrics))?;
        let (shutdown, rx) = watch::channel(false);
        let clients = Arc::new(Clients::new(config.max_clients, Arc::clone(&metrics)));
        let app = Arc::new(App {
            ring: config.ring,
            token: config.token,
            newest_first: config.newest_first,
            feed,
            metrics,
            counters: Arc::default(),
            clients,
            shutdown: rx,
        });
        Ok(QuicBridge {
            endpoint,
            app,
            fingerprint: config.identity.fingerprint(),
            shutdown,
            ring_thread,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// SHA-256 of its certificate, lower-case hex: what clients pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The shared adapter counters (`kind="quic"`).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.app.metrics)
    }

    /// The QUIC-only counters.
    pub fn counters(&self) -> Arc<QuicCounters> {
        Arc::clone(&self.app.counters)
    }

    /// Serves until `stop` completes; then closes every connection (code
    /// [`close::GOING_AWAY`]) and stops reading the ring.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let QuicBridge {
            endpoint,
            app,
            shutdown,
            ring_thread,
            ..
        } = self;
        let stop = tokio::spawn(stop);
        tokio::pin!(stop);
        let open = Arc::new(AtomicUsize::new(0));
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
                _ = &mut stop => break,
            };
            // SYNC POINT: Relaxed: a count of open connections; nothing is read through it.
            if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::Relaxed);
                incoming.refuse();
                continue;
            }
            let app = Arc::clone(&app);
            let open = Arc::clone(&open);
            tokio::spawn(async move {
                if let Err(why) = accept(&app, incoming).await {
                    QuicCounters::add(&app.counters.handshakes_failed);
                    tracing::debug!("quic connection not served: {why}");
                }
                // SYNC POINT: Relaxed, see above.
                open.fetch_sub(1, Ordering::Relaxed);
            });
        }
        let _ = shutdown.send(true);
        // Connections close themselves (GOING_AWAY) on the shutdown signal; then the
        // endpoint says the rest.
        let deadline = Instant::now() + Duration::from_secs(2);
        // SYNC POINT: Relaxed, see above.
        while open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        endpoint.close(VarInt::from_u32(close::GOING_AWAY), b"server stopping");
        let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        app.feed.stop();
        let _ = tokio::task::spawn_blocking(move || ring_thread.join()).await;
        Ok(())
    }
}

/// Closes `conn` with `code` and `reason`, counting a refusal for `metric`.
fn refuse(app: &App, conn: &Connection, code: u32, metric: &'static str, reason: &str) -> String {
    app.metrics
        .refused
        .get_or_create(&metrics::reason(metric))
        .inc();
    conn.close(VarInt::from_u32(code), reason.as_bytes());
    reason.to_owned()
}

/// The handshake, the control stream and the `hello`; then the client is served.
async fn accept(app: &Arc<App>, incoming: quinn::Incoming) -> Result<(), String> {
    let conn = match timeout(HELLO_TIMEOUT, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("handshake: {e}")),
        Err(_) => return Err("handshake timed out".into()),
    };
    let deadline = Instant::now() + HELLO_TIMEOUT;
    let no_hello = |conn: &Connection| {
        conn.close(
            VarInt::from_u32(close::TIMEOUT),
            b"no control stream and hello within 10 s",
        );
        "no hello in time".to_owned()
    };
    let (send, mut recv) = match tokio::time::timeout_at(deadline, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("control stream: {e}")),
        Err(_) => return Err(no_hello(&conn)),
    };
    let mut lines = LineReader::new(MAX_LINE);
    let hello = match tokio::time::timeout_at(deadline, lines.read(&mut recv)).await {
        Err(_) => return Err(no_hello(&conn)),
        Ok(Err(e)) => return Err(format!("control stream: {e}")),
        Ok(Ok(Line::End)) => {
            let why = "the control stream ended before a hello";
            return Err(refuse(app, &conn, close::BAD_REQUEST, "parameter", why));
        }
        Ok(Ok(Line::TooLong)) => {
            app.metrics.protocol_errors.inc();
            let why = format!("control lines are limited to {MAX_LINE} bytes");
            return Err(refuse(app, &conn, close::TOO_BIG, "parameter", &why));
        }
        Ok(Ok(Line::Text(line))) => match Hello::from_json(&line) {
            Ok(h) => h,
            Err(why) => return Err(refuse(app, &conn, close::BAD_REQUEST, "parameter", &why)),
        },
    };
    if let Some(expected) = &app.token {
        let given = hello.token.as_deref().unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            let why = if hello.token.is_none() {
                "this server needs a token"
            } else {
                "wrong token"
            };
            return Err(refuse(app, &conn, close::UNAUTHORIZED, "token", why));
        }
    }
    let Some(slot) = app.clients.take("quic") else {
        let why = format!("too many clients (at most {})", app.clients.max());
        return Err(refuse(app, &conn, close::FULL, "full", &why));
    };
    let mut settings = Settings::default();
    if let Some(update) = &hello.settings {
        settings.apply(update);
    }
    serve(Arc::clone(app), conn, send, recv, lines, settings, slot).await;
    Ok(())
}

/// A QUIC client's control messages: the lines of its control stream.
struct QuicControl<'a> {
    recv: quinn::RecvStream,
    lines: LineReader,
    metrics: &'a Metrics,
}

impl ControlSource for QuicControl<'_> {
    async fn next(&mut self) -> Incoming {
        match self.lines.read(&mut self.recv).await {
            Ok(Line::Text(text)) => Incoming::Text(text),
            Ok(Line::TooLong) => {
                self.metrics.protocol_errors.inc();
                Incoming::End(Some(Close::Violation {
                    code: close::TOO_BIG,
                    reason: format!("control lines are limited to {MAX_LINE} bytes"),
                }))
            }
            // The client finished its side of the control stream: it is leaving.
            Ok(Line::End) => Incoming::End(Some(Close::Done)),
            Err(_) => Incoming::End(None),
        }
    }
}

/// The application close code and reason a session's [`Close`] is sent as (none when the
/// connection is gone).
fn close_code(c: &Close) -> Option<(u32, String)> {
    match c {
        Close::Stopping => Some((close::GOING_AWAY, "server stopping".into())),
        Close::Done => Some((close::DONE, "bye".into())),
        Close::Violation { code, reason } => Some((*code, reason.clone())),
        Close::Lost => None,
    }
}

/// Writes the session's JSON messages on the control stream, one per line, until the
/// session closes (then finishes the stream) or the stream fails.
async fn write_texts(driver: &Driver<Arc<CachedFrame>>, mut send: quinn::SendStream) {
    loop {
        let (text, closing) = driver.poll(|s| (s.poll_text(), s.is_closing()));
        match text {
            Some(text) => {
                let mut line = text.to_json();
                line.push('\n');
                if send.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            None if closing => {
                let _ = send.finish();
                return;
            }
            None => driver.wake_texts.notified().await,
        }
    }
}

/// Serves one client until it leaves, misbehaves or the server stops.
async fn serve(
    app: Arc<App>,
    conn: Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    lines: LineReader,
    settings: Settings,
    _slot: ClientSlot,
) {
    let status = app.feed.status.borrow().clone();
    let driver = Arc::new(Driver::new(
        &app.ring,
        status,
        settings,
        Cadence::default(),
        Arc::clone(&app.metrics),
        "quic",
    ));
    let _demand = app.feed.demand();
    let mut text_writer = tokio::spawn({
        let driver = Arc::clone(&driver);
        async move { write_texts(&driver, send).await }
    });
    let mut frame_writer = tokio::spawn(sender::write_loop(
        conn.clone(),
        Arc::clone(&driver),
        Arc::clone(&app.metrics),
        Arc::clone(&app.counters),
        app.newest_first,
    ));
    let mut control = QuicControl {
        recv,
        lines,
        metrics: &app.metrics,
    };
    let end = driver
        .run_feed(&app.feed, &mut control, app.shutdown.clone())
        .await;
    if let Some((code, reason)) = end.as_ref().and_then(close_code) {
        // Let the last lines go out first (an `error`, say), briefly.
        let _ = timeout(Duration::from_millis(200), &mut text_writer).await;
        conn.close(VarInt::from_u32(code), reason.as_bytes());
    }
    if timeout(Duration::from_secs(2), &mut frame_writer)
        .await
        .is_err()
    {
        frame_writer.abort();
    }
    text_writer.abort();
}

/// The adapter's metrics in the Prometheus text format: the shared counters
/// (`kind="quic"`) and the QUIC-only ones ([`QuicCounters`]).
pub fn render_metrics(metrics: &Metrics, counters: &QuicCounters) -> String {
    let mut text = metrics.render();
    let quic = counters.render();
    match text.rfind("# EOF") {
        Some(at) => text.insert_str(at, &quic),
        None => text.push_str(&quic),
    }
    text
}

/// Serves `GET /metrics` ([`render_metrics`]) on `listener` until `stop` completes. With a
/// token, the request must carry it (`?token=` or `Authorization: Bearer`).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    counters: Arc<QuicCounters>,
    token: Option<String>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::extract::Query;
    use axum::http::{header, HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let page = move |Query(pairs): Query<Vec<(String, String)>>, headers: HeaderMap| {
        let (metrics, counters, token) = (metrics.clone(), counters.clone(), token.clone());
        async move {
            if let Some(expected) = &token {
                let given = pairs
                    .iter()
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.as_str())
                    .or_else(|| {
                        headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "))
                    })
                    .unwrap_or("");
                if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                    return (StatusCode::UNAUTHORIZED, "wrong or missing token\n").into_response();
                }
            }
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                render_metrics(&metrics, &counters),
            )
                .into_response()
        }
    };
    let router = axum::Router::new().route("/metrics", axum::routing::get(page));
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_names_round_trip_and_cubic_is_the_default() {
        for c in Congestion::ALL {
            assert_eq!(c.name().parse::<Congestion>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert!("reno".parse::<Congestion>().is_err());
        assert_eq!(Congestion::default(), Congestion::Cubic);
        let config = QuicConfig::new("r", Identity::generate(&["localhost".into()]).unwrap());
        assert_eq!(config.congestion, Congestion::Cubic);
        let t = format!("{:?}", transport(Congestion::Cubic));
        assert!(t.contains("packet_threshold: 8"), "{t}");
        assert!(t.contains("time_threshold: 1.5"), "{t}");
    }
}
