//! `camring view`: a WebSocket client of `camring bridge ws` (the protocol of
//! `docs/protocol.md`). It shows live stats like `camring read`, verifies synthetic frames,
//! saves JPEGs, and prints the same JSON summary; it reconnects when the connection drops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use camring_protocol::control::{CameraSet, Quality, SettingsUpdate};
use camring_shm::clock::now_ns;
use clap::Args;
use futures_util::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::signals::StopFlag;

mod quic;
mod session;
mod udp;
mod url;

use session::{Level, Saver, ViewSession};
use url::{parse_setting, Target};

/// Options of `camring view`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Settings (--quality, --max-width, --max-height, --fps, --skip, --cameras) travel in the URL's
query, as docs/protocol.md describes; the server checks them and refuses the connection (400)
if it disagrees. The connection is re-opened, with backoff, whenever it drops, until
--duration ends or SIGINT/SIGTERM. Exit status: 0, or 3 if a corrupt frame was received, or 1
if the server refused the connection or could not be reached.")]
pub struct ViewArgs {
    /// Server URL: ws://HOST:PORT (path /ws by default) as `camring bridge ws` prints it,
    /// quic://HOST:PORT or udp://HOST:PORT.
    pub url: String,
    /// Token the server requires (sent as the URL's `token` parameter).
    #[arg(long)]
    pub token: Option<String>,
    /// Check every synthetic camera image against its pattern: whole at full size, the
    /// code band (camera and sequence) when the server downscaled it.
    #[arg(long)]
    pub verify: bool,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print a JSON summary on stdout at the end (the same fields as `camring read --json`).
    #[arg(long)]
    pub json: bool,
    /// Write the received JPEGs into DIR (created if needed) as cam{ID}_{FRAME}.jpg: every
    /// camera of the first --save-max multi-frames, then no more.
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
    /// Multi-frames whose JPEGs --save writes.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub save_max: u64,
    /// JPEG quality the server encodes at: 1..100, or auto (it adapts to this client).
    #[arg(long, value_parser = quality_arg)]
    pub quality: Option<Quality>,
    /// Largest width sent; the server downscales wider images (0 = no limit).
    #[arg(long, value_name = "PIXELS")]
    pub max_width: Option<u32>,
    /// Largest height sent; the server downscales taller images (0 = no limit).
    #[arg(long, value_name = "PIXELS")]
    pub max_height: Option<u32>,
    /// Frame-rate cap, 0 to 1000 (fractions allowed; 0 = no cap).
    #[arg(long, value_parser = fps_arg)]
    pub fps: Option<f64>,
    /// Only every N-th multi-frame of the ring (1 = all).
    #[arg(long, value_name = "N", value_parser = skip_arg)]
    pub skip: Option<u32>,
    /// Cameras to receive: ids like 0,2, or all.
    #[arg(long, value_name = "IDS", value_parser = cameras_arg)]
    pub cameras: Option<CameraSet>,
    /// quic:// only: accept the server's certificate if its SHA-256 fingerprint (hex, as
    /// `camring bridge quic` prints it) is this one.
    #[arg(long, value_name = "HEX")]
    pub cert_sha256: Option<String>,
    /// quic:// only: accept the server's certificate if this CA (PEM file) signed it.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// No live stats line (problems are still reported).
    #[arg(long, short)]
    pub quiet: bool,
    /// Sleep this many milliseconds after each binary message (simulates a slow client).
    #[arg(long, default_value_t = 0, hide = true)]
    pub delay_ms: u64,
    /// SO_RCVBUF of the socket, set before connecting (a small one makes a slow client).
    #[arg(long, value_name = "BYTES", hide = true)]
    pub rcvbuf: Option<u32>,
}

fn quality_arg(s: &str) -> Result<Quality, String> {
    parse_setting("quality", s).map(|u| u.quality.expect("set"))
}

fn fps_arg(s: &str) -> Result<f64, String> {
    parse_setting("fps", s).map(|u| u.fps.expect("set"))
}

fn skip_arg(s: &str) -> Result<u32, String> {
    parse_setting("skip", s).map(|u| u.skip.expect("set"))
}

fn cameras_arg(s: &str) -> Result<CameraSet, String> {
    parse_setting("cameras", s).map(|u| u.cameras.expect("set"))
}

impl ViewArgs {
    fn settings(&self) -> SettingsUpdate {
        SettingsUpdate {
            quality: self.quality,
            max_width: self.max_width,
            max_height: self.max_height,
            fps: self.fps,
            skip: self.skip,
            cameras: self.cameras.clone(),
        }
    }
}

/// Longest a connection attempt (TCP and WebSocket handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between two reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the stop flag and the deadline are looked at while nothing arrives.
const POLL: Duration = Duration::from_millis(50);

