//! One QUIC client's frame streams: which frame goes out when, on which stream, at which
//! priority, and which streams are abandoned.
//!
//! The rules (docs/protocol.md, 10.8.4):
//!
//! 1. A frame offered to the client becomes its *pending* frame (in its
//!    `camring_protocol::session::Session`); a newer one replaces it (the older is
//!    dropped). The pending frame is only a reference: its images are made when it is
//!    started.
//! 2. A pending frame is started at once, on a new unidirectional stream, at a priority
//!    above every stream before it, while fewer than [`MAX_FRAMES_IN_FLIGHT`] streams are
//!    in flight (written, not yet acknowledged). quinn sends the bytes of the highest
//!    priority stream first, so an older stream only gets what the newest leaves over.
//! 3. With [`MAX_FRAMES_IN_FLIGHT`] in flight, starting a frame first resets the oldest
//!    stream (`RESET_SUPERSEDED`). Progress guard: after [`MAX_RESETS_WITHOUT_DELIVERY`]
//!    such resets with no frame delivered in between, the client is slower than one frame
//!    per frame interval; then the frames in flight are left to finish and the newest
//!    frame waits as pending (as with WebSocket), so every client gets frames through.
//! 4. When a frame is delivered (every byte acknowledged), older streams still in flight
//!    are reset: the client has a newer frame and would only drop them.
//! 5. Nothing delivered for [`SEND_TIMEOUT`] while frames are waiting: the connection is
//!    closed with [`close::TIMEOUT`].
//!
//! In order (`newest_first` off): every stream at one priority (quinn then sends them in
//! order), no third stream while two are in flight (rule 3 off); rules 1, 4 and 5 hold.
//!
//! Stats and metrics: a delivered frame is `sent` (its latency is capture to
//! acknowledgement); a replaced, reset or client-stopped frame is `dropped`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use camring_protocol::control::MAX_FRAMES_IN_FLIGHT;
use quinn::{Connection, SendStream, VarInt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::control::{close, RESET_CANCELLED, RESET_SUPERSEDED};

/// The reset codes as quinn takes them.
const SUPERSEDED: VarInt = VarInt::from_u32(RESET_SUPERSEDED);
const CANCELLED: VarInt = VarInt::from_u32(RESET_CANCELLED);
use super::{QuicCounters, SEND_TIMEOUT};
use crate::driver::Driver;
use crate::encode::{Built, CachedFrame};
use crate::metrics::Metrics;

/// Resets of superseded streams allowed without a delivery in between (rule 3).
pub const MAX_RESETS_WITHOUT_DELIVERY: u32 = 2;

/// How a frame stream ended.
#[derive(Debug)]
enum Outcome {
    /// Every byte acknowledged.
    Delivered,
    /// The client stopped it.
    Stopped,
    /// We reset it.
    Reset,
    /// The connection is gone.
    Lost,
}

/// A frame stream in flight.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    frame: Arc<CachedFrame>,
    built: Arc<Built>,
    cancel: Option<oneshot::Sender<VarInt>>,
}

impl InFlight {
    /// Resets the stream with `code` (its task does it and reports `Reset`).
    fn reset(&mut self, code: VarInt) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(code);
        }
    }
}

/// Writes `bytes` on `stream`, finishes it and waits until the client acknowledged every
/// byte, unless `cancel` says to reset it first.
async fn send_frame(
    mut stream: SendStream,
    bytes: Bytes,
    cancel: oneshot::Receiver<VarInt>,
) -> Outcome {
    tokio::pin!(cancel);
    let done = {
        let work = async {
            stream.write_chunk(bytes).await.map_err(|e| match e {
                quinn::WriteError::Stopped(_) => Outcome::Stopped,
                _ => Outcome::Lost,
            })?;
            let _ = stream.finish();
            match stream.stopped().await {
                Ok(None) => Ok(Outcome::Delivered),
                Ok(Some(_)) => Err(Outcome::Stopped),
                Err(_) => Err(Outcome::Lost),
            }
        };
        tokio::pin!(work);
        tokio::select! {
            r = &mut work => Ok(r.unwrap_or_else(|o| o)),
            code = &mut cancel => Err(code.unwrap_or(CANCELLED)),
        }
    };
    match done {
        Ok(outcome) => outcome,
        Err(code) => {
            let _ = stream.reset(code);
            Outcome::Reset
        }
    }
}

/// One client's frame writer.
struct Writer {
    conn: Connection,
    driver: Arc<Driver<Arc<CachedFrame>>>,
    metrics: Arc<Metrics>,
    counters: Arc<QuicCounters>,
    in_flight: VecDeque<InFlight>,
    done_tx: mpsc::UnboundedSender<(u64, Outcome)>,
    seq: u64,
    newest_first: bool,
    resets_since_delivery: u32,
    /// Since when frames have waited without one being delivered.
    stuck_since: Option<Instant>,
}

impl Writer {
    fn can_start(&self) -> bool {
        self.in_flight.len() < MAX_FRAMES_IN_FLIGHT
            || (self.newest_first && self.resets_since_delivery < MAX_RESETS_WITHOUT_DELIVERY)
    }

