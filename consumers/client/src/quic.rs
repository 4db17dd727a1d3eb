//! A client of `camring bridge quic` (docs/protocol.md, 10.8): the URL
//! (`quic://HOST[:PORT][?query]`), the endpoint and transport parameters, the certificate
//! check ([`tls`]), the `hello`, and a connection that hands on each frame stream's message.
//!
//! Frame streams complete in any order: a message older than one already handed on is
//! stale and dropped (the server resets such streams itself once it knows), and when
//! several messages are complete at once only the newest is handed on. A `state` line
//! (perhaps a new producer, numbering frames from 0 again) starts the order over.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use camring_protocol::control::{ServerMessage, SettingsUpdate};
use camring_protocol::quic::{close, Hello, Line, LineReader, MAX_SERVER_LINE, QUIC_VERSION};
use camring_protocol::wire;
use camring_shm::clock::now_ns;
use quinn::{ConnectionError, VarInt};
use tokio::sync::mpsc;

use crate::url::{self, HostPort};
use crate::{Connect, ConnectFailure, Link, Received};

pub mod tls;

/// Default port of `quic://` URLs (the bridge's default).
pub const DEFAULT_PORT: u16 = 4433;
/// Largest frame message read from one stream (a 16-camera raw 4K multi-frame is far
/// less); a longer stream is stopped.
pub const MAX_MESSAGE: usize = 256 << 20;
/// Frame streams the server may open at once.
pub const MAX_STREAMS: u32 = 8;
/// Socket buffers asked for (the kernel caps them): a burst of a large frame's packets.
pub const SOCKET_BUFFER: usize = 4 << 20;
/// Messages read whole and waiting to be handed on.
const QUEUE: usize = 4;
/// How much of the control stream is read at once.
const CHUNK: usize = 4096;
/// Longest the goodbye waits for the connection to close.
const CLOSE_WAIT: Duration = Duration::from_millis(300);
/// After a refused hello, how long to wait for the server's close reason.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// A client's transport parameters: a few frame streams at once, bounded receive windows
/// (so what a slow reader holds is bounded), keep-alives, no datagrams.
pub fn client_transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_uni_streams(VarInt::from_u32(MAX_STREAMS))
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(8 << 20))
        .receive_window(VarInt::from_u32(32 << 20))
        .datagram_receive_buffer_size(None)
        .keep_alive_interval(Some(Duration::from_secs(2)))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(10)).expect("fits"),
        ));
    t
}

/// The client configuration: `trust` for the certificate, [`client_transport`].
pub fn client_config(trust: &tls::Trust) -> Result<quinn::ClientConfig, tls::TlsError> {
    let mut config = quinn::ClientConfig::new(tls::client_crypto(trust)?);
    config.transport_config(Arc::new(client_transport()));
    Ok(config)
}

