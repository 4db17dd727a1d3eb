//! What `camring view` does with each message it receives, without any IO but the saved
//! JPEGs: counting, checking order, latency, verification, the server's state and stats.

use std::path::{Path, PathBuf};

use camring_protocol::control::{
    CameraDescription, CameraSet, ConnectionStats, ProducerStatus, ServerMessage, Settings,
};
use camring_protocol::wire::{self, Message, CAM_DOWNSCALED, CAM_REENCODED};
use camring_protocol::PixelFormat;
use camring_reader::{Latency, Summary, Verdict, Verifier};

/// Corruption (and invalid message) reasons printed before going quiet about them.
pub const MAX_REPORTS: u32 = 5;

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Progress (connected, producer status, server log lines): hidden by `--quiet`.
    Info,
    /// Something wrong (corruption, invalid messages, server errors): always printed.
    Problem,
}

/// Writes the JPEGs of the first multi-frames received.
#[derive(Debug)]
pub struct Saver {
    dir: PathBuf,
    max_frames: u64,
    frames: u64,
    files: u64,
}

impl Saver {
    /// Saves into `dir` (which must exist) the JPEGs of at most `max_frames` multi-frames.
    pub fn new(dir: &Path, max_frames: u64) -> Self {
        Saver {
            dir: dir.to_owned(),
            max_frames,
            frames: 0,
            files: 0,
        }
    }

    /// The file camera `camera_id`'s image of multi-frame `frame` is saved as.
    pub fn path(&self, camera_id: u32, frame: u64) -> PathBuf {
        self.dir.join(format!("cam{camera_id}_{frame}.jpg"))
    }

    /// Writes the message's JPEG images, if fewer than the maximum multi-frames were saved
    /// yet; returns whether this was the last one it will save.
    fn save(&mut self, msg: &Message<'_>) -> std::io::Result<bool> {
        if self.frames >= self.max_frames {
            return Ok(false);
        }
        let mut wrote = false;
        for c in &msg.cameras {
            if c.info.format == PixelFormat::Jpeg && !c.info.is_missing() {
                std::fs::write(self.path(c.info.camera_id, msg.header.frame), c.payload)?;
                self.files += 1;
                wrote = true;
            }
        }
        if wrote {
            self.frames += 1;
        }
        Ok(wrote && self.frames == self.max_frames)
    }

    /// Image files written.
    pub fn files(&self) -> u64 {
        self.files
    }
}

/// The state of a viewing run across connections.
#[derive(Debug)]
pub struct ViewSession {
    /// The counters `--json` prints.
    pub summary: Summary,
    verify: bool,
    verifier: Verifier,
    latency: Latency,
    window: Latency,
    window_frames: u64,
    /// Frame number of the last message of this connection (since the last `state`).
    last_frame: Option<u64>,
    /// The first message of a connection may have waited for it: no latency from it.
    first_of_connection: bool,
    states: u64,
    ring: String,
    cameras: Vec<CameraDescription>,
    settings: Option<Settings>,
    producer: Option<ProducerStatus>,
    server: Option<ConnectionStats>,
    saver: Option<Saver>,
    reports: u32,
    invalid_reports: u32,
    /// Text messages skipped: unknown `type`, or not a server message at all.
    pub skipped_text: u64,
    skipped_kinds: Vec<String>,
    notes: Vec<(Level, String)>,
}

