//! Cross-process tests of `camring bridge ws`: a real producer and a real bridge process,
//! WebSocket and HTTP clients in this process. Every binary message is parsed with
//! `wire::parse`, its frame numbers must grow per connection, its cameras must be exactly
//! those asked for, at most the size asked for, and every synthetic image is checked
//! against its pattern. Nothing here asserts a maximum time: counts, orders, contents and
//! ratios with wide margins.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use camring_protocol::control::{
    CameraDescription, CameraSet, ProducerStatus, Quality, ServerMessage, Settings, Stats,
};
use camring_protocol::wire::{self, CAM_DOWNSCALED};
use camring_protocol::PixelFormat;
use camring_reader::{Verdict, Verifier};
use camring_shm::clock::now_ns;
use common::*;
use futures_util::{SinkExt, StreamExt};
use rustix::process::Signal;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// Limit for anything that should happen "soon" (a producer starting, a reply): only there
/// so that a broken bridge fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// WebSocket clients
// ---------------------------------------------------------------------------------------

/// How a test client connects.
#[derive(Debug, Default, Clone)]
struct Dial {
    /// `SO_RCVBUF` set before connecting.
    rcvbuf: Option<u32>,
    /// `Authorization: Bearer` value.
    bearer: Option<String>,
    /// tungstenite's read buffer (what it reads from the socket at once).
    read_buffer: Option<usize>,
}

/// Opens a WebSocket to `ws://ADDR/PATH_AND_QUERY`.
async fn dial(
    addr: std::net::SocketAddr,
    path_and_query: &str,
    how: &Dial,
) -> Result<Ws, tungstenite::Error> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = how.rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let tcp = socket.connect(addr).await?;
    let mut request = format!("ws://{addr}{path_and_query}").into_client_request()?;
    if let Some(token) = &how.bearer {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    let config = how
        .read_buffer
        .map(|n| WebSocketConfig::default().read_buffer_size(n));
    let (ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::client_async_with_config(request, tcp, config),
    )
    .await
    .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(ws)
}

async fn connect(addr: std::net::SocketAddr, path_and_query: &str) -> Ws {
    dial(addr, path_and_query, &Dial::default())
        .await
        .unwrap_or_else(|e| panic!("connect {path_and_query}: {e}"))
}

/// The HTTP status a refused upgrade got.
async fn refused_status(addr: std::net::SocketAddr, path_and_query: &str, how: &Dial) -> u16 {
    match dial(addr, path_and_query, how).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{path_and_query}: expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("{path_and_query}: expected an HTTP refusal, got a WebSocket"),
    }
}

async fn send_json(ws: &mut Ws, json: &str) {
    ws.send(Message::text(json.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("sending {json}: {e}"));
}

/// One binary message as received and checked.
#[derive(Debug, Clone)]
struct Got {
    frame: u64,
    at: Instant,
    /// Our clock when it arrived, ns since the epoch.
    recv_ns: u64,
    /// Camera ids in message order.
    ids: Vec<u32>,
    /// (width, height) of each present camera.
    sizes: Vec<(u32, u32)>,
    /// The oldest capture time of its cameras.
    capture_ns: u64,
    bytes: usize,
}

/// What a client received, checked as it arrives.
#[derive(Debug)]
enum Event {
    Frame(Got),
    State,
    Stats,
    Log,
    Error(String),
    Closed(Option<u16>),
}

/// A `state` message as a client saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    producer: ProducerStatus,
    settings: Settings,
    paused: bool,
    /// Frames received before it.
    frames_before: usize,
}

/// A WebSocket client's checks: every frame against the settings of the last `state`.
struct Checker {
    name: String,
    verifier: Verifier,
    ring: Vec<CameraDescription>,
    settings: Option<Settings>,
    producer: Option<ProducerStatus>,
    paused: bool,
    last_frame: Option<u64>,
    frames: Vec<Got>,
    states: Vec<Seen>,
    /// Frames that came after a `state` said paused (and before one said resumed).
    while_paused: usize,
    stats: Vec<Stats>,
    errors: Vec<String>,
    /// `log` messages: level and text.
    logs: Vec<(String, String)>,
    /// When the last message came, and the longest time between two.
    last_message: Option<Instant>,
    longest_silence: Duration,
    verified: u64,
    missing: u64,
    downscaled: u64,
}

impl Checker {
    fn new(name: impl Into<String>) -> Checker {
        Checker {
            name: name.into(),
            verifier: Verifier::new(),
            ring: Vec::new(),
            settings: None,
            producer: None,
            paused: false,
            last_frame: None,
            frames: Vec::new(),
            states: Vec::new(),
            while_paused: 0,
            stats: Vec::new(),
            errors: Vec::new(),
            logs: Vec::new(),
            last_message: None,
            longest_silence: Duration::ZERO,
            verified: 0,
            missing: 0,
            downscaled: 0,
        }
    }

    /// Checks one message; panics (naming the client) on anything wrong.
    fn on(&mut self, message: Message) -> Option<Event> {
        let now = Instant::now();
        if let Some(last) = self.last_message {
            self.longest_silence = self.longest_silence.max(now - last);
        }
        self.last_message = Some(now);
        match message {
            Message::Binary(data) => Some(Event::Frame(self.frame(&data))),
            Message::Text(text) => Some(self.text(&text)),
            Message::Close(frame) => Some(Event::Closed(frame.map(|f| u16::from(f.code)))),
            _ => None,
        }
    }

    /// Why the connection ended, for a panic message: what the bridge's 10 s send timeout
    /// would explain (this client reading nothing for that long) shows here.
    fn ended(&self, how: impl std::fmt::Debug) -> String {
        format!(
            "{}: connection ended ({how:?}) {:?} after the last message; longest gap between \
             two messages read {:?}",
            self.name,
            self.last_message.map(|t| t.elapsed()),
            self.longest_silence
        )
    }

    fn text(&mut self, text: &str) -> Event {
        let name = &self.name;
        let message = ServerMessage::from_json(text)
            .unwrap_or_else(|e| panic!("{name}: unreadable text message {text}: {e}"));
        match message {
            ServerMessage::State(s) => {
                assert_eq!(s.version, wire::VERSION, "{name}: {text}");
                if self.producer != Some(s.producer) {
                    // A new producer may number its frames from 0 again.
                    self.last_frame = None;
                }
                self.producer = Some(s.producer);
                if !s.cameras.is_empty() {
                    self.ring = s.cameras.clone();
                }
                self.settings = Some(s.settings.clone());
                self.paused = s.paused;
                self.states.push(Seen {
                    at: Instant::now(),
                    producer: s.producer,
                    settings: s.settings,
                    paused: s.paused,
                    frames_before: self.frames.len(),
                });
                Event::State
            }
            ServerMessage::Stats(s) => {
                self.stats.push(s);
                Event::Stats
            }
            ServerMessage::Error(e) => {
                self.errors.push(e.message.clone());
                Event::Error(e.message)
            }
            ServerMessage::Log(l) => {
                let level = serde_json::to_value(l.level).expect("level");
                self.logs
                    .push((level.as_str().unwrap_or("?").to_owned(), l.message));
                Event::Log
            }
        }
    }

    fn frame(&mut self, data: &[u8]) -> Got {
        let recv_ns = now_ns();
        let name = self.name.clone();
        let message =
            wire::parse(data).unwrap_or_else(|e| panic!("{name}: unparsable binary message: {e}"));
        let settings = self
            .settings
            .clone()
            .unwrap_or_else(|| panic!("{name}: a frame before any state message"));
        let frame = message.header.frame;
        if let Some(last) = self.last_frame {
            assert!(
                frame > last,
                "{name}: frame {frame} after frame {last} (never older, never twice)"
            );
        }
        self.last_frame = Some(frame);
        if self.paused {
            self.while_paused += 1;
        }
        let ids: Vec<u32> = message.cameras.iter().map(|c| c.info.camera_id).collect();
        let expected: Vec<u32> = self
            .ring
            .iter()
            .map(|c| c.id)
            .filter(|&id| settings.cameras.contains(id))
            .collect();
        assert_eq!(
            ids, expected,
            "{name}: frame {frame} has cameras {ids:?}, asked for {:?}",
            settings.cameras
        );
        let mut sizes = Vec::new();
        let mut capture_ns = u64::MAX;
        for c in &message.cameras {
            let info = &c.info;
            let id = info.camera_id;
            assert_eq!(info.format, PixelFormat::Jpeg, "{name}: frame {frame}");
            capture_ns = capture_ns.min(info.capture_ns);
            if info.is_missing() {
                self.missing += 1;
                continue;
            }
            let ring = self.ring.iter().find(|r| r.id == id).copied();
            let ring = ring.unwrap_or_else(|| panic!("{name}: camera {id} not in the ring"));
            let (w, h) = (info.width, info.height);
            sizes.push((w, h));
            let within = |max: u32, v: u32| max == 0 || v <= max;
            assert!(
                within(settings.max_width, w) && within(settings.max_height, h),
                "{name}: frame {frame} camera {id} is {w}x{h}, limits {}x{}",
                settings.max_width,
                settings.max_height
            );
            assert!(w <= ring.width && h <= ring.height, "{name}: {w}x{h}");
            if info.flags & CAM_DOWNSCALED != 0 {
                self.downscaled += 1;
            }
            if let Quality::Fixed(_) = settings.quality {
                // A fixed quality: the largest size within the limits, never smaller.
                let (fw, fh) = fit(&settings, ring.width, ring.height);
                assert!(
                    w.abs_diff(fw) <= 1 && h.abs_diff(fh) <= 1,
                    "{name}: frame {frame} camera {id} is {w}x{h}, expected {fw}x{fh} \
                     for limits {}x{} of {}x{}",
                    settings.max_width,
                    settings.max_height,
                    ring.width,
                    ring.height
                );
                assert_eq!(
                    info.flags & CAM_DOWNSCALED != 0,
                    (fw, fh) != (ring.width, ring.height),
                    "{name}: downscaled flag of {w}x{h}"
                );
            }
            match self.verifier.check_received(info, c.payload, Some(&ring)) {
                Verdict::Verified => self.verified += 1,
                v => panic!(
                    "{name}: frame {frame} camera {id} ({w}x{h}, flags {:#x}, sequence {}): {v:?}",
                    info.flags, info.sequence
                ),
            }
        }
        let got = Got {
            frame,
            at: Instant::now(),
            recv_ns,
            ids,
            sizes,
            capture_ns,
            bytes: data.len(),
        };
        self.frames.push(got.clone());
        got
    }
}

