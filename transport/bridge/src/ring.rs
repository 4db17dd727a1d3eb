//! The ring side of an adapter: one thread attached to the ring as an ordinary reader,
//! copying the newest multi-frame out (validated) while some client wants frames, and
//! following the producer through deaths and restarts.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use camring_protocol::control::{CameraDescription, ProducerStatus};
use camring_protocol::report::Report;
pub use camring_protocol::session::RingStatus;
use camring_protocol::wire::{CameraInfo, CAM_MISSING};
use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;
use camring_shm::{Follow, OwnedFrame, ProducerState, ReadMode, Reader};
use tokio::sync::watch;

use crate::encode::CachedFrame;
use crate::metrics::Metrics;

pub use crate::frame::{RingFrame, SourceCamera};

/// The ring thread's outputs, shared with every connection.
#[derive(Debug)]
pub struct RingFeed {
    /// The newest multi-frame (with its encoding cache).
    pub frames: watch::Sender<Option<Arc<CachedFrame>>>,
    /// The producer's status and the ring's cameras.
    pub status: watch::Sender<RingStatus>,
    demand: AtomicUsize,
    stop: AtomicBool,
    head: AtomicU64,
    heartbeat_ns: AtomicU64,
}

/// Keeps the ring thread copying frames while it lives.
#[derive(Debug)]
pub struct Demand(Arc<RingFeed>);

