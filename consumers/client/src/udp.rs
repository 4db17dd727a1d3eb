//! A subscriber of `camring bridge udp` (docs/protocol.md, 10): the sans-IO
//! [`camring_protocol::udp::client::Client`] driven over a connected socket on a thread of
//! its own.
//!
//! The thread keeps draining the socket and reassembling, however slowly messages are
//! taken: a whole message still waiting when a newer one is complete is replaced (counted
//! in [`UdpStats::replaced`]; the gap shows as skipped frame numbers). Without it a client
//! slower than the stream would leave datagrams queued in its kernel buffer, seconds of
//! them, and lose fragments when that overflows: with it, the latency is bounded by one
//! message's processing time, as the protocol's backpressure rule asks (docs/protocol.md,
//! 7). Nothing but messages is ever replaced, so order is kept.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use camring_protocol::control::SettingsUpdate;
use camring_protocol::udp::{ReassemblerConfig, ReassemblyStats, RefuseReason};
use camring_shm::clock::now_ns;
use tokio::sync::Notify;

pub use camring_protocol::udp::client::{Client, ClientConfig, ClientStats, Event};
pub use camring_protocol::udp::MAX_TOKEN_LEN;

use crate::url::HostPort;
use crate::{Connect, ConnectFailure, Link, Received};

/// Receive buffer asked for a client's socket (capped by `net.core.rmem_max`).
pub const RECV_BUFFER: usize = 8 << 20;
/// Longest the receiving thread blocks in `recv` before it looks at its timers and the
/// stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_536;

/// A UDP socket connected to `server` (so only its datagrams come in), with a receive
/// buffer of `recv_buffer` bytes asked for (the system caps it), non-blocking, ready for
/// `tokio::net::UdpSocket::from_std`.
pub fn socket(server: SocketAddr, recv_buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(recv_buffer);
    let any: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    socket.bind(&any.into())?;
    socket.connect(&server.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `host:port` of a `udp://HOST:PORT` URL (a trailing `/` allowed; settings and the token
/// are not part of it).
pub fn authority(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| format!("{url}: expected udp://HOST:PORT"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{url}: expected udp://HOST:PORT (settings and token are options, not part of the URL)"
        ));
    }
    HostPort::parse(rest, None)
        .map(|hp| hp.authority())
        .ok_or_else(|| format!("{url}: no port (expected udp://HOST:PORT)"))
}

/// The subscribe request's settings (JSON, empty for none).
pub fn settings_json(update: &SettingsUpdate) -> Vec<u8> {
    if *update == SettingsUpdate::default() {
        return Vec::new();
    }
    serde_json::to_vec(update).unwrap_or_default()
}

/// What a refusal means, for a user.
pub fn refusal(reason: RefuseReason) -> String {
    let what = match reason {
        RefuseReason::Unauthorized => "unauthorized — wrong or missing --token".to_owned(),
        RefuseReason::BadRequest => "bad_request — a setting (or the MTU) was refused".to_owned(),
        RefuseReason::Full => {
            "full — the server already serves its maximum number of subscribers".to_owned()
        }
        RefuseReason::UnknownSubscriber => "unknown_subscriber".to_owned(),
        RefuseReason::UnsupportedVersion => {
            "unsupported_version — the server does not read this camring's UDP version".to_owned()
        }
        RefuseReason::Other(code) => format!("reason {code}"),
    };
    format!("the server refused the subscription: {what}")
}

/// What the receiving thread hands on, in order.
#[derive(Debug)]
enum Item {
    Event(Event, u64),
    /// An ICMP "port unreachable" for one of the requests.
    Unreachable(String),
}

/// A subscriber's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpStats {
    /// The subscriber's.
    pub client: ClientStats,
    /// The reassembly's.
    pub reassembly: ReassemblyStats,
    /// The reassembly's limits.
    pub limits: ReassemblerConfig,
    /// Whole messages replaced by a newer one before they were taken.
    pub replaced: u64,
}