/// A client endpoint on `bind` (`0.0.0.0:0` or `[::]:0`) with [`SOCKET_BUFFER`]-sized
/// socket buffers asked for. Must be called within a tokio runtime.
pub fn endpoint(bind: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let tune = socket2::SockRef::from(&socket);
    // Best effort: a smaller buffer only makes bursts likelier to overflow.
    let _ = tune.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = tune.set_send_buffer_size(SOCKET_BUFFER);
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Where to connect and what to say.
#[derive(Debug, Clone, PartialEq)]
pub struct QuicTarget {
    /// `host:port` (brackets around IPv6), for messages and resolution.
    pub authority: String,
    /// The host, without IPv6 brackets: the TLS server name.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The hello to send.
    pub hello: Hello,
}

impl QuicTarget {
    /// `quic://HOST[:PORT][/][?query]`; query parameters are the settings of
    /// docs/protocol.md 2.2 and `token`, overridden by `token` and `settings`.
    pub fn new(url: &str, token: Option<&str>, settings: &SettingsUpdate) -> Result<Self, String> {
        let rest = url::strip_scheme(url, "quic://")
            .ok_or_else(|| format!("{url}: expected quic://HOST:PORT"))?;
        let (authority, tail) = url::split_authority(rest);
        let query = tail.split_once('?').map_or("", |(_, q)| q);
        let hp = HostPort::parse(authority, Some(DEFAULT_PORT))
            .ok_or_else(|| format!("{url}: bad host or port (expected quic://HOST:PORT)"))?;
        let mut url_token = None;
        let mut pairs = Vec::new();
        for (n, v) in url::pairs(query) {
            let v = url::decode(v);
            if n == "token" {
                url_token = Some(v);
            } else {
                pairs.push((n, v));
            }
        }
        let update = SettingsUpdate::from_query(pairs.iter().map(|(n, v)| (*n, v.as_str())))
            .map_err(|e| format!("{url}: {e}"))?
            .overridden_by(settings);
        Ok(QuicTarget {
            authority: hp.authority(),
            host: hp.host,
            port: hp.port,
            hello: Hello {
                version: QUIC_VERSION,
                token: token.map(str::to_owned).or(url_token),
                settings: (update != SettingsUpdate::default()).then_some(update),
            },
        })
    }
}

/// Why a QUIC connection could not be set up.
#[derive(Debug)]
pub enum QuicConnectError {
    /// The server closed the connection with an application code (refused the hello).
    Refused {
        /// The close code (`camring_protocol::quic::close`).
        code: u64,
        /// The server's reason.
        reason: String,
    },
    /// TLS failed: the certificate is not the pinned one or not signed by the CA, etc.
    Tls {
        /// `host:port`.
        authority: String,
        /// Why.
        why: String,
    },
    /// No answer, unreachable, unknown host.
    Unreachable {
        /// `host:port`.
        authority: String,
        /// Why.
        why: String,
    },
}

impl QuicConnectError {
    fn from_connection(authority: &str, e: ConnectionError) -> QuicConnectError {
        let authority = authority.to_owned();
        match e {
            ConnectionError::ApplicationClosed(c) => QuicConnectError::Refused {
                code: c.error_code.into_inner(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            ConnectionError::TransportError(t) => QuicConnectError::Tls {
                authority,
                why: t.to_string(),
            },
            ConnectionError::ConnectionClosed(c) if u64::from(c.error_code) >= 0x100 => {
                QuicConnectError::Tls {
                    authority,
                    why: c.to_string(),
                }
            }
            ConnectionError::TimedOut => QuicConnectError::Unreachable {
                authority,
                why: "no answer (is it listening?)".into(),
            },
            other => QuicConnectError::Unreachable {
                authority,
                why: other.to_string(),
            },
        }
    }
}

impl ConnectFailure for QuicConnectError {
    fn permanent(&self) -> bool {
        match self {
            QuicConnectError::Refused { code, .. } => {
                *code == u64::from(close::UNAUTHORIZED) || *code == u64::from(close::BAD_REQUEST)
            }
            QuicConnectError::Tls { .. } => true,
            QuicConnectError::Unreachable { .. } => false,
        }
    }

    fn unreachable(&self) -> bool {
        matches!(self, QuicConnectError::Unreachable { .. })
    }

    fn describe(&self) -> String {
        match self {
            QuicConnectError::Refused { code, reason } => {
                let hint = match u32::try_from(*code).unwrap_or(u32::MAX) {
                    close::UNAUTHORIZED => " — wrong or missing --token",
                    close::FULL => " — the server already serves its maximum number of clients",
                    close::BAD_REQUEST => " — a setting was refused",
                    _ => "",
                };
                let name = close::name(*code).unwrap_or("unknown");
                format!("refused: {reason} (close code {code}, {name}){hint}")
            }
            QuicConnectError::Tls { authority, why } => {
                format!("TLS with quic://{authority} failed: {why} — check --cert-sha256 or --ca")
            }
            QuicConnectError::Unreachable { authority, why } => {
                format!("cannot connect to {authority}: {why}")
            }
        }
    }
}

/// Frame-stream counters of a client, across its connections.
#[derive(Debug, Default)]
pub struct QuicCounts {
    /// Frame streams accepted.
    pub streams: AtomicU64,
    /// Of which the server reset.
    pub reset: AtomicU64,
    /// Messages dropped for being older than one handed on.
    pub stale: AtomicU64,
    /// Streams longer than [`MAX_MESSAGE`] (stopped).
    pub too_long: AtomicU64,
}

impl QuicCounts {
    /// One counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        // Plain statistics: nothing else is ordered by them.
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Opens QUIC connections to one target.
#[derive(Debug, Clone)]
pub struct QuicClient {
    /// Where, and the hello.
    pub target: QuicTarget,
    /// TLS and transport parameters ([`client_config`]).
    pub config: quinn::ClientConfig,
    /// What its connections counted.
    pub counts: Arc<QuicCounts>,
}

impl QuicClient {
    /// A client of `target` that checks the certificate as `trust` says.
    pub fn new(target: QuicTarget, trust: &tls::Trust) -> Result<QuicClient, tls::TlsError> {
        Ok(QuicClient {
            target,
            config: client_config(trust)?,
            counts: Arc::default(),
        })
    }

    /// Connects, sends the hello and reads the server's first line (its `state`, handed on
    /// as the link's first [`Received::Text`]).
    pub async fn open(&self) -> Result<QuicLink, QuicConnectError> {
        let target = &self.target;
        let unreachable = |why: String| QuicConnectError::Unreachable {
            authority: target.authority.clone(),
            why,
        };
        let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("the host has no address".into()))?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = endpoint(bind).map_err(|e| unreachable(e.to_string()))?;
        endpoint.set_default_client_config(self.config.clone());
        let lost = |e| QuicConnectError::from_connection(&target.authority, e);
        let conn = endpoint
            .connect(addr, &target.host)
            .map_err(|e| unreachable(e.to_string()))?
            .await
            .map_err(lost)?;
        let closed = |conn: &quinn::Connection| {
            conn.close_reason()
                .map_or(unreachable("connection lost".into()), lost)
        };
        let (mut send, recv) = conn.open_bi().await.map_err(lost)?;
        if send
            .write_all(target.hello.to_line().as_bytes())
            .await
            .is_err()
        {
            return Err(closed(&conn));
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut link = QuicLink {
            endpoint,
            conn,
            send,
            recv,
            lines: LineReader::new(MAX_SERVER_LINE),
            control_open: true,
            tx,
            rx,
            last: None,
            ready: VecDeque::new(),
            counts: Arc::clone(&self.counts),
        };
        match next_line(&mut link.lines, &mut link.recv).await {
            Ok(Some(first)) => {
                let first = link.on_line(first);
                link.ready.push_back(first);
                Ok(link)
            }
            Ok(None) | Err(_) => {
                // The server closes a refused connection right away: wait for its reason.
                let _ = tokio::time::timeout(REFUSAL_WAIT, link.conn.closed()).await;
                Err(closed(&link.conn))
            }
        }
    }
}

impl Connect for QuicClient {
    type Link = QuicLink;
    type Error = QuicConnectError;

    async fn connect(&mut self) -> Result<QuicLink, QuicConnectError> {
        self.open().await
    }
}

/// What a stream's reader hands the connection.
#[derive(Debug)]
enum Got {
    Message(Vec<u8>, u64),
    Reset,
    TooLong,
}

async fn read_stream(mut stream: quinn::RecvStream, tx: mpsc::Sender<Got>) {
    let got = match stream.read_to_end(MAX_MESSAGE).await {
        Ok(data) => Got::Message(data, now_ns()),
        Err(quinn::ReadToEndError::TooLong) => {
            let _ = stream.stop(VarInt::from_u32(0));
            Got::TooLong
        }
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_))) => Got::Reset,
        Err(_) => return,
    };
    let _ = tx.send(got).await;
}

/// The frame number of a message, if it has a header.
fn frame_of(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(16..24)?.try_into().ok()?;
    (data.get(..4) == Some(&wire::MAGIC[..])).then(|| u64::from_le_bytes(bytes))
}

/// Why a connection ended, for a user.
fn describe_lost(e: ConnectionError) -> String {
    match e {
        ConnectionError::ApplicationClosed(c) => {
            let code = c.error_code.into_inner();
            format!(
                "server closed with code {code} ({}): {}",
                close::name(code).unwrap_or("unknown"),
                String::from_utf8_lossy(&c.reason)
            )
        }
        other => other.to_string(),
    }
}

/// The next control line of `recv`, `None` at the stream's end. Cancel-safe: a chunk
/// read is kept in `lines`.
async fn next_line(
    lines: &mut LineReader,
    recv: &mut quinn::RecvStream,
) -> Result<Option<String>, String> {
    loop {
        match lines.next_line() {
            Some(Line::Text(t)) => return Ok(Some(t)),
            Some(Line::TooLong) => {
                return Err(format!(
                    "the server sent a control line over {} KiB",
                    MAX_SERVER_LINE / 1024
                ))
            }
            Some(Line::End) | None => {}
        }
        match recv.read_chunk(CHUNK, true).await {
            Ok(Some(chunk)) => lines.push(&chunk.bytes),
            Ok(None) => return Ok(None),
            Err(quinn::ReadError::ConnectionLost(e)) => return Err(describe_lost(e)),
            Err(e) => return Err(format!("control stream: {e}")),
        }
    }
}

/// An open QUIC connection: its control stream and the frame streams' messages.
#[derive(Debug)]
pub struct QuicLink {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    /// The control stream's sending half (closing it would be a protocol error).
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    lines: LineReader,
    control_open: bool,
    tx: mpsc::Sender<Got>,
    rx: mpsc::Receiver<Got>,
    /// The newest frame number handed on since the last `state`.
    last: Option<u64>,
    /// What is ready to be handed on, oldest first.
    ready: VecDeque<Received>,
    counts: Arc<QuicCounts>,
}

impl QuicLink {
    /// Sends one control line (`settings`, `pause`, `resume`: docs/protocol.md, 5); the
    /// newline is added.
    pub async fn send_line(&mut self, json: &str) -> Result<(), String> {
        let line = format!("{json}\n");
        self.send
            .write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())
    }

    /// The connection (for its statistics).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// A control line to hand on; a `state` starts the frame order over.
    fn on_line(&mut self, line: String) -> Received {
        if matches!(ServerMessage::from_json(&line), Ok(ServerMessage::State(_))) {
            self.last = None;
        }
        Received::Text(line)
    }

    /// Takes `got` and everything else complete: hands on the newest message (and any
    /// without a frame number, which the caller will find invalid), counts the rest.
    fn on_streams(&mut self, got: Got) {
        let mut newest: Option<(Vec<u8>, u64, u64)> = None;
        let mut next = Some(got);
        while let Some(g) = next {
            match g {
                Got::Reset => QuicCounts::add(&self.counts.reset),
                Got::TooLong => QuicCounts::add(&self.counts.too_long),
                Got::Message(data, at) => match frame_of(&data) {
                    None => self.ready.push_back(Received::Message {
                        data: Bytes::from(data),
                        received_ns: at,
                    }),
                    Some(f) if self.last.is_some_and(|l| f <= l) => {
                        QuicCounts::add(&self.counts.stale);
                    }
                    Some(f) if newest.as_ref().is_some_and(|(_, _, n)| *n >= f) => {
                        QuicCounts::add(&self.counts.stale);
                    }
                    Some(f) => {
                        if newest.replace((data, at, f)).is_some() {
                            QuicCounts::add(&self.counts.stale);
                        }
                    }
                },
            }
            next = self.rx.try_recv().ok();
        }
        if let Some((data, at, f)) = newest {
            self.last = Some(f);
            self.ready.push_back(Received::Message {
                data: Bytes::from(data),
                received_ns: at,
            });
        }
    }
}