impl ViewSession {
    /// A session that verifies synthetic images if `verify`, and saves JPEGs with `saver`.
    pub fn new(verify: bool, saver: Option<Saver>) -> Self {
        ViewSession {
            summary: Summary::default(),
            verify,
            verifier: Verifier::new(),
            latency: Latency::new(),
            window: Latency::new(),
            window_frames: 0,
            last_frame: None,
            first_of_connection: true,
            states: 0,
            ring: String::new(),
            cameras: Vec::new(),
            settings: None,
            producer: None,
            server: None,
            saver,
            reports: 0,
            invalid_reports: 0,
            skipped_text: 0,
            skipped_kinds: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A new connection starts: frame order and the server's counters start over.
    pub fn connected(&mut self) {
        self.last_frame = None;
        self.first_of_connection = true;
        self.server = None;
        self.states = 0;
    }

    /// The connection ended: the server's counters and producer status no longer apply.
    pub fn disconnected(&mut self) {
        self.server = None;
        self.producer = None;
    }

    /// The notes gathered since the last call, oldest first.
    pub fn take_notes(&mut self) -> Vec<(Level, String)> {
        std::mem::take(&mut self.notes)
    }

    fn problem(&mut self, text: String) {
        self.notes.push((Level::Problem, text));
    }

    fn corrupt(&mut self, why: String) {
        self.summary.corrupt += 1;
        if self.reports < MAX_REPORTS {
            self.reports += 1;
            let more = if self.reports == MAX_REPORTS {
                " (further corruption is only counted)"
            } else {
                ""
            };
            self.problem(format!("CORRUPT: {why}{more}"));
        }
        if self.summary.first_corruption.is_none() {
            self.summary.first_corruption = Some(why);
        }
    }

    /// Handles one binary message received at `received_ns` (the ring's clock).
    pub fn on_binary(&mut self, data: &[u8], received_ns: u64) {
        let msg = match wire::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.summary.invalid += 1;
                if self.invalid_reports < MAX_REPORTS {
                    self.invalid_reports += 1;
                    self.problem(format!(
                        "invalid binary message ({} bytes): {e}",
                        data.len()
                    ));
                }
                return;
            }
        };
        self.summary.frames += 1;
        self.window_frames += 1;
        let frame = msg.header.frame;
        if let Some(last) = self.last_frame {
            if frame <= last {
                self.corrupt(format!(
                    "multi-frame {frame} came after {last}: frame numbers went backwards"
                ));
            } else {
                self.summary.skipped += frame - last - 1;
            }
        }
        self.last_frame = Some(frame);
        if !std::mem::replace(&mut self.first_of_connection, false) {
            for c in msg.cameras.iter().filter(|c| !c.info.is_missing()) {
                if c.info.capture_ns != 0 {
                    let ns = received_ns.saturating_sub(c.info.capture_ns);
                    self.latency.record_ns(ns);
                    self.window.record_ns(ns);
                }
            }
        }
        if self.verify {
            self.verify_message(&msg);
        }
        if let Some(saver) = &mut self.saver {
            match saver.save(&msg) {
                Ok(true) => {
                    let n = saver.max_frames;
                    self.notes.push((
                        Level::Info,
                        format!("saved the JPEGs of {n} multi-frames; saving no more (--save-max)"),
                    ));
                }
                Ok(false) => {}
                Err(e) => {
                    let dir = saver.dir.display().to_string();
                    self.saver = None;
                    self.problem(format!("cannot save into {dir}: {e}; saving no more"));
                }
            }
        }
    }

