//! `camring bridge udp`: multi-frames cut into datagrams (`camring_protocol::udp`,
//! docs/protocol.md 10) for live subscribers only.
//!
//! One socket serves every subscriber. Requests go through a sans-IO [`policy::Policy`]:
//! challenge cookies before any state is kept for an address, the token, the subscriber
//! limit, keepalives and their timeout, a rate limit per source address; every reply is
//! smaller than its request. Each subscriber has its own task ([`sender`]) with the
//! WebSocket adapter's per-client [`Session`](crate::session::Session) (settings, offer,
//! variant, adaptive quality, stats) and the same encoding cache
//! ([`CachedFrame::message`](crate::encode::CachedFrame::message)), so a message is made once per
//! (variant, cameras) whatever the transport.
//!
//! Sending is **paced**: a message's fragments are spread over a window (by default half
//! the ring's frame period, at most half the receiver's reassembly deadline, longer if a
//! per-subscriber byte rate asks for it), in bursts at most a millisecond apart, so no
//! receiver buffer or link queue gets a whole multi-frame at once. **Newest wins**: a
//! subscriber has at most one message being paced out and one pending frame; a newer frame
//! replaces the pending one (counted dropped), and a message still being paced out when a
//! newer frame is ready and the receiver's deadline ([`UdpConfig::abandon_after`]) has
//! passed is abandoned (its receiver has dropped it anyway; counted dropped).
//!
//! Fragments carry the adapter's own frame counter (strictly increasing, whatever the
//! ring does) on a random **stream**; when the ring's frame numbers go back (a new
//! producer), the adapter starts a new stream and tells every subscriber with an
//! `accepted`, so clients start their reassembly and frame order over.
//!
//! JSON side messages (`state`, `stats`, `log`) travel as datagrams of kind 8
//! ([`text`]) to live subscribers only, each whole in one datagram.

mod sender;

pub use camring_protocol::udp::{cookie, limit, policy, text};

