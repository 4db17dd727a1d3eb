//! The server side of one client, sans IO: which multi-frames it is offered (pause, skip
//! factor, frame-rate cap, camera subset, staleness), the one pending frame that a newer
//! one replaces, the variant it is sent, the adaptive quality, its statistics and the
//! JSON messages it is owed. Every transport (WebSocket, QUIC, UDP) drives the same
//! [`Session`] with a thin async pump, as quinn drives quinn-proto:
//!
//! - inputs: [`Session::handle_frame`] (the ring's newest multi-frame),
//!   [`Session::handle_control`] / [`Session::handle_message`] (what the client said),
//!   [`Session::handle_status`] (the producer's status changed),
//!   [`Session::handle_sent`] / [`Session::handle_lost`] (what became of a frame the
//!   pump took), [`Session::handle_timeout`] (the time [`Session::poll_timeout`] gave
//!   passed);
//! - outputs: [`Session::poll_output`] (or [`Session::poll_text`] and
//!   [`Session::poll_frame`] for a transport with separate text and frame channels).
//!
//! The session never reads a clock: every input that depends on time takes a [`Now`].
//!
//! Backpressure (docs/protocol.md): a client has at most one frame pending. The pump takes
//! it when it can write one; until then a newer frame replaces it and the older is counted
//! dropped. The pending frame is only a reference (`F`), so a slow client costs no
//! encoding for frames it never gets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::control::{
    CameraDescription, CameraStats, ClientMessage, ConnectionStats, ControlError, LogEntry,
    LogLevel, Percentiles, ProducerStatus, Quality, ServerMessage, Settings, State, Stats,
    STATS_INTERVAL_MS,
};
use crate::wire;
use hdrhistogram::Histogram;

mod auto;

pub use auto::{Auto, AUTO_QUALITIES, AUTO_SCALES};

/// A frame older than this (read by the adapter this long ago) is not offered: a client
/// that connects while the producer is stalled gets no old picture.
pub const STALE_NS: u64 = 2_000_000_000;
/// JSON messages queued for one client; beyond it the oldest goes (a client too slow for
/// its text messages loses stats, never memory).
pub const MAX_QUEUED_TEXTS: usize = 32;

/// The time, as a session sees it: a monotonic instant for schedules (the frame-rate cap,
/// the stats cadence) and the ring's clock (CLOCK_REALTIME nanoseconds) for what is
/// compared with capture times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For schedules.
    pub at: Instant,
    /// The ring's clock, nanoseconds since the Unix epoch.
    pub wall_ns: u64,
}

/// What a session needs to know of a multi-frame; the pump's frame type implements it
/// (and then so does an `Arc` of it, which is what pumps share).
pub trait Offered {
    /// When the adapter read it from the ring (ring clock, nanoseconds).
    fn read_ns(&self) -> u64;
    /// Each camera in ring order: id, width, height.
    fn cameras(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_;
}

impl<T: Offered + ?Sized> Offered for std::sync::Arc<T> {
    fn read_ns(&self) -> u64 {
        (**self).read_ns()
    }

    fn cameras(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (**self).cameras()
    }
}

/// The image variant one client is sent: what its images are encoded and scaled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    /// JPEG quality, 1..=100.
    pub quality: u8,
    /// Largest width, pixels (0 = no limit).
    pub max_width: u32,
    /// Largest height, pixels (0 = no limit).
    pub max_height: u32,
}

impl Variant {
    /// The size a `width` × `height` image is sent at: the largest that fits the limits
    /// with the same aspect ratio, never larger than the original, at least 8 × 8.
    pub fn fit(&self, width: u32, height: u32) -> (u32, u32) {
        let limit = |max: u32, v: u32| {
            if max == 0 || max >= v {
                1.0
            } else {
                f64::from(max) / f64::from(v)
            }
        };
        let scale = limit(self.max_width, width).min(limit(self.max_height, height));
        if scale >= 1.0 {
            return (width, height);
        }
        let w = ((f64::from(width) * scale).round() as u32).clamp(8.min(width), width);
        let h = ((f64::from(height) * scale).round() as u32).clamp(8.min(height), height);
        (w, h)
    }
}