pub fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    match args.url.split_once("://").map(|(scheme, _)| scheme) {
        Some("quic") => return quic::run(&args),
        Some("udp") => return udp::run(&args),
        _ => {}
    }
    let target = Target::new(&args.url, args.token.as_deref(), &args.settings())
        .map_err(anyhow::Error::msg)?;
    let saver = match &args.save {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            Some(Saver::new(dir, args.save_max))
        }
        None => None,
    };
    let stop = StopFlag::install()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let mut viewer = Viewer {
        con: Console::new(&args, &stop, start, ViewSession::new(args.verify, saver)),
        target: &target,
        start,
    };
    let outcome = runtime.block_on(viewer.run());
    viewer.con.notes();
    let summary = viewer
        .con
        .session
        .finish(viewer.start.elapsed().as_secs_f64(), viewer.con.resyncs);
    if let Outcome::Failed(why) = &outcome {
        eprintln!("camring view: {why}");
    }
    if !args.quiet {
        if let Some(dir) = &args.save {
            eprintln!(
                "camring view: saved {} JPEG files into {}",
                viewer.con.session.saved_files(),
                dir.display()
            );
        }
    }
    if args.json && !matches!(outcome, Outcome::NeverConnected) {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(if summary.corrupt > 0 {
        ExitCode::from(3)
    } else if matches!(outcome, Outcome::Done) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How a run ended.
enum Outcome {
    /// The duration ended or a signal came.
    Done,
    /// The first connection failed (the reason was printed).
    NeverConnected,
    /// A reconnection was refused for good.
    Failed(String),
}

/// How one connection ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// Why a connection could not be opened.
#[derive(Debug)]
enum ConnectError {
    /// The server answered the upgrade with an HTTP error.
    Refused {
        status: u16,
        reason: String,
        body: String,
    },
    /// No TCP connection (nothing listening, unreachable, unknown host).
    Unreachable(String),
    /// The attempt took longer than [`CONNECT_TIMEOUT`].
    Timeout,
    /// The WebSocket handshake failed otherwise.
    Handshake(String),
}

impl ConnectError {
    /// Whether trying again cannot help (a wrong token or parameter, no such path).
    fn permanent(&self) -> bool {
        matches!(self, ConnectError::Refused { status, .. } if *status != 503 && *status < 500)
    }

    fn describe(&self, target: &Target) -> String {
        match self {
            ConnectError::Refused {
                status,
                reason,
                body,
            } => {
                let hint = match status {
                    401 => "wrong or missing --token".to_owned(),
                    503 => "the server already serves its maximum number of clients".to_owned(),
                    400 if !body.is_empty() => format!("bad parameter: {body}"),
                    400 => "a parameter was refused".to_owned(),
                    404 => format!("no WebSocket endpoint at {target}"),
                    _ if !body.is_empty() => body.clone(),
                    _ => String::new(),
                };
                let hint = if hint.is_empty() {
                    hint
                } else {
                    format!(" — {hint}")
                };
                format!("the server refused the connection: {status} {reason}{hint}")
            }
            ConnectError::Unreachable(e) => {
                format!("cannot connect to {}: {e}", target.authority)
            }
            ConnectError::Timeout => format!(
                "no answer from {} within {} s",
                target.authority,
                CONNECT_TIMEOUT.as_secs()
            ),
            ConnectError::Handshake(e) => {
                format!("WebSocket handshake with {target} failed: {e}")
            }
        }
    }
}

/// Opens the TCP connection (with SO_RCVBUF set first if asked) and the WebSocket.
async fn connect(
    target: &Target,
    rcvbuf: Option<u32>,
) -> Result<WebSocketStream<TcpStream>, ConnectError> {
    let unreachable = |e: std::io::Error| ConnectError::Unreachable(e.to_string());
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.authority.as_str())
        .await
        .map_err(unreachable)?
        .collect();
    let mut stream = None;
    let mut last_error = None;
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(unreachable)?;
        if let Some(bytes) = rcvbuf {
            socket.set_recv_buffer_size(bytes).map_err(unreachable)?;
        }
        match socket.connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(stream) = stream else {
        return Err(ConnectError::Unreachable(last_error.map_or_else(
            || "the host has no address".to_owned(),
            |e| e.to_string(),
        )));
    };
    let _ = stream.set_nodelay(true);
    // A message carries whole images: allow large ones.
    let config = WebSocketConfig::default()
        .max_message_size(Some(1 << 30))
        .max_frame_size(Some(1 << 30));
    match tokio_tungstenite::client_async_with_config(target.request_url(), stream, Some(config))
        .await
    {
        Ok((ws, _response)) => Ok(ws),
        Err(WsError::Http(response)) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim()
                        .chars()
                        .take(300)
                        .collect()
                })
                .unwrap_or_default();
            Err(ConnectError::Refused {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_owned(),
                body,
            })
        }
        Err(WsError::Io(e)) => Err(unreachable(e)),
        Err(e) => Err(ConnectError::Handshake(e.to_string())),
    }
}

/// What `camring view` keeps while it runs, whatever the transport (ws, quic): the
/// options, the stop flag and end time, the session, reconnections and the live line.
struct Console<'a> {
    args: &'a ViewArgs,
    stop: &'a StopFlag,
    end: Option<Instant>,
    session: ViewSession,
    resyncs: u64,
    last_line: Instant,
}

