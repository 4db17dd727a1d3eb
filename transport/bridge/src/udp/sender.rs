//! One subscriber's task: which frames it is offered, the message made for it, the paced
//! sending of its fragments (newest wins), and its JSON side messages.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use camring_protocol::control::{ClientMessage, ServerMessage, Settings, SettingsUpdate};
use camring_protocol::session::{Cadence, Job, Offered};
use camring_protocol::udp::{Fragmenter, FRAGMENT_HEADER_SIZE};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{SendCounters, Shared, UdpFrame};
use crate::driver::{ControlSource, Driver, Incoming};
use crate::encode::Built;

/// Most datagrams sent in a row before the task lets others run.
const MAX_BURST: u32 = 32;
/// Shortest wait between two bursts (the timer's resolution).
const MIN_GAP: Duration = Duration::from_millis(1);
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

impl Offered for UdpFrame {
    fn read_ns(&self) -> u64 {
        self.frame.read_ns()
    }

    fn cameras(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.frame.cameras()
    }
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

/// A subscriber's control messages: what the main loop tells its task.
struct UdpControl<'a> {
    control: mpsc::UnboundedReceiver<Control>,
    mtu: &'a AtomicUsize,
}

impl ControlSource for UdpControl<'_> {
    async fn next(&mut self) -> Incoming {
        match self.control.recv().await {
            None | Some(Control::Stop) => Incoming::End(None),
            Some(Control::Update { settings, mtu }) => {
                // SYNC POINT: Relaxed: the writer of the same task reads it for the next
                // message it starts; nothing else is published through it.
                self.mtu.store(mtu, Ordering::Relaxed);
                Incoming::Message(ClientMessage::Settings(settings))
            }
        }
    }
}

/// One subscriber.
pub(crate) struct Subscriber {
    shared: Arc<Shared>,
    addr: SocketAddr,
    mtu: AtomicUsize,
    driver: Driver<Arc<UdpFrame>>,
    frames: watch::Receiver<Option<Arc<UdpFrame>>>,
    control: mpsc::UnboundedReceiver<Control>,
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
        let status = shared.feed.status.borrow().clone();
        let cadence = Cadence {
            state_every: STATE_EVERY,
            ..Cadence::default()
        };
        let driver = Driver::new(
            &shared.config.ring,
            status,
            settings,
            cadence,
            Arc::clone(&shared.metrics),
            "udp",
        );
        Subscriber {
            addr,
            mtu: AtomicUsize::new(mtu),
            driver,
            frames,
            control,
            shared,
        }
    }

    /// Serves the subscriber until it leaves or times out: the session's input loop and
    /// the paced writer, side by side in this task.
    pub(crate) async fn run(self) {
        let Subscriber {
            shared,
            addr,
            mtu,
            driver,
            frames,
            control,
        } = self;
        let mut control = UdpControl { control, mtu: &mtu };
        let status = shared.feed.status.subscribe();
        let mut writer = Writer {
            shared: &shared,
            driver: &driver,
            addr,
            mtu: &mtu,
            current: None,
            buf: Vec::new(),
        };
        let inputs = driver.run(frames, status, &mut control, std::future::pending());
        tokio::join!(inputs, writer.run());
    }
}

/// A subscriber's writer: its JSON messages and the paced fragments of its frames.
struct Writer<'a> {
    shared: &'a Shared,
    driver: &'a Driver<Arc<UdpFrame>>,
    addr: SocketAddr,
    mtu: &'a AtomicUsize,
    current: Option<Sending>,
    buf: Vec<u8>,
}

impl Writer<'_> {
    async fn run(&mut self) {
        loop {
            while let Some(text) = self.driver.poll(|s| s.poll_text()) {
                self.send_json(&text).await;
            }
            let (closing, pending) = self.driver.poll(|s| (s.is_closing(), s.has_pending()));
            if closing {
                return;
            }
            if pending {
                self.abandon_if_late();
            }
            if self.current.is_none() {
                if let Some(job) = self.driver.poll(|s| s.poll_frame()) {
                    self.start(job).await;
                    continue;
                }
            }
            let wake = self.current.as_ref().map(|c| c.wake);
            tokio::select! {
                biased;
                () = self.driver.wake.notified() => {}
                () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    self.send_due().await;
                }
            }
        }
    }

    /// A newer frame waits: the message being paced out makes way if its receiver's
    /// deadline passed.
    fn abandon_if_late(&mut self) {
        let late = self
            .current
            .as_ref()
            .is_some_and(|c| c.started.elapsed() >= self.shared.config.abandon_after);
        if late {
            if let Some(c) = self.current.take() {
                SendCounters::add(&self.shared.counters.abandoned, 1);
                self.driver.lost(&c.frame);
            }
        }
    }

    /// Makes the message of `job` and starts pacing it out.
    async fn start(&mut self, job: Job<Arc<UdpFrame>>) {
        let next = job.frame;
        let Some(built) = next
            .frame
            .message(job.variant, job.mask, &self.shared.metrics)
            .await
        else {
            self.driver.lost(&next);
            return;
        };
        // SYNC POINT: Relaxed, see `UdpControl::next`.
        let mtu = self.mtu.load(Ordering::Relaxed);
        let len = built.bytes.len();
        let count = len.div_ceil(mtu - FRAGMENT_HEADER_SIZE) as u32;
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
            mtu,
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
            self.driver.sent(&c.built);
            SendCounters::add(&self.shared.counters.frames, 1);
            return;
        }
        let at = c.window.mul_f64(f64::from(c.next) / f64::from(c.count));
        c.wake = (c.started + at).max(Instant::now() + MIN_GAP);
        self.current = Some(c);
    }

    async fn send_json(&mut self, message: &ServerMessage) {
        // SYNC POINT: Relaxed, see `UdpControl::next`.
        let mtu = self.mtu.load(Ordering::Relaxed);
        let cameras = self.driver.poll(|s| s.settings().cameras.clone());
        match super::text::encode_message(message, mtu, |id| cameras.contains(id)) {
            Some(d) => {
                if self.shared.send(&d, self.addr).await {
                    SendCounters::add(&self.shared.counters.texts, 1);
                }
            }
            None => tracing::debug!("{}: a JSON message does not fit its MTU", self.addr),
        }
    }
}