    fn verify_message(&mut self, msg: &Message<'_>) {
        let mut problems = Vec::new();
        let mut verified = false;
        for c in &msg.cameras {
            let info = &c.info;
            if let Some(s) = &self.settings {
                if !s.cameras.contains(info.camera_id) {
                    let asked = match &s.cameras {
                        CameraSet::All => "all".to_owned(),
                        CameraSet::Only(ids) => format!("{ids:?}"),
                    };
                    problems.push(format!(
                        "camera {} was sent but only {asked} were asked for",
                        info.camera_id
                    ));
                }
                if !info.is_missing()
                    && ((s.max_width > 0 && info.width > s.max_width)
                        || (s.max_height > 0 && info.height > s.max_height))
                {
                    problems.push(format!(
                        "camera {} is {}x{}, above max_width {} / max_height {}",
                        info.camera_id, info.width, info.height, s.max_width, s.max_height
                    ));
                }
            }
            let ring = self.cameras.iter().find(|d| d.id == info.camera_id);
            match self.verifier.check_received(info, c.payload, ring) {
                Verdict::Verified => verified = true,
                Verdict::Unchecked => {}
                Verdict::Corrupt(why) => problems.push(format!(
                    "camera {} sequence {} ({}{}{}): {why}",
                    info.camera_id,
                    info.sequence,
                    info.format,
                    if info.flags & CAM_REENCODED != 0 {
                        ", re-encoded"
                    } else {
                        ""
                    },
                    if info.flags & CAM_DOWNSCALED != 0 {
                        ", downscaled"
                    } else {
                        ""
                    },
                )),
            }
        }
        if !problems.is_empty() {
            self.corrupt(format!(
                "multi-frame {}: {}",
                msg.header.frame,
                problems.join("; ")
            ));
        } else if verified {
            // (A synthetic image too small to check leaves its message neither verified
            // nor corrupt.)
            self.summary.verified += 1;
        }
    }

    /// Handles one text message.
    pub fn on_text(&mut self, text: &str) {
        match ServerMessage::from_json(text) {
            Ok(ServerMessage::State(s)) => {
                self.states += 1;
                // A state may announce a new producer, which may number frames from 0.
                self.last_frame = None;
                if self.states == 1 || self.producer != Some(s.producer) || self.ring != s.ring {
                    let cams = s
                        .cameras
                        .iter()
                        .map(|c| format!("{} {}x{} {}", c.id, c.width, c.height, c.format))
                        .collect::<Vec<_>>()
                        .join(", ");
                    self.notes.push((
                        Level::Info,
                        format!(
                            "ring {:?}: producer {}, cameras [{cams}], settings {}{}",
                            s.ring,
                            producer_name(s.producer),
                            serde_json::to_string(&s.settings).unwrap_or_default(),
                            if s.paused { ", paused" } else { "" }
                        ),
                    ));
                }
                self.ring = s.ring;
                self.producer = Some(s.producer);
                self.cameras = s.cameras;
                self.settings = Some(s.settings);
            }
            Ok(ServerMessage::Stats(s)) => self.server = Some(s.connection),
            Ok(ServerMessage::Log(l)) => {
                let level = serde_json::to_value(l.level)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.notes
                    .push((Level::Info, format!("server {level}: {}", l.message)));
            }
            Ok(ServerMessage::Error(e)) => {
                self.problem(format!("server error: {}", e.message));
            }
            Err(e) => {
                // Unknown message types (a later server's) are skipped, as the protocol
                // asks; so is anything else that is not a server message. Said once each.
                self.skipped_text += 1;
                let kind = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("type")?.as_str().map(str::to_owned));
                let what = match &kind {
                    Some(t) => format!("text messages of type {t:?}"),
                    None => "text messages that are not JSON objects with a type".to_owned(),
                };
                if !self.skipped_kinds.contains(&what) {
                    self.notes
                        .push((Level::Info, format!("skipping {what} ({e})")));
                    self.skipped_kinds.push(what);
                }
            }
        }
    }

    /// The live line for the interval of `secs` seconds since the last one; starts a new
    /// interval.
    pub fn live_line(&mut self, secs: f64, connected: bool, resyncs: u64) -> String {
        let l = self.window.summary();
        let mut line = format!(
            "{:>7.1} fps  latency p50 {:>7.0} µs  p99 {:>7.0} µs  frames {}",
            self.window_frames as f64 / secs.max(1e-9),
            l.p50,
            l.p99,
            self.summary.frames,
        );
        if self.verify {
            line.push_str(&format!(
                "  verified {}  corrupt {}",
                self.summary.verified, self.summary.corrupt
            ));
        }
        line.push_str(&format!("  skipped {}", self.summary.skipped));
        if self.summary.invalid > 0 {
            line.push_str(&format!("  invalid {}", self.summary.invalid));
        }
        match &self.server {
            Some(s) => {
                let quality = s.quality.map_or("-".to_owned(), |q| q.to_string());
                line.push_str(&format!(
                    "  server: dropped {} quality {quality}",
                    s.dropped
                ));
            }
            None => line.push_str("  server: -"),
        }
        if let Some(p) = self.producer {
            line.push_str(&format!("  producer {}", producer_name(p)));
        }
        if resyncs > 0 {
            line.push_str(&format!("  resyncs {resyncs}"));
        }
        if !connected {
            line.push_str("  (disconnected)");
        }
        self.window.clear();
        self.window_frames = 0;
        line
    }

    /// The summary at the end of a run of `duration_s` seconds with `resyncs`
    /// reconnections.
    pub fn finish(&mut self, duration_s: f64, resyncs: u64) -> Summary {
        let mut s = self.summary.clone();
        s.resyncs = resyncs;
        s.duration_s = duration_s;
        s.fps = s.frames as f64 / duration_s.max(1e-9);
        s.latency_us = self.latency.summary();
        s
    }

    /// Image files `--save` wrote.
    pub fn saved_files(&self) -> u64 {
        self.saver.as_ref().map_or(0, Saver::files)
    }
}