/// Fills `buf` from the operating system's random source (ring's `SystemRandom`, through
/// rustls); should that ever fail, from the standard library's randomly keyed hasher mixed
/// with the time (still unpredictable to a remote attacker, if weaker).
fn random_bytes(buf: &mut [u8]) {
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(buf).is_ok() {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A random `u32` (stream ids).
pub fn random_u32() -> u32 {
    let mut b = [0; 4];
    random_bytes(&mut b);
    u32::from_le_bytes(b)
}

/// A random secret key for the policy's cookies.
fn random_key() -> [u8; 32] {
    let mut key = [0; 32];
    random_bytes(&mut key);
    key
}

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camring_protocol::control::{Settings, DEFAULT_MAX_CLIENTS};
use camring_protocol::udp::{
    DEFAULT_DEADLINE_NS, DEFAULT_KEEPALIVE_MS, DEFAULT_MTU, DEFAULT_SUBSCRIPTION_TIMEOUT_MS,
    MAX_MTU, MAX_REQUEST_SIZE, MAX_TOKEN_LEN, MIN_MTU,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::encode::CachedFrame;
use crate::metrics::{self, Metrics};
use crate::ring::{self, RingFeed};
use policy::{Action, Policy, PolicyConfig, PolicyStats};
use sender::{Control, Subscriber};

/// Kernel send buffer asked for the server's socket (capped by `net.core.wmem_max`).
pub const SEND_BUFFER: usize = 4 << 20;
/// Kernel receive buffer asked for the server's socket (requests only).
pub const RECV_BUFFER: usize = 1 << 20;
/// Default pacing: a message is spread over this fraction of the ring's frame period.
pub const DEFAULT_PACE: f64 = 0.5;
/// The frame period assumed until the ring's is measured.
const DEFAULT_PERIOD_NS: u64 = 33_333_333;

/// What `camring bridge udp` serves, and how.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// The ring's name.
    pub ring: String,
    /// Address to listen on (localhost by default).
    pub listen: SocketAddr,
    /// The token every `subscribe` must carry, if any (at most 128 bytes).
    pub token: Option<String>,
    /// Most subscribers at once.
    pub max_clients: usize,
    /// Largest datagram sent, bytes of UDP payload (a subscriber may ask for less).
    pub mtu: usize,
    /// Per-subscriber sending rate cap, bytes per second (`None`: only the pacing window).
    pub rate: Option<u64>,
    /// A message's fragments are spread over this fraction of the ring's frame period (0:
    /// sent back to back).
    pub pace: f64,
    /// The keepalive interval told to subscribers.
    pub keepalive_ms: u32,
    /// A subscriber not heard from for this long is dropped.
    pub timeout_ms: u32,
    /// A message still being paced out this long after its first fragment makes way for a
    /// newer frame (the receivers' reassembly deadline, 100 ms by default).
    pub abandon_after: Duration,
}

impl UdpConfig {
    /// Ring `ring` on 127.0.0.1:5000, no token, the protocol's defaults.
    pub fn new(ring: impl Into<String>) -> UdpConfig {
        UdpConfig {
            ring: ring.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            token: None,
            max_clients: DEFAULT_MAX_CLIENTS,
            mtu: DEFAULT_MTU,
            rate: None,
            pace: DEFAULT_PACE,
            keepalive_ms: DEFAULT_KEEPALIVE_MS,
            timeout_ms: DEFAULT_SUBSCRIPTION_TIMEOUT_MS,
            abandon_after: Duration::from_nanos(DEFAULT_DEADLINE_NS),
        }
    }

    /// Refuses what cannot work: a token no `subscribe` can carry, an MTU out of range,
    /// no subscriber allowed, a timeout not above the keepalive interval.
    pub fn check(&self) -> Result<(), String> {
        if let Some(t) = &self.token {
            if t.len() > MAX_TOKEN_LEN {
                return Err(format!(
                    "--token of {} bytes: a UDP subscribe carries at most {MAX_TOKEN_LEN}",
                    t.len()
                ));
            }
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(format!(
                "--mtu {} out of range {MIN_MTU}..={MAX_MTU}",
                self.mtu
            ));
        }
        if self.max_clients == 0 {
            return Err("--max-clients must be at least 1".into());
        }
        if self.keepalive_ms == 0 || self.timeout_ms <= self.keepalive_ms {
            return Err(format!(
                "the timeout ({} ms) must be above the keepalive interval ({} ms)",
                self.timeout_ms, self.keepalive_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.pace) {
            return Err(format!("--pace {} out of range 0..=1", self.pace));
        }
        if self.rate == Some(0) {
            return Err("--rate must be above 0".into());
        }
        Ok(())
    }
}

/// A multi-frame as the subscribers' tasks get it: the ring's frame, numbered for the
/// fragments, on the stream of the moment.
#[derive(Debug)]
pub(crate) struct UdpFrame {
    /// The fragments' `frame`: the adapter's counter, strictly increasing.
    pub seq: u64,
    /// The fragments' `stream`.
    pub stream: u32,
    /// The ring's frame period as measured so far, ns.
    pub period_ns: u64,
    /// The frame and its encoding cache.
    pub frame: Arc<CachedFrame>,
}

/// Counters of the sending side (shared by the subscribers' tasks).
#[derive(Debug, Default)]
pub(crate) struct SendCounters {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    pub frames: AtomicU64,
    pub abandoned: AtomicU64,
    pub texts: AtomicU64,
    pub errors: AtomicU64,
    pub streams: AtomicU64,
}

impl SendCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // SYNC POINT: Relaxed: statistics counters; nothing is published through them.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        // SYNC POINT: Relaxed, see `add`.
        counter.load(Ordering::Relaxed)
    }
}

/// A snapshot of the adapter's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Live subscribers.
    pub subscribers: usize,
    /// What the requests did (challenges, refusals, ignored, rate-limited...).
    pub policy: PolicyStats,
    /// Datagrams sent (fragments, replies and JSON).
    pub datagrams_sent: u64,
    /// Bytes of those datagrams.
    pub bytes_sent: u64,
    /// Messages whose every fragment was sent.
    pub frames_sent: u64,
    /// Frames dropped for a subscriber: replaced while pending, or abandoned.
    pub frames_dropped: u64,
    /// Of those, messages abandoned part-way.
    pub frames_abandoned: u64,
    /// JSON datagrams sent.
    pub texts_sent: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// Streams started after the first (new producers).
    pub new_streams: u64,
}

/// What the main loop and the subscribers' tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: UdpConfig,
    pub socket: Arc<UdpSocket>,
    pub feed: Arc<RingFeed>,
    pub metrics: Arc<Metrics>,
    pub counters: SendCounters,
    pub policy: Mutex<Policy>,
}

impl Shared {
    pub(crate) fn policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one datagram to `to`, counting it.
    pub(crate) async fn send(&self, datagram: &[u8], to: SocketAddr) -> bool {
        match self.socket.send_to(datagram, to).await {
            Ok(_) => {
                SendCounters::add(&self.counters.datagrams, 1);
                SendCounters::add(&self.counters.bytes, datagram.len() as u64);
                true
            }
            Err(e) => {
                SendCounters::add(&self.counters.errors, 1);
                tracing::debug!("send to {to}: {e}");
                false
            }
        }
    }
}

/// A bound UDP adapter; [`UdpBridge::run`] serves until told to stop.
#[derive(Debug)]
pub struct UdpBridge {
    shared: Arc<Shared>,
    ring_thread: std::thread::JoinHandle<()>,
}

