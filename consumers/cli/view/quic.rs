//! `camring view quic://HOST:PORT`: a client of `camring bridge quic` (docs/protocol.md,
//! 10.8). The server's certificate is checked by its pinned SHA-256 (`--cert-sha256`) or a
//! CA (`--ca`); the hello carries the token and settings; every unidirectional stream is
//! read whole, concurrently, and handed to the same [`ViewSession`] as WebSocket messages, with
//! the same live line, `--verify`, `--save` and `--json` summary (plus a `quic` object:
//! streams received, reset by the server, stale).
//!
//! Streams complete in any order: a message older than one already handed on is stale
//! and dropped (the server resets such streams itself once it knows), and when several
//! messages are waiting only the newest is handed on.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use camring_bridge::quic::control::{close, Hello, Line, LineReader, ReadLine, MAX_SERVER_LINE};
use camring_bridge::quic::tls::{self, Trust};
use camring_protocol::control::{ServerMessage, SettingsUpdate};
use camring_protocol::wire;
use camring_shm::clock::now_ns;
use quinn::{ConnectionError, VarInt};
use tokio::sync::mpsc;

use super::session::{Saver, ViewSession};
use super::{Console, ViewArgs, BACKOFF_MIN, CONNECT_TIMEOUT, POLL};
use crate::signals::StopFlag;

/// Default port of `quic://` URLs (the bridge's default).
pub const DEFAULT_PORT: u16 = 4433;
/// Largest multi-frame message accepted on one stream.
pub const MAX_MESSAGE: usize = camring_bridge::quic::CLIENT_MAX_MESSAGE;
/// Messages read whole and waiting to be handled.
const QUEUE: usize = 4;