impl UdpStats {
    /// Incomplete frames the reassembly dropped, for whatever reason.
    pub fn incomplete(&self) -> u64 {
        let r = &self.reassembly;
        r.dropped_timeout + r.dropped_superseded + r.dropped_evicted + r.dropped_inconsistent
    }
}

#[derive(Debug)]
struct State {
    client: Client,
    items: VecDeque<Item>,
    replaced: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    ready: Notify,
    stop: AtomicBool,
}

impl State {
    /// Queues `item`; a message replaces one still waiting at the back.
    fn push(&mut self, item: Item) {
        let message = |i: Option<&Item>| matches!(i, Some(Item::Event(Event::Message(_), _)));
        if message(Some(&item)) && message(self.items.back()) {
            self.items.pop_back();
            self.replaced += 1;
        }
        self.items.push_back(item);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere leaves counters and a queue, still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn push(&self, item: Item) {
        self.lock().push(item);
        self.ready.notify_one();
    }

    /// The next item, waiting for one; `None`, leaving it queued, if it is one that
    /// `stop` says is not to be taken here. Cancel-safe: an item is taken only when
    /// returned.
    async fn next_unless(&self, stop: impl Fn(&Item) -> bool) -> Option<Item> {
        loop {
            {
                let mut s = self.lock();
                match s.items.front() {
                    Some(item) if stop(item) => return None,
                    Some(_) => return s.items.pop_front(),
                    None => {}
                }
            }
            // A push between the check and here leaves a permit: no wake-up is lost.
            self.ready.notified().await;
        }
    }
}

/// The receiving thread: sends what the subscriber asks, receives, runs its timers, until
/// told to stop; then says goodbye. Per datagram it takes the lock once to handle it and
/// once for the timers and requests; the socket's read timeout is set only when the wait
/// for the next timer changes (in steady streaming it stays [`POLL`]).
fn receive(shared: &Shared, socket: &std::net::UdpSocket) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut timeout = None;
    // Relaxed: the flag orders nothing else; the thread only has to see it eventually.
    while !shared.stop.load(Ordering::Relaxed) {
        let (sends, wake) = {
            let mut s = shared.lock();
            let now = Instant::now();
            let fired = s.client.poll_timeout().is_some_and(|t| t <= now);
            if let Some(e) = fired.then(|| s.client.handle_timeout(now)).flatten() {
                s.push(Item::Event(e, now_ns()));
                shared.ready.notify_one();
            }
            let sends: Vec<Vec<u8>> = std::iter::from_fn(|| s.client.poll_transmit()).collect();
            (sends, s.client.poll_timeout())
        };
        for d in sends {
            if let Err(e) = socket.send(&d) {
                tracing::debug!("send: {e}");
            }
        }
        let now = Instant::now();
        let wait = wake
            .map_or(POLL, |t| t.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), POLL);
        if timeout != Some(wait) {
            let _ = socket.set_read_timeout(Some(wait));
            timeout = Some(wait);
        }
        let item = match socket.recv(&mut buf) {
            Ok(n) => {
                let mut s = shared.lock();
                if let Some(e) = s.client.handle(Instant::now(), &buf[..n]) {
                    s.push(Item::Event(e, now_ns()));
                    drop(s);
                    shared.ready.notify_one();
                }
                None
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Some(Item::Unreachable(e.to_string()))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => {
                tracing::debug!("recv: {e}");
                None
            }
        };
        if let Some(item) = item {
            shared.lock().push(item);
            shared.ready.notify_one();
        }
    }
    let bye = shared.lock().client.close();
    if let Some(bye) = bye {
        let _ = socket.send(&bye);
    }
}

/// Why a subscription could not be made.
#[derive(Debug)]
pub enum UdpConnectError {
    /// The server is full (the subscriber keeps asking).
    Full,
    /// The server refused for good.
    Refused(RefuseReason),
    /// An ICMP "port unreachable": nothing listens there.
    Unreachable {
        /// `udp://host:port`.
        url: String,
        /// Why.
        why: String,
    },
}

