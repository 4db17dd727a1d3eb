//! What clients receive, made once per frame and shared: the JPEG of a camera at a
//! (quality, size) *variant*, and the whole message for a (variant, camera subset).
//!
//! Every multi-frame read from the ring becomes a [`Frame`], which carries the caches of
//! what was made from it. The first client that asks for a variant of a camera encodes it
//! (on the rayon pool); the others asking for the same variant of the same frame wait for
//! that result. Nothing is made that no client asked for, and a frame's caches go away
//! with the frame when the last client lets go of it.
//!
//! A JPEG already in the ring is forwarded as it is when no downscale is needed and the
//! client asked for a quality at least the ring's (estimated from its quantisation tables;
//! re-encoding at a higher quality adds bytes, not detail). Downscaling happens before
//! encoding: JPEG is decoded at a reduced DCT scale (1/8 steps) close to the target,
//! then resized (fast_image_resize, bilinear) to the exact target and encoded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use camring_protocol::control::DEFAULT_QUALITY;
use camring_protocol::report::Report;
pub use camring_protocol::session::Variant;
use camring_protocol::wire::{
    self, CameraInfo, MessageHeader, CAM_DOWNSCALED, CAM_MISSING, CAM_REENCODED,
};
use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;
use fast_image_resize as fir;
use tokio::sync::OnceCell;

use crate::metrics::Metrics;
use crate::ring::{RingFrame, SourceCamera};

/// One camera image as a client gets it.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Its entry (format JPEG, the size sent, `CAM_REENCODED`/`CAM_DOWNSCALED` as made),
    /// or the ring's entry flagged `CAM_MISSING` when there is no image.
    pub info: CameraInfo,
    /// The JPEG (empty when missing).
    pub payload: Bytes,
}

/// A whole binary message, as sent to every client with the same variant and cameras.
#[derive(Debug)]
pub struct Built {
    /// The encoded message.
    pub bytes: Bytes,
    /// Per camera sent: id, payload bytes, capture time (0 bytes when missing).
    pub cameras: Vec<(u32, usize, u64)>,
}

type Cell<T> = Arc<OnceCell<Arc<T>>>;
type MaybeCell<T> = Arc<OnceCell<Option<Arc<T>>>>;

/// A multi-frame read from the ring, with what was made from it.
#[derive(Debug)]
pub struct Frame {
    /// The frame as copied out of the ring.
    pub ring: RingFrame,
    images: Mutex<HashMap<(Variant, usize), Cell<Encoded>>>,
    messages: Mutex<HashMap<(Variant, u32), MaybeCell<Built>>>,
}

impl Frame {
    /// A frame with empty caches.
    pub fn new(ring: RingFrame) -> Frame {
        Frame {
            ring,
            images: Mutex::default(),
            messages: Mutex::default(),
        }
    }

    /// The ring's frame number.
    pub fn number(&self) -> u64 {
        self.ring.frame
    }

    /// Bit `i` set for every camera `i` of this frame whose id `wanted` accepts.
    pub fn mask(&self, wanted: impl Fn(u32) -> bool) -> u32 {
        self.ring
            .cameras
            .iter()
            .enumerate()
            .filter(|(_, c)| wanted(c.info.camera_id))
            .fold(0, |m, (i, _)| m | (1 << i))
    }

    /// Camera `index` (ring order) at `variant`, made once per frame.
    pub async fn image(
        self: &Arc<Self>,
        variant: Variant,
        index: usize,
        metrics: &Arc<Metrics>,
    ) -> Arc<Encoded> {
        let cell = {
            let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(images.entry((variant, index)).or_default())
        };
        cell.get_or_init(|| async {
            // Forwarding costs a refcount: decided here, not worth a trip to rayon.
            if let Some(forwarded) = forward(&self.ring.cameras[index], variant) {
                metrics.forwarded.inc();
                return Arc::new(forwarded);
            }
            let camera = self.ring.cameras[index].clone();
            let metrics = Arc::clone(metrics);
            let (tx, rx) = tokio::sync::oneshot::channel();
            rayon::spawn(move || {
                let _ = tx.send(make(&camera, variant, &metrics));
            });
            let camera = &self.ring.cameras[index];
            Arc::new(rx.await.unwrap_or_else(|_| missing(&camera.info)))
        })
        .await
        .clone()
    }