impl Drop for Demand {
    fn drop(&mut self) {
        // SYNC POINT: Relaxed: a counter the ring thread polls; no data hangs on it.
        self.0.demand.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RingFeed {
    /// A feed with no frame yet.
    pub fn new() -> Arc<RingFeed> {
        Arc::new(RingFeed {
            frames: watch::Sender::new(None),
            status: watch::Sender::new(RingStatus {
                producer: ProducerStatus::Waiting,
                cameras: Vec::new(),
            }),
            demand: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            head: AtomicU64::new(0),
            heartbeat_ns: AtomicU64::new(0),
        })
    }

    /// Registers a consumer of frames: the ring thread copies frames while one exists.
    pub fn demand(self: &Arc<Self>) -> Demand {
        // SYNC POINT: Relaxed, see `Demand::drop`.
        self.demand.fetch_add(1, Ordering::Relaxed);
        Demand(Arc::clone(self))
    }

    /// The newest frame, if any.
    pub fn latest(&self) -> Option<Arc<CachedFrame>> {
        self.frames.borrow().clone()
    }

    /// The ring's newest frame number and the time of the producer's last publish (its
    /// heartbeat, `now_ns` clock), as the ring thread last saw them (at most ~100 ms ago),
    /// whether or not any client wants frames. `None` before the ring was seen.
    pub fn ring_head(&self) -> Option<(u64, u64)> {
        // SYNC POINT: Relaxed: two independent gauges for /healthz; a pair from slightly
        // different moments is fine.
        let head = self.head.load(Ordering::Relaxed);
        let heartbeat = self.heartbeat_ns.load(Ordering::Relaxed);
        (head > 0).then(|| (head - 1, heartbeat))
    }

    /// Asks the ring thread to end (within 100 ms).
    pub fn stop(&self) {
        // SYNC POINT: Relaxed: a flag polled by the ring thread; nothing else is published.
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        // SYNC POINT: Relaxed, see `stop`.
        self.stop.load(Ordering::Relaxed)
    }

    fn wanted(&self) -> bool {
        // SYNC POINT: Relaxed, see `Demand::drop`.
        self.demand.load(Ordering::Relaxed) > 0
    }
}

/// Starts the thread that reads ring `name` into `feed` until [`RingFeed::stop`].
pub fn spawn(
    name: String,
    feed: Arc<RingFeed>,
    metrics: Arc<Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ring {name}"))
        .spawn(move || run(&name, &feed, &metrics))
}

fn run(name: &str, feed: &RingFeed, metrics: &Metrics) {
    let mut last_error = String::new();
    while !feed.stopped() {
        let reader = match Reader::open(name) {
            Ok(r) => r,
            Err(e) => {
                // Every `OpenError` names the ring.
                let text = Report(&e).to_string();
                if text != last_error {
                    if e.is_transient() {
                        tracing::info!("{text}; waiting for it");
                    } else {
                        tracing::warn!("{text}; retrying");
                    }
                    last_error = text;
                }
                set_status(feed, metrics, ProducerStatus::Waiting, Vec::new());
                std::thread::sleep(Duration::from_millis(if e.is_transient() {
                    100
                } else {
                    1000
                }));
                continue;
            }
        };
        last_error.clear();
        follow_ring(reader, feed, metrics);
    }
}

fn status_of(state: ProducerState) -> ProducerStatus {
    match state {
        ProducerState::Live { .. } => ProducerStatus::Live,
        ProducerState::Stopped => ProducerStatus::Stopped,
        ProducerState::Dead { .. } => ProducerStatus::Dead,
        ProducerState::Replaced => ProducerStatus::Waiting,
    }
}

fn cameras_of(reader: &Reader) -> Vec<CameraDescription> {
    reader
        .layout()
        .camera_layouts()
        .iter()
        .enumerate()
        .map(|(id, c)| CameraDescription {
            id: id as u32,
            width: c.width,
            height: c.height,
            format: PixelFormat::from_code(c.format).unwrap_or(PixelFormat::Jpeg),
        })
        .collect()
}

fn set_status(
    feed: &RingFeed,
    metrics: &Metrics,
    producer: ProducerStatus,
    cameras: Vec<CameraDescription>,
) {
    metrics
        .producer_up
        .set(i64::from(producer == ProducerStatus::Live));
    let next = RingStatus { producer, cameras };
    feed.status.send_if_modified(|s| {
        if *s == next {
            false
        } else {
            tracing::info!(
                "producer {:?}, {} cameras",
                next.producer,
                next.cameras.len()
            );
            *s = next;
            true
        }
    });
}

/// Reads `reader` until the feed stops (the reader follows the ring's producers itself).
fn follow_ring(mut reader: Reader, feed: &RingFeed, metrics: &Metrics) {
    set_status(
        feed,
        metrics,
        status_of(reader.producer()),
        cameras_of(&reader),
    );
    let mut last_check = Instant::now();
    let mut owned = OwnedFrame::default();
    while !feed.stopped() {
        let woke = reader.wait(Duration::from_millis(100));
        // SYNC POINT: Relaxed, see `RingFeed::ring_head`.
        feed.head.store(reader.head(), Ordering::Relaxed);
        let heartbeat = now_ns().saturating_sub(reader.heartbeat_age_ns());
        feed.heartbeat_ns.store(heartbeat, Ordering::Relaxed);
        if reader.has_new() {
            if feed.wanted() {
                match reader.read_copy(ReadMode::Latest, &mut owned) {
                    Ok(true) => publish(feed, metrics, &mut owned, &reader),
                    Ok(false) => {}
                    Err(e) => {
                        metrics.ring_errors.inc();
                        tracing::debug!("ring {:?}: frame refused: {}", reader.name(), Report(&e));
                    }
                }
            } else {
                // Nobody wants frames: mark them seen without copying.
                let _ = reader.try_read(ReadMode::Latest);
            }
            if last_check.elapsed() < Duration::from_millis(500) {
                continue;
            }
        } else if !woke && last_check.elapsed() < Duration::from_millis(250) {
            continue;
        }
        // Woken without a frame (the producer's state changed) or a while since the last
        // look: see whether the producer died, stopped or was replaced.
        last_check = Instant::now();
        match reader.follow() {
            Ok(Follow::Reattached) | Ok(Follow::NewGeneration) => {
                tracing::info!(
                    "ring {:?}: producer restarted (generation {})",
                    reader.name(),
                    reader.generation()
                );
            }
            Ok(Follow::Same) | Ok(Follow::Gone) => {}
            Err(e) => tracing::warn!("{}", Report(&e)),
        }
        set_status(
            feed,
            metrics,
            status_of(reader.producer()),
            cameras_of(&reader),
        );
    }
}

/// Moves the copied frame's payloads into a [`RingFrame`] and publishes it.
fn publish(feed: &RingFeed, metrics: &Metrics, owned: &mut OwnedFrame, reader: &Reader) {
    let layouts = reader.layout().camera_layouts();
    let cameras = owned
        .cameras
        .iter()
        .zip(owned.payloads.iter_mut())
        .enumerate()
        .map(|(i, (entry, payload))| {
            let missing = entry.flags & CAM_MISSING != 0;
            let format = PixelFormat::from_code(entry.format)
                .or_else(|| {
                    layouts
                        .get(i)
                        .and_then(|l| PixelFormat::from_code(l.format))
                })
                .unwrap_or(PixelFormat::Jpeg);
            SourceCamera {
                info: CameraInfo {
                    camera_id: entry.camera_id,
                    format,
                    width: entry.width,
                    height: entry.height,
                    stride: if format == PixelFormat::Jpeg || missing {
                        0
                    } else {
                        entry.stride
                    },
                    flags: entry.flags,
                    capture_ns: entry.capture_ns,
                    sequence: entry.sequence,
                },
                payload: if missing {
                    Bytes::new()
                } else {
                    Bytes::from(std::mem::take(payload))
                },
            }
        })
        .collect();
    let frame = RingFrame {
        frame: owned.header.frame,
        tick_ns: owned.header.tick_ns,
        publish_ns: owned.header.publish_ns,
        read_ns: now_ns(),
        cameras,
    };
    metrics.frames_read.inc();
    feed.frames
        .send_replace(Some(Arc::new(CachedFrame::new(frame))));
}