    /// Resets in-flight stream `i` (its frame is dropped).
    fn abandon(&mut self, i: usize) {
        let Some(mut f) = self.in_flight.remove(i) else {
            return;
        };
        f.reset(SUPERSEDED);
        tracing::debug!(
            client = self.conn.stable_id(),
            stream = f.seq,
            "quic: stream reset"
        );
        self.driver.lost(&f.frame);
        QuicCounters::add(&self.counters.streams_reset);
    }

    /// Starts the pending frame on `stream`; keeps the stream for later if nothing is
    /// pending any more (paused, say).
    async fn start(&mut self, stream: SendStream) -> Option<SendStream> {
        let Some(job) = self.driver.poll(|s| s.poll_frame()) else {
            return Some(stream);
        };
        let frame = job.frame;
        let Some(built) = frame.message(job.variant, job.mask, &self.metrics).await else {
            self.driver.lost(&frame);
            return Some(stream);
        };
        if self.in_flight.len() >= MAX_FRAMES_IN_FLIGHT {
            self.abandon(0);
            self.resets_since_delivery += 1;
        }
        self.seq += 1;
        if self.newest_first {
            // Newer frames first. (2^31 frames at 30 fps take over two years.)
            let _ = stream.set_priority((self.seq % i32::MAX as u64) as i32);
        }
        let (cancel, cancelled) = oneshot::channel();
        let tx = self.done_tx.clone();
        let seq = self.seq;
        let bytes = built.bytes.clone();
        tokio::spawn(async move {
            let outcome = send_frame(stream, bytes, cancelled).await;
            let _ = tx.send((seq, outcome));
        });
        tracing::debug!(
            client = self.conn.stable_id(),
            stream = seq,
            frame = frame.number(),
            "quic: stream started"
        );
        self.in_flight.push_back(InFlight {
            seq,
            frame,
            built,
            cancel: Some(cancel),
        });
        None
    }

    /// Takes the end of stream `seq` into account; `false` when the connection is gone.
    fn finished(&mut self, seq: u64, outcome: Outcome) -> bool {
        tracing::debug!(
            client = self.conn.stable_id(),
            stream = seq,
            ?outcome,
            "quic: stream ended"
        );
        let Some(i) = self.in_flight.iter().position(|f| f.seq == seq) else {
            // Reset by us: counted then.
            return !matches!(outcome, Outcome::Lost);
        };
        match outcome {
            Outcome::Delivered => {
                let f = self.in_flight.remove(i).expect("found");
                self.driver.sent(&f.built);
                self.resets_since_delivery = 0;
                self.stuck_since = None;
                // Older streams are stale now (rule 4).
                while self.in_flight.front().is_some_and(|o| o.seq < seq) {
                    self.abandon(0);
                }
                true
            }
            Outcome::Stopped | Outcome::Reset => {
                let f = self.in_flight.remove(i).expect("found");
                self.driver.lost(&f.frame);
                if matches!(outcome, Outcome::Stopped) {
                    QuicCounters::add(&self.counters.streams_stopped);
                }
                true
            }
            Outcome::Lost => false,
        }
    }
}

/// Sends the client's frames until the connection ends or the outbox is closed.
pub async fn write_loop(
    conn: Connection,
    driver: Arc<Driver<Arc<CachedFrame>>>,
    metrics: Arc<Metrics>,
    counters: Arc<QuicCounters>,
    newest_first: bool,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut w = Writer {
        conn,
        driver,
        metrics,
        counters,
        in_flight: VecDeque::new(),
        done_tx,
        seq: 0,
        newest_first,
        resets_since_delivery: 0,
        stuck_since: None,
    };
    let mut spare: Option<SendStream> = None;
    loop {
        let (closing, pending) = w.driver.poll(|s| (s.is_closing(), s.has_pending()));
        if closing {
            break;
        }
        if pending || !w.in_flight.is_empty() {
            w.stuck_since.get_or_insert_with(Instant::now);
        } else {
            w.stuck_since = None;
        }
        let want = pending && w.can_start();
        if want {
            if let Some(stream) = spare.take() {
                spare = w.start(stream).await;
                continue;
            }
        }
        let deadline = w.stuck_since.map(|s| s + SEND_TIMEOUT);
        let conn = w.conn.clone();
        tokio::select! {
            biased;
            done = done_rx.recv() => {
                let Some((seq, outcome)) = done else { break };
                if !w.finished(seq, outcome) {
                    break;
                }
            }
            _ = w.driver.wake.notified() => {}
            stream = conn.open_uni(), if want => match stream {
                Ok(stream) => spare = w.start(stream).await,
                Err(_) => break,
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                w.conn.close(
                    VarInt::from_u32(close::TIMEOUT),
                    b"no frame could be delivered for 10 s",
                );
                break;
            }
            _ = conn.closed() => break,
        }
    }
    for f in &mut w.in_flight {
        f.reset(CANCELLED);
    }
    if let Some(mut s) = spare {
        let _ = s.reset(CANCELLED);
    }
    w.driver.writer_gone();
}