    /// The binary message with the cameras of `mask` at `variant`, made once per frame.
    pub async fn message(
        self: &Arc<Self>,
        variant: Variant,
        mask: u32,
        metrics: &Arc<Metrics>,
    ) -> Option<Arc<Built>> {
        let cell = {
            let mut messages = self.messages.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(messages.entry((variant, mask)).or_default())
        };
        cell.get_or_init(|| async {
            let indices: Vec<usize> = (0..self.ring.cameras.len())
                .filter(|i| mask & (1 << i) != 0)
                .collect();
            let images = futures_util::future::join_all(
                indices.iter().map(|&i| self.image(variant, i, metrics)),
            )
            .await;
            self.build(&images).map(Arc::new)
        })
        .await
        .clone()
    }

    fn build(&self, images: &[Arc<Encoded>]) -> Option<Built> {
        let header = MessageHeader {
            frame: self.ring.frame,
            tick_ns: self.ring.tick_ns,
            publish_ns: self.ring.publish_ns,
            send_ns: now_ns(),
            flags: 0,
        };
        let prefix = wire::encode_prefix(&header, images.iter().map(|e| (e.info, e.payload.len())));
        // Entries made here always encode (known formats, JPEG, lengths that fit); should
        // one not, the frame is not sent and counted dropped.
        let prefix = prefix
            .map_err(|e| tracing::error!("frame {}: cannot encode message: {e}", self.ring.frame))
            .ok()?;
        let mut out = Vec::with_capacity(prefix.message_len() as usize);
        out.extend_from_slice(prefix.as_bytes());
        for e in images {
            out.extend_from_slice(&e.payload);
        }
        Some(Built {
            bytes: Bytes::from(out),
            cameras: images
                .iter()
                .map(|e| (e.info.camera_id, e.payload.len(), e.info.capture_ns))
                .collect(),
        })
    }
}

/// The entry of a camera that has no image to send.
fn missing(info: &CameraInfo) -> Encoded {
    Encoded {
        info: CameraInfo {
            format: PixelFormat::Jpeg,
            stride: 0,
            flags: (info.flags | CAM_MISSING) & !(CAM_REENCODED | CAM_DOWNSCALED),
            ..*info
        },
        payload: Bytes::new(),
    }
}

