//! `camring view`: a client of `camring bridge ws`, `quic` or `udp` (docs/protocol.md).
//! It shows live stats like `camring read`, verifies synthetic frames, saves JPEGs, and
//! prints the same JSON summary; it reconnects when the connection drops.
//!
//! The connections are `camring_client`'s; this is the one loop over them for every
//! transport (connect, receive into the [`ViewSession`], reconnect with backoff, stop on
//! a signal or at the end of `--duration`). What differs per transport is a [`Transport`]
//! in `view/{ws,quic,udp}.rs`: how it is built from the options, and what it adds to the
//! messages, the live line and the summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use camring_client::{Connect, ConnectFailure, Link, Received};
use camring_protocol::control::{CameraSet, Quality, SettingsUpdate};
use clap::Args;

use crate::signals::StopFlag;

mod quic;
mod session;
mod udp;
mod ws;

use session::{Level, Saver, ViewSession};

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

/// Checks one setting's command-line value exactly as the server checks the same query
/// parameter ([`SettingsUpdate::from_query`]), so a bad value fails here with the server's
/// own words instead of as a refused connection.
fn parse_setting(name: &'static str, value: &str) -> Result<SettingsUpdate, String> {
    SettingsUpdate::from_query([(name, value)]).map_err(|e| e.to_string())
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

/// Longest a connection attempt (handshake, hello, subscription) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between two reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the stop flag and the deadline are looked at while nothing arrives.
const POLL: Duration = Duration::from_millis(50);

/// What `camring view` needs of a transport besides its connections.
trait Transport: Connect {
    /// The `camring bridge` subcommand that serves it (`ws`, `quic`, `udp`), for hints.
    const BRIDGE: &'static str;
    /// The server, for messages (`ws://…` with the token masked, `quic://host:port`).
    fn name(&self) -> String;
    /// What to say when a connection is up (`again`: not the first one).
    fn connected_note(&self, again: bool) -> String {
        if again {
            format!("reconnected to {}", self.name())
        } else {
            format!("connected to {}", self.name())
        }
    }
    /// What the live line adds (the transport's own counters).
    fn live_extra(&self) -> String {
        String::new()
    }
    /// Called once at the end, before the summary (a UDP subscriber says goodbye).
    fn finish(&mut self) {}
    /// The summary line printed at the end, if any.
    fn summary_line(&self) -> Option<String> {
        None
    }
    /// The transport's object in the JSON summary, if any: (key, value).
    fn summary_json(&self) -> Option<(&'static str, serde_json::Value)> {
        None
    }
}

pub fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    match args.url.split_once("://").map(|(scheme, _)| scheme) {
        Some("quic") => view(&args, quic::transport(&args)?),
        Some("udp") => view(&args, udp::transport(&args)?),
        _ => view(&args, ws::transport(&args)?),
    }
}