impl ConnectFailure for UdpConnectError {
    fn permanent(&self) -> bool {
        matches!(self, UdpConnectError::Refused(_))
    }

    fn unreachable(&self) -> bool {
        matches!(self, UdpConnectError::Unreachable { .. })
    }

    fn describe(&self) -> String {
        match self {
            UdpConnectError::Full => refusal(RefuseReason::Full),
            UdpConnectError::Refused(reason) => refusal(*reason),
            UdpConnectError::Unreachable { url, why } => format!("cannot reach {url}: {why}"),
        }
    }
}

/// A subscriber of one server, for as long as it lives: it subscribes again by itself
/// when a subscription is lost, and follows a new stream.
#[derive(Debug)]
pub struct UdpClient {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    url: String,
    subscribed_once: bool,
    /// The last subscription: its stream, and whether it was a new stream.
    last: Option<(u32, bool)>,
}

impl UdpClient {
    /// Starts subscribing to `server` (`url` is how messages name it) over a socket with
    /// a `recv_buffer`-byte receive buffer.
    pub fn start(
        server: SocketAddr,
        url: String,
        config: ClientConfig,
        recv_buffer: usize,
    ) -> std::io::Result<UdpClient> {
        let socket = socket(server, recv_buffer)?;
        // The receiving thread blocks in `recv`, for at most its poll interval.
        socket.set_nonblocking(false)?;
        let client = Client::new(config, Instant::now())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                client,
                items: VecDeque::new(),
                replaced: 0,
            }),
            ready: Notify::new(),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("udp-receive".into())
                .spawn(move || receive(&shared, &socket))?
        };
        Ok(UdpClient {
            shared,
            thread: Some(thread),
            url,
            subscribed_once: false,
            last: None,
        })
    }

    /// The server's URL, `udp://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The last subscription's stream and whether it was another stream than before.
    pub fn last_subscription(&self) -> Option<(u32, bool)> {
        self.last
    }

    /// Whether a subscription is live now.
    pub fn subscribed(&self) -> bool {
        self.shared.lock().client.subscribed()
    }

    /// The counters so far.
    pub fn stats(&self) -> UdpStats {
        let s = self.shared.lock();
        UdpStats {
            client: *s.client.stats(),
            reassembly: *s.client.reassembly(),
            limits: *s.client.reassembly_config(),
            replaced: s.replaced,
        }
    }

    /// Unsubscribes and stops the receiving thread (also done when dropped).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UdpClient {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Connect for UdpClient {
    type Link = UdpLink;
    type Error = UdpConnectError;

    /// Waits for the next subscription (the subscriber asks by itself, and again after a
    /// loss).
    async fn connect(&mut self) -> Result<UdpLink, UdpConnectError> {
        loop {
            let Some(item) = self.shared.next_unless(|_| false).await else {
                continue;
            };
            match item {
                Item::Event(Event::Subscribed { stream, new_stream }, _) => {
                    self.subscribed_once = true;
                    self.last = Some((stream, new_stream));
                    return Ok(UdpLink(Arc::clone(&self.shared)));
                }
                Item::Event(Event::Full, _) => return Err(UdpConnectError::Full),
                Item::Event(Event::Refused(reason), _) => {
                    return Err(UdpConnectError::Refused(reason))
                }
                Item::Unreachable(why) if !self.subscribed_once => {
                    return Err(UdpConnectError::Unreachable {
                        url: self.url.clone(),
                        why,
                    })
                }
                // Between subscriptions: what a lost one still delivered.
                Item::Unreachable(_) | Item::Event(..) => {}
            }
        }
    }
}

/// A live subscription.
#[derive(Debug)]
pub struct UdpLink(Arc<Shared>);