fn server_socket(listen: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Larger buffers where the system allows (it caps them silently).
    let _ = socket.set_send_buffer_size(SEND_BUFFER);
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&listen.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

impl UdpBridge {
    /// Checks `config`, binds `config.listen` and starts reading the ring (which need not
    /// exist yet).
    pub async fn bind(config: UdpConfig) -> std::io::Result<UdpBridge> {
        config
            .check()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let socket = Arc::new(server_socket(config.listen)?);
        let feed = RingFeed::new();
        let metrics = Arc::new(Metrics::new());
        let ring_thread =
            ring::spawn(config.ring.clone(), Arc::clone(&feed), Arc::clone(&metrics))?;
        let policy = Policy::new(
            PolicyConfig {
                token: config.token.as_ref().map(|t| t.as_bytes().to_vec()),
                max_clients: config.max_clients,
                mtu: config.mtu as u32,
                keepalive_ms: config.keepalive_ms,
                timeout_ms: config.timeout_ms,
            },
            random_u32(),
            std::time::Instant::now(),
            random_key(),
        );
        Ok(UdpBridge {
            shared: Arc::new(Shared {
                config,
                socket,
                feed,
                metrics,
                counters: SendCounters::default(),
                policy: Mutex::new(policy),
            }),
            ring_thread,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.socket.local_addr()
    }

    /// Its Prometheus counters (kind `udp`).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// A handle to read the counters while it runs.
    pub fn counters_handle(&self) -> CountersHandle {
        CountersHandle(Arc::clone(&self.shared))
    }

    /// Serves until `stop` completes; then stops every subscriber's task and the ring
    /// thread. Subscribers are not told (UDP has no goodbye): they find the server silent.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let UdpBridge {
            shared,
            ring_thread,
        } = self;
        let served = serve(Arc::clone(&shared), stop).await;
        shared.feed.stop();
        let _ = tokio::task::spawn_blocking(move || ring_thread.join()).await;
        served
    }
}

/// Reads the counters of a running [`UdpBridge`].
#[derive(Debug, Clone)]
pub struct CountersHandle(Arc<Shared>);

impl CountersHandle {
    /// The counters now.
    pub fn get(&self) -> UdpCounters {
        let s = &self.0;
        let c = &s.counters;
        let policy = s.policy();
        UdpCounters {
            subscribers: policy.len(),
            policy: *policy.stats(),
            datagrams_sent: SendCounters::get(&c.datagrams),
            bytes_sent: SendCounters::get(&c.bytes),
            frames_sent: SendCounters::get(&c.frames),
            // The session counts drops into the adapter's metrics (this is the `udp` one).
            frames_dropped: s
                .metrics
                .frames_dropped
                .get_or_create(&metrics::kind("udp"))
                .get(),
            frames_abandoned: SendCounters::get(&c.abandoned),
            texts_sent: SendCounters::get(&c.texts),
            send_errors: SendCounters::get(&c.errors),
            new_streams: SendCounters::get(&c.streams),
        }
    }
}

/// One subscriber's task and the way to talk to it.
struct Task {
    control: mpsc::UnboundedSender<Control>,
    handle: tokio::task::JoinHandle<()>,
}

/// Numbers the ring's frames for the fragments and follows producer changes.
struct Hub {
    seq: u64,
    last_ring: Option<u64>,
    last_publish: Option<u64>,
    period_ns: u64,
    out: watch::Sender<Option<Arc<UdpFrame>>>,
}

impl Hub {
    /// Publishes `frame` to the subscribers' tasks; a new stream if the ring's frame
    /// numbers went back (returns the `accepted` to send then).
    fn publish(&mut self, shared: &Shared, frame: Arc<CachedFrame>) -> Vec<(SocketAddr, [u8; 40])> {
        let mut announce = Vec::new();
        let mut stream = shared.policy().stream();
        if self.last_ring.is_some_and(|last| frame.number() <= last) {
            let old = stream;
            while stream == old {
                stream = random_u32();
            }
            SendCounters::add(&shared.counters.streams, 1);
            tracing::info!(
                "ring frame numbers went back ({} after {}): a new producer; new stream {stream:#010x}",
                frame.number(),
                self.last_ring.unwrap_or_default()
            );
            announce = shared
                .policy()
                .set_stream(stream)
                .into_iter()
                .map(|(addr, a)| (addr, a.encode()))
                .collect();
            self.last_publish = None;
        }
        let publish = frame.ring.publish_ns;
        if let Some(prev) = self.last_publish {
            let dt = publish.saturating_sub(prev);
            if dt > 0 && dt < 2_000_000_000 {
                self.period_ns = (self.period_ns * 7 + dt) / 8;
            }
        }
        self.last_publish = Some(publish);
        self.last_ring = Some(frame.number());
        self.seq += 1;
        self.out.send_replace(Some(Arc::new(UdpFrame {
            seq: self.seq,
            stream,
            period_ns: self.period_ns,
            frame,
        })));
        announce
    }
}

async fn serve(
    shared: Arc<Shared>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let kind = metrics::kind("udp");
    let mut tasks: HashMap<SocketAddr, Task> = HashMap::new();
    let mut feed_frames = shared.feed.frames.subscribe();
    let (out, _) = watch::channel(None);
    let mut hub = Hub {
        seq: 0,
        last_ring: None,
        last_publish: None,
        period_ns: DEFAULT_PERIOD_NS,
        out,
    };
    let mut demand = None;
    let mut sweep = tokio::time::interval(Duration::from_millis(100));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    // Requests are at most 544 bytes; anything longer is read truncated, still too long.
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            received = shared.socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        // ICMP errors of earlier sends and the like: nothing to do.
                        tracing::debug!("recv: {e}");
                        continue;
                    }
                };
                let datagram = &buf[..len.min(MAX_REQUEST_SIZE + 1)];
                let handled = shared.policy().handle(std::time::Instant::now(), from, datagram);
                if let Some(reply) = handled.reply {
                    let (bytes, n) = reply.encode();
                    debug_assert!(n <= len);
                    shared.send(&bytes[..n], from).await;
                    if let policy::Reply::Refused(r) = reply {
                        shared.metrics.refused.get_or_create(&metrics::reason(refusal_label(r.reason))).inc();
                    }
                }
                match handled.action {
                    Some(Action::Start { addr, settings, mtu }) | Some(Action::Update { addr, settings, mtu })
                        if !tasks.contains_key(&addr) =>
                    {
                        let mut s = Settings::default();
                        s.apply(&settings);
                        let (tx, rx) = mpsc::unbounded_channel();
                        let sub = Subscriber::new(Arc::clone(&shared), addr, mtu as usize, s, hub.out.subscribe(), rx);
                        tasks.insert(addr, Task { control: tx, handle: tokio::spawn(sub.run()) });
                        shared.metrics.clients.get_or_create(&kind).inc();
                        shared.metrics.connections.get_or_create(&kind).inc();
                        tracing::info!("{addr}: subscribed");
                    }
                    Some(Action::Start { addr, settings, mtu }) | Some(Action::Update { addr, settings, mtu }) => {
                        if let Some(t) = tasks.get(&addr) {
                            let _ = t.control.send(Control::Update { settings, mtu: mtu as usize });
                        }
                    }
                    Some(Action::Stop { addr }) => {
                        stop_task(&mut tasks, &shared, addr, "unsubscribed");
                    }
                    None => {}
                }
                update_demand(&shared, &tasks, &mut demand);
            }
            changed = feed_frames.changed() => {
                if changed.is_err() {
                    break;
                }
                let frame = feed_frames.borrow_and_update().clone();
                if let Some(frame) = frame {
                    for (addr, accepted) in hub.publish(&shared, frame) {
                        shared.send(&accepted, addr).await;
                    }
                }
            }
            _ = sweep.tick() => {
                let gone = shared.policy().sweep(std::time::Instant::now());
                for addr in gone {
                    stop_task(&mut tasks, &shared, addr, "timed out (no keepalive)");
                }
                // Tasks that ended on their own (they only do when the feed is gone).
                tasks.retain(|_, t| !t.handle.is_finished());
                update_demand(&shared, &tasks, &mut demand);
            }
            () = &mut stop => break,
        }
    }
    for (_, t) in tasks.drain() {
        let _ = t.control.send(Control::Stop);
        let _ = tokio::time::timeout(Duration::from_secs(1), t.handle).await;
        shared.metrics.clients.get_or_create(&kind).dec();
    }
    Ok(())
}

fn stop_task(tasks: &mut HashMap<SocketAddr, Task>, shared: &Shared, addr: SocketAddr, why: &str) {
    if let Some(t) = tasks.remove(&addr) {
        let _ = t.control.send(Control::Stop);
        shared
            .metrics
            .clients
            .get_or_create(&metrics::kind("udp"))
            .dec();
        tracing::info!("{addr}: {why}");
    }
}

/// Keeps the ring thread copying frames while someone is subscribed.
fn update_demand(
    shared: &Shared,
    tasks: &HashMap<SocketAddr, Task>,
    demand: &mut Option<ring::Demand>,
) {
    if tasks.is_empty() {
        *demand = None;
    } else if demand.is_none() {
        *demand = Some(shared.feed.demand());
    }
}

fn refusal_label(reason: camring_protocol::udp::RefuseReason) -> &'static str {
    use camring_protocol::udp::RefuseReason;
    match reason {
        RefuseReason::Unauthorized => "token",
        RefuseReason::BadRequest => "parameter",
        RefuseReason::Full => "full",
        RefuseReason::UnknownSubscriber => "unknown_subscriber",
        RefuseReason::UnsupportedVersion | RefuseReason::Other(_) => "version",
    }
}