/// What the ring looks like: what `state` messages tell clients.
#[derive(Debug, Clone, PartialEq)]
pub struct RingStatus {
    /// The producer's status.
    pub producer: ProducerStatus,
    /// The ring's cameras (empty while waiting for the ring).
    pub cameras: Vec<CameraDescription>,
}

/// How often a session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cadence {
    /// Between two `stats` messages.
    pub stats: Duration,
    /// Every this many `stats`, the `state` again, for a transport that may lose it
    /// (0 = only when something changed).
    pub state_every: u64,
}

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            stats: Duration::from_millis(STATS_INTERVAL_MS),
            state_every: 0,
        }
    }
}

/// A frame the pump is to send: the frame, the variant its images are made at, and the
/// cameras wanted (bit `i` for camera `i` in ring order).
#[derive(Debug, Clone, PartialEq)]
pub struct Job<F> {
    /// The multi-frame.
    pub frame: F,
    /// What its images are made at.
    pub variant: Variant,
    /// The cameras sent, bit `i` for ring index `i`.
    pub mask: u32,
}

/// What a session asks its pump to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<F> {
    /// Send this JSON message.
    Text(ServerMessage),
    /// Make and send this frame's message.
    Frame(Job<F>),
    /// Close the connection (every text queued before went out first).
    Close(Close),
}

/// Why a connection closes; each transport maps it to its own close code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// The server is stopping.
    Stopping,
    /// The client said goodbye (QUIC: finished its control stream).
    Done,
    /// The connection is gone (the client vanished, or a write failed or timed out):
    /// nothing more can be sent, so the texts still queued are forgotten.
    Lost,
    /// The client broke the protocol: a transport-specific code and a reason.
    Violation {
        /// The transport's close code.
        code: u32,
        /// Why, for the client.
        reason: String,
    },
}

/// What [`Session::handle_frame`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Not for this client (stale, paused, skip factor, frame-rate cap, no wanted camera,
    /// closing).
    Pass,
    /// It is the pending frame now.
    Pending,
    /// It is the pending frame now and replaced one, which was counted dropped.
    Replaced,
}

/// Counters of one camera (or of the whole connection) over the current window and in
/// total.
#[derive(Debug)]
struct Counters {
    sent: u64,
    dropped: u64,
    bytes: u64,
    window_sent: u64,
    latency: Histogram<u64>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            sent: 0,
            dropped: 0,
            bytes: 0,
            window_sent: 0,
            // One minute in microseconds, 2 significant digits: 11 KiB per histogram,
            // one per camera of the ring (at most 32) and one per connection.
            latency: Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"),
        }
    }
}

impl Counters {
    fn sent(&mut self, bytes: usize, latency_us: u64) {
        self.sent += 1;
        self.window_sent += 1;
        self.bytes += bytes as u64;
        self.latency.saturating_record(latency_us.max(1));
    }

    /// fps and latency of the window, then a new window.
    fn take_window(&mut self, secs: f64) -> (f64, Percentiles) {
        let fps = if secs > 0.0 {
            self.window_sent as f64 / secs
        } else {
            0.0
        };
        let latency = if self.latency.is_empty() {
            Percentiles::default()
        } else {
            Percentiles {
                p50: self.latency.value_at_quantile(0.5) as f64,
                p99: self.latency.value_at_quantile(0.99) as f64,
            }
        };
        self.window_sent = 0;
        self.latency.reset();
        (fps, latency)
    }
}

/// One client of an adapter, whatever its transport.
#[derive(Debug)]
pub struct Session<F> {
    ring: String,
    status: RingStatus,
    cadence: Cadence,
    settings: Settings,
    paused: bool,
    auto: Auto,
    considered: u64,
    next_due: Option<Instant>,
    connection: Counters,
    cameras: Vec<(u32, Counters)>,
    window_start: Instant,
    window_offered: u64,
    window_dropped: u64,
    stats_due: Instant,
    stats_sent: u64,
    pending: Option<F>,
    texts: VecDeque<ServerMessage>,
    close: Option<Close>,
    closed: bool,
}