impl Link for UdpLink {
    async fn recv(&mut self) -> Result<Received, String> {
        // A new subscription, or a refusal, ends this one: left for `connect` to take.
        let ends = |i: &Item| {
            matches!(
                i,
                Item::Event(Event::Subscribed { .. } | Event::Refused(_), _)
            )
        };
        loop {
            let Some(item) = self.0.next_unless(ends).await else {
                return Err(match self.0.lock().items.front() {
                    Some(Item::Event(Event::Refused(reason), _)) => refusal(*reason),
                    _ => "the server's stream changed".to_owned(),
                });
            };
            match item {
                Item::Event(Event::Message(data), received_ns) => {
                    return Ok(Received::Message {
                        data: Bytes::from(data),
                        received_ns,
                    })
                }
                Item::Event(Event::Text(json), _) => return Ok(Received::Text(json)),
                Item::Event(Event::Lost(why), _) => return Err(why.to_owned()),
                Item::Event(Event::Full | Event::Subscribed { .. } | Event::Refused(_), _)
                | Item::Unreachable(_) => {}
            }
        }
    }

    async fn close(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(authority("udp://127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(
            authority("udp://localhost:5000/").unwrap(),
            "localhost:5000"
        );
        assert_eq!(authority("udp://[::1]:5000").unwrap(), "[::1]:5000");
        for bad in [
            "udp://",
            "udp://host",
            "udp://:5000",
            "udp://h:5000/x",
            "udp://h:5000?token=x",
            "udp://::1:5000",
            "ws://h:5000",
            "udp://h:99999",
        ] {
            assert!(authority(bad).is_err(), "{bad}");
        }
        assert!(settings_json(&SettingsUpdate::default()).is_empty());
        let u = SettingsUpdate {
            fps: Some(5.0),
            ..SettingsUpdate::default()
        };
        assert_eq!(settings_json(&u), br#"{"fps":5.0}"#);
    }

    fn shared() -> Shared {
        Shared {
            state: Mutex::new(State {
                client: Client::new(ClientConfig::default(), Instant::now()).unwrap(),
                items: VecDeque::new(),
                replaced: 0,
            }),
            ready: Notify::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn msg(b: u8) -> Item {
        Item::Event(Event::Message(vec![b]), 0)
    }

    #[test]
    fn only_messages_are_replaced() {
        let shared = shared();
        shared.push(msg(1));
        shared.push(msg(2));
        shared.push(Item::Event(Event::Text("t".into()), 0));
        shared.push(msg(3));
        let s = shared.lock();
        assert_eq!(s.replaced, 1);
        let kinds: Vec<String> = s.items.iter().map(|i| format!("{i:?}")).collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert!(kinds[0].contains("[2]"), "{kinds:?}");
        assert!(kinds[2].contains("[3]"), "{kinds:?}");
    }

    #[test]
    fn a_link_leaves_the_next_subscription_for_connect() {
        let shared = Arc::new(shared());
        let mut link = UdpLink(Arc::clone(&shared));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        shared.push(msg(1));
        let subscribed = Event::Subscribed {
            stream: 7,
            new_stream: true,
        };
        shared.push(Item::Event(subscribed, 0));
        shared.push(msg(2));
        let first = rt.block_on(link.recv()).unwrap();
        assert!(matches!(first, Received::Message { data, .. } if data[..] == [1]));
        // Waiting, then woken by the subscription: still not taken.
        let err = rt.block_on(link.recv()).unwrap_err();
        assert!(err.contains("stream changed"), "{err}");
        let front = shared.lock().items.pop_front();
        assert!(matches!(
            front,
            Some(Item::Event(Event::Subscribed { stream: 7, .. }, _))
        ));
        // A subscription pushed while the link waits ends it as well.
        let mut link = UdpLink(Arc::clone(&shared));
        shared.lock().items.clear();
        let pusher = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                shared.push(Item::Event(Event::Refused(RefuseReason::Full), 0))
            })
        };
        let err = rt.block_on(link.recv()).unwrap_err();
        pusher.join().unwrap();
        assert!(err.contains("refused"), "{err}");
    }
}
