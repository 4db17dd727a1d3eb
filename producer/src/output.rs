//! Writing multi-frames into a ring: per camera, the image is copied, encoded to JPEG or
//! decoded from JPEG as the ring's format asks, all cameras in parallel, straight into
//! the slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use camring_jpeg::{Decoder, Encoder};
use camring_protocol::layout::{CameraEntry, CameraLayout, CAM_REPEATED, CAM_SYNTHETIC};
use camring_protocol::PixelFormat;
use camring_shm::{RingConfig, WriteError, Writer};
use rayon::prelude::*;
use serde::Serialize;

use crate::frame::Image;
use crate::sync::{MultiFrame, Pick};

/// What a ring stores for its cameras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFormat {
    /// Each camera as it is captured (JPEG stays JPEG, raw stays raw).
    Native,
    /// Every camera in this format: raw images are encoded to JPEG, JPEG images decoded
    /// to RGB8, BGR8 or GRAY8, the same format copied.
    Fixed(PixelFormat),
}

impl std::str::FromStr for RingFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "native" {
            return Ok(RingFormat::Native);
        }
        s.parse::<PixelFormat>()
            .map(RingFormat::Fixed)
            .map_err(|_| {
                format!(
                    "unknown format {s:?}: expected native, rgb8, bgr8, gray8, yuyv, nv12 or jpeg"
                )
            })
    }
}

impl std::fmt::Display for RingFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingFormat::Native => f.write_str("native"),
            RingFormat::Fixed(p) => p.fmt(f),
        }
    }
}

/// How one captured image becomes its ring payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The bytes as they are.
    Copy,
    /// Raw RGB8/BGR8/GRAY8 encoded to JPEG.
    Encode,
    /// JPEG decoded to this raw format.
    Decode(PixelFormat),
}

/// The conversion that turns a `from` image into what a ring of `to` stores, if any.
pub fn conversion(from: PixelFormat, to: RingFormat) -> Option<Conversion> {
    let to = match to {
        RingFormat::Native => return Some(Conversion::Copy),
        RingFormat::Fixed(f) => f,
    };
    let jpeg_codec = [PixelFormat::Rgb8, PixelFormat::Bgr8, PixelFormat::Gray8];
    if from == to {
        Some(Conversion::Copy)
    } else if to == PixelFormat::Jpeg && jpeg_codec.contains(&from) {
        Some(Conversion::Encode)
    } else if from == PixelFormat::Jpeg && jpeg_codec.contains(&to) {
        Some(Conversion::Decode(to))
    } else {
        None
    }
}

/// One ring the producer writes.
#[derive(Debug, Clone, PartialEq)]
pub struct RingSpec {
    /// Ring name (`/dev/shm/camring-NAME`).
    pub name: String,
    /// What it stores.
    pub format: RingFormat,
    /// JPEG quality for encoded cameras.
    pub quality: u8,
    /// Number of slots.
    pub slots: u32,
    /// Permission bits of the segment (`camring_shm::MODE_OWNER` or `MODE_GROUP`).
    pub mode: u32,
}

/// Counters of one ring output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutputStats {
    /// Multi-frames published.
    pub frames: u64,
    /// Camera images encoded to JPEG.
    pub encoded: u64,
    /// Camera images decoded from JPEG.
    pub decoded: u64,
    /// Camera images written as missing because they could not be stored (larger than
    /// the slot's room, undecodable, or in a format the ring cannot convert).
    pub dropped: u64,
}

/// A ring being written: its writer, the layout each camera was given, and codecs.
#[derive(Debug)]
pub struct RingOutput {
    spec: RingSpec,
    writer: Writer,
    layouts: Vec<CameraLayout>,
    conv: Converter,
    frames: u64,
}

/// Converts images for one ring; shared by the threads that fill a slot's cameras.
#[derive(Debug)]
struct Converter {
    format: RingFormat,
    quality: u8,
    encoders: Mutex<Vec<Encoder>>,
    decoders: Mutex<Vec<Decoder>>,
    encoded: AtomicU64,
    decoded: AtomicU64,
    dropped: AtomicU64,
}

