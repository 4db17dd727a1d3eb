//! One client's view of the stream, whatever its transport: its settings, which frames
//! it is offered (pause, skip factor, frame-rate cap, camera subset), the variant it is
//! sent, the adaptive quality, and its statistics.

use std::time::{Duration, Instant};

use camring_protocol::control::{
    CameraSet, CameraStats, ClientMessage, ConnectionStats, LogEntry, LogLevel, Percentiles,
    ProducerStatus, Quality, ServerMessage, Settings, SettingsUpdate, State as StreamState, Stats,
};
use camring_protocol::wire;
use camring_shm::clock::now_ns;
use hdrhistogram::Histogram;

use crate::encode::{Built, Variant};
use crate::ring::RingStatus;

/// The `state` message telling a client the stream as it is now: the ring, its producer
/// and cameras, and this client's settings and pause.
pub fn state_message(ring: &str, status: &RingStatus, session: &Session) -> ServerMessage {
    ServerMessage::State(StreamState {
        version: wire::VERSION,
        ring: ring.to_owned(),
        producer: status.producer,
        cameras: status.cameras.clone(),
        settings: session.settings().clone(),
        paused: session.paused(),
    })
}

/// The `log` message sent to clients when the producer's status changes.
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

/// Qualities `quality=auto` steps through, best first.
pub const AUTO_QUALITIES: [u8; 7] = [90, 80, 70, 60, 50, 40, 30];
/// Sizes (fractions of the ring's) `quality=auto` steps through once quality is lowest.
pub const AUTO_SCALES: [f64; 5] = [1.0, 0.75, 0.5, 0.375, 0.25];
/// Where `quality=auto` starts: 80.
const AUTO_START: usize = 1;

/// The adaptive quality of one client: lowers quality, then size, while the client drops
/// frames; raises size, then quality, after a run of windows without drops. The run it
/// needs doubles (up to 16 windows) each time a raise is followed by drops, so a client
/// at the edge of its bandwidth settles instead of oscillating.
#[derive(Debug, Clone)]
pub struct Auto {
    quality: usize,
    scale: usize,
    good: u32,
    needed: u32,
    raised: bool,
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            quality: AUTO_START,
            scale: 0,
            good: 0,
            needed: 2,
            raised: false,
        }
    }
}

impl Auto {
    /// The quality now.
    pub fn quality(&self) -> u8 {
        AUTO_QUALITIES[self.quality]
    }

    /// The fraction of the ring's size now.
    pub fn scale(&self) -> f64 {
        AUTO_SCALES[self.scale]
    }

    /// Takes one stats window into account: `offered` frames, of which `dropped` were
    /// replaced before they were sent. Returns whether the level changed.
    pub fn step(&mut self, offered: u64, dropped: u64) -> bool {
        if offered == 0 {
            return false;
        }
        if dropped * 10 > offered {
            self.good = 0;
            if self.raised {
                self.needed = (self.needed * 2).min(16);
                self.raised = false;
            }
            if self.quality + 1 < AUTO_QUALITIES.len() {
                self.quality += 1;
            } else if self.scale + 1 < AUTO_SCALES.len() {
                self.scale += 1;
            } else {
                return false;
            }
            return true;
        }
        self.raised = false;
        if dropped > 0 {
            return false;
        }
        self.good += 1;
        if self.good < self.needed {
            return false;
        }
        self.good = 0;
        if self.scale > 0 {
            self.scale -= 1;
        } else if self.quality > 0 {
            self.quality -= 1;
        } else {
            return false;
        }
        self.raised = true;
        true
    }
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

/// What a client decided about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Send it.
    Take,
    /// Not for this client (paused, skip factor, frame-rate cap).
    Pass,
}

/// One client.
#[derive(Debug)]
pub struct Session {
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
}

impl Session {
    /// A client with `settings`.
    pub fn new(settings: Settings) -> Session {
        Session {
            settings,
            paused: false,
            auto: Auto::default(),
            considered: 0,
            next_due: None,
            connection: Counters::default(),
            cameras: Vec::new(),
            window_start: Instant::now(),
            window_offered: 0,
            window_dropped: 0,
        }
    }

    /// The effective settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the client paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Applies a control message.
    pub fn control(&mut self, message: &ClientMessage) {
        match message {
            ClientMessage::Settings(update) => self.apply(update),
            ClientMessage::Pause => self.paused = true,
            ClientMessage::Resume => self.paused = false,
        }
    }

    /// Applies a settings change (the frame-rate cap starts over).
    pub fn apply(&mut self, update: &SettingsUpdate) {
        self.settings.apply(update);
        self.next_due = None;
        if update.quality == Some(Quality::Auto) {
            self.auto = Auto::default();
        }
    }

    /// Whether to send a frame that arrived at `now`: pause, skip factor, frame-rate cap.
    pub fn offer(&mut self, now: Instant) -> Offer {
        if self.paused {
            return Offer::Pass;
        }
        self.considered += 1;
        if self.settings.skip > 1 && (self.considered - 1) % u64::from(self.settings.skip) != 0 {
            return Offer::Pass;
        }
        if self.settings.fps > 0.0 {
            let period = Duration::from_secs_f64(1.0 / self.settings.fps);
            // A quarter period of slack, so a cap at half the ring's rate takes every
            // other frame despite jitter; the schedule never falls behind by more than a
            // period, so a pause does not give a burst.
            if let Some(due) = self.next_due {
                if now + period / 4 < due {
                    return Offer::Pass;
                }
                let base = if now > due + period { now } else { due };
                self.next_due = Some(base + period);
            } else {
                self.next_due = Some(now + period);
            }
        }
        self.window_offered += 1;
        Offer::Take
    }

