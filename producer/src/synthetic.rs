//! The synthetic multi-camera source, written straight into ring slots.

use camring_jpeg::{Encoder, JpegError};
use camring_protocol::layout::{CameraEntry, CameraLayout, CAM_SYNTHETIC};
use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;
use camring_shm::{RingConfig, WriteError, Writer};

use std::time::{Duration, Instant};

use crate::frame::{Feed, Image, Stop};
use crate::source::{Source, SourceError, SyntheticSpec};
use crate::FrameClock;

/// The synthetic group: `cameras` cameras of one size and format.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Number of cameras (1..=16).
    pub cameras: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Format written into the ring.
    pub format: PixelFormat,
    /// JPEG quality when `format` is JPEG.
    pub quality: u8,
    /// Group frame rate.
    pub fps: f64,
}

/// Why the synthetic producer cannot run.
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
    /// Bad camera count or rate.
    #[error("{0}")]
    Config(&'static str),
    /// JPEG encoding failed.
    #[error(transparent)]
    Jpeg(#[from] JpegError),
    /// The slot could not take the frame.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl SyntheticConfig {
    fn raw_format(&self) -> PixelFormat {
        if self.format == PixelFormat::Jpeg {
            PixelFormat::Rgb8
        } else {
            self.format
        }
    }

    fn geometry(&self) -> Result<Geometry, SyntheticError> {
        let raw = self.raw_format();
        let stride = raw.min_stride(self.width).unwrap_or(0) as usize;
        Geometry::new(raw, self.width, self.height, stride).ok_or(SyntheticError::Geometry {
            width: self.width,
            height: self.height,
            format: self.format,
        })
    }

    /// The ring layout this group needs, with `slots` slots.
    pub fn ring_config(&self, slots: u32) -> Result<RingConfig, SyntheticError> {
        if self.cameras == 0 || self.cameras > 16 {
            return Err(SyntheticError::Config("--cameras must be 1..=16"));
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 10_000.0) {
            return Err(SyntheticError::Config("--fps must be in (0, 10000]"));
        }
        self.geometry()?;
        let max_len = self.format.max_payload_len(self.width, self.height);
        let max_len = u32::try_from(max_len)
            .map_err(|_| SyntheticError::Config("a camera image must be under 4 GiB"))?;
        let cam = CameraLayout {
            width: self.width,
            height: self.height,
            format: self.format.code(),
            max_len,
        };
        Ok(RingConfig::new(
            slots,
            vec![cam; self.cameras as usize],
            (self.fps * 1000.0).round() as u32,
        ))
    }
}

/// Writes synthetic multi-frames into a ring: raw patterns straight into the slot, JPEG
/// encoded from a scratch RGB image straight into the slot.
#[derive(Debug)]
pub struct SyntheticProducer {
    config: SyntheticConfig,
    geometry: Geometry,
    encoder: Option<Encoder>,
    scratch: Vec<u8>,
    sequence: u64,
}

impl SyntheticProducer {
    /// A producer for `config`.
    pub fn new(config: SyntheticConfig) -> Result<Self, SyntheticError> {
        let geometry = config.geometry()?;
        let encoder = match config.format {
            PixelFormat::Jpeg => Some(Encoder::new(config.quality)?),
            _ => None,
        };
        let scratch = if encoder.is_some() {
            vec![0; geometry.len()]
        } else {
            Vec::new()
        };
        Ok(SyntheticProducer {
            config,
            geometry,
            encoder,
            scratch,
            sequence: 0,
        })
    }

    /// The group's own frame counter (encoded in the pixels), for the next frame.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Captures one multi-frame (every camera at `capture_ns`) and publishes it. Returns
    /// the ring frame number.
    pub fn publish(&mut self, writer: &mut Writer, capture_ns: u64) -> Result<u64, SyntheticError> {
        let seq = self.sequence;
        let g = self.geometry;
        let c = &self.config;
        let mut loan = writer.loan();
        for cam in 0..c.cameras {
            let entry = CameraEntry {
                camera_id: cam,
                format: c.format.code(),
                width: c.width,
                height: c.height,
                stride: if c.format.is_raw() {
                    g.stride as u32
                } else {
                    0
                },
                flags: CAM_SYNTHETIC,
                capture_ns,
                sequence: seq,
                ..CameraEntry::default()
            };
            match &mut self.encoder {
                None => {
                    let buf = loan.push_camera(entry, g.len())?;
                    pattern::fill(buf, &g, cam, seq);
                }
                Some(enc) => {
                    pattern::fill(&mut self.scratch, &g, cam, seq);
                    let max = usize::try_from(loan.remaining()).unwrap_or(usize::MAX);
                    let scratch = &self.scratch;
                    loan.push_camera_with(entry, max, |out| {
                        enc.encode_into(
                            scratch,
                            PixelFormat::Rgb8,
                            c.width,
                            c.height,
                            g.stride,
                            out,
                        )
                        .map_err(SyntheticError::from)
                    })?;
                }
            }
        }
        let n = loan.commit(capture_ns, 0)?;
        self.sequence += 1;
        Ok(n)
    }

    /// Runs at the configured rate until `stop` returns true; calls `on_frame` after each
    /// publish with the ring frame number.
    pub fn run(
        &mut self,
        writer: &mut Writer,
        mut stop: impl FnMut() -> bool,
        mut on_frame: impl FnMut(u64),
    ) -> Result<(), SyntheticError> {
        let mut clock = crate::FrameClock::new(self.config.fps);
        while !stop() {
            clock.wait();
            if stop() {
                break;
            }
            let n = self.publish(writer, now_ns())?;
            on_frame(n);
        }
        Ok(())
    }
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
        })
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
        let mut clock = FrameClock::new(self.fps);
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
