//! One subscriber's task: which frames it is offered, the message made for it, the paced
//! sending of its fragments (newest wins), and its JSON side messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use camring_protocol::control::{ServerMessage, Settings, SettingsUpdate, STATS_INTERVAL_MS};
use camring_protocol::udp::{Fragmenter, FRAGMENT_HEADER_SIZE};
use camring_shm::clock::now_ns;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{SendCounters, Shared, UdpFrame};
use crate::encode::{Built, Frame};
use crate::metrics;
use crate::session::{producer_log, state_message, Offer, Session};

/// Most datagrams sent in a row before the task lets others run.
const MAX_BURST: u32 = 32;
/// Shortest wait between two bursts (the timer's resolution).
const MIN_GAP: Duration = Duration::from_millis(1);
/// A frame older than this is not sent to a subscriber that just arrived.
const STALE_NS: u64 = 2_000_000_000;
/// Every this many stats messages, the state again (a lost one is not resent otherwise).
const STATE_EVERY: u64 = 5;

/// What the main loop tells a subscriber's task.
#[derive(Debug)]
pub(crate) enum Control {
    /// It subscribed again: new settings (the fields given), maybe another MTU.
    Update {
        settings: SettingsUpdate,
        mtu: usize,
    },
    /// It left or timed out.
    Stop,
}

/// A message being paced out.
struct Sending {
    frame: Arc<UdpFrame>,
    built: Arc<Built>,
    mtu: usize,
    count: u32,
    next: u32,
    started: Instant,
    window: Duration,
    wake: Instant,
}

/// One subscriber.
pub(crate) struct Subscriber {
    shared: Arc<Shared>,
    addr: SocketAddr,
    mtu: usize,
    session: Session,
    frames: watch::Receiver<Option<Arc<UdpFrame>>>,
    control: mpsc::UnboundedReceiver<Control>,
    current: Option<Sending>,
    pending: Option<Arc<UdpFrame>>,
    buf: Vec<u8>,
}

impl Subscriber {
    pub(crate) fn new(
        shared: Arc<Shared>,
        addr: SocketAddr,
        mtu: usize,
        settings: Settings,
        frames: watch::Receiver<Option<Arc<UdpFrame>>>,
        control: mpsc::UnboundedReceiver<Control>,
    ) -> Subscriber {
        Subscriber {
            shared,
            addr,
            mtu,
            session: Session::new(settings),
            frames,
            control,
            current: None,
            pending: None,
            buf: vec![0; mtu],
        }
    }

