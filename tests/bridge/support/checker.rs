//! What a WebSocket client of the bridge checks in every message it receives.

use std::time::{Duration, Instant};

use camring_protocol::control::{
    CameraDescription, ProducerStatus, Quality, ServerMessage, Settings, Stats,
};
use camring_protocol::wire::{self, CAM_DOWNSCALED};
use camring_protocol::PixelFormat;
use camring_reader::{Verdict, Verifier};
use camring_shm::clock::now_ns;
use tokio_tungstenite::tungstenite::Message;

/// One binary message as received and checked.
#[derive(Debug, Clone)]
pub struct Got {
    pub frame: u64,
    pub at: Instant,
    /// Our clock when it arrived, ns since the epoch.
    pub recv_ns: u64,
    /// Camera ids in message order.
    pub ids: Vec<u32>,
    /// (width, height) of each present camera.
    pub sizes: Vec<(u32, u32)>,
    /// The oldest capture time of its cameras.
    pub capture_ns: u64,
    pub bytes: usize,
}

/// What a client received, checked as it arrives.
#[derive(Debug)]
pub enum Event {
    Frame(Got),
    State,
    Stats,
    Log,
    Error(String),
    Closed(Option<u16>),
}

/// A `state` message as a client saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub producer: ProducerStatus,
    pub settings: Settings,
    pub paused: bool,
    /// Frames received before it.
    pub frames_before: usize,
}

/// A WebSocket client's checks: every frame against the settings of the last `state`.
pub struct Checker {
    pub name: String,
    pub verifier: Verifier,
    pub ring: Vec<CameraDescription>,
    pub settings: Option<Settings>,
    pub producer: Option<ProducerStatus>,
    pub paused: bool,
    pub last_frame: Option<u64>,
    pub frames: Vec<Got>,
    pub states: Vec<Seen>,
    /// Frames that came after a `state` said paused (and before one said resumed).
    pub while_paused: usize,
    pub stats: Vec<Stats>,
    pub errors: Vec<String>,
    /// `log` messages: level and text.
    pub logs: Vec<(String, String)>,
    /// When the last message came, and the longest time between two.
    pub last_message: Option<Instant>,
    pub longest_silence: Duration,
    pub verified: u64,
    pub missing: u64,
    pub downscaled: u64,
}

impl Checker {
    pub fn new(name: impl Into<String>) -> Checker {
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
    pub fn on(&mut self, message: Message) -> Option<Event> {
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
    pub fn ended(&self, how: impl std::fmt::Debug) -> String {
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