impl<'a> Console<'a> {
    /// Started at `start`: ends `--duration` later, if given.
    fn new(args: &'a ViewArgs, stop: &'a StopFlag, start: Instant, session: ViewSession) -> Self {
        Console {
            args,
            stop,
            end: args
                .duration
                .map(|d| start + Duration::from_secs_f64(d.max(0.0))),
            session,
            resyncs: 0,
            last_line: Instant::now(),
        }
    }

    fn should_stop(&self) -> bool {
        self.stop.raised() || self.end.is_some_and(|e| Instant::now() >= e)
    }

    /// Resolves when a signal came or the duration ended (never cancels anything itself).
    async fn stopped(&self) {
        while !self.should_stop() {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Prints the session's notes: problems always, the rest unless quiet.
    fn notes(&mut self) {
        for (level, text) in self.session.take_notes() {
            if level == Level::Problem || !self.args.quiet {
                eprintln!("camring view: {text}");
            }
        }
    }

    fn info(&self, text: &str) {
        if !self.args.quiet {
            eprintln!("camring view: {text}");
        }
    }

    /// After a failed connection attempt: says why once per outage, waits `backoff`
    /// (keeping the live line going, returning early on stop) and doubles it.
    async fn retry_later(&mut self, why: &str, reported: &mut bool, backoff: &mut Duration) {
        if !*reported {
            self.info(&format!("{why}; retrying until it answers"));
            *reported = true;
        }
        let until = Instant::now() + *backoff;
        while Instant::now() < until && !self.should_stop() {
            tokio::time::sleep(POLL).await;
            self.live(false, String::new);
        }
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    }

    /// The live line about once a second, followed by what `extra` says (the transport's
    /// own counters).
    fn live(&mut self, connected: bool, extra: impl FnOnce() -> String) {
        self.notes();
        let elapsed = self.last_line.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let line = self
                .session
                .live_line(elapsed.as_secs_f64(), connected, self.resyncs);
            if !self.args.quiet {
                eprintln!("{line}{}", extra());
            }
            self.last_line = Instant::now();
        }
    }
}

/// One run of `camring view` over WebSocket.
struct Viewer<'a> {
    con: Console<'a>,
    target: &'a Target,
    start: Instant,
}

impl Viewer<'_> {
    async fn run(&mut self) -> Outcome {
        let mut connections = 0u64;
        let mut backoff = BACKOFF_MIN;
        let mut outage_reported = false;
        loop {
            if self.con.should_stop() {
                return Outcome::Done;
            }
            let attempt = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, connect(self.target, self.con.args.rcvbuf)) => {
                    r.unwrap_or(Err(ConnectError::Timeout))
                }
                () = self.con.stopped() => return Outcome::Done,
            };
            match attempt {
                Ok(ws) => {
                    if connections > 0 {
                        self.con.resyncs += 1;
                        self.con.info(&format!("reconnected to {}", self.target));
                    } else {
                        self.con.info(&format!("connected to {}", self.target));
                    }
                    connections += 1;
                    backoff = BACKOFF_MIN;
                    outage_reported = false;
                    self.con.session.connected();
                    match self.serve(ws).await {
                        Ended::Stopped => return Outcome::Done,
                        Ended::Lost(why) => {
                            self.con.session.disconnected();
                            self.con
                                .info(&format!("connection lost ({why}); reconnecting"));
                        }
                    }
                }
                Err(e) if connections == 0 => {
                    let hint = if matches!(e, ConnectError::Unreachable(_)) {
                        " — is `camring bridge ws` listening there?"
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

    /// Receives on one connection until it ends or the run stops.
    async fn serve(&mut self, mut ws: WebSocketStream<TcpStream>) -> Ended {
        let delay = Duration::from_millis(self.con.args.delay_ms);
        loop {
            if self.con.should_stop() {
                // Say goodbye, but do not wait long for the server's answer.
                let _ = tokio::time::timeout(Duration::from_millis(300), ws.close(None)).await;
                return Ended::Stopped;
            }
            let next = tokio::select! {
                m = ws.next() => Some(m),
                () = tokio::time::sleep(POLL) => None,
            };
            match next {
                None => {}
                Some(Some(Ok(Message::Binary(data)))) => {
                    let received_ns = now_ns();
                    self.con.session.on_binary(&data, received_ns);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                Some(Some(Ok(Message::Text(text)))) => self.con.session.on_text(text.as_str()),
                Some(Some(Ok(Message::Close(frame)))) => {
                    return Ended::Lost(match frame {
                        Some(f) if f.reason.is_empty() => {
                            format!("server closed with code {}", u16::from(f.code))
                        }
                        Some(f) => format!(
                            "server closed with code {}: {}",
                            u16::from(f.code),
                            f.reason
                        ),
                        None => "server closed the connection".to_owned(),
                    });
                }
                Some(Some(Ok(_))) => {} // ping, pong: tungstenite answers pings itself
                Some(Some(Err(e))) => return Ended::Lost(e.to_string()),
                Some(None) => return Ended::Lost("connection closed".to_owned()),
            }
            self.con.live(true, String::new);
        }
    }
}