impl Link for QuicLink {
    async fn recv(&mut self) -> Result<Received, String> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(r);
            }
            tokio::select! {
                stream = self.conn.accept_uni() => match stream {
                    Ok(s) => {
                        QuicCounts::add(&self.counts.streams);
                        tokio::spawn(read_stream(s, self.tx.clone()));
                    }
                    Err(e) => return Err(describe_lost(e)),
                },
                line = next_line(&mut self.lines, &mut self.recv), if self.control_open => match line? {
                    Some(text) => {
                        let r = self.on_line(text);
                        self.ready.push_back(r);
                    }
                    None => self.control_open = false,
                },
                Some(got) = self.rx.recv() => self.on_streams(got),
            }
        }
    }

    async fn close(self) {
        self.conn.close(VarInt::from_u32(close::DONE), b"bye");
        let _ = tokio::time::timeout(CLOSE_WAIT, self.endpoint.wait_idle()).await;
    }
}

#[cfg(test)]
mod tests {
    use camring_protocol::control::Quality;

    use super::*;

    #[test]
    fn urls() {
        let t = QuicTarget::new(
            "quic://127.0.0.1:9000/?quality=60&token=a%20b&cameras=0%2C2",
            None,
            &SettingsUpdate {
                quality: Some(Quality::Fixed(70)),
                ..SettingsUpdate::default()
            },
        )
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 9000));
        assert_eq!(t.hello.token.as_deref(), Some("a b"));
        let s = t.hello.settings.unwrap();
        assert_eq!(s.quality, Some(Quality::Fixed(70)));
        assert!(s.cameras.is_some());
        let t = QuicTarget::new("quic://[::1]", Some("t"), &SettingsUpdate::default()).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", DEFAULT_PORT, "[::1]:4433")
        );
        assert_eq!(t.hello.token.as_deref(), Some("t"));
        assert!(t.hello.settings.is_none());
        for bad in [
            "ws://x:1",
            "quic://",
            "quic://h:99999",
            "quic://h:1?fps=-1",
            "quic://h?bogus=1",
        ] {
            assert!(
                QuicTarget::new(bad, None, &SettingsUpdate::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn frame_numbers_of_messages() {
        let mut m = wire::MAGIC.to_vec();
        m.resize(16, 0);
        m.extend_from_slice(&7u64.to_le_bytes());
        assert_eq!(frame_of(&m), Some(7));
        assert_eq!(frame_of(&m[..20]), None);
        m[0] = b'X';
        assert_eq!(frame_of(&m), None);
    }
}
