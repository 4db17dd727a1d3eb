//! A camera group: its sources, each on its own thread, the synchroniser on the group's
//! frame clock, and the rings it writes.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camring_protocol::layout::CameraLayout;
use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;
use serde::Serialize;

use crate::frame::{Feed, FeedStats, SourceState, Stop};
use crate::output::{conversion, OutputStats, RingFormat, RingOutput, RingSpec};
use crate::source::{self, Source, SourceSpec};
pub use crate::sync::DEFAULT_HOLD;
use crate::sync::{MultiFrame, PickStats, SyncPolicy, Synchroniser};
use crate::synthetic::SyntheticSource;
use crate::FrameClock;

/// Nominal size assumed for a camera device when none is asked for.
pub const DEFAULT_CAMERA_SIZE: (u32, u32) = (1920, 1080);

/// One camera of the group.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// Name shown in stats and logs.
    pub name: String,
    /// Where its images come from.
    pub source: SourceSpec,
    /// Freshness tolerance for this camera (default: from the group's and the camera's
    /// periods, see [`SyncPolicy::for_periods`]).
    pub tolerance: Option<Duration>,
}

impl CameraConfig {
    /// Camera `index` of the group from `source`, with defaults.
    pub fn new(index: usize, source: SourceSpec) -> Self {
        CameraConfig {
            name: format!("cam{index}"),
            source,
            tolerance: None,
        }
    }
}

/// A camera group and the rings it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// The group's frame rate: one multi-frame per tick.
    pub fps: f64,
    /// A camera whose newest image is older than this is missing, not repeated.
    pub hold: Duration,
    /// The cameras, in order (camera ids 0, 1, ...).
    pub cameras: Vec<CameraConfig>,
    /// The rings to write, each from the same capture.
    pub rings: Vec<RingSpec>,
}

/// Why a group cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The configuration cannot work; the message names the field.
    #[error("{0}")]
    Config(String),
    /// A ring could not be created.
    #[error("ring {ring:?}")]
    Create {
        /// The ring.
        ring: String,
        /// Why.
        #[source]
        source: camring_shm::CreateError,
    },
    /// A frame could not be published.
    #[error("ring {ring:?}")]
    Write {
        /// The ring.
        ring: String,
        /// Why.
        #[source]
        source: camring_shm::WriteError,
    },
}

/// What the cameras capture, as far as it is known before they start.
#[derive(Debug, Clone, Copy)]
struct Capture {
    format: Option<PixelFormat>,
    size: Option<(u32, u32)>,
    max_jpeg: Option<usize>,
    period: Option<Duration>,
}