impl<F: Offered> Session<F> {
    /// A client of ring `ring` (whose status is `status`) with `settings`, connected at
    /// `now`. Its first output is the `state` message.
    pub fn new(
        ring: impl Into<String>,
        status: RingStatus,
        settings: Settings,
        cadence: Cadence,
        now: Now,
    ) -> Session<F> {
        let stats_due = now.at + cadence.stats;
        let mut s = Session {
            ring: ring.into(),
            status,
            cadence,
            settings,
            paused: false,
            auto: Auto::default(),
            considered: 0,
            next_due: None,
            connection: Counters::default(),
            cameras: Vec::new(),
            window_start: now.at,
            window_offered: 0,
            window_dropped: 0,
            stats_due,
            stats_sent: 0,
            pending: None,
            texts: VecDeque::new(),
            close: None,
            closed: false,
        };
        s.queue_state();
        s
    }

    /// The effective settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the client paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Whether camera `id` is wanted.
    pub fn wants_camera(&self, id: u32) -> bool {
        self.settings.cameras.contains(id)
    }

    /// Whether a frame is pending.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether JSON messages are queued.
    pub fn has_texts(&self) -> bool {
        !self.texts.is_empty()
    }

    /// Whether [`Session::close`] was called (no frame is offered or given out after).
    pub fn is_closing(&self) -> bool {
        self.close.is_some() || self.closed
    }

    /// The `state` message now.
    pub fn state(&self) -> ServerMessage {
        ServerMessage::State(State {
            version: wire::VERSION,
            ring: self.ring.clone(),
            producer: self.status.producer,
            cameras: self.status.cameras.clone(),
            settings: self.settings.clone(),
            paused: self.paused,
        })
    }

    fn queue(&mut self, message: ServerMessage) {
        if self.closed {
            return;
        }
        if self.texts.len() >= MAX_QUEUED_TEXTS {
            self.texts.pop_front();
        }
        self.texts.push_back(message);
    }

    fn queue_state(&mut self) {
        let state = self.state();
        self.queue(state);
    }

    /// The ring's newest multi-frame, which arrived at `now`: whether this client takes
    /// it (pause, skip factor, frame-rate cap, camera subset, staleness). Taken, it is the
    /// pending frame; the one it replaces is counted dropped.
    pub fn handle_frame(&mut self, now: Now, frame: F) -> Offer {
        if self.is_closing() || now.wall_ns.saturating_sub(frame.read_ns()) >= STALE_NS {
            return Offer::Pass;
        }
        if self.paused {
            return Offer::Pass;
        }
        self.considered += 1;
        if self.settings.skip > 1
            && !(self.considered - 1).is_multiple_of(u64::from(self.settings.skip))
        {
            return Offer::Pass;
        }
        if self.mask(&frame) == 0 || !self.rate_allows(now.at) {
            return Offer::Pass;
        }
        self.window_offered += 1;
        match self.pending.replace(frame) {
            Some(old) => {
                self.count_dropped(&old);
                Offer::Replaced
            }
            None => Offer::Pending,
        }
    }

    /// The frame-rate cap: whether a frame at `now` may be taken (and if so, the next due
    /// time moves on).
    fn rate_allows(&mut self, now: Instant) -> bool {
        if self.settings.fps <= 0.0 {
            return true;
        }
        // A cap so low its period does not fit a Duration (or an Instant) takes one frame
        // and then none: the same as waiting longer than the process lives.
        let period = Duration::try_from_secs_f64(1.0 / self.settings.fps).ok();
        let Some(period) = period.filter(|p| now.checked_add(*p).is_some()) else {
            if self.next_due.is_some() {
                return false;
            }
            self.next_due = Some(now);
            return true;
        };
        // A quarter period of slack, so a cap at half the ring's rate takes every other
        // frame despite jitter; the schedule never falls behind by more than a period, so
        // a pause does not give a burst.
        if let Some(due) = self.next_due {
            if now + period / 4 < due {
                return false;
            }
            let late = due.checked_add(period).is_none_or(|d| now > d);
            let base = if late { now } else { due };
            self.next_due = Some(base.checked_add(period).unwrap_or(base));
        } else {
            self.next_due = Some(now + period);
        }
        true
    }