    /// The variant this client is sent for a ring whose widest camera is `width` ×
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

    /// Whether camera `id` is wanted.
    pub fn wants_camera(&self, id: u32) -> bool {
        self.settings.cameras.contains(id)
    }

    /// The camera subset asked for.
    pub fn cameras(&self) -> &CameraSet {
        &self.settings.cameras
    }

    fn camera(&mut self, id: u32) -> &mut Counters {
        let i = match self.cameras.iter().position(|(c, _)| *c == id) {
            Some(i) => i,
            None => {
                self.cameras.push((id, Counters::default()));
                self.cameras.sort_by_key(|(c, _)| *c);
                self.cameras
                    .iter()
                    .position(|(c, _)| *c == id)
                    .expect("just added")
            }
        };
        &mut self.cameras[i].1
    }

    /// A frame with `cameras` (ids) was replaced before it was sent.
    pub fn dropped(&mut self, cameras: impl IntoIterator<Item = u32>) {
        self.connection.dropped += 1;
        self.window_dropped += 1;
        for id in cameras {
            self.camera(id).dropped += 1;
        }
    }

    /// `built` was sent, its last byte handed to the kernel at `done_ns`.
    pub fn sent(&mut self, built: &Built, done_ns: u64) {
        let oldest = built
            .cameras
            .iter()
            .map(|&(_, _, capture)| capture)
            .filter(|&c| c > 0)
            .min()
            .unwrap_or(done_ns);
        self.connection
            .sent(built.bytes.len(), done_ns.saturating_sub(oldest) / 1000);
        for &(id, bytes, capture) in &built.cameras {
            if bytes > 0 {
                self.camera(id)
                    .sent(bytes, done_ns.saturating_sub(capture) / 1000);
            }
        }
    }

    /// The `stats` message for the window since the last call; then steps the adaptive
    /// quality. Returns the message and whether the adaptive level changed.
    pub fn stats(&mut self, now: Instant) -> (Stats, bool) {
        let secs = now.duration_since(self.window_start).as_secs_f64();
        self.window_start = now;
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
            time_ms: now_ns() / 1_000_000,
            connection,
            cameras,
        };
        (stats, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_lowers_quality_then_size_and_settles() {
        let mut a = Auto::default();
        assert_eq!((a.quality(), a.scale()), (80, 1.0));
        // Dropping a third of the frames: down one step per window.
        for q in [70, 60, 50, 40, 30] {
            assert!(a.step(30, 10));
            assert_eq!(a.quality(), q);
        }
        assert!(a.step(30, 10));
        assert_eq!((a.quality(), a.scale()), (30, 0.75));
        // Keeping up: raises after two good windows, size first.
        assert!(!a.step(30, 0));
        assert!(a.step(30, 0));
        assert_eq!((a.quality(), a.scale()), (30, 1.0));
        // Dropping right after a raise doubles the run needed.
        assert!(a.step(30, 10));
        for _ in 0..3 {
            assert!(!a.step(30, 0));
        }
        assert!(a.step(30, 0));
        // A few drops (<= 10 %) neither lower nor count as good.
        assert!(!a.step(30, 3));
        // No frames offered: nothing to learn.
        assert!(!a.step(0, 0));
    }

    #[test]
    fn auto_bottoms_out() {
        let mut a = Auto::default();
        while a.step(10, 10) {}
        assert_eq!((a.quality(), a.scale()), (30, 0.25));
        assert!(!a.step(10, 10));
    }

    #[test]
    fn fps_cap_takes_every_other_frame_at_half_rate_despite_jitter() {
        let mut s = Session::new(Settings {
            fps: 15.0,
            ..Settings::default()
        });
        let start = Instant::now();
        let mut taken = 0;
        for i in 0..300u64 {
            // 30 fps with +-3 ms of jitter.
            let jitter = Duration::from_millis((i * 5) % 7);
            let t = start + Duration::from_micros(i * 33_333) + jitter;
            if s.offer(t) == Offer::Take {
                taken += 1;
            }
        }
        assert!((148..=152).contains(&taken), "taken {taken}");
    }

    #[test]
    fn skip_and_pause() {
        let mut s = Session::new(Settings {
            skip: 3,
            ..Settings::default()
        });
        let now = Instant::now();
        let taken: Vec<_> = (0..9).map(|_| s.offer(now) == Offer::Take).collect();
        assert_eq!(
            taken,
            [true, false, false, true, false, false, true, false, false]
        );
        s.control(&ClientMessage::Pause);
        assert!((0..5).all(|_| s.offer(now) == Offer::Pass));
        s.control(&ClientMessage::Resume);
        assert_eq!(s.offer(now), Offer::Take);
    }

    #[test]
    fn auto_variant_scales_the_ring_size_within_the_user_limit() {
        let mut s = Session::new(Settings {
            quality: Quality::Auto,
            max_width: 600,
            ..Settings::default()
        });
        assert_eq!(
            s.variant(1280, 720),
            Variant {
                quality: 80,
                max_width: 600,
                max_height: 0
            }
        );
        s.auto = Auto {
            quality: AUTO_QUALITIES.len() - 1,
            scale: 2,
            ..Auto::default()
        };
        assert_eq!(
            s.variant(1280, 720),
            Variant {
                quality: 30,
                max_width: 600,
                max_height: 360
            }
        );
    }
}