/// Why an image could not be stored in its slot.
#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error("{0} bytes do not fit in the {1} bytes reserved")]
    TooLarge(usize, usize),
    #[error("cannot store {0} in a {1} ring")]
    Unconvertible(PixelFormat, RingFormat),
    #[error(transparent)]
    Jpeg(#[from] camring_jpeg::JpegError),
}

impl RingOutput {
    /// Creates (or takes over) the ring for cameras of these nominal layouts at `fps`.
    pub fn create(
        spec: RingSpec,
        layouts: Vec<CameraLayout>,
        fps: f64,
    ) -> Result<Self, camring_shm::CreateError> {
        let mut config =
            RingConfig::new(spec.slots, layouts.clone(), (fps * 1000.0).round() as u32);
        config.mode = spec.mode;
        let writer = Writer::create(&spec.name, &config)?;
        let conv = Converter {
            format: spec.format,
            quality: spec.quality,
            encoders: Mutex::new(Vec::new()),
            decoders: Mutex::new(Vec::new()),
            encoded: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        Ok(RingOutput {
            spec,
            writer,
            layouts,
            conv,
            frames: 0,
        })
    }

    /// The ring's settings.
    pub fn spec(&self) -> &RingSpec {
        &self.spec
    }

    /// The writer (for its name, origin, layout and generation).
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The writer, mutably (for tests and tools that write their own frames).
    pub fn writer_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// The counters.
    pub fn stats(&self) -> OutputStats {
        OutputStats {
            frames: self.frames,
            encoded: self.conv.encoded.load(Ordering::Relaxed),
            decoded: self.conv.decoded.load(Ordering::Relaxed),
            dropped: self.conv.dropped.load(Ordering::Relaxed),
        }
    }

    /// Publishes one multi-frame: every camera converted in parallel straight into the
    /// slot. A camera whose image cannot be stored is written as missing and counted.
    /// Returns the ring frame number.
    pub fn write(&mut self, frame: &MultiFrame) -> Result<u64, WriteError> {
        let mut requests = Vec::with_capacity(frame.picks.len());
        for (cam, pick) in frame.picks.iter().enumerate() {
            let nominal = self.layouts[cam];
            let mut entry = CameraEntry {
                camera_id: cam as u32,
                format: nominal.format,
                width: nominal.width,
                height: nominal.height,
                flags: camring_protocol::layout::CAM_MISSING,
                ..CameraEntry::default()
            };
            let mut room = 0;
            if let Some(image) = pick.image() {
                entry = self
                    .conv
                    .entry_for(cam as u32, image, matches!(pick, Pick::Repeated(_)));
                room = nominal.max_len as usize;
            }
            requests.push((entry, room));
        }
        let conv = &self.conv;
        let mut loan = self.writer.loan();
        let stored = loan.push_cameras_with::<WriteError>(&requests, |bufs| {
            Ok(bufs
                .par_iter_mut()
                .zip(frame.picks.par_iter())
                .map(|(buf, pick)| {
                    let image = pick.image()?;
                    match conv.store(image, buf) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            // Ordering: plain counters, read only for stats.
                            if conv.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                                tracing::warn!(error = %e, "an image could not be stored (further ones are counted, not logged)");
                            } else {
                                tracing::debug!(error = %e, "image dropped");
                            }
                            None
                        }
                    }
                })
                .collect())
        })?;
        // The spread of the images actually stored (one that could not be is missing).
        let captures = requests
            .iter()
            .zip(&stored)
            .filter(|(_, &len)| len > 0)
            .map(|((e, _), _)| e.capture_ns);
        let spread = captures.clone().max().unwrap_or(0) - captures.min().unwrap_or(0);
        let n = loan.commit(frame.tick_ns, spread)?;
        self.frames += 1;
        Ok(n)
    }
}