    pub(crate) async fn run(mut self) {
        let mut status = self.shared.feed.status.subscribe();
        status.borrow_and_update();
        let period = Duration::from_millis(STATS_INTERVAL_MS);
        let mut stats = tokio::time::interval_at(Instant::now() + period, period);
        let mut stats_sent = 0u64;
        self.send_state().await;
        // The newest frame at once, unless it is stale.
        let newest = self.frames.borrow_and_update().clone();
        if let Some(f) = newest {
            if now_ns().saturating_sub(f.frame.ring.read_ns) < STALE_NS {
                self.offer(f);
            }
        }
        loop {
            if self.current.is_none() {
                if let Some(next) = self.pending.take() {
                    self.start(next).await;
                }
            }
            let wake = self.current.as_ref().map(|c| c.wake);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    None | Some(Control::Stop) => break,
                    Some(Control::Update { settings, mtu }) => {
                        self.session.apply(&settings);
                        self.mtu = mtu;
                        self.send_state().await;
                    }
                },
                changed = self.frames.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let frame = self.frames.borrow_and_update().clone();
                    if let Some(f) = frame {
                        self.offer(f);
                    }
                }
                () = tokio::time::sleep_until(wake.unwrap_or(far)), if wake.is_some() => {
                    self.send_due().await;
                }
                _ = stats.tick() => {
                    let (s, changed) = self.session.stats(std::time::Instant::now());
                    self.send_json(&ServerMessage::Stats(s)).await;
                    stats_sent += 1;
                    if changed || stats_sent % STATE_EVERY == 0 {
                        self.send_state().await;
                    }
                }
                changed = status.changed() => {
                    if changed.is_ok() {
                        let producer = status.borrow_and_update().producer;
                        let log = producer_log(&self.shared.config.ring, producer);
                        self.send_json(&log).await;
                        self.send_state().await;
                    }
                }
            }
        }
    }

    /// The cameras of `frame` this subscriber wants.
    fn wanted_ids(&self, frame: &Frame) -> Vec<u32> {
        frame
            .ring
            .cameras
            .iter()
            .map(|c| c.info.camera_id)
            .filter(|&id| self.session.wants_camera(id))
            .collect()
    }

    fn count_dropped(&mut self, frame: &Frame) {
        let ids = self.wanted_ids(frame);
        self.session.dropped(ids);
        SendCounters::add(&self.shared.counters.dropped, 1);
        self.shared
            .metrics
            .frames_dropped
            .get_or_create(&metrics::kind("udp"))
            .inc();
    }

    /// A new frame is ready: pending if this subscriber wants it (the one it replaces is
    /// dropped); the message being paced out makes way if its receiver's deadline passed.
    fn offer(&mut self, frame: Arc<UdpFrame>) {
        if self.session.offer(std::time::Instant::now()) == Offer::Pass
            || frame.frame.mask(|id| self.session.wants_camera(id)) == 0
        {
            return;
        }
        if let Some(old) = self.pending.replace(frame) {
            self.count_dropped(&old.frame);
        }
        let late = self
            .current
            .as_ref()
            .is_some_and(|c| c.started.elapsed() >= self.shared.config.abandon_after);
        if late {
            if let Some(c) = self.current.take() {
                SendCounters::add(&self.shared.counters.abandoned, 1);
                self.count_dropped(&c.frame.frame);
            }
        }
    }

    /// Makes the message of `next` and starts pacing it out.
    async fn start(&mut self, next: Arc<UdpFrame>) {
        let (variant, mask) = {
            let (w, h) = largest(&next.frame);
            (
                self.session.variant(w, h),
                next.frame.mask(|id| self.session.wants_camera(id)),
            )
        };
        let Some(built) = next
            .frame
            .message(variant, mask, &self.shared.metrics)
            .await
        else {
            return;
        };
        let len = built.bytes.len();
        let count = len.div_ceil(self.mtu - FRAGMENT_HEADER_SIZE) as u32;
        let config = &self.shared.config;
        let mut window = Duration::from_nanos(next.period_ns)
            .mul_f64(config.pace)
            .min(config.abandon_after / 2);
        if let Some(rate) = config.rate {
            window = window.max(Duration::from_secs_f64(len as f64 / rate as f64));
        }
        let now = Instant::now();
        self.current = Some(Sending {
            frame: next,
            built,
            mtu: self.mtu,
            count,
            next: 0,
            started: now,
            window,
            wake: now,
        });
    }

    /// Sends the fragments due by now (yielding every [`MAX_BURST`]), and plans the next
    /// burst.
    async fn send_due(&mut self) {
        let Some(mut c) = self.current.take() else {
            return;
        };
        let now = Instant::now();
        let due = if c.window.is_zero() {
            c.count
        } else {
            let part = now.duration_since(c.started).as_secs_f64() / c.window.as_secs_f64();
            ((f64::from(c.count) * part) as u32 + 1).min(c.count)
        };
        let fragmenter = match Fragmenter::new(&c.built.bytes, c.frame.stream, c.frame.seq, c.mtu) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("{}: cannot fragment a message: {e}", self.addr);
                return;
            }
        };
        if self.buf.len() < c.mtu {
            self.buf.resize(c.mtu, 0);
        }
        let mut burst = 0;
        while c.next < due {
            if burst == MAX_BURST {
                // Let the other subscribers' tasks run (a timer would cost a millisecond).
                tokio::task::yield_now().await;
                burst = 0;
            }
            let Some(fragment) = fragmenter.fragment(c.next) else {
                break;
            };
            let Ok(len) = fragment.write_into(&mut self.buf) else {
                break;
            };
            self.shared.send(&self.buf[..len], self.addr).await;
            c.next += 1;
            burst += 1;
        }
        if c.next >= c.count {
            self.session.sent(&c.built, now_ns());
            SendCounters::add(&self.shared.counters.frames, 1);
            let kind = metrics::kind("udp");
            self.shared.metrics.frames_sent.get_or_create(&kind).inc();
            self.shared
                .metrics
                .bytes_sent
                .get_or_create(&kind)
                .inc_by(c.built.bytes.len() as u64);
            return;
        }
        let at = c.window.mul_f64(f64::from(c.next) / f64::from(c.count));
        c.wake = (c.started + at).max(Instant::now() + MIN_GAP);
        self.current = Some(c);
    }

    async fn send_json(&mut self, message: &ServerMessage) {
        let datagram =
            super::text::encode_message(message, self.mtu, |id| self.session.wants_camera(id));
        match datagram {
            Some(d) => {
                if self.shared.send(&d, self.addr).await {
                    SendCounters::add(&self.shared.counters.texts, 1);
                }
            }
            None => tracing::debug!("{}: a JSON message does not fit its MTU", self.addr),
        }
    }

    async fn send_state(&mut self) {
        let status = self.shared.feed.status.borrow().clone();
        let state = state_message(&self.shared.config.ring, &status, &self.session);
        self.send_json(&state).await;
    }
}

/// The widest and tallest camera of a frame (what `quality=auto` scales).
fn largest(frame: &Frame) -> (u32, u32) {
    frame.ring.cameras.iter().fold((0, 0), |(w, h), c| {
        (w.max(c.info.width), h.max(c.info.height))
    })
}