fn producer_name(p: ProducerStatus) -> &'static str {
    match p {
        ProducerStatus::Waiting => "waiting",
        ProducerStatus::Live => "live",
        ProducerStatus::Stopped => "stopped",
        ProducerStatus::Dead => "dead",
    }
}

#[cfg(test)]
mod tests {
    use camring_jpeg::Encoder;
    use camring_protocol::control::{ErrorReport, LogEntry, LogLevel, State, Stats};
    use camring_protocol::pattern::{self, Geometry};
    use camring_protocol::wire::{
        CameraFrame, CameraInfo, MessageHeader, CAM_MISSING, CAM_SYNTHETIC,
    };

    use super::*;

    const W: u32 = 320;
    const H: u32 = 240;

    fn pattern_jpeg(w: u32, h: u32, cam: u32, seq: u64) -> Vec<u8> {
        let g = Geometry::new(PixelFormat::Rgb8, w, h, w as usize * 3).unwrap();
        let mut rgb = vec![0; g.len()];
        pattern::fill(&mut rgb, &g, cam, seq);
        Encoder::new(80)
            .unwrap()
            .encode(&rgb, PixelFormat::Rgb8, w, h, w as usize * 3)
            .unwrap()
    }

    fn info(cam: u32, seq: u64, capture_ns: u64) -> CameraInfo {
        CameraInfo {
            camera_id: cam,
            format: PixelFormat::Jpeg,
            width: W,
            height: H,
            stride: 0,
            flags: CAM_SYNTHETIC,
            capture_ns,
            sequence: seq,
        }
    }

    /// A message of `cams` synthetic JPEG cameras for `frame`, sequence = frame + 1000.
    fn message(frame: u64, cams: &[(CameraInfo, Vec<u8>)]) -> Vec<u8> {
        Message {
            header: MessageHeader {
                frame,
                tick_ns: 1,
                publish_ns: 2,
                send_ns: 3,
                flags: 0,
            },
            cameras: cams
                .iter()
                .map(|(i, p)| CameraFrame {
                    info: *i,
                    payload: p,
                })
                .collect(),
        }
        .encode()
        .unwrap()
    }

    fn good(frame: u64) -> Vec<u8> {
        let seq = frame + 1000;
        let cams: Vec<_> = (0..2)
            .map(|c| (info(c, seq, 1_000_000), pattern_jpeg(W, H, c, seq)))
            .collect();
        message(frame, &cams)
    }

    fn state(cameras: CameraSet, max_width: u32) -> String {
        ServerMessage::State(State {
            version: 1,
            ring: "r".into(),
            producer: ProducerStatus::Live,
            cameras: (0..2)
                .map(|id| CameraDescription {
                    id,
                    width: W,
                    height: H,
                    format: PixelFormat::Jpeg,
                })
                .collect(),
            settings: Settings {
                max_width,
                cameras,
                ..Settings::default()
            },
            paused: false,
        })
        .to_json()
    }

