//! The synthetic camera: the test pattern, whose pixels carry the camera and frame
//! number so any consumer can check an image is whole and correct, at its own rate, with
//! optional jitter, and stalling or dying on schedule for tests.

use std::time::{Duration, Instant};

use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;

use crate::frame::{Feed, Image, Stop};
use crate::source::{Source, SourceError, SyntheticSpec};
use crate::FrameClock;

/// Why a synthetic camera cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    /// The size or format cannot carry the pattern.
    #[error("{width}x{height} {format} cannot carry the synthetic pattern (need at least {min_w}x{min_h}; yuyv needs an even width, nv12 even width and height)",
        min_w = pattern::MIN_WIDTH, min_h = pattern::MIN_HEIGHT)]
    Geometry {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
        /// Format asked for.
        format: PixelFormat,
    },
    /// Bad rate.
    #[error("{0}")]
    Config(&'static str),
}

/// A synthetic camera on its own thread (a [`Source`]): the test pattern at its own rate,
/// with optional jitter, and a stall or a death on schedule (for tests).
#[derive(Debug)]
pub struct SyntheticSource {
    spec: SyntheticSpec,
    camera: u32,
    fps: f64,
    format: PixelFormat,
    geometry: Geometry,
    started: Instant,
    sequence: u64,
    died: bool,
    rng: fastrand::Rng,
    epoch: Instant,
}

impl SyntheticSource {
    /// Camera `camera` of the group (the id its pixels carry), generating `format` at
    /// `spec.fps`, or `group_fps` when the spec has no rate of its own.
    pub fn new(
        spec: SyntheticSpec,
        camera: u32,
        format: PixelFormat,
        group_fps: f64,
    ) -> Result<Self, SyntheticError> {
        let bad = SyntheticError::Geometry {
            width: spec.width,
            height: spec.height,
            format,
        };
        if !format.is_raw() {
            return Err(bad);
        }
        let stride = format.min_stride(spec.width).unwrap_or(0) as usize;
        let geometry = Geometry::new(format, spec.width, spec.height, stride).ok_or(bad)?;
        let fps = spec.fps.unwrap_or(group_fps);
        if !(fps.is_finite() && fps > 0.0 && fps <= 10_000.0) {
            return Err(SyntheticError::Config("fps must be in (0, 10000]"));
        }
        Ok(SyntheticSource {
            spec,
            camera,
            fps,
            format,
            geometry,
            started: Instant::now(),
            sequence: 0,
            died: false,
            rng: fastrand::Rng::with_seed(u64::from(camera) + 1),
            epoch: Instant::now(),
        })
    }

    /// Captures on the grid `epoch + n / fps` (default: from when it was made), so a
    /// group can tick just after its synthetic cameras capture.
    pub fn with_epoch(mut self, epoch: Instant) -> Self {
        self.epoch = epoch;
        self
    }

    /// Sleeps until `at` (since start) unless stopped first; returns whether stopped.
    fn sleep_until(&self, stop: &Stop, at: Duration) -> bool {
        let now = self.started.elapsed();
        at > now && stop.sleep(at - now)
    }
}

impl Source for SyntheticSource {
    fn run(&mut self, feed: &Feed, stop: &Stop) -> Result<(), SourceError> {
        if let (true, Some((at, down))) = (self.died, self.spec.die) {
            // Dead: comes back `down` after it died (like a device being re-plugged).
            if self.sleep_until(stop, at + down) {
                return Ok(());
            }
        }
        let g = self.geometry;
        let mut clock = FrameClock::starting_at(self.epoch, self.fps);
        loop {
            let (_, deadline) = clock.next_after(Instant::now());
            let mut wake = deadline.saturating_duration_since(Instant::now());
            if !self.spec.jitter.is_zero() {
                wake += self.spec.jitter.mul_f64(self.rng.f64());
            }
            if !wake.is_zero() && stop.sleep(wake) {
                return Ok(());
            }
            if stop.is_stopped() {
                return Ok(());
            }
            let now = self.started.elapsed();
            if let Some((at, dur)) = self.spec.stall {
                if now >= at && now < at + dur {
                    // Stalled: the thread blocks, delivering nothing.
                    if self.sleep_until(stop, at + dur) {
                        return Ok(());
                    }
                    continue;
                }
            }
            if let Some((at, _)) = self.spec.die {
                if !self.died && now >= at {
                    self.died = true;
                    return Err(SourceError::Died);
                }
            }
            let capture_ns = now_ns();
            let mut buf = feed.buffer(g.len());
            pattern::fill(&mut buf, &g, self.camera, self.sequence);
            let mut image = Image::new(
                self.format,
                self.spec.width,
                self.spec.height,
                g.stride as u32,
                capture_ns,
                self.sequence,
                buf,
            );
            image.synthetic = true;
            feed.publish(image);
            self.sequence += 1;
        }
    }
}