/// The size the bridge should send a `width` × `height` camera at: the largest with the same
/// aspect ratio within the limits (the rounding of docs/protocol.md's `max_width`).
fn fit(s: &Settings, width: u32, height: u32) -> (u32, u32) {
    let limit = |max: u32, v: u32| {
        if max == 0 || max >= v {
            1.0
        } else {
            f64::from(max) / f64::from(v)
        }
    };
    let scale = limit(s.max_width, width).min(limit(s.max_height, height));
    if scale >= 1.0 {
        return (width, height);
    }
    (
        (f64::from(width) * scale).round() as u32,
        (f64::from(height) * scale).round() as u32,
    )
}

/// The next message within `left`. Yields to the other tasks first: every client checks
/// every image, and on a starved machine tokio's budget (128 reads before a task yields)
/// let one client's checking hold a worker while another read nothing for over the 10 s
/// after which the bridge disconnects a client that takes no bytes.
async fn recv(
    ws: &mut Ws,
    left: Duration,
) -> Result<Option<Result<Message, tungstenite::Error>>, tokio::time::error::Elapsed> {
    tokio::task::yield_now().await;
    tokio::time::timeout(left, ws.next()).await
}

/// Reads and checks messages until `until`; returns whether the connection is still open.
async fn read_until(ws: &mut Ws, c: &mut Checker, until: Instant) -> bool {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match recv(ws, left).await {
            Err(_) => return true,
            Ok(None) => return false,
            Ok(Some(Err(e))) => panic!("{}", c.ended(e)),
            Ok(Some(Ok(m))) => {
                if let Some(Event::Closed(code)) = c.on(m) {
                    panic!("{}: closed by the server ({code:?})", c.name);
                }
            }
        }
    }
}

/// Reads until an event `want` accepts (checking everything on the way); panics after
/// [`PATIENCE`].
async fn read_for(ws: &mut Ws, c: &mut Checker, mut want: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = recv(ws, left).await;
        let message = match next {
            Err(_) => panic!("{}: nothing expected came", c.name),
            Ok(None) => panic!("{}", c.ended("end of stream")),
            Ok(Some(Err(e))) => panic!("{}", c.ended(e)),
            Ok(Some(Ok(m))) => m,
        };
        if let Some(event) = c.on(message) {
            if want(&event) {
                return event;
            }
        }
    }
}

/// Reads until a frame (checked) arrives.
async fn next_frame(ws: &mut Ws, c: &mut Checker) -> Got {
    match read_for(ws, c, |e| matches!(e, Event::Frame(_))).await {
        Event::Frame(g) => g,
        _ => unreachable!(),
    }
}

/// Reads until the server closes the connection; the close code, if any.
async fn read_to_close(ws: &mut Ws, c: &mut Checker) -> Option<u16> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match recv(ws, left).await {
            Err(_) => panic!("{}: the server did not close the connection", c.name),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(m))) => {
                if let Some(Event::Closed(code)) = c.on(m) {
                    return code;
                }
            }
        }
    }
}