/// Errors making a camera image.
#[derive(Debug, thiserror::Error)]
pub enum MakeError {
    /// turbojpeg refused (a corrupt JPEG from the ring, an absurd size).
    #[error("jpeg")]
    Jpeg(#[from] turbojpeg::Error),
    /// Resizing failed.
    #[error("resize: {0}")]
    Resize(String),
    /// The ring's format cannot be sent as JPEG.
    #[error("{0} cannot be encoded")]
    Unsupported(&'static str),
}

/// Makes camera `camera` at `variant` (on a rayon thread). A failure is logged and
/// counted; the camera is then sent missing.
fn make(camera: &SourceCamera, variant: Variant, metrics: &Metrics) -> Encoded {
    let info = &camera.info;
    if info.flags & CAM_MISSING != 0 || camera.payload.is_empty() {
        return missing(info);
    }
    if let Some(forwarded) = forward(camera, variant) {
        metrics.forwarded.inc();
        return forwarded;
    }
    let start = Instant::now();
    let target = variant.fit(info.width, info.height);
    let made = CODEC.with(|c| c.borrow_mut().make(camera, variant.quality, target));
    match made {
        Ok(jpeg) => {
            metrics.encodes.inc();
            metrics
                .encode_seconds
                .observe(start.elapsed().as_secs_f64());
            let mut flags = info.flags | CAM_REENCODED;
            if target != (info.width, info.height) {
                flags |= CAM_DOWNSCALED;
            }
            Encoded {
                info: CameraInfo {
                    format: PixelFormat::Jpeg,
                    width: target.0,
                    height: target.1,
                    stride: 0,
                    flags,
                    ..*info
                },
                payload: Bytes::from(jpeg),
            }
        }
        Err(e) => {
            metrics.encode_errors.inc();
            tracing::warn!(
                "camera {} frame {}: {}; sent missing",
                info.camera_id,
                info.sequence,
                Report(&e)
            );
            missing(info)
        }
    }
}

/// The ring's JPEG as it is, when it already is what `variant` asks for: no downscale
/// needed and a quality at least the ring's (80 when its tables are not IJG's).
fn forward(camera: &SourceCamera, variant: Variant) -> Option<Encoded> {
    let info = &camera.info;
    let whole = variant.fit(info.width, info.height) == (info.width, info.height);
    if info.format != PixelFormat::Jpeg || info.flags & CAM_MISSING != 0 || !whole {
        return None;
    }
    let ring_quality = jpeg_quality(&camera.payload).unwrap_or(DEFAULT_QUALITY);
    (variant.quality >= ring_quality && !camera.payload.is_empty()).then(|| Encoded {
        info: CameraInfo { stride: 0, ..*info },
        payload: camera.payload.clone(),
    })
}

thread_local! {
    static CODEC: RefCell<Codec> = RefCell::new(Codec::default());
}

/// A rayon thread's turbojpeg handles and scratch buffers.
#[derive(Default)]
struct Codec {
    compressor: Option<turbojpeg::Compressor>,
    decompressor: Option<turbojpeg::Decompressor>,
    resizer: fir::Resizer,
}

/// Tightly packed pixels ready to encode.
struct Pixels {
    data: Vec<u8>,
    width: u32,
    height: u32,
    format: PixelFormat,
}

impl Codec {
    fn make(
        &mut self,
        camera: &SourceCamera,
        quality: u8,
        target: (u32, u32),
    ) -> Result<Vec<u8>, MakeError> {
        let info = &camera.info;
        let data = &camera.payload[..];
        let pixels = match info.format {
            PixelFormat::Jpeg => self.decode_scaled(data, target)?,
            PixelFormat::Rgb8 | PixelFormat::Bgr8 | PixelFormat::Gray8 => {
                let bpp = info.format.bytes_per_pixel().unwrap_or(1) as usize;
                let row = info.width as usize * bpp;
                if target == (info.width, info.height) {
                    return self.compress(
                        data,
                        info.format,
                        info.width,
                        info.height,
                        info.stride as usize,
                        quality,
                    );
                }
                Pixels {
                    data: tight(data, row, info.stride as usize, info.height as usize),
                    width: info.width,
                    height: info.height,
                    format: info.format,
                }
            }
            PixelFormat::Yuyv | PixelFormat::Nv12 => {
                let planar = to_planar(info, data)?;
                if target == (info.width, info.height) {
                    return self.compress_yuv(&planar, info, quality);
                }
                // Rare: downscaling raw YUV goes through a full-size JPEG decoded scaled.
                let full = self.compress_yuv(&planar, info, 95)?;
                self.decode_scaled(&full, target)?
            }
        };
        let pixels = self.resize(pixels, target)?;
        let stride = pixels.width as usize * pixels.format.bytes_per_pixel().unwrap_or(1) as usize;
        self.compress(
            &pixels.data,
            pixels.format,
            pixels.width,
            pixels.height,
            stride,
            quality,
        )
    }

    fn compressor(
        &mut self,
        quality: u8,
        subsamp: turbojpeg::Subsamp,
    ) -> Result<&mut turbojpeg::Compressor, MakeError> {
        if self.compressor.is_none() {
            self.compressor = Some(turbojpeg::Compressor::new()?);
        }
        let c = self.compressor.as_mut().expect("set above");
        c.set_quality(i32::from(quality.clamp(1, 100)))?;
        c.set_subsamp(subsamp)?;
        Ok(c)
    }

    fn compress(
        &mut self,
        data: &[u8],
        format: PixelFormat,
        width: u32,
        height: u32,
        stride: usize,
        quality: u8,
    ) -> Result<Vec<u8>, MakeError> {
        let (tf, subsamp) = match format {
            PixelFormat::Rgb8 => (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2),
            PixelFormat::Bgr8 => (turbojpeg::PixelFormat::BGR, turbojpeg::Subsamp::Sub2x2),
            PixelFormat::Gray8 => (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray),
            other => return Err(MakeError::Unsupported(other.name())),
        };
        let c = self.compressor(quality, subsamp)?;
        let image = turbojpeg::Image {
            pixels: data,
            width: width as usize,
            pitch: stride,
            height: height as usize,
            format: tf,
        };
        Ok(c.compress_to_vec(image)?)
    }

    fn compress_yuv(
        &mut self,
        planar: &[u8],
        info: &CameraInfo,
        quality: u8,
    ) -> Result<Vec<u8>, MakeError> {
        let subsamp = if info.format == PixelFormat::Nv12 {
            turbojpeg::Subsamp::Sub2x2
        } else {
            turbojpeg::Subsamp::Sub2x1
        };
        let c = self.compressor(quality, subsamp)?;
        let image = turbojpeg::YuvImage {
            pixels: planar,
            width: info.width as usize,
            align: 1,
            height: info.height as usize,
            subsamp,
        };
        let mut out = vec![0; c.buf_len(info.width as usize, info.height as usize)?];
        let n = c.compress_yuv_to_slice(image, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Decodes `jpeg` as RGB8 (GRAY8 for a greyscale JPEG) at the smallest DCT scale
    /// that is still at least `target`.
    fn decode_scaled(&mut self, jpeg: &[u8], target: (u32, u32)) -> Result<Pixels, MakeError> {
        if self.decompressor.is_none() {
            self.decompressor = Some(turbojpeg::Decompressor::new()?);
        }
        let d = self.decompressor.as_mut().expect("set above");
        d.set_scaling_factor(turbojpeg::ScalingFactor::ONE)?;
        let header = d.read_header(jpeg)?;
        if header.width.saturating_mul(header.height) > camring_jpeg::MAX_DECODE_PIXELS {
            return Err(MakeError::Unsupported("an image this large"));
        }
        let factor = (1..=8)
            .map(|n| turbojpeg::ScalingFactor::new(n, 8))
            .find(|f| {
                f.scale(header.width) >= target.0 as usize
                    && f.scale(header.height) >= target.1 as usize
            })
            .unwrap_or(turbojpeg::ScalingFactor::ONE);
        d.set_scaling_factor(factor)?;
        let scaled = header.scaled(factor);
        let gray = header.colorspace == turbojpeg::Colorspace::Gray;
        let (tf, format) = if gray {
            (turbojpeg::PixelFormat::GRAY, PixelFormat::Gray8)
        } else {
            (turbojpeg::PixelFormat::RGB, PixelFormat::Rgb8)
        };
        let pitch = scaled.width * tf.size();
        let mut data = vec![0; pitch * scaled.height];
        let image = turbojpeg::Image {
            pixels: &mut data[..],
            width: scaled.width,
            pitch,
            height: scaled.height,
            format: tf,
        };
        d.decompress(jpeg, image)?;
        Ok(Pixels {
            data,
            width: scaled.width as u32,
            height: scaled.height as u32,
            format,
        })
    }

    fn resize(&mut self, pixels: Pixels, target: (u32, u32)) -> Result<Pixels, MakeError> {
        if (pixels.width, pixels.height) == target {
            return Ok(pixels);
        }
        let kind = if pixels.format == PixelFormat::Gray8 {
            fir::PixelType::U8
        } else {
            fir::PixelType::U8x3
        };
        let src = fir::images::ImageRef::new(pixels.width, pixels.height, &pixels.data, kind)
            .map_err(|e| MakeError::Resize(e.to_string()))?;
        let mut dst = fir::images::Image::new(target.0, target.1, kind);
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| MakeError::Resize(e.to_string()))?;
        Ok(Pixels {
            data: dst.into_vec(),
            width: target.0,
            height: target.1,
            format: pixels.format,
        })
    }
}

/// Rows of `row` bytes out of an image with `stride`-byte rows.
fn tight(data: &[u8], row: usize, stride: usize, rows: usize) -> Vec<u8> {
    if stride == row {
        return data[..row * rows].to_vec();
    }
    let mut out = Vec::with_capacity(row * rows);
    for r in data.chunks(stride).take(rows) {
        out.extend_from_slice(&r[..row]);
    }
    out
}

/// YUYV (4:2:2 packed) or NV12 (4:2:0, interleaved chroma) as the planar Y, U, V that
/// turbojpeg compresses without a colour conversion.
fn to_planar(info: &CameraInfo, data: &[u8]) -> Result<Vec<u8>, MakeError> {
    let (w, h, stride) = (
        info.width as usize,
        info.height as usize,
        info.stride as usize,
    );
    if w % 2 != 0 || h % 2 != 0 {
        return Err(MakeError::Unsupported("odd-sized YUV"));
    }
    let mut out = Vec::with_capacity(w * h * 2);
    match info.format {
        PixelFormat::Yuyv => {
            let rows = || data.chunks(stride).take(h);
            for r in rows() {
                out.extend(r[..w * 2].iter().step_by(2));
            }
            for offset in [1, 3] {
                for r in rows() {
                    out.extend(r[..w * 2].iter().skip(offset).step_by(4));
                }
            }
        }
        _ => {
            for r in data.chunks(stride).take(h) {
                out.extend_from_slice(&r[..w]);
            }
            let chroma = || data[stride * h..].chunks(stride).take(h / 2);
            for offset in [0, 1] {
                for r in chroma() {
                    out.extend(r[..w].iter().skip(offset).step_by(2));
                }
            }
        }
    }
    Ok(out)
}

/// The IJG quality (1..=100) a JPEG's luminance quantisation table was made with, or
/// `None` when it has none or one that no IJG quality gives (within 2 %).
pub fn jpeg_quality(jpeg: &[u8]) -> Option<u8> {
    const STD_LUMA: [u32; 64] = [
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
        56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
        104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
    ];
    let table = luma_table(jpeg)?;
    // The sum of a table does not depend on its (zigzag) order.
    let sum: u32 = table.iter().sum();
    let (best, diff) = (1..=100u32)
        .map(|q| {
            let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
            let s: u32 = STD_LUMA
                .iter()
                .map(|&v| ((v * scale + 50) / 100).clamp(1, 255))
                .sum();
            (q, s.abs_diff(sum))
        })
        .min_by_key(|&(q, d)| (d, std::cmp::Reverse(q)))?;
    (diff * 50 <= sum).then_some(best as u8)
}

/// The first quantisation table with id 0 (luminance), in file order.
fn luma_table(jpeg: &[u8]) -> Option<[u32; 64]> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    while at + 4 <= jpeg.len() {
        if jpeg[at] != 0xFF {
            return None;
        }
        let marker = jpeg[at + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let body = jpeg.get(at + 4..at + 2 + len)?;
        if marker == 0xDA {
            return None; // start of scan: no table before it
        }
        if marker == 0xDB {
            let mut t = body;
            while let Some((&pq_tq, rest)) = t.split_first() {
                let wide = pq_tq >> 4 != 0;
                let n = if wide { 128 } else { 64 };
                let values = rest.get(..n)?;
                if pq_tq & 0x0F == 0 {
                    let mut out = [0u32; 64];
                    for (i, v) in out.iter_mut().enumerate() {
                        *v = if wide {
                            u32::from(u16::from_be_bytes([values[2 * i], values[2 * i + 1]]))
                        } else {
                            u32::from(values[i])
                        };
                    }
                    return Some(out);
                }
                t = &rest[n..];
            }
        }
        at += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_is_read_back_from_turbojpeg_output() {
        let (w, h) = (64u32, 48u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        for q in [10u8, 30, 50, 75, 80, 90, 95, 100] {
            let mut c = turbojpeg::Compressor::new().unwrap();
            c.set_quality(i32::from(q)).unwrap();
            let image = turbojpeg::Image {
                pixels: &rgb[..],
                width: w as usize,
                pitch: w as usize * 3,
                height: h as usize,
                format: turbojpeg::PixelFormat::RGB,
            };
            let jpeg = c.compress_to_vec(image).unwrap();
            let got = jpeg_quality(&jpeg).unwrap();
            assert!(got.abs_diff(q) <= 1, "q{q}: estimated {got}");
        }
        assert_eq!(jpeg_quality(b"not a jpeg"), None);
        assert_eq!(jpeg_quality(&[0xFF, 0xD8, 0xFF, 0xDB, 0xFF, 0xFF]), None);
    }

    #[test]
    fn fit_keeps_aspect_and_never_upscales() {
        let v = |q, w, h| Variant {
            quality: q,
            max_width: w,
            max_height: h,
        };
        assert_eq!(v(80, 0, 0).fit(1280, 720), (1280, 720));
        assert_eq!(v(80, 640, 0).fit(1280, 720), (640, 360));
        assert_eq!(v(80, 640, 100).fit(1280, 720), (178, 100));
        assert_eq!(v(80, 4000, 4000).fit(1280, 720), (1280, 720));
        assert_eq!(v(80, 1, 1).fit(1280, 720), (8, 8));
    }
}