    /// Bit `i` set for every camera `i` of `frame` this client wants.
    pub fn mask(&self, frame: &F) -> u32 {
        frame
            .cameras()
            .take(32)
            .enumerate()
            .filter(|(_, (id, _, _))| self.wants_camera(*id))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// A text control message from the client. A bad one is answered with an `error`
    /// (and returned, for the adapter's metrics); a good one with the new `state`.
    pub fn handle_control(&mut self, text: &str) -> Result<(), ControlError> {
        match ClientMessage::from_json(text) {
            Ok(m) => {
                self.handle_message(&m);
                Ok(())
            }
            Err(e) => {
                self.queue(ServerMessage::error(&e));
                Err(e)
            }
        }
    }

    /// A control message from the client; answered with the new `state`. After a
    /// `pause`, nothing follows that `state` but the frame the pump is already sending.
    pub fn handle_message(&mut self, message: &ClientMessage) {
        match message {
            ClientMessage::Settings(update) => {
                self.settings.apply(update);
                // The frame-rate cap starts over.
                self.next_due = None;
                if update.quality == Some(Quality::Auto) {
                    self.auto = Auto::default();
                }
            }
            ClientMessage::Pause => {
                self.paused = true;
                self.pending = None;
            }
            ClientMessage::Resume => self.paused = false,
        }
        self.queue_state();
    }

    /// The producer's status or the ring's cameras changed: a `log` line and the new
    /// `state`.
    pub fn handle_status(&mut self, status: RingStatus) {
        self.status = status;
        let log = producer_log(&self.ring, self.status.producer);
        self.queue(log);
        self.queue_state();
    }

    /// A frame the pump took was delivered, at `now`: `cameras` gives, per camera sent,
    /// its id, payload bytes (0 when missing) and capture time; `bytes` is the whole
    /// message.
    pub fn handle_sent(&mut self, now: Now, cameras: &[(u32, usize, u64)], bytes: usize) {
        let done = now.wall_ns;
        let oldest = cameras
            .iter()
            .map(|&(_, _, capture)| capture)
            .filter(|&c| c > 0)
            .min()
            .unwrap_or(done);
        self.connection
            .sent(bytes, done.saturating_sub(oldest) / 1000);
        for &(id, bytes, capture) in cameras {
            if bytes > 0 {
                self.camera(id)
                    .sent(bytes, done.saturating_sub(capture) / 1000);
            }
        }
    }

    /// A frame the pump took will not be delivered (superseded, reset, abandoned): it is
    /// counted dropped.
    pub fn handle_lost(&mut self, frame: &F) {
        self.count_dropped(frame);
    }

    fn count_dropped(&mut self, frame: &F) {
        self.connection.dropped += 1;
        self.window_dropped += 1;
        for (id, _, _) in frame.cameras() {
            if self.wants_camera(id) {
                self.camera(id).dropped += 1;
            }
        }
    }

    fn camera(&mut self, id: u32) -> &mut Counters {
        let i = match self.cameras.binary_search_by_key(&id, |(c, _)| *c) {
            Ok(i) => i,
            Err(i) => {
                self.cameras.insert(i, (id, Counters::default()));
                i
            }
        };
        &mut self.cameras[i].1
    }

    /// When [`Session::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Instant {
        self.stats_due
    }

    /// Time passed: at the stats cadence, a `stats` message (then the adaptive quality
    /// steps, and a `state` follows when it changed or the cadence asks for one).
    pub fn handle_timeout(&mut self, now: Now) {
        if now.at < self.stats_due {
            return;
        }
        // Missed ticks are not made up: the next one is a period from the last due one,
        // or from now if that is already past.
        self.stats_due += self.cadence.stats;
        if self.stats_due <= now.at {
            self.stats_due = now.at + self.cadence.stats;
        }
        let (stats, changed) = self.stats(now);
        self.queue(ServerMessage::Stats(stats));
        self.stats_sent += 1;
        let every = self.cadence.state_every;
        if changed || (every > 0 && self.stats_sent.is_multiple_of(every)) {
            self.queue_state();
        }
    }