    #[test]
    fn counts_verifies_and_measures() {
        let mut s = ViewSession::new(true, None);
        s.connected();
        s.on_text(&state(CameraSet::All, 0));
        for frame in [10, 11, 14, 15] {
            s.on_binary(&good(frame), 5_000_000);
        }
        assert_eq!(s.summary.frames, 4);
        assert_eq!(s.summary.verified, 4);
        assert_eq!(s.summary.corrupt, 0);
        assert_eq!(s.summary.skipped, 2);
        let sum = s.finish(2.0, 0);
        assert_eq!(sum.fps, 2.0);
        // The first message of the connection is not measured: 3 × 2 cameras at 4 ms.
        assert_eq!(s.latency.len(), 6);
        assert!((3990.0..=4010.0).contains(&sum.latency_us.p50), "{sum:?}");
        let notes = s.take_notes();
        assert!(notes.iter().all(|(l, _)| *l == Level::Info), "{notes:?}");
        assert!(notes[0].1.contains("producer live"), "{notes:?}");
    }

    #[test]
    fn frames_going_backwards_are_corrupt() {
        let mut s = ViewSession::new(false, None);
        s.connected();
        s.on_binary(&good(10), 5);
        s.on_binary(&good(9), 5);
        s.on_binary(&good(9), 5);
        assert_eq!(s.summary.corrupt, 2);
        assert!(s
            .summary
            .first_corruption
            .as_ref()
            .unwrap()
            .contains("backwards"));
        // A new connection, or a state (a new producer), starts the order over.
        s.connected();
        s.on_binary(&good(3), 5);
        s.on_text(&state(CameraSet::All, 0));
        s.on_binary(&good(0), 5);
        assert_eq!(s.summary.corrupt, 2);
        assert_eq!(s.summary.frames, 5);
        assert_eq!(s.summary.skipped, 0);
    }

