//! The async side every transport shares: one client's [`Session`] behind a mutex, the
//! clock it is given, the wake-ups of the transport's writers, the adapter's metrics, and
//! the one input loop that feeds the session the ring's frames, the producer's status,
//! the client's control messages and the stats timer.
//!
//! A transport's pump is then two small pieces: a [`ControlSource`] (how the client's
//! control messages arrive) and a writer that sends what [`Session::poll_output`] (or
//! `poll_text` / `poll_frame`) gives and reports back with [`Driver::sent`] or
//! [`Driver::lost`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use camring_protocol::control::ClientMessage;
use camring_protocol::control::Settings;
use camring_protocol::session::{Cadence, Close, Now, Offer, Offered, RingStatus, Session};
use camring_shm::clock::now_ns;
use tokio::sync::{watch, Notify};

use crate::encode::{Built, CachedFrame};
use crate::metrics::{self, Metrics};
use crate::ring::RingFeed;

/// The time now, for a session.
pub fn now() -> Now {
    Now {
        at: Instant::now(),
        wall_ns: now_ns(),
    }
}

impl Offered for CachedFrame {
    fn read_ns(&self) -> u64 {
        self.ring.read_ns
    }

    fn cameras(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.ring
            .cameras
            .iter()
            .map(|c| (c.info.camera_id, c.info.width, c.info.height))
    }
}

/// What a client's control channel gave.
#[derive(Debug)]
pub enum Incoming {
    /// A JSON control message, unparsed.
    Text(String),
    /// A control message already parsed (UDP's `subscribe` carries settings).
    Message(ClientMessage),
    /// Nothing for the session (a ping, say).
    Nothing,
    /// The connection ends: with a close to send, or `None` when it is gone.
    End(Option<Close>),
}

/// How a transport receives a client's control messages. `next` must be cancel-safe: the
/// input loop drops it when something else happens first.
pub trait ControlSource {
    /// The next thing the client did.
    fn next(&mut self) -> impl Future<Output = Incoming> + Send;
}

/// One client: its session and the wake-ups of whoever sends for it.
#[derive(Debug)]
pub struct Driver<F> {
    session: Mutex<Session<F>>,
    /// Woken whenever the session may have output (a frame writer, or a transport's
    /// only writer).
    pub wake: Notify,
    /// Woken likewise, for a transport with a second writer for texts (QUIC).
    pub wake_texts: Notify,
    gone: Notify,
    writer_gone: AtomicBool,
    metrics: Arc<Metrics>,
    kind: &'static str,
}

impl<F: Offered + Clone> Driver<F> {
    /// A client of `ring` (`status` now) with `settings`, served over `kind` (`"ws"`,
    /// `"quic"`, `"udp"`: the metrics label).
    pub fn new(
        ring: &str,
        status: RingStatus,
        settings: Settings,
        cadence: Cadence,
        metrics: Arc<Metrics>,
        kind: &'static str,
    ) -> Driver<F> {
        Driver {
            session: Mutex::new(Session::new(ring, status, settings, cadence, now())),
            wake: Notify::new(),
            wake_texts: Notify::new(),
            gone: Notify::new(),
            writer_gone: AtomicBool::new(false),
            metrics,
            kind,
        }
    }

    /// Runs `f` on the session, then wakes the writers (what `f` did may have given them
    /// work): always the main one, the text writer only when there are texts or the
    /// session closes (a frame's news would only wake it for nothing).
    pub fn with<R>(&self, f: impl FnOnce(&mut Session<F>) -> R) -> R {
        let (r, texts) = self.poll(|s| {
            let r = f(s);
            (r, s.has_texts() || s.is_closing())
        });
        self.wake.notify_one();
        if texts {
            self.wake_texts.notify_one();
        }
        r
    }