/// The ring frames a run of received frames spans (first to last, inclusive).
fn span(frames: &[Got]) -> u64 {
    match (frames.first(), frames.last()) {
        (Some(a), Some(b)) => b.frame - a.frame + 1,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------
// 1. Many clients, many settings
// ---------------------------------------------------------------------------------------

/// The URL query each kind of client of the 50-client test starts with.
const KINDS: [&str; 10] = [
    "",
    "?quality=30",
    "?quality=auto&max_width=120",
    "?max_width=80",
    "?max_width=120&max_height=100&quality=60",
    "?fps=3&cameras=0,2",
    "?skip=3&quality=95",
    "?skip=2&cameras=1&max_height=60",
    // Changes its settings mid-stream.
    "?cameras=1&fps=5",
    // Pauses, then resumes.
    "?quality=70",
];
const CHANGE: &str = r#"{"type":"settings","cameras":[0,2],"max_width":80,"fps":0,"quality":50}"#;

#[test]
fn fifty_clients_with_their_own_settings_get_verified_frames() {
    let _serial = one_at_a_time();
    const FPS: u32 = 15;
    const RUN: Duration = Duration::from_secs(12);
    let ring = ring_name("ws50");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 3, "160x120", FPS, "jpeg");
    let bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    let rt = runtime();
    let results: Vec<(usize, Checker, Instant, Duration)> = rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                tokio::spawn(async move {
                    let kind = i % KINDS.len();
                    let query = KINDS[kind];
                    let mut c = Checker::new(format!("client {i} /ws{query}"));
                    let mut ws = connect(addr, &format!("/ws{query}")).await;
                    let start = Instant::now();
                    match kind {
                        // The phases are timed, but each ends with enough frames whatever
                        // the machine's load did to this client's reading.
                        8 => {
                            read_until(&mut ws, &mut c, start + RUN / 2).await;
                            send_json(&mut ws, CHANGE).await;
                            read_for(&mut ws, &mut c, |e| matches!(e, Event::State)).await;
                            let changed = c.states.last().expect("state").frames_before;
                            read_until(&mut ws, &mut c, start + RUN).await;
                            while c.frames.len() < changed + 10 {
                                next_frame(&mut ws, &mut c).await;
                            }
                        }
                        9 => {
                            read_until(&mut ws, &mut c, start + RUN / 3).await;
                            send_json(&mut ws, r#"{"type":"pause"}"#).await;
                            read_for(&mut ws, &mut c, |e| matches!(e, Event::State)).await;
                            read_until(&mut ws, &mut c, start + RUN * 2 / 3).await;
                            send_json(&mut ws, r#"{"type":"resume"}"#).await;
                            read_for(&mut ws, &mut c, |e| matches!(e, Event::State)).await;
                            let resumed = c.states.last().expect("state").frames_before;
                            read_until(&mut ws, &mut c, start + RUN).await;
                            while c.frames.len() < resumed + 3 {
                                next_frame(&mut ws, &mut c).await;
                            }
                        }
                        _ => {
                            read_until(&mut ws, &mut c, start + RUN).await;
                        }
                    }
                    let elapsed = start.elapsed();
                    let _ = ws.close(None).await;
                    (kind, c, start, elapsed)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let ring_frames = results
        .iter()
        .filter(|(k, ..)| *k == 0)
        .map(|(_, c, ..)| span(&c.frames))
        .max()
        .unwrap_or(0);
    let mut report = Vec::new();
    for (kind, c, start, elapsed) in &results {
        let name = &c.name;
        let n = c.frames.len();
        let secs = elapsed.as_secs_f64();
        report.push(format!(
            "{name}: {n} frames over {} ring frames, {} images verified, {} missing, {} downscaled",
            span(&c.frames),
            c.verified,
            c.missing,
            c.downscaled
        ));
        assert!(n >= 5, "{name}: only {n} frames");
        assert!(c.verified >= n as u64, "{name}: {} verified", c.verified);
        assert!(c.errors.is_empty(), "{name}: {:?}", c.errors);
        // A stats message about once a second, counting what came.
        assert!(
            c.stats.len() >= 3,
            "{name}: {} stats messages",
            c.stats.len()
        );
        let last_stats = c.stats.last().expect("stats");
        assert!(
            last_stats.connection.sent <= n as u64 + 2,
            "{name}: {last_stats:?}"
        );
        // The first state may say `waiting` when the client connected before the bridge
        // had attached to the ring (a loaded machine); frames come once it is live.
        assert!(
            c.states.iter().any(|s| s.producer == ProducerStatus::Live),
            "{name}: {:?}",
            c.states.iter().map(|s| s.producer).collect::<Vec<_>>()
        );
        let first = &c.states[0];
        match kind {
            0..=4 => {
                // Uncapped: (nearly) every frame on a quiet machine; half on a noisy one.
                let made = span(&c.frames);
                assert!(
                    n as u64 * 2 >= made,
                    "{name}: {n} frames of the {made} the ring made meanwhile"
                );
                if *kind == 2 {
                    assert!(last_stats.connection.quality.is_some(), "{name}");
                }
            }
            5 => {
                let cap = 3.0;
                assert!(
                    n as f64 <= cap * secs * 1.5 + 2.0,
                    "{name}: {n} frames in {secs:.1} s at a cap of {cap} fps"
                );
                assert_eq!(
                    first.settings.cameras,
                    CameraSet::Only(vec![0, 2]),
                    "{name}"
                );
            }
            6 | 7 => {
                let skip = if *kind == 6 { 3 } else { 2 };
                let diffs: Vec<u64> = c
                    .frames
                    .windows(2)
                    .map(|w| w[1].frame - w[0].frame)
                    .collect();
                assert!(
                    diffs.iter().all(|&d| d >= skip),
                    "{name}: frame gaps {diffs:?} below the skip factor {skip}"
                );
                let multiples = diffs.iter().filter(|&&d| d % skip == 0).count();
                assert!(
                    multiples * 10 >= diffs.len() * 7,
                    "{name}: frame gaps {diffs:?} mostly not multiples of {skip}"
                );
            }
            8 => {
                // The settings message is answered by a state showing it; every frame
                // after that state follows it, every frame before follows the first.
                let s = c
                    .states
                    .iter()
                    .position(|st| st.settings.cameras == CameraSet::Only(vec![0, 2]))
                    .unwrap_or_else(|| panic!("{name}: no state shows the new settings"));
                let new = &c.states[s].settings;
                assert_eq!(new.max_width, 80, "{name}");
                assert_eq!(new.fps, 0.0, "{name}");
                assert_eq!(new.quality, Quality::Fixed(50), "{name}");
                assert_eq!(
                    new.max_height, 0,
                    "{name}: untouched fields keep their value"
                );
                let before = &c.frames[..c.states[s].frames_before];
                let after = &c.frames[c.states[s].frames_before..];
                assert!(before.iter().all(|g| g.ids == [1]), "{name}");
                assert!(
                    after.iter().all(
                        |g| g.ids == [0, 2] && g.sizes.iter().all(|&(w, h)| (w, h) == (80, 60))
                    ),
                    "{name}: frames after the new state do not follow it"
                );
                // Before: capped at 5 fps (until the new state came); after: uncapped, so
                // the frames come closer together in the ring's numbering.
                let capped_secs = c.states[s].at.duration_since(*start).as_secs_f64();
                assert!(
                    before.len() as f64 <= 5.0 * capped_secs * 1.5 + 2.0,
                    "{name}: {} frames at a cap of 5 fps in {capped_secs:.1} s",
                    before.len()
                );
                let gaps = |g: &[Got]| -> f64 {
                    let d: Vec<f64> = g
                        .windows(2)
                        .map(|w| (w[1].frame - w[0].frame) as f64)
                        .collect();
                    median(&d)
                };
                let (capped, uncapped) = (gaps(before), gaps(after));
                assert!(
                    uncapped < capped,
                    "{name}: median frame gap {capped} capped, {uncapped} uncapped"
                );
            }
            9 => {
                let p = c
                    .states
                    .iter()
                    .position(|st| st.paused)
                    .unwrap_or_else(|| panic!("{name}: no state says paused"));
                let r = c.states[p..]
                    .iter()
                    .position(|st| !st.paused)
                    .map(|i| p + i)
                    .unwrap_or_else(|| panic!("{name}: no state says resumed"));
                // Nothing between the two states (pause_stops_frames_from_its_state_on
                // tries harder, with a frame always pending at the pause).
                let during = c.states[r].frames_before - c.states[p].frames_before;
                assert_eq!(
                    during, 0,
                    "{name}: {during} frames between pause and resume"
                );
                assert_eq!(c.while_paused, 0, "{name}");
                let resumed = c.frames.len() - c.states[r].frames_before;
                assert!(resumed >= 3, "{name}: {resumed} frames after resuming");
            }
            _ => {}
        }
    }
    eprintln!(
        "ring frames over the run: {ring_frames}\n{}",
        report.join("\n")
    );
    drop(bridge);
}

/// docs/protocol.md 6.1.2: `pause` stops binary messages and is answered with a `state`;
/// no frame may follow that `state` until `resume`. A slow reader always has a frame
/// pending in the bridge when its `pause` arrives, the case where one could slip through.
#[test]
fn pause_stops_frames_from_its_state_on() {
    let _serial = one_at_a_time();
    let ring = ring_name("wspause");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", 30, "jpeg");
    let bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    runtime().block_on(async {
        let mut leaks = Vec::new();
        for round in 0..6 {
            let how = Dial {
                rcvbuf: Some(16 * 1024),
                read_buffer: Some(8 * 1024),
                ..Dial::default()
            };
            let mut ws = dial(addr, "/ws", &how).await.expect("connect");
            let mut c = Checker::new(format!("pausing client {round}"));
            for _ in 0..4 {
                next_frame(&mut ws, &mut c).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            send_json(&mut ws, r#"{"type":"pause"}"#).await;
            read_for(&mut ws, &mut c, |e| matches!(e, Event::State)).await;
            assert!(c.paused, "{}: the state after pause says paused", c.name);
            read_until(
                &mut ws,
                &mut c,
                Instant::now() + Duration::from_millis(1000),
            )
            .await;
            leaks.push(c.while_paused);
            send_json(&mut ws, r#"{"type":"resume"}"#).await;
            read_for(&mut ws, &mut c, |e| matches!(e, Event::State)).await;
            assert!(!c.paused);
            next_frame(&mut ws, &mut c).await;
        }
        assert!(
            leaks.iter().all(|&n| n == 0),
            "frames received after the state that said paused, per round: {leaks:?}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 2. A slow client gets fewer frames, never older ones, and slows nobody
// ---------------------------------------------------------------------------------------

/// What `camring bridge ws` lets the kernel hold unsent per connection
/// (`camring_bridge::ws::NOTSENT_LOWAT`).
const NOTSENT_LOWAT: u64 = 128 * 1024;

#[test]
fn slow_client_lags_a_bounded_number_of_frames_and_fast_ones_keep_the_rate() {
    let _serial = one_at_a_time();
    const FPS: u32 = 30;
    const RUN: Duration = Duration::from_secs(30);
    const RCVBUF: u32 = 16 * 1024;
    const READ_BUFFER: usize = 8 * 1024;
    const PAUSE: Duration = Duration::from_millis(300);
    let ring = ring_name("wsslow");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", FPS, "jpeg");
    let bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    let rt = runtime();
    let newest = Arc::new(AtomicU64::new(0));
    let (fast, slow, dropped_metric) = rt.block_on(async {
        let fast: Vec<_> = (0..5)
            .map(|i| {
                let newest = Arc::clone(&newest);
                tokio::spawn(async move {
                    let mut c = Checker::new(format!("fast client {i}"));
                    let mut ws = connect(addr, "/ws").await;
                    let end = Instant::now() + RUN;
                    while Instant::now() < end {
                        let left = end.saturating_duration_since(Instant::now());
                        match recv(&mut ws, left).await {
                            Ok(Some(Ok(m))) => {
                                if let Some(Event::Frame(g)) = c.on(m) {
                                    newest.fetch_max(g.frame, Ordering::Relaxed);
                                }
                            }
                            Ok(other) => panic!("{}", c.ended(other)),
                            Err(_) => break,
                        }
                    }
                    (c, RUN)
                })
            })
            .collect();
        let slow = {
            let newest = Arc::clone(&newest);
            tokio::spawn(async move {
                let how = Dial {
                    rcvbuf: Some(RCVBUF),
                    read_buffer: Some(READ_BUFFER),
                    ..Dial::default()
                };
                let mut ws = dial(addr, "/ws", &how).await.expect("slow client connects");
                let mut c = Checker::new("slow client");
                // (when, lag in frames behind the fast clients' newest)
                let mut lags: Vec<(Instant, u64)> = Vec::new();
                let end = Instant::now() + RUN;
                while Instant::now() < end {
                    let left = end.saturating_duration_since(Instant::now());
                    match recv(&mut ws, left).await {
                        Ok(Some(Ok(m))) => {
                            if let Some(Event::Frame(g)) = c.on(m) {
                                let ahead = newest.load(Ordering::Relaxed);
                                lags.push((g.at, ahead.saturating_sub(g.frame)));
                                tokio::time::sleep(PAUSE).await;
                            }
                        }
                        Ok(other) => panic!("{}", c.ended(other)),
                        Err(_) => break,
                    }
                }
                (c, lags)
            })
        };
        let mut done = Vec::new();
        for t in fast {
            done.push(t.await.expect("fast client"));
        }
        let slow = slow.await.expect("slow client");
        let m = bridge_metrics(addr, None).await;
        (
            done,
            slow,
            metric(&m, r#"camring_bridge_frames_dropped_total{kind="ws"}"#),
        )
    });
    // The fast clients: (nearly) every frame the ring produced while they listened.
    let mut rates = Vec::new();
    for (c, run) in &fast {
        let got = c.frames.len() as u64;
        let produced = span(&c.frames);
        rates.push(got as f64 / run.as_secs_f64());
        assert!(
            got * 10 >= produced * 8,
            "{}: {got} frames of the {produced} the ring produced meanwhile",
            c.name
        );
    }
    let (c, lags) = slow;
    let first = c.frames.first().expect("the slow client got frames");
    let last = c.frames.last().expect("frames");
    let ring_fps = fast
        .iter()
        .map(|(c, run)| span(&c.frames) as f64 / run.as_secs_f64())
        .fold(0.0, f64::max);
    // Lag over thirds of the slow client's run.
    let t0 = first.at;
    let third = last.at.duration_since(t0) / 3;
    let part = |k: u32| -> Vec<f64> {
        lags.iter()
            .filter(|(at, _)| {
                let d = at.duration_since(t0);
                d >= third * k && (k == 2 || d < third * (k + 1))
            })
            .map(|&(_, l)| l as f64)
            .collect()
    };
    // (median, max) lag of each third.
    let thirds: Vec<(f64, f64)> = (0..3)
        .map(|k| {
            let v = part(k);
            assert!(v.len() >= 5, "too few slow frames: {}", c.frames.len());
            let max = v.iter().copied().fold(0.0, f64::max);
            (median(&v), max)
        })
        .collect();
    let ((early_median, early_max), (late_median, late_max)) = (thirds[0], thirds[2]);
    // Frames queued ahead of the newest one at most: two in flight in the bridge, what the
    // kernel holds unsent (NOTSENT_LOWAT), in flight (the receive window) and in our
    // socket and read buffers, counted in the smallest messages; each costs one read.
    let smallest = c.frames.iter().map(|g| g.bytes).min().unwrap_or(1) as u64;
    let buffered = NOTSENT_LOWAT + 4 * u64::from(RCVBUF) + READ_BUFFER as u64;
    let queued = 2 + buffered.div_ceil(smallest) + 1;
    let read_period = last.at.duration_since(t0).as_secs_f64() / (c.frames.len() - 1) as f64;
    let bound = (queued as f64 * read_period * ring_fps * 1.5 + 10.0).ceil();
    let stats_dropped = c
        .stats
        .iter()
        .map(|s| s.connection.dropped)
        .max()
        .unwrap_or(0);
    let time_lag: Vec<f64> = c
        .frames
        .iter()
        .map(|g| (g.recv_ns.saturating_sub(g.capture_ns)) as f64 * ring_fps / 1e9)
        .collect();
    eprintln!(
        "fast clients {:.1?} fps (ring {ring_fps:.1} fps); slow client {} frames (one per {:.0} ms), \
         lag in frames: first third median {early_median} max {early_max}, last third median \
         {late_median} max {late_max}, bound {bound} ({queued} messages of >= {smallest} B); \
         capture-to-receive lag {:.0}..{:.0} frames; dropped for it: {stats_dropped} (stats), \
         {dropped_metric} (metric)",
        rates,
        c.frames.len(),
        read_period * 1000.0,
        time_lag.iter().copied().fold(f64::MAX, f64::min),
        time_lag.iter().copied().fold(0.0, f64::max),
    );
    // Without drops the lag would grow by the ring's rate minus the client's, ~270 frames
    // per third here; with them it only moves with this machine's noise.
    assert!(
        late_median <= (2.0 * early_median).max(early_max) + 10.0,
        "the slow client's lag grows: median {early_median} frames in the first third, \
         {late_median} in the last"
    );
    for (third, (m, _)) in ["first", "middle", "last"].iter().zip(&thirds) {
        assert!(
            *m <= bound,
            "the slow client's median lag in the {third} third, {m} frames, exceeds the {bound} \
             its buffers explain"
        );
    }
    let worst = lags.iter().map(|&(_, l)| l).max().unwrap_or(0) as f64;
    assert!(
        worst <= 2.0 * bound,
        "the slow client lagged {worst} frames, far more than the {bound} its buffers explain"
    );
    // It got far fewer frames than the ring made, and the server says it dropped them.
    assert!(span(&c.frames) > 2 * c.frames.len() as u64);
    assert!(
        stats_dropped > 0,
        "its stats report no drops: {:?}",
        c.stats.last()
    );
    assert!(dropped_metric > 0.0);
    drop(bridge);
}

// ---------------------------------------------------------------------------------------
// 3. Clients that vanish mid-frame
// ---------------------------------------------------------------------------------------

/// A WebSocket upgrade written by hand: the stream right after the `101` response, and the
/// bytes already read past it.
async fn raw_upgrade(addr: std::net::SocketAddr, path_and_query: &str) -> (TcpStream, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .expect("send upgrade");
    let mut buf = Vec::new();
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("upgrade response in time")
            .expect("read upgrade response");
        assert!(n > 0, "connection closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
    let (status, headers) = parse_http_head(&head).expect("HTTP response");
    assert_eq!(status, 101, "{head}");
    let accept = headers.iter().find(|(n, _)| n == "sec-websocket-accept");
    // RFC 6455's example key and its accept value.
    assert_eq!(
        accept.map(|(_, v)| v.as_str()),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    (tcp, buf[end..].to_vec())
}

/// Reads from `tcp` (after `pending`, bytes already read) until `need` bytes are buffered.
async fn fill(tcp: &mut TcpStream, pending: &mut Vec<u8>, need: usize) {
    use tokio::io::AsyncReadExt;
    while pending.len() < need {
        let mut chunk = vec![0u8; (need - pending.len()).min(64 * 1024)];
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("server frames in time")
            .expect("read");
        assert!(n > 0, "the server closed the connection");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Reads (unmasked, server) WebSocket frames until the header of a binary one; returns its
/// payload length and leaves `pending` holding whatever of its payload was already read.
async fn skip_to_binary(tcp: &mut TcpStream, pending: &mut Vec<u8>) -> u64 {
    loop {
        fill(tcp, pending, 2).await;
        let opcode = pending[0] & 0x0F;
        let (len, at) = match pending[1] & 0x7F {
            126 => {
                fill(tcp, pending, 4).await;
                (u64::from(u16::from_be_bytes([pending[2], pending[3]])), 4)
            }
            127 => {
                fill(tcp, pending, 10).await;
                let b: [u8; 8] = pending[2..10].try_into().expect("8 bytes");
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        assert_eq!(pending[1] & 0x80, 0, "server frames are not masked");
        pending.drain(..at);
        if opcode == 2 {
            return len;
        }
        fill(tcp, pending, len as usize).await;
        pending.drain(..len as usize);
    }
}

/// How a vanishing client goes.
#[derive(Debug, Clone, Copy)]
enum Vanish {
    /// `SO_LINGER` 0: the kernel answers with RST.
    Reset,
    /// A plain close with unread data (the kernel sends RST or FIN as it sees fit).
    Drop,
    /// FIN first (shutdown of the write side), then close.
    Shutdown,
    /// Right after the upgrade, before any frame.
    Early,
}

const KINDS_OF_VANISHING: [Vanish; 4] =
    [Vanish::Reset, Vanish::Drop, Vanish::Shutdown, Vanish::Early];

#[test]
fn clients_vanishing_mid_frame_cost_only_their_connection() {
    let _serial = one_at_a_time();
    const FPS: u32 = 30;
    const ROUNDS: usize = 36;
    let ring = ring_name("wsgone");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", FPS, "jpeg");
    let mut bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    let rt = runtime();
    let (good, window) = rt.block_on(async {
        let stop = Arc::new(AtomicU64::new(0));
        let good = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut c = Checker::new("good client");
                let mut ws = connect(addr, "/ws").await;
                next_frame(&mut ws, &mut c).await;
                let start = Instant::now();
                let from = c.frames.len();
                while stop.load(Ordering::Relaxed) == 0 {
                    read_until(&mut ws, &mut c, Instant::now() + Duration::from_millis(100)).await;
                }
                (c, ws, from, start.elapsed())
            })
        };
        for round in 0..ROUNDS {
            let how = KINDS_OF_VANISHING[round % KINDS_OF_VANISHING.len()];
            // Three at once, each at its own point of a frame.
            let gone: Vec<_> = (0..3)
                .map(|k| {
                    tokio::spawn(async move {
                        let query = ["/ws", "/ws?quality=50", "/ws?max_width=100"][k];
                        let (mut tcp, mut pending) = raw_upgrade(addr, query).await;
                        if !matches!(how, Vanish::Early) {
                            let len = skip_to_binary(&mut tcp, &mut pending).await;
                            // Somewhere inside the payload: a quarter, a half, three quarters.
                            let part = 48 + (len as usize - 48) * (k + 1) / 4;
                            fill(&mut tcp, &mut pending, part).await;
                            assert_eq!(&pending[..4], b"CAMF", "a binary message starts CAMF");
                        }
                        match how {
                            Vanish::Reset => tcp.set_zero_linger().expect("SO_LINGER"),
                            Vanish::Shutdown => {
                                use tokio::io::AsyncWriteExt;
                                let _ = tcp.shutdown().await;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Vanish::Drop | Vanish::Early => {}
                        }
                        drop(tcp);
                    })
                })
                .collect();
            for g in gone {
                g.await.expect("vanishing client");
            }
            // Spread over a few seconds, so that the good client's rate means something.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        stop.store(1, Ordering::Relaxed);
        let (c, ws, from, window) = good.await.expect("good client");
        ((c, ws, from), window)
    });
    let (mut c, mut ws, from) = good;
    let during = &c.frames[from..];
    let produced = span(during);
    eprintln!(
        "{} clients vanished ({KINDS_OF_VANISHING:?}); the good client got {} of {produced} \
         frames in {:.1} s ({:.1} fps), {} images verified",
        ROUNDS * 3,
        during.len(),
        window.as_secs_f64(),
        during.len() as f64 / window.as_secs_f64(),
        c.verified
    );
    assert!(
        during.len() as u64 * 10 >= produced * 8,
        "the good client got {} of the {produced} frames while others vanished",
        during.len()
    );
    assert!(bridge.alive(), "bridge exited: {}", bridge.log());
    rt.block_on(async {
        let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
        assert_eq!(h.status, 200, "{}", h.text());
        // A new client is served...
        let mut c2 = Checker::new("new client");
        let mut ws2 = connect(addr, "/ws?max_width=160").await;
        for _ in 0..5 {
            next_frame(&mut ws2, &mut c2).await;
        }
        // ...and the old one still is.
        for _ in 0..5 {
            next_frame(&mut ws, &mut c).await;
        }
        // Every vanished client is gone from the count: two remain.
        let deadline = Instant::now() + PATIENCE;
        let clients = loop {
            let m = bridge_metrics(addr, None).await;
            let n = metric(&m, r#"camring_bridge_clients{kind="ws"}"#);
            if n == 2.0 || Instant::now() > deadline {
                let accepted = metric(&m, r#"camring_bridge_connections_total{kind="ws"}"#);
                assert_eq!(accepted, (ROUNDS * 3 + 2) as f64, "connections accepted");
                break n;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(clients, 2.0, "clients gauge after the vanished ones left");
        let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
        let v: serde_json::Value = serde_json::from_slice(&h.body).expect("healthz JSON");
        assert_eq!(v["clients"], 2, "{v}");
    });
    assert!(!bridge.log().contains("panicked"), "{}", bridge.log());
}

// ---------------------------------------------------------------------------------------
// 4. Garbage from clients
// ---------------------------------------------------------------------------------------

/// Writes `bytes` on a new connection and reads what comes back until the server closes or
/// `PATIENCE` passes; the HTTP status of the answer, if it gave one.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before reading it all: a failed write is fine.
    let _ = tcp.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
    let end = head_end(&answer)?;
    parse_http_head(&String::from_utf8_lossy(&answer[..end - 4])).map(|(s, _)| s)
}

#[test]
fn garbage_from_clients_is_refused_and_harms_nobody_else() {
    let _serial = one_at_a_time();
    const FPS: u32 = 30;
    let ring = ring_name("wsjunk");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", FPS, "jpeg");
    let mut bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    let rt = runtime();
    let (good, from, window) = rt.block_on(async {
        let stop = Arc::new(AtomicU64::new(0));
        let good = {
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut c = Checker::new("good client");
                let mut ws = connect(addr, "/ws?cameras=1").await;
                next_frame(&mut ws, &mut c).await;
                let (from, start) = (c.frames.len(), Instant::now());
                while stop.load(Ordering::Relaxed) == 0 {
                    read_until(&mut ws, &mut c, Instant::now() + Duration::from_millis(100)).await;
                }
                (c, from, start.elapsed())
            })
        };
        // Half handshakes, then silence, for the whole test.
        let mut silent = Vec::new();
        for _ in 0..10 {
            use tokio::io::AsyncWriteExt;
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
                .await
                .expect("half a request");
            silent.push(tcp);
        }

        // Malformed control messages: an `error` each, nothing changes, frames go on.
        let mut c = Checker::new("client sending bad JSON");
        let mut ws = connect(addr, "/ws?max_width=160").await;
        next_frame(&mut ws, &mut c).await;
        let bad = [
            "not json at all",
            r#"{"type":"settings","maxwidth":10}"#,
            r#"{"type":"settings","quality":0}"#,
            r#"{"type":"settings","cameras":[0,0]}"#,
            r#"{"type":"settings","fps":-1}"#,
            r#"{"type":"frobnicate"}"#,
            r#"{"no":"type"}"#,
            "[1,2,3]",
            "",
        ];
        for text in bad {
            let states = c.states.len();
            send_json(&mut ws, text).await;
            let event = read_for(&mut ws, &mut c, |e| matches!(e, Event::Error(_))).await;
            let Event::Error(why) = event else {
                unreachable!()
            };
            assert!(!why.is_empty(), "{text:?}: an empty error");
            assert_eq!(c.states.len(), states, "{text:?} was answered by a state");
            for _ in 0..3 {
                next_frame(&mut ws, &mut c).await;
            }
        }
        assert_eq!(c.settings.as_ref().map(|s| s.max_width), Some(160));
        assert!(
            c.frames
                .iter()
                .all(|g| g.sizes.iter().all(|&(w, _)| w == 160)),
            "settings changed by a refused message"
        );
        // And a good one still works after them.
        send_json(&mut ws, r#"{"type":"settings","max_width":80}"#).await;
        read_for(&mut ws, &mut c, |e| matches!(e, Event::State)).await;
        let g = next_frame(&mut ws, &mut c).await;
        assert!(g.sizes.iter().all(|&(w, _)| w == 80), "{g:?}");
        let _ = ws.close(None).await;

        // A binary message: closed with 1003.
        let mut c = Checker::new("client sending binary");
        let mut ws = connect(addr, "/ws").await;
        next_frame(&mut ws, &mut c).await;
        ws.send(Message::binary(vec![0u8; 16]))
            .await
            .expect("send binary");
        let code = read_to_close(&mut ws, &mut c).await;
        assert_eq!(code, Some(1003), "close code for a binary message");

        // A text message over 4096 bytes: closed with 1009, in one frame or in fragments.
        let mut c = Checker::new("client sending a long text");
        let mut ws = connect(addr, "/ws").await;
        next_frame(&mut ws, &mut c).await;
        let long = format!(r#"{{"type":"pause","pad":"{}"}}"#, "x".repeat(5000));
        ws.send(Message::text(long)).await.expect("send long text");
        let code = read_to_close(&mut ws, &mut c).await;
        assert_eq!(code, Some(1009), "close code for a text over 4096 bytes");
        // Exactly 4096 bytes is allowed: a valid (empty) settings message padded with
        // blanks is answered with a state, and frames go on.
        let mut c = Checker::new("client sending 4096 bytes");
        let mut ws = connect(addr, "/ws").await;
        next_frame(&mut ws, &mut c).await;
        let open = r#"{"type":"settings""#;
        let at_limit = format!("{open}{}}}", " ".repeat(4096 - open.len() - 1));
        assert_eq!(at_limit.len(), 4096);
        let states = c.states.len();
        send_json(&mut ws, &at_limit).await;
        read_for(&mut ws, &mut c, |e| matches!(e, Event::State)).await;
        assert_eq!(c.states.len(), states + 1);
        next_frame(&mut ws, &mut c).await;
        let _ = ws.close(None).await;

        // Bad URL parameters: 400 before any upgrade, the body naming the culprit.
        for query in [
            "?quality=200",
            "?quality=0",
            "?bogus=1",
            "?fps=-1",
            "?fps=1001",
            "?skip=0",
            "?cameras=0,0",
            "?cameras=16",
            "?max_width=-5",
            "?max_width=abc",
        ] {
            let status = refused_status(addr, &format!("/ws{query}"), &Dial::default()).await;
            assert_eq!(status, 400, "/ws{query}");
            let key = query[1..].split('=').next().expect("name");
            let r = http_get(
                addr,
                &format!("/ws{query}"),
                &[
                    ("Upgrade", "websocket"),
                    ("Connection", "close, Upgrade"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("Sec-WebSocket-Version", "13"),
                ],
            )
            .await
            .expect("GET");
            assert_eq!(r.status, 400, "/ws{query}");
            assert!(r.text().contains(key), "/ws{query}: {}", r.text());
        }

        // Not HTTP at all, and HTTP with absurd headers: an error status or a closed
        // connection, never an upgrade.
        let garbage: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut with_newlines = garbage.clone();
        with_newlines.extend_from_slice(b"\r\n\r\n");
        let huge_header = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "y".repeat(200_000)
        );
        let many_headers = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..2000)
                .map(|i| format!("X-H{i}: v\r\n"))
                .collect::<String>()
        );
        let requests: [(&str, &[u8]); 6] = [
            ("binary garbage", &garbage),
            ("binary garbage and a blank line", &with_newlines),
            (
                "an absurd request line",
                b"FROB /ws?\x01\x02 HTTP/9.9\r\n\r\n",
            ),
            ("a 200 kB header", huge_header.as_bytes()),
            ("2000 headers", many_headers.as_bytes()),
            (
                "a TLS client hello",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            ),
        ];
        for (what, bytes) in requests {
            let status = raw_exchange(addr, bytes).await;
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "{what}: answered {status:?}"
            );
            eprintln!("{what}: {status:?}");
        }
        // The half handshakes are not kept open for ever: the server closes each (with a
        // 408 or without a word) once it gave up waiting for the rest of its headers. The
        // good client reads all along.
        for mut tcp in silent {
            use tokio::io::AsyncReadExt;
            let mut answer = Vec::new();
            let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
            assert!(
                read.is_ok(),
                "a half handshake still open after {PATIENCE:?}"
            );
            let status = head_end(&answer)
                .and_then(|end| parse_http_head(&String::from_utf8_lossy(&answer[..end - 4])))
                .map(|(s, _)| s);
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "a half handshake answered {status:?}"
            );
        }

        stop.store(1, Ordering::Relaxed);
        let (c, from, window) = good.await.expect("good client");
        (c, from, window)
    });
    let during = &good.frames[from..];
    let produced = span(during);
    eprintln!(
        "the good client got {} of {produced} frames in {:.1} s ({:.1} fps), {} images verified",
        during.len(),
        window.as_secs_f64(),
        during.len() as f64 / window.as_secs_f64(),
        good.verified
    );
    assert!(
        during.len() as u64 * 10 >= produced * 8,
        "the good client got {} of the {produced} frames meanwhile",
        during.len()
    );
    assert!(bridge.alive(), "bridge exited: {}", bridge.log());
    rt.block_on(async {
        let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
        assert_eq!(h.status, 200, "{}", h.text());
        let m = bridge_metrics(addr, None).await;
        assert!(metric(&m, "camring_bridge_control_errors_total") >= 9.0);
        assert!(metric(&m, "camring_bridge_protocol_errors_total") >= 2.0);
        assert!(metric(&m, r#"camring_bridge_refused_total{reason="parameter"}"#) >= 20.0);
    });
    assert!(!bridge.log().contains("panicked"), "{}", bridge.log());
}

// ---------------------------------------------------------------------------------------
// 5. Token and client limit
// ---------------------------------------------------------------------------------------

#[test]
fn token_is_required_everywhere_but_healthz() {
    let _serial = one_at_a_time();
    let ring = ring_name("wstoken");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", 30, "jpeg");
    let mut bridge = Bridge::start(&ring, &["--token", "secret"]);
    let addr = bridge.addr;
    runtime().block_on(async {
        let none = Dial::default();
        let wrong_bearer = Dial {
            bearer: Some("guess".into()),
            ..Dial::default()
        };
        assert_eq!(refused_status(addr, "/ws", &none).await, 401, "no token");
        assert_eq!(refused_status(addr, "/ws?token=guess", &none).await, 401);
        assert_eq!(refused_status(addr, "/ws?token=", &none).await, 401);
        assert_eq!(
            refused_status(addr, "/ws?token=secretsecret", &none).await,
            401
        );
        assert_eq!(refused_status(addr, "/ws?token=secre", &none).await, 401);
        assert_eq!(refused_status(addr, "/ws", &wrong_bearer).await, 401);
        // The token before the parameters: a bad parameter with no token is still a 401.
        assert_eq!(refused_status(addr, "/ws?quality=200", &none).await, 401);
        // The right token: in the URL, or as a bearer header.
        let mut c = Checker::new("token in the URL");
        let mut ws = connect(addr, "/ws?token=secret&quality=60").await;
        for _ in 0..5 {
            next_frame(&mut ws, &mut c).await;
        }
        let bearer = Dial {
            bearer: Some("secret".into()),
            ..Dial::default()
        };
        let mut c2 = Checker::new("token as a bearer header");
        let mut ws2 = dial(addr, "/ws?cameras=1", &bearer)
            .await
            .expect("bearer accepted");
        for _ in 0..5 {
            next_frame(&mut ws2, &mut c2).await;
        }
        assert!(c2.frames.iter().all(|g| g.ids == [1]));
        // HTTP: /metrics, /snapshot and /mjpeg need it, /healthz does not.
        let auth = [("Authorization", "Bearer secret")];
        let bad_auth = [("Authorization", "Bearer nope")];
        for path in ["/metrics", "/snapshot/0.jpg", "/mjpeg/0"] {
            let r = http_get(addr, path, &[]).await.expect("GET");
            assert_eq!(r.status, 401, "{path} without a token: {}", r.text());
            let r = http_get(addr, path, &bad_auth).await.expect("GET");
            assert_eq!(r.status, 401, "{path} with a wrong token");
            let sep = if path.contains('?') { '&' } else { '?' };
            let r = http_get(addr, &format!("{path}{sep}token=wrong"), &[])
                .await
                .expect("GET");
            assert_eq!(r.status, 401, "{path}?token=wrong");
        }
        let r = http_get(addr, "/metrics?token=secret", &[])
            .await
            .expect("GET");
        assert_eq!(r.status, 200);
        assert!(r.text().contains("camring_bridge_frames_read_total"));
        let r = http_get(addr, "/metrics", &auth).await.expect("GET");
        assert_eq!(r.status, 200);
        for (target, headers) in [
            ("/snapshot/0.jpg?token=secret", &[][..]),
            ("/snapshot/0.jpg", &auth[..]),
        ] {
            let r = http_get(addr, target, headers).await.expect("GET");
            assert_eq!(r.status, 200, "{target}: {}", r.text());
            assert_eq!(r.header("content-type"), Some("image/jpeg"));
            let sequence: u64 = r
                .header("x-camring-sequence")
                .and_then(|v| v.parse().ok())
                .expect("x-camring-sequence");
            camring_jpeg::Decoder::new()
                .expect("decoder")
                .verify_pattern(&r.body, 320, 240, 0, sequence)
                .unwrap_or_else(|e| panic!("{target}: {e}"));
        }
        let r = http_get(addr, "/healthz", &[]).await.expect("GET");
        assert_eq!(r.status, 200, "/healthz needs no token: {}", r.text());
        let m = bridge_metrics(addr, Some("secret")).await;
        let refused = metric(&m, r#"camring_bridge_refused_total{reason="token"}"#);
        assert!(refused >= 16.0, "refusals counted: {refused}");
        assert_eq!(metric(&m, r#"camring_bridge_clients{kind="ws"}"#), 2.0);
        // The clients were served all along.
        for _ in 0..3 {
            next_frame(&mut ws, &mut c).await;
            next_frame(&mut ws2, &mut c2).await;
        }
    });
    assert!(bridge.alive());
    assert!(!bridge.log().contains("panicked"), "{}", bridge.log());
}

#[test]
fn client_limit_refuses_with_503_and_frees_the_place_of_one_that_left() {
    let _serial = one_at_a_time();
    let ring = ring_name("wsfull");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", 30, "jpeg");
    let bridge = Bridge::start(&ring, &["--max-clients", "2"]);
    let addr = bridge.addr;
    runtime().block_on(async {
        let mut a = Checker::new("first");
        let mut ws_a = connect(addr, "/ws").await;
        next_frame(&mut ws_a, &mut a).await;
        let mut b = Checker::new("second");
        let mut ws_b = connect(addr, "/ws?quality=50").await;
        next_frame(&mut ws_b, &mut b).await;
        for _ in 0..3 {
            assert_eq!(refused_status(addr, "/ws", &Dial::default()).await, 503);
        }
        // MJPEG clients count too.
        let r = http_get(addr, "/mjpeg/0", &[]).await.expect("GET");
        assert_eq!(r.status, 503, "{}", r.text());
        // A refused client takes no place: both are still served.
        next_frame(&mut ws_a, &mut a).await;
        next_frame(&mut ws_b, &mut b).await;
        // One leaves; its place is given to the next one (once the server noticed).
        ws_a.close(None).await.expect("close");
        drop(ws_a);
        let deadline = Instant::now() + PATIENCE;
        let mut refusals_meanwhile = 0;
        let mut ws_c = loop {
            match dial(addr, "/ws?cameras=0", &Dial::default()).await {
                Ok(ws) => break ws,
                Err(tungstenite::Error::Http(r)) if r.status() == 503 => {
                    refusals_meanwhile += 1;
                    assert!(Instant::now() < deadline, "the place never came free");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("third client: {e}"),
            }
        };
        let mut c = Checker::new("third");
        for _ in 0..5 {
            next_frame(&mut ws_c, &mut c).await;
        }
        assert!(c.frames.iter().all(|g| g.ids == [0]));
        // Full again.
        assert_eq!(refused_status(addr, "/ws", &Dial::default()).await, 503);
        next_frame(&mut ws_b, &mut b).await;
        let m = bridge_metrics(addr, None).await;
        assert_eq!(metric(&m, r#"camring_bridge_clients{kind="ws"}"#), 2.0);
        assert!(metric(&m, r#"camring_bridge_refused_total{reason="full"}"#) >= 5.0);
        eprintln!("503s while the first client's place came free: {refusals_meanwhile}");
    });
}

// ---------------------------------------------------------------------------------------
// 6. Encodes grow with distinct settings, not with clients
// ---------------------------------------------------------------------------------------

/// Connects a client per query, lets each get a few frames, then reads `/metrics` before and
/// after `window` while they all keep reading (and checking) at full rate.
async fn metrics_around(
    addr: std::net::SocketAddr,
    queries: &[&'static str],
    window: Duration,
) -> (Vec<Checker>, HashMap<String, f64>, HashMap<String, f64>) {
    let ready = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = queries
        .iter()
        .enumerate()
        .map(|(i, &query)| {
            let (ready, stop) = (Arc::clone(&ready), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut c = Checker::new(format!("client {i} /ws{query}"));
                let mut ws = connect(addr, &format!("/ws{query}")).await;
                for _ in 0..3 {
                    next_frame(&mut ws, &mut c).await;
                }
                ready.fetch_add(1, Ordering::Relaxed);
                while stop.load(Ordering::Relaxed) == 0 {
                    read_until(&mut ws, &mut c, Instant::now() + Duration::from_millis(100)).await;
                }
                let _ = ws.close(None).await;
                c
            })
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while ready.load(Ordering::Relaxed) < queries.len() as u64 {
        assert!(Instant::now() < deadline, "clients got no frames");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = bridge_metrics(addr, None).await;
    tokio::time::sleep(window).await;
    let after = bridge_metrics(addr, None).await;
    stop.store(1, Ordering::Relaxed);
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("client"));
    }
    (clients, before, after)
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    metric(after, key) - metric(before, key)
}

#[test]
fn encodes_grow_with_distinct_settings_not_with_clients() {
    let _serial = one_at_a_time();
    const CAMERAS: f64 = 2.0;
    const WINDOW: Duration = Duration::from_secs(5);
    let ring = ring_name("wsenc");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", 20, "rgb8");
    let bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    let rt = runtime();
    let same = ["?quality=70"; 10];
    let spread = [
        "?quality=50",
        "?quality=50",
        "?quality=50",
        "?quality=50",
        "?quality=70",
        "?quality=70",
        "?quality=70",
        // fps and skip do not make another variant; a size limit does.
        "?quality=70&max_width=160",
        "?quality=70&max_width=160&fps=0",
        "?quality=70&max_width=160&skip=1",
    ];
    let mut figures = Vec::new();
    for (what, queries, low, high) in [
        ("10 clients, 1 setting", &same, 0.8, 1.2),
        ("10 clients, 3 settings", &spread, 2.5, 3.6),
    ] {
        let (clients, before, after) = rt.block_on(metrics_around(addr, queries, WINDOW));
        let read = delta(&before, &after, "camring_bridge_frames_read_total");
        let encodes = delta(&before, &after, "camring_bridge_encodes_total");
        let forwarded = delta(&before, &after, "camring_bridge_forwarded_total");
        let sent = delta(
            &before,
            &after,
            r#"camring_bridge_frames_sent_total{kind="ws"}"#,
        );
        let per_frame = encodes / read / CAMERAS;
        let spans: Vec<u64> = clients.iter().map(|c| span(&c.frames)).collect();
        let encode_ms = delta(&before, &after, "camring_bridge_encode_seconds_sum") * 1000.0
            / delta(&before, &after, "camring_bridge_encode_seconds_count");
        figures.push(format!(
            "{what}: {read} frames read, {encodes} encodes ({per_frame:.2} x cameras per frame), \
             {sent} messages sent, {encode_ms:.1} ms per encode; client spans {spans:?}"
        ));
        assert!(
            read >= 20.0,
            "{what}: only {read} frames read in {WINDOW:?}"
        );
        assert_eq!(
            forwarded, 0.0,
            "{what}: nothing to forward from an rgb8 ring"
        );
        assert!(
            (low..=high).contains(&per_frame),
            "{what}: {encodes} encodes for {read} frames of {CAMERAS} cameras: {per_frame:.2} \
             per camera and frame, expected {low}..{high}"
        );
        // The frames read went to clients (each client's own share, with drops on a
        // starved machine, is checked by its count below).
        assert!(
            sent >= read,
            "{what}: {sent} messages sent for {read} frames read"
        );
        for c in &clients {
            assert!(
                c.frames.len() >= 10,
                "{}: {} frames",
                c.name,
                c.frames.len()
            );
        }
    }
    eprintln!("{}", figures.join("\n"));
}

#[test]
fn jpeg_ring_at_default_quality_is_forwarded_as_is() {
    let _serial = one_at_a_time();
    let ring = ring_name("wsfwd");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", 20, "jpeg");
    let bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    // One variant (the default quality, no size limit) whatever the cameras asked for.
    let queries = ["", "", "", "?quality=80", "?cameras=1", "?cameras=0,1"];
    let (clients, before, after) =
        runtime().block_on(metrics_around(addr, &queries, Duration::from_secs(4)));
    let read = delta(&before, &after, "camring_bridge_frames_read_total");
    let encodes = delta(&before, &after, "camring_bridge_encodes_total");
    let forwarded = delta(&before, &after, "camring_bridge_forwarded_total");
    eprintln!("jpeg ring: {read} frames read, {forwarded} images forwarded, {encodes} encodes");
    assert!(read >= 20.0, "only {read} frames read");
    assert_eq!(
        encodes, 0.0,
        "a JPEG at a quality at least the ring's is never encoded"
    );
    // Once per camera and frame, whatever the number of clients.
    assert!(
        forwarded >= read * 2.0 * 0.8 && forwarded <= read * 2.0 * 1.2,
        "{forwarded} forwarded for {read} frames of 2 cameras"
    );
    for c in &clients {
        assert!(c.frames.len() >= 10, "{}", c.name);
    }
}

// ---------------------------------------------------------------------------------------
// 7. Snapshots and MJPEG
// ---------------------------------------------------------------------------------------

/// Checks a JPEG of camera `camera`: decodes to `width` × `height` and carries the camera's
/// pattern; returns the sequence its code band names. At the ring's size the whole image is
/// checked, downscaled its code band.
fn check_jpeg(jpeg: &[u8], camera: u32, width: u32, height: u32, full: bool) -> u32 {
    let mut d = camring_jpeg::Decoder::new().expect("decoder");
    let (w, h, rgb) = d.decode_rgb(jpeg).expect("a JPEG");
    assert_eq!((w, h), (width, height), "JPEG size");
    let (cam, seq) = camring_protocol::pattern::read_code_rgb(rgb, w, h)
        .or_else(|_| camring_reader::read_code_scaled(rgb, w, h, 320, 240))
        .expect("a readable code band");
    assert_eq!(u32::from(cam), camera, "the code band names another camera");
    if full {
        d.verify_pattern(jpeg, width, height, camera, u64::from(seq))
            .expect("the whole pattern");
    }
    seq
}

/// A `multipart/x-mixed-replace` response read part by part (through chunked transfer
/// encoding when the server uses it).
struct Multipart {
    tcp: TcpStream,
    raw: Vec<u8>,
    chunked: bool,
    body: Vec<u8>,
    boundary: String,
}

impl Multipart {
    async fn open(addr: std::net::SocketAddr, target: &str) -> Result<Multipart, HttpResponse> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.expect("request");
        let mut raw = Vec::new();
        let end = loop {
            if let Some(end) = head_end(&raw) {
                break end;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "closed before the response head");
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end - 4]).into_owned();
        let (status, headers) = parse_http_head(&head).expect("HTTP head");
        let response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let content_type = response.header("content-type").unwrap_or("").to_owned();
        if status != 200 {
            return Err(response);
        }
        let boundary = content_type
            .strip_prefix("multipart/x-mixed-replace; boundary=")
            .unwrap_or_else(|| panic!("{target}: content type {content_type:?}"))
            .to_owned();
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"));
        Ok(Multipart {
            tcp,
            raw: raw[end..].to_vec(),
            chunked,
            body: Vec::new(),
            boundary,
        })
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            let Some(line) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..line]).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            if self.raw.len() < line + 2 + size + 2 {
                return;
            }
            let data = &self.raw[line + 2..line + 2 + size];
            self.body.extend_from_slice(data);
            self.raw.drain(..line + 2 + size + 2);
        }
    }

    /// The next part: its headers and its bytes.
    async fn part(&mut self) -> (HashMap<String, String>, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.dechunk();
            if let Some(end) = head_end(&self.body) {
                let head = String::from_utf8_lossy(&self.body[..end - 4]).into_owned();
                let mut lines = head.split("\r\n");
                assert_eq!(
                    lines.next(),
                    Some(format!("--{}", self.boundary).as_str()),
                    "a part starts with the boundary"
                );
                let headers: HashMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers["content-length"].parse().expect("length");
                if self.body.len() >= end + len + 2 {
                    let jpeg = self.body[end..end + len].to_vec();
                    assert_eq!(&self.body[end + len..end + len + 2], b"\r\n");
                    self.body.drain(..end + len + 2);
                    return (headers, jpeg);
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.tcp.read(&mut chunk))
                .await
                .expect("an MJPEG part in time")
                .expect("read");
            assert!(n > 0, "the MJPEG stream ended");
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn snapshots_and_mjpeg_carry_the_cameras_patterns() {
    let _serial = one_at_a_time();
    let ring = ring_name("wssnap");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 3, "320x240", 20, "jpeg");
    let mut bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    runtime().block_on(async {
        // Snapshots: the newest image of a camera, whole or downscaled.
        let mut sequences = Vec::new();
        for _ in 0..3 {
            let r = http_get(addr, "/snapshot/1.jpg", &[]).await.expect("GET");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("content-type"), Some("image/jpeg"));
            let seq: u64 = r
                .header("x-camring-sequence")
                .and_then(|v| v.parse().ok())
                .expect("x-camring-sequence");
            assert!(r.header("x-camring-frame").is_some());
            assert!(r.header("x-camring-capture-ns").is_some());
            let found = check_jpeg(&r.body, 1, 320, 240, true);
            assert_eq!(
                u64::from(found),
                seq,
                "the sequence header names the image's"
            );
            sequences.push(seq);
            // Several ring frames later (snapshot_is_never_older_than_the_newest_frame_when_asked
            // checks against the ring's own newest frame).
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            sequences.windows(2).all(|w| w[1] > w[0]),
            "snapshots taken apart are newer each time: {sequences:?}"
        );
        for (target, camera, size) in [
            ("/snapshot/1.jpg?max_width=160", 1, (160, 120)),
            ("/snapshot/2.jpg?max_height=60&quality=50", 2, (80, 60)),
            (
                "/snapshot/0.jpg?max_width=200&max_height=100",
                0,
                (133, 100),
            ),
        ] {
            let r = http_get(addr, target, &[]).await.expect("GET");
            assert_eq!(r.status, 200, "{target}: {}", r.text());
            let seq: u32 = r
                .header("x-camring-sequence")
                .and_then(|v| v.parse().ok())
                .expect("x-camring-sequence");
            let found = check_jpeg(&r.body, camera, size.0, size.1, false);
            assert_eq!(found, seq, "{target}");
        }
        for (target, status) in [
            ("/snapshot/9.jpg", 404),
            ("/snapshot/3.jpg", 404),
            ("/snapshot/x.jpg", 404),
            ("/snapshot/1.png", 404),
            ("/snapshot/1.jpg?quality=0", 400),
            ("/snapshot/1.jpg?bogus=1", 400),
        ] {
            let r = http_get(addr, target, &[]).await.expect("GET");
            assert_eq!(r.status, status, "{target}: {}", r.text());
        }

        // MJPEG: parts that decode, verify, and come newer each time.
        for (target, size, full) in [
            ("/mjpeg/0", (320, 240), true),
            ("/mjpeg/2?max_width=160", (160, 120), false),
        ] {
            let camera: u32 = target[7..8].parse().expect("camera");
            let mut stream = Multipart::open(addr, target)
                .await
                .unwrap_or_else(|r| panic!("{target}: {}", r.status));
            let mut last: Option<(u64, u32)> = None;
            for _ in 0..8 {
                let (headers, jpeg) = stream.part().await;
                assert_eq!(headers["content-type"], "image/jpeg");
                let frame: u64 = headers["x-camring-frame"].parse().expect("frame number");
                let seq = check_jpeg(&jpeg, camera, size.0, size.1, full);
                if let Some((f, s)) = last {
                    assert!(
                        frame > f && seq > s,
                        "{target}: frame {frame} seq {seq} after {f} {s}"
                    );
                }
                last = Some((frame, seq));
            }
        }
        let m = bridge_metrics(addr, None).await;
        assert!(metric(&m, r#"camring_bridge_frames_sent_total{kind="mjpeg"}"#) >= 16.0);
        assert!(metric(&m, r#"camring_bridge_frames_sent_total{kind="snapshot"}"#) >= 6.0);
    });
    assert!(bridge.alive());
}

/// docs/bridge.md: `/snapshot/{camera}.jpg` is "the newest image of a camera": never older
/// than the ring's newest frame (as `/healthz` reports it) when it was asked for, also with
/// no stream open, when the bridge copies frames out of the ring only on demand (it once
/// served any frame copied within the last second).
#[test]
fn snapshot_is_never_older_than_the_newest_frame_when_asked() {
    let _serial = one_at_a_time();
    let ring = ring_name("wsfresh");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", 30, "jpeg");
    let bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    runtime().block_on(async {
        // Until the bridge has seen a frame (it reads the ring's head every 100 ms; on a
        // loaded machine the producer's first publish can come after the bridge is up),
        // /healthz has no `frame` yet.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
            let v: serde_json::Value = serde_json::from_slice(&h.body).expect("JSON");
            if v["frame"].as_u64().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "no frame in /healthz: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut stale = Vec::new();
        for _ in 0..5 {
            let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
            let v: serde_json::Value = serde_json::from_slice(&h.body).expect("JSON");
            let newest = v["frame"].as_u64().expect("the ring's newest frame");
            let r = http_get(addr, "/snapshot/0.jpg", &[])
                .await
                .expect("snapshot");
            assert_eq!(r.status, 200);
            let frame: u64 = r
                .header("x-camring-frame")
                .and_then(|f| f.parse().ok())
                .expect("x-camring-frame");
            if frame < newest {
                stale.push((newest, frame));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert!(
            stale.is_empty(),
            "snapshots older than the ring's newest frame when asked (newest, served): {stale:?}"
        );
    });
}

/// `/snapshot/9.jpg` of a ring without camera 9 is a 404, and so is `/mjpeg/9` (it once was
/// an endless stream without a part, holding a client's place).
#[test]
fn mjpeg_of_an_unknown_camera_is_404() {
    let _serial = one_at_a_time();
    let ring = ring_name("wsmj404");
    let _g = RingGuard(ring.clone());
    let _p = live_producer(&ring, 2, "320x240", 30, "jpeg");
    let bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    runtime().block_on(async {
        let r = http_get(addr, "/snapshot/9.jpg", &[]).await.expect("GET");
        assert_eq!(r.status, 404);
        let opened =
            tokio::time::timeout(Duration::from_secs(5), Multipart::open(addr, "/mjpeg/9"));
        match opened.await {
            Err(_) => panic!("/mjpeg/9: no response head"),
            Ok(Err(r)) => assert_eq!(r.status, 404, "/mjpeg/9"),
            Ok(Ok(mut stream)) => {
                let part = tokio::time::timeout(Duration::from_secs(3), stream.part()).await;
                panic!(
                    "/mjpeg/9 of a 2-camera ring: 200, then {}",
                    if part.is_ok() {
                        "a part"
                    } else {
                        "no part in 3 s"
                    }
                );
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// 8. The producer dies and comes back under the clients' feet
// ---------------------------------------------------------------------------------------

/// What a client of the producer-restart test has seen so far: live states, other states,
/// frames since the last live state.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    lives: usize,
    downs: usize,
    frames_since_live: usize,
}

#[test]
fn producer_killed_and_restarted_clients_follow_without_reconnecting() {
    let _serial = one_at_a_time();
    let ring = ring_name("wsrestart");
    let _g = RingGuard(ring.clone());
    let start = |cameras, size| {
        let args = [
            "--cameras",
            cameras,
            "--size",
            size,
            "--fps",
            "20",
            "--format",
            "jpeg",
        ];
        produce(&ring, &[&args[..], &["-q"]].concat())
    };
    let first = start("2", "320x240");
    assert!(wait_for_frames(&ring, 1, PATIENCE));
    let mut bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    let rt = runtime();
    let queries = ["", "?quality=50&max_width=160", "?cameras=1&fps=5"];
    let seen = Arc::new(std::sync::Mutex::new(vec![
        Progress::default();
        queries.len()
    ]));
    let stop = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = queries
        .iter()
        .enumerate()
        .map(|(i, &query)| {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            rt.spawn(async move {
                let mut c = Checker::new(format!("client {i} /ws{query}"));
                let mut ws = connect(addr, &format!("/ws{query}")).await;
                while stop.load(Ordering::Relaxed) == 0 {
                    let next = recv(&mut ws, Duration::from_millis(100)).await;
                    let message = match next {
                        Err(_) => continue,
                        Ok(Some(Ok(m))) => m,
                        Ok(other) => panic!("{}", c.ended(other)),
                    };
                    let event = c.on(message);
                    let mut s = seen.lock().expect("lock");
                    match event {
                        Some(Event::State) => {
                            let producer = c.states.last().expect("a state").producer;
                            if producer == ProducerStatus::Live {
                                if s[i].lives == s[i].downs {
                                    s[i].lives += 1;
                                    s[i].frames_since_live = 0;
                                }
                            } else if s[i].downs < s[i].lives {
                                s[i].downs += 1;
                            }
                        }
                        Some(Event::Frame(_)) => s[i].frames_since_live += 1,
                        Some(Event::Closed(code)) => panic!("{}: closed ({code:?})", c.name),
                        _ => {}
                    }
                }
                c
            })
        })
        .collect();
    // Waits until every client is in `lives` live periods, `downs` ended ones, and (when
    // live) got `frames` frames in this one.
    let wait = |lives: usize, downs: usize, frames: usize, what: &str| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = seen.lock().expect("lock").clone();
            if now
                .iter()
                .all(|s| s.lives == lives && s.downs == downs && s.frames_since_live >= frames)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: clients saw {now:?}\nbridge: {}",
                bridge.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(1, 0, 5, "first producer");
    first.signal(Signal::KILL);
    let _ = first.finish(PATIENCE);
    wait(1, 1, 0, "producer killed");
    // The same layout: the new producer takes the ring over.
    let second = start("2", "320x240");
    wait(2, 1, 5, "second producer");
    // A clean stop removes the ring; a producer of another layout makes a new one.
    second.signal(Signal::INT);
    let out = second.finish(PATIENCE);
    assert!(out.status.success(), "{}", stderr(&out));
    wait(2, 2, 0, "producer stopped");
    let _third = start("3", "160x120");
    wait(3, 2, 5, "third producer");
    stop.store(1, Ordering::Relaxed);
    let clients: Vec<Checker> = rt.block_on(async {
        let mut out = Vec::new();
        for c in clients {
            out.push(c.await.expect("client"));
        }
        out
    });
    for c in &clients {
        let states: Vec<ProducerStatus> = c.states.iter().map(|s| s.producer).collect();
        eprintln!(
            "{}: states {states:?}, {} frames, {} images verified, logs {:?}",
            c.name,
            c.frames.len(),
            c.verified,
            c.logs
        );
        assert!(
            states.contains(&ProducerStatus::Dead) || states.contains(&ProducerStatus::Waiting),
            "{}: the kill was never told: {states:?}",
            c.name
        );
        // Each change of the producer is also told as a log line.
        assert!(
            c.logs.iter().any(|(level, _)| level == "warn"),
            "{}: no warning logged: {:?}",
            c.name,
            c.logs
        );
        // The last live period is the 3-camera ring (the checker checked each frame against
        // the cameras of the state before it).
        let last_live = c
            .states
            .iter()
            .rposition(|s| s.producer == ProducerStatus::Live)
            .expect("live");
        let frames = &c.frames[c.states[last_live].frames_before..];
        let all = c
            .settings
            .as_ref()
            .is_some_and(|s| s.cameras == CameraSet::All);
        for g in frames {
            assert_eq!(g.ids.len(), if all { 3 } else { 1 }, "{}: {g:?}", c.name);
        }
    }
    assert!(bridge.alive(), "{}", bridge.log());
    assert!(!bridge.log().contains("panicked"), "{}", bridge.log());
}