/// Where to connect and what to say.
#[derive(Debug, Clone, PartialEq)]
pub struct QuicTarget {
    /// `host:port` as given (for messages and resolution).
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
        let rest = url
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("quic://"))
            .map(|_| &url[7..])
            .ok_or_else(|| format!("{url}: expected quic://HOST:PORT"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let tail = tail.split('#').next().unwrap_or("");
        let query = tail.split_once('?').map_or("", |(_, q)| q);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: bad host"))?;
            (addr.to_owned(), after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host.contains('@') {
            return Err(format!("{url}: no host (expected quic://HOST:PORT)"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("{url}: bad port {p:?}"))?,
            None => DEFAULT_PORT,
        };
        let mut url_token = None;
        let mut pairs = Vec::new();
        for p in query.split('&').filter(|p| !p.is_empty()) {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let v = decode(v);
            if n == "token" {
                url_token = Some(v);
            } else {
                pairs.push((n.to_owned(), v));
            }
        }
        let mut update =
            SettingsUpdate::from_query(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .map_err(|e| format!("{url}: {e}"))?;
        let s = settings.clone();
        update.quality = s.quality.or(update.quality);
        update.max_width = s.max_width.or(update.max_width);
        update.max_height = s.max_height.or(update.max_height);
        update.fps = s.fps.or(update.fps);
        update.skip = s.skip.or(update.skip);
        update.cameras = s.cameras.or(update.cameras);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(QuicTarget {
            authority,
            host,
            port,
            hello: Hello {
                version: camring_bridge::quic::control::QUIC_VERSION,
                token: token.map(str::to_owned).or(url_token),
                settings: (update != SettingsUpdate::default()).then_some(update),
            },
        })
    }
}

/// Percent-decoding (`+` is a space, as in forms).
fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the server's certificate is checked, from the options.
fn trust(args: &ViewArgs) -> anyhow::Result<Trust> {
    match (&args.cert_sha256, &args.ca) {
        (Some(_), Some(_)) => bail!("give either --cert-sha256 or --ca, not both"),
        (Some(hex), None) => Ok(Trust::Pinned(tls::parse_fingerprint(hex)?)),
        (None, Some(path)) => Ok(Trust::ca_file(path)?),
        (None, None) => bail!(
            "{}: cannot check the server's certificate: pass --cert-sha256 HEX (the `certificate \
             sha256` that camring bridge quic prints) or --ca FILE (a CA certificate in PEM that \
             signed the server's)",
            args.url
        ),
    }
}

pub fn run(args: &ViewArgs) -> anyhow::Result<ExitCode> {
    let target = QuicTarget::new(&args.url, args.token.as_deref(), &args.settings())
        .map_err(anyhow::Error::msg)?;
    let trust = trust(args)?;
    let saver = match &args.save {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
            Some(Saver::new(dir, args.save_max))
        }
        None => None,
    };
    let mut config = quinn::ClientConfig::new(tls::client_crypto(&trust)?);
    config.transport_config(Arc::new(camring_bridge::quic::client_transport()));
    let stop = StopFlag::install()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let mut viewer = Viewer {
        con: Console::new(args, &stop, start, ViewSession::new(args.verify, saver)),
        target: &target,
        config,
        counts: Counts::default(),
    };
    let outcome = runtime.block_on(viewer.run());
    viewer.con.notes();
    let summary = viewer
        .con
        .session
        .finish(start.elapsed().as_secs_f64(), viewer.con.resyncs);
    if let Outcome::Failed(why) = &outcome {
        eprintln!("camring view: {why}");
    }
    if !args.quiet && !matches!(outcome, Outcome::NeverConnected) {
        let c = &viewer.counts;
        eprintln!(
            "camring view: {} frame streams, {} reset by the server, {} stale messages dropped",
            c.streams, c.reset, c.stale
        );
        if let Some(dir) = &args.save {
            eprintln!(
                "camring view: saved {} JPEG files into {}",
                viewer.con.session.saved_files(),
                dir.display()
            );
        }
    }
    if args.json && !matches!(outcome, Outcome::NeverConnected) {
        let mut v = serde_json::to_value(&summary)?;
        v["quic"] = serde_json::json!({
            "streams": viewer.counts.streams,
            "reset": viewer.counts.reset,
            "stale": viewer.counts.stale,
            "too_long": viewer.counts.too_long,
        });
        println!("{v}");
    }
    Ok(if summary.corrupt > 0 {
        ExitCode::from(3)
    } else if matches!(outcome, Outcome::Done) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Stream counters of a run.
#[derive(Debug, Default)]
struct Counts {
    /// Frame streams accepted.
    streams: u64,
    /// Of which the server reset.
    reset: u64,
    /// Messages dropped for being older than one handed on.
    stale: u64,
    /// Streams longer than [`MAX_MESSAGE`] (stopped).
    too_long: u64,
}

/// How a run ended.
enum Outcome {
    Done,
    NeverConnected,
    Failed(String),
}

/// How one connection ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// Why a connection could not be set up.
#[derive(Debug)]
enum ConnectError {
    /// The server closed the connection with an application code (refused the hello).
    Refused { code: u64, reason: String },
    /// TLS failed: the certificate is not the pinned one or not signed by the CA, etc.
    Tls(String),
    /// No answer, unreachable, unknown host.
    Unreachable(String),
    /// The attempt took longer than [`CONNECT_TIMEOUT`].
    Timeout,
}

impl ConnectError {
    fn from_connection(e: ConnectionError) -> ConnectError {
        match e {
            ConnectionError::ApplicationClosed(c) => ConnectError::Refused {
                code: c.error_code.into_inner(),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            ConnectionError::TransportError(t) => ConnectError::Tls(t.to_string()),
            ConnectionError::ConnectionClosed(c) if u64::from(c.error_code) >= 0x100 => {
                ConnectError::Tls(c.to_string())
            }
            ConnectionError::TimedOut => {
                ConnectError::Unreachable("no answer (is it listening?)".into())
            }
            other => ConnectError::Unreachable(other.to_string()),
        }
    }

    /// Whether trying again cannot help.
    fn permanent(&self) -> bool {
        match self {
            ConnectError::Refused { code, .. } => {
                *code == u64::from(close::UNAUTHORIZED) || *code == u64::from(close::BAD_REQUEST)
            }
            ConnectError::Tls(_) => true,
            _ => false,
        }
    }

    fn describe(&self, target: &QuicTarget) -> String {
        match self {
            ConnectError::Refused { code, reason } => {
                let hint = match u32::try_from(*code).unwrap_or(u32::MAX) {
                    close::UNAUTHORIZED => " — wrong or missing --token",
                    close::FULL => " — the server already serves its maximum number of clients",
                    close::BAD_REQUEST => " — a setting was refused",
                    _ => "",
                };
                let name = close::name(*code).unwrap_or("unknown");
                format!("refused: {reason} (close code {code}, {name}){hint}")
            }
            ConnectError::Tls(e) => format!(
                "TLS with quic://{} failed: {e} — check --cert-sha256 or --ca",
                target.authority
            ),
            ConnectError::Unreachable(e) => format!("cannot connect to {}: {e}", target.authority),
            ConnectError::Timeout => format!(
                "no answer from {} within {} s",
                target.authority,
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
}

/// A connection whose hello was sent and whose first line was read.
struct Connected {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
    lines: LineReader,
    first: String,
}

async fn connect(
    target: &QuicTarget,
    config: &quinn::ClientConfig,
) -> Result<Connected, ConnectError> {
    let unreachable = |e: std::io::Error| ConnectError::Unreachable(e.to_string());
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(unreachable)?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| ConnectError::Unreachable("the host has no address".into()))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = camring_bridge::quic::client_endpoint(bind).map_err(unreachable)?;
    endpoint.set_default_client_config(config.clone());
    let conn = endpoint
        .connect(addr, &target.host)
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?
        .await
        .map_err(ConnectError::from_connection)?;
    let lost = |conn: &quinn::Connection| {
        conn.close_reason().map_or(
            ConnectError::Unreachable("connection lost".into()),
            ConnectError::from_connection,
        )
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(ConnectError::from_connection)?;
    if send
        .write_all(target.hello.to_line().as_bytes())
        .await
        .is_err()
    {
        return Err(lost(&conn));
    }
    let mut lines = LineReader::new(MAX_SERVER_LINE);
    let first = match lines.read(&mut recv).await {
        Ok(Line::Text(t)) => t,
        Ok(_) | Err(_) => {
            // The server closes a refused connection right away: wait for its reason.
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
            return Err(lost(&conn));
        }
    };
    Ok(Connected {
        endpoint,
        conn,
        _send: send,
        recv,
        lines,
        first,
    })
}

/// What a stream reader hands the connection loop.
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

struct Viewer<'a> {
    con: Console<'a>,
    target: &'a QuicTarget,
    config: quinn::ClientConfig,
    counts: Counts,
}

impl Viewer<'_> {
    async fn run(&mut self) -> Outcome {
        let mut connections = 0u64;
        let mut backoff = BACKOFF_MIN;
        let mut outage_reported = false;
        let url = format!("quic://{}", self.target.authority);
        loop {
            if self.con.should_stop() {
                return Outcome::Done;
            }
            let attempt = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, connect(self.target, &self.config)) => {
                    r.unwrap_or(Err(ConnectError::Timeout))
                }
                () = self.con.stopped() => return Outcome::Done,
            };
            match attempt {
                Ok(c) => {
                    if connections > 0 {
                        self.con.resyncs += 1;
                        self.con.info(&format!("reconnected to {url}"));
                    } else {
                        self.con.info(&format!("connected to {url}"));
                    }
                    connections += 1;
                    backoff = BACKOFF_MIN;
                    outage_reported = false;
                    self.con.session.connected();
                    match self.serve(c).await {
                        Ended::Stopped => return Outcome::Done,
                        Ended::Lost(why) => {
                            self.con.session.disconnected();
                            self.con
                                .info(&format!("connection lost ({why}); reconnecting"));
                        }
                    }
                }
                Err(e) if connections == 0 => {
                    let hint = if matches!(e, ConnectError::Unreachable(_) | ConnectError::Timeout)
                    {
                        " — is `camring bridge quic` listening there?"
                    } else {
                        ""
                    };
                    eprintln!("camring view: {}{hint}", e.describe(self.target));
                    return Outcome::NeverConnected;
                }
                Err(e) if e.permanent() => return Outcome::Failed(e.describe(self.target)),
                Err(e) => {
                    let why = e.describe(self.target);
                    self.con
                        .retry_later(&why, &mut outage_reported, &mut backoff)
                        .await;
                }
            }
        }
    }

    /// Handles one control line; returns whether it was a `state` (which may announce a
    /// producer that numbers frames from 0 again).
    fn on_line(&mut self, line: &str) -> bool {
        let state = matches!(ServerMessage::from_json(line), Ok(ServerMessage::State(_)));
        self.con.session.on_text(line);
        state
    }

    async fn serve(&mut self, c: Connected) -> Ended {
        let Connected {
            endpoint,
            conn,
            _send,
            mut recv,
            mut lines,
            first,
        } = c;
        let delay = Duration::from_millis(self.con.args.delay_ms);
        // The newest frame number handed on since the last `state`.
        let mut last: Option<u64> = None;
        if self.on_line(&first) {
            last = None;
        }
        let (tx, mut rx) = mpsc::channel::<Got>(QUEUE);
        let mut control_open = true;
        let ended = loop {
            if self.con.should_stop() {
                conn.close(VarInt::from_u32(close::DONE), b"bye");
                let _ =
                    tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
                return Ended::Stopped;
            }
            tokio::select! {
                stream = conn.accept_uni() => match stream {
                    Ok(s) => {
                        self.counts.streams += 1;
                        tokio::spawn(read_stream(s, tx.clone()));
                    }
                    Err(e) => break describe_lost(e),
                },
                line = lines.read(&mut recv), if control_open => match line {
                    Ok(Line::Text(text)) => {
                        if self.on_line(&text) {
                            last = None;
                        }
                    }
                    Ok(Line::TooLong) => {
                        break "the server sent a control line over 64 KiB".to_owned();
                    }
                    Ok(Line::End) => control_open = false,
                    Err(quinn::ReadError::ConnectionLost(e)) => break describe_lost(e),
                    Err(e) => break format!("control stream: {e}"),
                },
                got = rx.recv() => {
                    let Some(got) = got else { continue };
                    // Everything that is ready: the newest message is handed on.
                    let mut newest: Option<(Vec<u8>, u64)> = None;
                    let mut next = Some(got);
                    while let Some(g) = next {
                        match g {
                            Got::Reset => self.counts.reset += 1,
                            Got::TooLong => self.counts.too_long += 1,
                            Got::Message(data, at) => {
                                let frame = frame_of(&data);
                                let is_stale = |f: u64| last.is_some_and(|l| f <= l);
                                match (frame, &newest) {
                                    (Some(f), _) if is_stale(f) => self.counts.stale += 1,
                                    (Some(f), Some((n, _))) if frame_of(n).is_some_and(|nf| nf >= f) => {
                                        self.counts.stale += 1;
                                    }
                                    (None, _) => self.con.session.on_binary(&data, at), // invalid: counted
                                    _ => {
                                        if newest.is_some() {
                                            self.counts.stale += 1;
                                        }
                                        newest = Some((data, at));
                                    }
                                }
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    if let Some((data, at)) = newest {
                        last = frame_of(&data).or(last);
                        self.con.session.on_binary(&data, at);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
                () = tokio::time::sleep(POLL) => {}
            }
            let reset = self.counts.reset;
            self.con.live(true, || format!("  streams reset {reset}"));
        };
        conn.close(VarInt::from_u32(close::DONE), b"bye");
        Ended::Lost(ended)
    }
}

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
        assert_eq!(decode("a%2Cb+c%zz%4"), "a,b c%zz%4");
    }
}