    /// The `stats` of the window since the last call; then steps the adaptive quality.
    /// Returns the message and whether the adaptive level changed.
    fn stats(&mut self, now: Now) -> (Stats, bool) {
        let secs = now
            .at
            .saturating_duration_since(self.window_start)
            .as_secs_f64();
        self.window_start = now.at;
        let (fps, latency_us) = self.connection.take_window(secs);
        let quality = match self.settings.quality {
            Quality::Fixed(q) => Some(q),
            Quality::Auto => Some(self.auto.quality()),
        };
        let connection = ConnectionStats {
            fps,
            sent: self.connection.sent,
            dropped: self.connection.dropped,
            bytes: self.connection.bytes,
            latency_us,
            quality,
        };
        let cameras = self
            .cameras
            .iter_mut()
            .map(|(id, c)| {
                let (fps, latency_us) = c.take_window(secs);
                CameraStats {
                    id: *id,
                    fps,
                    sent: c.sent,
                    dropped: c.dropped,
                    bytes: c.bytes,
                    latency_us,
                }
            })
            .collect();
        let changed = self.settings.quality == Quality::Auto
            && self.auto.step(self.window_offered, self.window_dropped);
        self.window_offered = 0;
        self.window_dropped = 0;
        let stats = Stats {
            time_ms: now.wall_ns / 1_000_000,
            connection,
            cameras,
        };
        (stats, changed)
    }

    /// The variant this client is sent for a frame whose widest camera is `width` ×
    /// `height`.
    pub fn variant(&self, width: u32, height: u32) -> Variant {
        let s = &self.settings;
        match s.quality {
            Quality::Fixed(q) => Variant {
                quality: q,
                max_width: s.max_width,
                max_height: s.max_height,
            },
            Quality::Auto => {
                let scale = self.auto.scale();
                let limit = |user: u32, ring: u32| {
                    if scale >= 1.0 {
                        return user;
                    }
                    let auto = ((f64::from(ring) * scale).round() as u32).max(8);
                    if user == 0 {
                        auto
                    } else {
                        user.min(auto)
                    }
                };
                Variant {
                    quality: self.auto.quality(),
                    max_width: limit(s.max_width, width),
                    max_height: limit(s.max_height, height),
                }
            }
        }
    }

    /// Ends the session: the texts queued go out (unless the connection is
    /// [`Close::Lost`]), then the pump closes with `close`. No frame is offered or given
    /// out any more; a second call changes nothing.
    pub fn close(&mut self, close: Close) {
        if !self.is_closing() {
            self.pending = None;
            if close == Close::Lost {
                self.texts.clear();
            }
            self.close = Some(close);
        }
    }

    /// The next JSON message to send, oldest first.
    pub fn poll_text(&mut self) -> Option<ServerMessage> {
        self.texts.pop_front()
    }

    /// The pending frame, to make and send now, with its variant and cameras.
    pub fn poll_frame(&mut self) -> Option<Job<F>> {
        if self.is_closing() {
            return None;
        }
        let frame = self.pending.take()?;
        let (w, h) = frame
            .cameras()
            .fold((0, 0), |(w, h), (_, cw, ch)| (w.max(cw), h.max(ch)));
        Some(Job {
            variant: self.variant(w, h),
            mask: self.mask(&frame),
            frame,
        })
    }

    /// What to send next on a transport with one channel: texts first, then the close
    /// (once; nothing follows it), then the pending frame.
    pub fn poll_output(&mut self) -> Option<Output<F>> {
        if let Some(text) = self.poll_text() {
            return Some(Output::Text(text));
        }
        if let Some(close) = self.close.take() {
            self.closed = true;
            return Some(Output::Close(close));
        }
        self.poll_frame().map(Output::Frame)
    }

    /// The close asked for, once the texts before it went out (for a transport whose
    /// texts and frames go separately).
    pub fn poll_close(&mut self) -> Option<Close> {
        if !self.texts.is_empty() {
            return None;
        }
        let close = self.close.take()?;
        self.closed = true;
        Some(close)
    }
}

/// The `log` message telling a client the producer's status changed.
pub fn producer_log(ring: &str, producer: ProducerStatus) -> ServerMessage {
    let (level, message) = match producer {
        ProducerStatus::Live => (LogLevel::Info, format!("ring {ring:?}: producer live")),
        ProducerStatus::Waiting => (
            LogLevel::Info,
            format!("ring {ring:?}: waiting for a producer"),
        ),
        ProducerStatus::Stopped => (LogLevel::Warn, format!("ring {ring:?}: producer stopped")),
        ProducerStatus::Dead => (LogLevel::Warn, format!("ring {ring:?}: producer died")),
    };
    ServerMessage::Log(LogEntry { level, message })
}

#[cfg(test)]
mod tests;