impl GroupConfig {
    fn check(&self) -> Result<(), GroupError> {
        let bad = |m: String| Err(GroupError::Config(m));
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 10_000.0) {
            return bad(format!("fps: {} is not in (0, 10000]", self.fps));
        }
        if self.cameras.is_empty() || self.cameras.len() > 16 {
            return bad(format!(
                "camera: a group has 1 to 16 cameras, not {}",
                self.cameras.len()
            ));
        }
        if self.rings.is_empty() {
            return bad("ring: no ring to write".into());
        }
        for (i, r) in self.rings.iter().enumerate() {
            if self.rings[..i].iter().any(|o| o.name == r.name) {
                return bad(format!("ring[{i}].name: {:?} is written twice", r.name));
            }
        }
        Ok(())
    }

    /// The raw format synthetic cameras without one of their own generate: the first
    /// raw ring's, else RGB8 (which JPEG rings encode).
    fn synthetic_default_format(&self) -> PixelFormat {
        self.rings
            .iter()
            .find_map(|r| match r.format {
                RingFormat::Fixed(f) if f.is_raw() => Some(f),
                _ => None,
            })
            .unwrap_or(PixelFormat::Rgb8)
    }

    fn capture(&self, cam: &CameraConfig) -> Capture {
        match &cam.source {
            SourceSpec::Synthetic(s) => Capture {
                format: Some(s.format.unwrap_or(self.synthetic_default_format())),
                size: Some((s.width, s.height)),
                max_jpeg: None,
                period: s.fps.map(|f| Duration::from_secs_f64(1.0 / f)),
            },
            SourceSpec::Camera(c) => Capture {
                format: c.format,
                size: Some(c.size.unwrap_or(DEFAULT_CAMERA_SIZE)),
                max_jpeg: None,
                period: c.fps.map(|f| Duration::from_secs_f64(1.0 / f)),
            },
            SourceSpec::Http(h) => Capture {
                format: Some(PixelFormat::Jpeg),
                size: h.size,
                max_jpeg: Some(h.max_len),
                period: None,
            },
        }
    }

    /// The nominal layout of camera `i` in `ring`: the format it is stored in and the
    /// room its slot gives it.
    fn layout(&self, i: usize, ring: &RingSpec) -> Result<CameraLayout, GroupError> {
        let cam = &self.cameras[i];
        let cap = self.capture(cam);
        let (w, h) = cap.size.unwrap_or((0, 0));
        let stored = match (ring.format, cap.format) {
            (RingFormat::Native, Some(f)) => f,
            // A camera device that may deliver MJPEG or raw: room for either.
            (RingFormat::Native, None) => PixelFormat::Jpeg,
            (RingFormat::Fixed(f), _) => f,
        };
        if let Some(from) = cap.format {
            if conversion(from, ring.format).is_none() {
                return Err(GroupError::Config(format!(
                    "ring {:?} (format {}): camera[{i}] ({}) delivers {from}, which cannot be converted to {stored}; JPEG converts to and from rgb8, bgr8 and gray8 only",
                    ring.name, ring.format, cam.source
                )));
            }
        }
        let max_len = match (stored, cap.max_jpeg) {
            (PixelFormat::Jpeg, Some(max)) => max as u64,
            _ => {
                if cap.size.is_none() {
                    return Err(GroupError::Config(format!(
                        "camera[{i}].size: ring {:?} stores {} as {stored}, which needs the image size ({} does not say it)",
                        ring.name, cam.source, cam.source
                    )));
                }
                stored.max_payload_len(w, h)
            }
        };
        let max_len = u32::try_from(max_len).map_err(|_| {
            GroupError::Config(format!("camera[{i}]: an image must be under 4 GiB"))
        })?;
        Ok(CameraLayout {
            width: w,
            height: h,
            format: stored.code(),
            max_len,
        })
    }

    /// Asks each camera device without a size for the mode it will stream in, so its
    /// ring room fits what it delivers.
    #[cfg(feature = "camera")]
    fn probe_cameras(&mut self) -> Result<(), GroupError> {
        let fps = self.fps;
        for (i, cam) in self.cameras.iter_mut().enumerate() {
            if let SourceSpec::Camera(c) = &mut cam.source {
                if c.size.is_none() {
                    let mode = crate::camera::probe(c, fps).map_err(|e| {
                        GroupError::Config(format!("camera[{i}] (camera:{}): {e}", c.device))
                    })?;
                    c.size = Some((mode.width, mode.height));
                    c.fps = Some(f64::from(mode.fps));
                    c.format = Some(mode.format);
                }
            }
        }
        Ok(())
    }

    fn source(&self, i: usize, epoch: Instant) -> Result<Box<dyn Source>, GroupError> {
        let cam = &self.cameras[i];
        match &cam.source {
            SourceSpec::Synthetic(s) => {
                let format = self.capture(cam).format.unwrap_or(PixelFormat::Rgb8);
                let src = SyntheticSource::new(s.clone(), i as u32, format, self.fps)
                    .map_err(|e| GroupError::Config(format!("camera[{i}] ({}): {e}", cam.source)))?
                    .with_epoch(epoch);
                Ok(Box::new(src))
            }
            SourceSpec::Http(h) => Ok(Box::new(crate::http::HttpSource::new(h.clone()))),
            #[cfg(feature = "camera")]
            SourceSpec::Camera(c) => Ok(Box::new(crate::camera::CameraSource::new(
                c.clone(),
                self.fps,
            ))),
            #[cfg(not(feature = "camera"))]
            SourceSpec::Camera(_) => Err(GroupError::Config(format!(
                "camera[{i}] ({}): this camring was built without camera support; rebuild with `cargo build --release --features camera`",
                cam.source
            ))),
        }
    }
}

/// What one tick produced.
#[derive(Debug, Clone)]
pub struct TickReport {
    /// The multi-frame written.
    pub frame: MultiFrame,
    /// The frame number in each ring.
    pub numbers: Vec<u64>,
    /// When the last ring published it (CLOCK_REALTIME ns).
    pub published_ns: u64,
}

/// One camera's state and counters.
#[derive(Debug, Clone, Serialize)]
pub struct CameraStats {
    /// Its name.
    pub name: String,
    /// Its source, as spelled on the command line.
    pub source: String,
    /// live, starting, down: why, stopped.
    pub state: String,
    /// The feed's counters.
    #[serde(flatten)]
    pub feed: FeedStats,
    /// The synchroniser's counts.
    #[serde(flatten)]
    pub picks: PickStats,
}

/// A running camera group.
#[derive(Debug)]
pub struct Group {
    config: GroupConfig,
    outputs: Vec<RingOutput>,
    sync: Synchroniser,
    stop: Stop,
    threads: Vec<JoinHandle<()>>,
    clock: FrameClock,
    epoch: Instant,
    started: bool,
}

/// Longest the first tick waits for every camera's first image.
pub const FIRST_IMAGE_WAIT: Duration = Duration::from_secs(1);