impl Converter {
    /// The entry for `image` as this ring stores it (length and offset set by the loan).
    fn entry_for(&self, camera: u32, image: &Image, repeated: bool) -> CameraEntry {
        let mut flags = 0;
        if repeated {
            flags |= CAM_REPEATED;
        }
        if image.synthetic {
            flags |= CAM_SYNTHETIC;
        }
        let (format, stride) = match conversion(image.format, self.format) {
            Some(Conversion::Copy) | None => (image.format, image.stride),
            Some(Conversion::Encode) => (PixelFormat::Jpeg, 0),
            Some(Conversion::Decode(to)) => {
                let bpp = if to == PixelFormat::Gray8 { 1 } else { 3 };
                (to, image.width * bpp)
            }
        };
        CameraEntry {
            camera_id: camera,
            format: format.code(),
            width: image.width,
            height: image.height,
            stride,
            flags,
            capture_ns: image.capture_ns,
            sequence: image.sequence,
            ..CameraEntry::default()
        }
    }

    /// Writes `image` into `out` as this ring stores it; returns the bytes used.
    fn store(&self, image: &Image, out: &mut [u8]) -> Result<usize, StoreError> {
        let data = image.data();
        match conversion(image.format, self.format) {
            None => Err(StoreError::Unconvertible(image.format, self.format)),
            Some(Conversion::Copy) => {
                let room = out.len();
                let dst = out
                    .get_mut(..data.len())
                    .ok_or(StoreError::TooLarge(data.len(), room))?;
                dst.copy_from_slice(data);
                Ok(data.len())
            }
            Some(Conversion::Encode) => {
                let mut enc = match pop(&self.encoders) {
                    Some(e) => e,
                    None => Encoder::new(self.quality)?,
                };
                let r = enc.encode_into(
                    data,
                    image.format,
                    image.width,
                    image.height,
                    image.stride as usize,
                    out,
                );
                push(&self.encoders, enc);
                self.encoded.fetch_add(1, Ordering::Relaxed);
                Ok(r?)
            }
            Some(Conversion::Decode(to)) => {
                let mut dec = match pop(&self.decoders) {
                    Some(d) => d,
                    None => Decoder::new()?,
                };
                let r = dec.decode_into(data, to, out);
                push(&self.decoders, dec);
                self.decoded.fetch_add(1, Ordering::Relaxed);
                let (w, h, stride) = r?;
                if (w, h) != (image.width, image.height) {
                    // The entry was written from the image's declared size.
                    return Err(StoreError::TooLarge(stride * h as usize, out.len()));
                }
                Ok(stride * h as usize)
            }
        }
    }
}

fn pop<T>(pool: &Mutex<Vec<T>>) -> Option<T> {
    pool.lock().unwrap_or_else(PoisonError::into_inner).pop()
}

fn push<T>(pool: &Mutex<Vec<T>>, item: T) {
    pool.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        use PixelFormat::*;
        let fixed = RingFormat::Fixed;
        assert_eq!(conversion(Yuyv, RingFormat::Native), Some(Conversion::Copy));
        assert_eq!(conversion(Rgb8, fixed(Rgb8)), Some(Conversion::Copy));
        assert_eq!(conversion(Jpeg, fixed(Jpeg)), Some(Conversion::Copy));
        assert_eq!(conversion(Bgr8, fixed(Jpeg)), Some(Conversion::Encode));
        assert_eq!(
            conversion(Jpeg, fixed(Gray8)),
            Some(Conversion::Decode(Gray8))
        );
        assert_eq!(conversion(Yuyv, fixed(Jpeg)), None);
        assert_eq!(conversion(Jpeg, fixed(Nv12)), None);
        assert_eq!(conversion(Rgb8, fixed(Bgr8)), None);
        assert_eq!("native".parse::<RingFormat>(), Ok(RingFormat::Native));
        assert_eq!("jpeg".parse::<RingFormat>(), Ok(fixed(Jpeg)));
        assert!("png".parse::<RingFormat>().unwrap_err().contains("native"));
    }
}