    #[test]
    fn wrong_images_and_invalid_messages() {
        let mut s = ViewSession::new(true, None);
        s.connected();
        // Camera 1's image says another sequence than its entry.
        let cams = vec![
            (info(0, 5, 1), pattern_jpeg(W, H, 0, 5)),
            (info(1, 5, 1), pattern_jpeg(W, H, 1, 6)),
        ];
        s.on_binary(&message(1, &cams), 2);
        assert_eq!((s.summary.corrupt, s.summary.verified), (1, 0));
        let why = s.summary.first_corruption.clone().unwrap();
        assert!(why.contains("camera 1 sequence 5"), "{why}");
        s.on_binary(b"CAMF not really", 2);
        s.on_binary(&[], 2);
        assert_eq!(s.summary.invalid, 2);
        assert_eq!(s.summary.frames, 1);
        let notes = s.take_notes();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes.iter().all(|(l, _)| *l == Level::Problem));
        // Only the first few reasons are printed.
        for f in 2..20 {
            s.on_binary(&message(f, &cams), 2);
        }
        assert_eq!(s.summary.corrupt, 19);
        assert_eq!(s.take_notes().len() as u32, MAX_REPORTS - 1);
        // Missing and non-synthetic cameras are not checked.
        let mut missing = info(0, 5, 1);
        missing.flags |= CAM_MISSING;
        let mut real = info(1, 5, 1);
        real.flags = 0;
        let mut s = ViewSession::new(true, None);
        s.on_binary(
            &message(
                1,
                &[(missing, vec![]), (real, b"\xFF\xD8\xFF\xD9".to_vec())],
            ),
            2,
        );
        assert_eq!(
            (s.summary.frames, s.summary.verified, s.summary.corrupt),
            (1, 0, 0)
        );
    }

    #[test]
    fn settings_the_server_stated_are_checked() {
        let mut s = ViewSession::new(true, None);
        s.connected();
        s.on_text(&state(CameraSet::Only(vec![0]), 0));
        s.on_binary(&good(1), 2);
        assert_eq!(s.summary.corrupt, 1);
        assert!(s
            .summary
            .first_corruption
            .as_ref()
            .unwrap()
            .contains("camera 1 was sent"));
        let mut s = ViewSession::new(true, None);
        s.on_text(&state(CameraSet::All, 160));
        s.on_binary(&good(1), 2);
        assert_eq!(s.summary.corrupt, 1);
        assert!(s
            .summary
            .first_corruption
            .as_ref()
            .unwrap()
            .contains("above max_width"));
    }

    #[test]
    fn text_messages() {
        let mut s = ViewSession::new(false, None);
        s.connected();
        s.on_text(&state(CameraSet::All, 0));
        let stats = Stats {
            time_ms: 1,
            connection: ConnectionStats {
                dropped: 12,
                quality: Some(72),
                ..ConnectionStats::default()
            },
            cameras: vec![],
        };
        s.on_text(&ServerMessage::Stats(stats).to_json());
        s.on_text(
            &ServerMessage::Log(LogEntry {
                level: LogLevel::Warn,
                message: "producer restarted".into(),
            })
            .to_json(),
        );
        s.on_text(
            &ServerMessage::Error(ErrorReport {
                message: "bad".into(),
            })
            .to_json(),
        );
        s.on_text(r#"{"type":"hello","x":1}"#);
        s.on_text(r#"{"type":"hello","x":2}"#);
        s.on_text("not json");
        assert_eq!(s.skipped_text, 3);
        let line = s.live_line(1.0, true, 2);
        assert!(line.contains("dropped 12 quality 72"), "{line}");
        assert!(line.contains("producer live"), "{line}");
        assert!(line.contains("resyncs 2"), "{line}");
        assert!(!line.contains("verified"), "{line}");
        let notes = s.take_notes();
        assert!(
            notes.contains(&(Level::Info, "server warn: producer restarted".into())),
            "{notes:?}"
        );
        assert!(notes.contains(&(Level::Problem, "server error: bad".into())));
        // Each kind of skipped message is said once.
        let skipped: Vec<_> = notes
            .iter()
            .filter(|(_, n)| n.starts_with("skipping"))
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert!(skipped[0].1.contains("\"hello\""), "{skipped:?}");
        // A lost connection's server counters are forgotten.
        s.disconnected();
        let line = s.live_line(1.0, false, 2);
        assert!(
            line.contains("server: -  resyncs 2  (disconnected)"),
            "{line}"
        );
    }

    #[test]
    fn saves_the_first_multi_frames() {
        let dir = std::env::temp_dir().join(format!("camring-view-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = ViewSession::new(false, Some(Saver::new(&dir, 2)));
        for frame in 1..=3 {
            s.on_binary(&good(frame), 2);
        }
        assert_eq!(s.saved_files(), 4);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["cam0_1.jpg", "cam0_2.jpg", "cam1_1.jpg", "cam1_2.jpg"]
        );
        let jpeg = std::fs::read(dir.join("cam1_2.jpg")).unwrap();
        camring_jpeg::Decoder::new()
            .unwrap()
            .verify_pattern(&jpeg, W, H, 1, 1002)
            .unwrap();
        let notes = s.take_notes();
        assert!(notes[0].1.contains("saving no more"), "{notes:?}");
        std::fs::remove_dir_all(&dir).unwrap();
        // A directory that cannot be written: said once, then no more saving.
        let mut s = ViewSession::new(false, Some(Saver::new(&dir, 2)));
        s.on_binary(&good(1), 2);
        s.on_binary(&good(2), 2);
        assert_eq!(s.take_notes().len(), 1);
        assert_eq!(s.summary.frames, 2);
    }
}