    /// Runs `f` on the session without waking anyone: for the writers taking their work
    /// (a writer that woke itself would spin), and for reads.
    pub fn poll<R>(&self, f: impl FnOnce(&mut Session<F>) -> R) -> R {
        f(&mut self.session.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Offers the ring's newest frame.
    pub fn frame(&self, frame: F) -> Offer {
        let offer = self.with(|s| s.handle_frame(now(), frame));
        if offer == Offer::Replaced {
            self.count_dropped();
        }
        offer
    }

    /// A frame the writer took was delivered.
    pub fn sent(&self, built: &Built) {
        self.with(|s| s.handle_sent(now(), &built.cameras, built.bytes.len()));
        let kind = metrics::kind(self.kind);
        self.metrics.frames_sent.get_or_create(&kind).inc();
        self.metrics
            .bytes_sent
            .get_or_create(&kind)
            .inc_by(built.bytes.len() as u64);
    }

    /// A frame the writer took will not be delivered.
    pub fn lost(&self, frame: &F) {
        self.with(|s| s.handle_lost(frame));
        self.count_dropped();
    }

    fn count_dropped(&self) {
        self.metrics
            .frames_dropped
            .get_or_create(&metrics::kind(self.kind))
            .inc();
    }

    /// The writer cannot send any more (the connection failed or timed out): the input
    /// loop ends.
    pub fn writer_gone(&self) {
        // SYNC POINT: Release, pairs with the Acquire in `run`: a flag only, the Notify
        // permit does the waking; nothing else is published through it.
        self.writer_gone.store(true, Ordering::Release);
        self.gone.notify_one();
    }

    /// Feeds the session until the client leaves, the writer is gone or the server
    /// stops (`shutdown` completes); then closes it, with what the end says (nothing to
    /// send when the connection is gone).
    pub async fn run(
        &self,
        mut frames: watch::Receiver<Option<F>>,
        mut status: watch::Receiver<RingStatus>,
        control: &mut impl ControlSource,
        shutdown: impl Future<Output = ()>,
    ) -> Option<Close> {
        status.borrow_and_update();
        // The newest frame at once (the session passes it if it is stale).
        let newest = frames.borrow_and_update().clone();
        if let Some(f) = newest {
            self.frame(f);
        }
        tokio::pin!(shutdown);
        let end = loop {
            // SYNC POINT: Acquire, pairs with the Release in `writer_gone`.
            if self.writer_gone.load(Ordering::Acquire) {
                break None;
            }
            let due = self.poll(|s| s.poll_timeout());
            tokio::select! {
                changed = frames.changed() => {
                    if changed.is_err() {
                        break Some(Close::Stopping);
                    }
                    let frame = frames.borrow_and_update().clone();
                    if let Some(f) = frame {
                        self.frame(f);
                    }
                }
                changed = status.changed() => {
                    if changed.is_ok() {
                        let s = status.borrow_and_update().clone();
                        self.with(|session| session.handle_status(s));
                    }
                }
                incoming = control.next() => match incoming {
                    Incoming::Text(text) => {
                        if self.with(|s| s.handle_control(&text)).is_err() {
                            self.metrics.control_errors.inc();
                        }
                    }
                    Incoming::Message(m) => self.with(|s| s.handle_message(&m)),
                    Incoming::Nothing => {}
                    Incoming::End(close) => break close,
                },
                () = tokio::time::sleep_until(due.into()) => {
                    self.with(|s| s.handle_timeout(now()));
                }
                () = self.gone.notified() => {}
                () = &mut shutdown => break Some(Close::Stopping),
            }
        };
        self.with(|s| s.close(end.clone().unwrap_or(Close::Lost)));
        end
    }
}

impl Driver<Arc<CachedFrame>> {
    /// [`Driver::run`] on an adapter's ring feed, until `shutdown` turns true (or its
    /// sender goes).
    pub async fn run_feed(
        &self,
        feed: &RingFeed,
        control: &mut impl ControlSource,
        mut shutdown: watch::Receiver<bool>,
    ) -> Option<Close> {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        self.run(
            feed.frames.subscribe(),
            feed.status.subscribe(),
            control,
            stop,
        )
        .await
    }
}

/// The clients an adapter serves at once, at most `max` (`--max-clients`), counted in its
/// metrics by kind.
#[derive(Debug)]
pub struct Clients {
    count: AtomicUsize,
    max: usize,
    metrics: Arc<Metrics>,
}

/// A client's place among the [`Clients`]; given back on drop.
#[derive(Debug)]
pub struct ClientSlot {
    clients: Arc<Clients>,
    kind: &'static str,
}

impl Clients {
    /// Room for `max` clients.
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Clients {
        Clients {
            count: AtomicUsize::new(0),
            max,
            metrics,
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Clients served now.
    pub fn count(&self) -> usize {
        // SYNC POINT: Relaxed: a gauge; see `take`.
        self.count.load(Ordering::Relaxed)
    }

    /// A place for a client of `kind` (the metrics label), or `None` when full.
    pub fn take(self: &Arc<Self>, kind: &'static str) -> Option<ClientSlot> {
        // SYNC POINT: Relaxed: a count; the compare-exchange alone keeps it within the
        // limit, nothing else is published through it.
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        let label = metrics::kind(kind);
        self.metrics.clients.get_or_create(&label).inc();
        self.metrics.connections.get_or_create(&label).inc();
        Some(ClientSlot {
            clients: Arc::clone(self),
            kind,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let c = &self.clients;
        c.metrics
            .clients
            .get_or_create(&metrics::kind(self.kind))
            .dec();
        // SYNC POINT: Relaxed, see `Clients::take`.
        c.count.fetch_sub(1, Ordering::Relaxed);
    }
}