/// Runs `camring view` over `transport`.
fn view<T: Transport>(args: &ViewArgs, transport: T) -> anyhow::Result<ExitCode> {
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
        con: Console::new(args, &stop, start, ViewSession::new(args.verify, saver)),
        transport,
    };
    let outcome = runtime.block_on(viewer.run());
    viewer.transport.finish();
    viewer.con.notes();
    let summary = viewer
        .con
        .session
        .finish(start.elapsed().as_secs_f64(), viewer.con.resyncs);
    if let Outcome::Failed(why) = &outcome {
        eprintln!("camring view: {why}");
    }
    let connected = !matches!(outcome, Outcome::NeverConnected);
    if !args.quiet && connected {
        if let Some(line) = viewer.transport.summary_line() {
            eprintln!("camring view: {line}");
        }
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
    if args.json && connected {
        let mut v = serde_json::to_value(&summary)?;
        if let Some((key, value)) = viewer.transport.summary_json() {
            v[key] = value;
        }
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

/// What `camring view` keeps while it runs, whatever the transport: the options, the stop
/// flag and end time, the session, reconnections and the live line.
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
    async fn retry_later(
        &mut self,
        why: &str,
        reported: &mut bool,
        backoff: &mut Duration,
        extra: impl Fn() -> String,
    ) {
        if !*reported {
            self.info(&format!("{why}; retrying until it answers"));
            *reported = true;
        }
        let until = Instant::now() + *backoff;
        while Instant::now() < until && !self.should_stop() {
            tokio::time::sleep(POLL).await;
            self.live(false, &extra);
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

/// One run of `camring view` over a transport.
struct Viewer<'a, T> {
    con: Console<'a>,
    transport: T,
}

impl<T: Transport> Viewer<'_, T> {
    async fn run(&mut self) -> Outcome {
        let mut connections = 0u64;
        let mut backoff = BACKOFF_MIN;
        let mut outage_reported = false;
        loop {
            if self.con.should_stop() {
                return Outcome::Done;
            }
            let attempt = tokio::select! {
                r = tokio::time::timeout(CONNECT_TIMEOUT, self.transport.connect()) => r,
                () = self.con.stopped() => return Outcome::Done,
            };
            let failure = match attempt {
                Ok(Ok(link)) => {
                    let note = self.transport.connected_note(connections > 0);
                    self.con.info(&note);
                    if connections > 0 {
                        self.con.resyncs += 1;
                    }
                    connections += 1;
                    backoff = BACKOFF_MIN;
                    outage_reported = false;
                    self.con.session.connected();
                    match self.serve(link).await {
                        Ended::Stopped => return Outcome::Done,
                        Ended::Lost(why) => {
                            self.con.session.disconnected();
                            self.con
                                .info(&format!("connection lost ({why}); reconnecting"));
                        }
                    }
                    continue;
                }
                Ok(Err(e)) => Failure {
                    permanent: e.permanent(),
                    unreachable: e.unreachable(),
                    why: e.describe(),
                },
                Err(_elapsed) => Failure {
                    permanent: false,
                    unreachable: true,
                    why: format!(
                        "no answer from {} within {} s",
                        self.transport.name(),
                        CONNECT_TIMEOUT.as_secs()
                    ),
                },
            };
            if connections == 0 {
                let hint = if failure.unreachable {
                    format!(" — is `camring bridge {}` listening there?", T::BRIDGE)
                } else {
                    String::new()
                };
                eprintln!("camring view: {}{hint}", failure.why);
                return Outcome::NeverConnected;
            }
            if failure.permanent {
                return Outcome::Failed(failure.why);
            }
            let transport = &self.transport;
            self.con
                .retry_later(&failure.why, &mut outage_reported, &mut backoff, || {
                    transport.live_extra()
                })
                .await;
        }
    }

    /// Receives on one connection until it ends or the run stops.
    async fn serve(&mut self, mut link: T::Link) -> Ended {
        let delay = Duration::from_millis(self.con.args.delay_ms);
        loop {
            if self.con.should_stop() {
                link.close().await;
                return Ended::Stopped;
            }
            let next = tokio::select! {
                r = link.recv() => Some(r),
                () = tokio::time::sleep(POLL) => None,
            };
            match next {
                None => {}
                Some(Ok(Received::Message { data, received_ns })) => {
                    self.con.session.on_binary(&data, received_ns);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                Some(Ok(Received::Text(text))) => self.con.session.on_text(&text),
                Some(Err(why)) => {
                    link.close().await;
                    return Ended::Lost(why);
                }
            }
            let transport = &self.transport;
            self.con.live(true, || transport.live_extra());
        }
    }
}

/// Why a connection attempt failed, whatever the transport.
struct Failure {
    permanent: bool,
    unreachable: bool,
    why: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_like_the_server_does() {
        assert_eq!(
            parse_setting("quality", "auto").unwrap().quality,
            Some(Quality::Auto)
        );
        assert_eq!(parse_setting("fps", "0.5").unwrap().fps, Some(0.5));
        assert_eq!(
            parse_setting("cameras", "0,2").unwrap().cameras,
            Some(CameraSet::Only(vec![0, 2]))
        );
        for (name, bad) in [
            ("quality", "0"),
            ("quality", "high"),
            ("fps", "1001"),
            ("fps", "-1"),
            ("skip", "0"),
            ("cameras", "1,1"),
            ("cameras", "16"),
            ("max_width", "-5"),
        ] {
            assert!(parse_setting(name, bad).is_err(), "{name}={bad}");
        }
    }
}
