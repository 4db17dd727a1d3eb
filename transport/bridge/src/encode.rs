//! What clients receive, made once per frame and shared: the JPEG of a camera at a
//! (quality, size) *variant*, and the whole message for a (variant, camera subset).
//!
//! Every multi-frame read from the ring becomes a [`CachedFrame`], which carries the caches of
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

use camring_jpeg::{jpeg_quality, Transcoder};
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
use tokio::sync::OnceCell;

use crate::frame::{RingFrame, SourceCamera};
use crate::metrics::Metrics;

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
pub struct CachedFrame {
    /// The frame as copied out of the ring.
    pub ring: RingFrame,
    images: Mutex<HashMap<(Variant, usize), Cell<Encoded>>>,
    messages: Mutex<HashMap<(Variant, u32), MaybeCell<Built>>>,
}

impl CachedFrame {
    /// A frame with empty caches.
    pub fn new(ring: RingFrame) -> CachedFrame {
        CachedFrame {
            ring,
            images: Mutex::default(),
            messages: Mutex::default(),
        }
    }

    /// The ring's frame number.
    pub fn number(&self) -> u64 {
        self.ring.frame
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

thread_local! {
    /// A rayon thread's turbojpeg handles and scratch buffers.
    static TRANSCODER: RefCell<Transcoder> = RefCell::new(Transcoder::default());
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
    let made = TRANSCODER.with(|t| {
        t.borrow_mut()
            .make(info, &camera.payload, variant.quality, target)
    });
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

#[cfg(test)]
mod tests {
    use super::*;

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