impl Group {
    /// Checks the configuration, creates the rings and starts every source.
    pub fn start(config: GroupConfig) -> Result<Group, GroupError> {
        config.check()?;
        #[cfg(feature = "camera")]
        let config = {
            let mut config = config;
            config.probe_cameras()?;
            config
        };
        let n = config.cameras.len();
        let epoch = Instant::now();
        let mut sources = Vec::with_capacity(n);
        for i in 0..n {
            sources.push(config.source(i, epoch)?);
        }
        let mut outputs = Vec::with_capacity(config.rings.len());
        for ring in &config.rings {
            let layouts = (0..n)
                .map(|i| config.layout(i, ring))
                .collect::<Result<Vec<_>, _>>()?;
            let out = RingOutput::create(ring.clone(), layouts, config.fps).map_err(|source| {
                GroupError::Create {
                    ring: ring.name.clone(),
                    source,
                }
            })?;
            outputs.push(out);
        }
        let group_period = Duration::from_secs_f64(1.0 / config.fps);
        let feeds: Vec<Arc<Feed>> = config
            .cameras
            .iter()
            .map(|c| Arc::new(Feed::new(c.name.clone())))
            .collect();
        let policies = config
            .cameras
            .iter()
            .map(|c| {
                let period = config.capture(c).period.unwrap_or(group_period);
                let mut p = SyncPolicy::for_periods(group_period, period);
                p.hold = config.hold.max(p.tolerance);
                if let Some(t) = c.tolerance {
                    p.tolerance = t;
                }
                p
            })
            .collect();
        let stop = Stop::new();
        let threads = sources
            .into_iter()
            .zip(&feeds)
            .map(|(src, feed)| source::spawn(src, feed.clone(), stop.clone()))
            .collect();
        let clock = FrameClock::new(config.fps);
        Ok(Group {
            epoch,
            started: false,
            sync: Synchroniser::new(feeds, policies),
            config,
            outputs,
            stop,
            threads,
            clock,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The rings being written.
    pub fn outputs(&self) -> &[RingOutput] {
        &self.outputs
    }

    /// Ring `i`'s writer (test tools that write frames of their own).
    pub fn writer_mut(&mut self, i: usize) -> &mut camring_shm::Writer {
        self.outputs[i].writer_mut()
    }

    /// Ticks the clock skipped because the producer was late.
    pub fn missed_ticks(&self) -> u64 {
        self.clock.missed()
    }

    /// Waits for the next tick (returns `None` if `stop` is requested meanwhile), then
    /// takes each camera's newest image and publishes the multi-frame into every ring.
    pub fn tick(&mut self, stop: &Stop) -> Result<Option<TickReport>, GroupError> {
        if !self.started {
            self.started = true;
            if self.start_clock(stop) {
                return Ok(None);
            }
        }
        let (_, deadline) = self.clock.next_after(Instant::now());
        let now = Instant::now();
        if deadline > now && stop.sleep(deadline - now) {
            return Ok(None);
        }
        // The tick's wall-clock time: now, less how late we woke.
        let tick_ns = now_ns().saturating_sub(
            Instant::now()
                .saturating_duration_since(deadline)
                .as_nanos() as u64,
        );
        let frame = self.sync.pick(tick_ns);
        let mut numbers = Vec::with_capacity(self.outputs.len());
        for out in &mut self.outputs {
            let n = out.write(&frame).map_err(|source| GroupError::Write {
                ring: out.spec().name.clone(),
                source,
            })?;
            numbers.push(n);
        }
        Ok(Some(TickReport {
            frame,
            numbers,
            published_ns: now_ns(),
        }))
    }

    /// Waits (up to [`FIRST_IMAGE_WAIT`]) for every camera's first image, so the group
    /// does not open with missing cameras, then starts the group clock on the synthetic
    /// cameras' grid, a quarter period (at most 10 ms) after they capture: their images
    /// are fresh when the tick takes them. Returns whether stop was requested.
    fn start_clock(&mut self, stop: &Stop) -> bool {
        let give_up = Instant::now() + FIRST_IMAGE_WAIT;
        while Instant::now() < give_up && self.sync.feeds().iter().any(|f| f.latest().is_none()) {
            if stop.sleep(Duration::from_millis(2)) {
                return true;
            }
        }
        let period = self.clock.period();
        let lead = (period / 4).min(Duration::from_millis(10));
        let since = Instant::now().saturating_duration_since(self.epoch);
        let n = (since.as_secs_f64() / period.as_secs_f64()).ceil();
        let start = self.epoch + period.mul_f64(n) + lead;
        self.clock = FrameClock::starting_at(start, self.config.fps);
        false
    }

    /// Per-camera state and counters.
    pub fn camera_stats(&self) -> Vec<CameraStats> {
        self.sync
            .feeds()
            .iter()
            .zip(self.sync.stats())
            .zip(&self.config.cameras)
            .map(|((feed, picks), cam)| CameraStats {
                name: cam.name.clone(),
                source: cam.source.to_string(),
                state: match feed.state() {
                    SourceState::Starting => "starting".into(),
                    SourceState::Live => "live".into(),
                    SourceState::Down(why) => format!("down: {why}"),
                    SourceState::Stopped => "stopped".into(),
                },
                feed: feed.stats(),
                picks: *picks,
            })
            .collect()
    }

    /// Per-ring counters.
    pub fn ring_stats(&self) -> Vec<(String, OutputStats)> {
        self.outputs
            .iter()
            .map(|o| (o.spec().name.clone(), o.stats()))
            .collect()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop.stop();
        // Sources notice stop within a fraction of a second; one still blocked in a
        // device or network call after a second is left to finish on its own rather than
        // holding the producer (and its rings) up.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
