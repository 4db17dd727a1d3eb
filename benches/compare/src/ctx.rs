//! The two sides of one measured cell. Each runs in its own process, started by the runner
//! re-executing the `camring` binary (`camring bench-child ROLE SPEC`): one sender, and one
//! process per consumer. CPU time per side is the OS's accounting of each process
//! (`CLOCK_PROCESS_CPUTIME_ID`) over the measuring window.
//!
//! The children talk to the runner in lines on stdin and stdout:
//!
//! | sender | consumer |
//! |---|---|
//! | prints `ready ENDPOINT` once it accepts consumers | connects to `ENDPOINT`, prints `ready` |
//! | reads `go START END`, starts sending | reads `go START END` |
//! | sends until it reads `stop` (or stdin closes) | receives until `END` |
//! | prints `report JSON` ([`SourceReport`]) | prints `report JSON` ([`SinkReport`]) |
//!
//! `START` and `END` are CLOCK_REALTIME nanoseconds (the ring's clock, the same in every
//! process): only what is sent and received between them counts. The sender starts at
//! `go`, so the time before `START` warms the path up.
//!
//! At [`Rate::Max`] the sender stays at most [`AHEAD`] multi-frames ahead of the slowest
//! consumer: consumers acknowledge every multi-frame's number in a datagram to the
//! sender's `ack.sock` (in the cell's directory). A transport with its own backpressure
//! (a blocking socket) is held by that too; one that drops (the ring, UDP) is held by the
//! acknowledgements only.

use std::io::{BufRead, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use camring_shm::clock::now_ns;
use camring_testkit::{buckets, histogram, process_cpu_ns};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::profile::{Frames, Profile, Rate, Transport};

/// How many multi-frames the sender may be ahead of the slowest consumer at [`Rate::Max`].
pub const AHEAD: u64 = 2;

/// At [`Rate::Max`], how long the sender waits for acknowledgements before it sends on: a
/// lossy transport (UDP) may lose every multi-frame the sender is waiting for, which
/// would stall it for good.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(200);

/// What a child is told: the cell and its place in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The transport measured.
    pub transport: Transport,
    /// The payload.
    pub profile: Profile,
    /// The sender's pace.
    pub rate: Rate,
    /// How many consumers the cell has.
    pub consumers: u32,
    /// This consumer's index, `0..consumers` (0 for the sender).
    pub index: u32,
    /// A name unique to the cell (the ring's, the iceoryx2 service's).
    pub name: String,
    /// A private directory for the cell's files and sockets; the runner removes it.
    pub dir: PathBuf,
    /// What the sender announced with `ready` (empty for the sender).
    pub endpoint: String,
}

impl Spec {
    /// The path of the sender's acknowledgement socket.
    pub fn ack_path(&self) -> PathBuf {
        self.dir.join("ack.sock")
    }
}

/// One multi-frame to send: its number and capture time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Consecutive from 0 (the ring numbers its frames the same way).
    pub seq: u64,
    /// CLOCK_REALTIME nanoseconds, taken just before it is handed to the transport.
    pub capture_ns: u64,
}

/// The sender's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceReport {
    /// Multi-frames handed to the transport inside the window.
    pub published: u64,
    /// Ticks of the fixed clock skipped because the sender was late.
    pub missed_ticks: u64,
    /// Times the sender sent on at [`Rate::Max`] after [`ACK_TIMEOUT`] without the
    /// acknowledgement it waited for (multi-frames lost on the way).
    #[serde(default)]
    pub ack_timeouts: u64,
    /// Window length, nanoseconds.
    pub window_ns: u64,
    /// CPU time of the sender's process over the window, nanoseconds.
    pub cpu_ns: u64,
    /// Consumers run inside the sender's process (the memcpy baseline), if any.
    pub local: Vec<SinkReport>,
}

/// A consumer's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkReport {
    /// Multi-frames received whole inside the window.
    pub frames: u64,
    /// Their payload bytes (what the transport delivered: the adapters' JPEG for a raw
    /// profile).
    pub bytes: u64,
    /// Numbers missing between the first and the last one received inside the window.
    pub dropped: u64,
    /// Multi-frames that arrived but were not what was sent (wrong size, bad message).
    pub corrupt: u64,
    /// Window length, nanoseconds.
    pub window_ns: u64,
    /// CPU time of the consumer's process over the window, nanoseconds (0 for local ones).
    pub cpu_ns: u64,
    /// Capture → receive latency histogram, nanoseconds, as `[value, count]` pairs.
    pub latency_ns: Vec<[u64; 2]>,
}

/// The window and a thread that reads the process's CPU time at its start and end.
#[derive(Debug)]
struct Window {
    start: u64,
    end: u64,
    cpu: Option<JoinHandle<u64>>,
}

impl Window {
    /// Reads `go START END` from stdin and starts the CPU sampler.
    fn wait_go() -> Result<Window> {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading `go` from the runner")?;
        let mut it = line.split_whitespace();
        let (Some("go"), Some(start), Some(end)) = (it.next(), it.next(), it.next()) else {
            bail!("expected `go START END` from the runner, got {line:?}");
        };
        let start: u64 = start.parse().context("go START")?;
        let end: u64 = end.parse().context("go END")?;
        if end <= start {
            bail!("empty window {start}..{end}");
        }
        let cpu = std::thread::Builder::new()
            .name("bench-cpu".into())
            .spawn(move || {
                sleep_until(start);
                let from = process_cpu_ns();
                sleep_until(end);
                process_cpu_ns().saturating_sub(from)
            })?;
        Ok(Window {
            start,
            end,
            cpu: Some(cpu),
        })
    }

    fn contains(&self, t: u64) -> bool {
        (self.start..self.end).contains(&t)
    }

    /// The CPU time over the window (waits for its end).
    fn cpu_ns(&mut self) -> u64 {
        self.cpu.take().map_or(0, |h| h.join().unwrap_or(0))
    }
}

/// Sleeps until CLOCK_REALTIME reaches `t` (ns).
fn sleep_until(t: u64) {
    loop {
        let now = now_ns();
        if now >= t {
            return;
        }
        std::thread::sleep(Duration::from_nanos((t - now).min(50_000_000)));
    }
}

/// Prints one line to the runner and flushes.
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Counts what one consumer received inside the window.
#[derive(Debug)]
struct Recorder {
    report: SinkReport,
    hist: Histogram<u64>,
    first: Option<u64>,
    last: u64,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            report: SinkReport::default(),
            hist: histogram(),
            first: None,
            last: 0,
        }
    }

    /// Records a multi-frame received now, if now is inside the window.
    fn frame(&mut self, window: &Window, seq: u64, capture_ns: u64, bytes: usize) {
        let now = now_ns();
        if !window.contains(now) {
            return;
        }
        self.report.frames += 1;
        self.report.bytes += bytes as u64;
        let _ = self.hist.record(now.saturating_sub(capture_ns).max(1));
        if self.first.is_none() {
            self.first = Some(seq);
        }
        self.last = self.last.max(seq);
    }

    fn finish(mut self, window: &Window, cpu_ns: u64) -> SinkReport {
        if let Some(first) = self.first {
            let span = self.last - first + 1;
            self.report.dropped = span.saturating_sub(self.report.frames);
        }
        self.report.window_ns = window.end - window.start;
        self.report.cpu_ns = cpu_ns;
        self.report.latency_ns = buckets(&self.hist);
        self.report
    }
}

/// The sender's side of a cell: pacing, the window, acknowledgements.
#[derive(Debug)]
pub struct SourceCtx {
    spec: Spec,
    frames: Frames,
    acks: UnixDatagram,
    /// Per consumer: the newest acknowledged number plus one (0: none yet).
    acked: Vec<u64>,
    window: Option<Window>,
    stop: Arc<AtomicBool>,
    go: Instant,
    next_seq: u64,
    /// Fixed rate: the next tick's index.
    tick: u64,
    /// Max rate: since when the sender waits for an acknowledgement.
    ack_wait: Option<Instant>,
    report: SourceReport,
    local: Vec<Recorder>,
}

impl SourceCtx {
    /// The sender of `spec`: makes the profile's frames and binds the acknowledgement
    /// socket.
    pub fn new(spec: Spec) -> Result<SourceCtx> {
        let frames = Frames::new(spec.profile)?;
        let acks = UnixDatagram::bind(spec.ack_path())
            .with_context(|| format!("binding {}", spec.ack_path().display()))?;
        acks.set_read_timeout(Some(Duration::from_millis(20)))?;
        let n = spec.consumers as usize;
        Ok(SourceCtx {
            acked: vec![0; n],
            frames,
            acks,
            window: None,
            stop: Arc::new(AtomicBool::new(false)),
            go: Instant::now(),
            next_seq: 0,
            tick: 0,
            ack_wait: None,
            report: SourceReport::default(),
            local: Vec::new(),
            spec,
        })
    }

    /// The cell.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The multi-frame to send.
    pub fn frames(&self) -> &Frames {
        &self.frames
    }

    /// Announces `endpoint` to the runner and waits for `go` (consumers connect
    /// meanwhile: a sender that must accept them does so on another thread, or after
    /// this returns if they wait for it).
    pub fn ready(&mut self, endpoint: &str) -> Result<()> {
        if endpoint.contains(char::is_whitespace) {
            bail!("endpoint {endpoint:?} has white space");
        }
        say(&format!("ready {endpoint}"))?;
        self.window = Some(Window::wait_go()?);
        let stop = Arc::clone(&self.stop);
        std::thread::Builder::new()
            .name("bench-stdin".into())
            .spawn(move || {
                let mut line = String::new();
                // `stop`, or stdin closed (the runner went away), or an error: stop.
                let _ = std::io::stdin().lock().read_line(&mut line);
                // SYNC POINT: Relaxed: a flag; nothing else is published through it.
                stop.store(true, Ordering::Relaxed);
            })?;
        self.go = Instant::now();
        Ok(())
    }

    /// True once the runner said `stop`.
    pub fn stopped(&self) -> bool {
        // SYNC POINT: Relaxed: pairs with the Relaxed store of the stdin thread; a flag.
        self.stop.load(Ordering::Relaxed)
    }

    /// Makes this sender host its consumers in-process (the memcpy baseline): they report
    /// through [`SourceCtx::local_frame`] and need no acknowledgements.
    pub fn host_consumers(&mut self) {
        self.local = (0..self.spec.consumers).map(|_| Recorder::new()).collect();
    }

    /// An in-process consumer `index` has received `stamp`'s multi-frame whole.
    pub fn local_frame(&mut self, index: usize, stamp: Stamp, bytes: usize) {
        if let (Some(w), Some(r)) = (self.window.as_ref(), self.local.get_mut(index)) {
            r.frame(w, stamp.seq, stamp.capture_ns, bytes);
        }
        if let Some(a) = self.acked.get_mut(index) {
            *a = (*a).max(stamp.seq + 1);
        }
    }

    /// Waits until the next multi-frame is due and stamps it; `None` once the runner said
    /// `stop`. Call [`SourceCtx::ready`] first.
    pub fn next_stamp(&mut self) -> Option<Stamp> {
        let period = Duration::from_secs(1) / Rate::FPS;
        loop {
            self.drain_acks();
            if self.stopped() {
                return None;
            }
            match self.spec.rate {
                Rate::Fixed => {
                    let due = self.go + period * self.tick as u32;
                    let now = Instant::now();
                    if now < due {
                        std::thread::sleep((due - now).min(Duration::from_millis(20)));
                        continue;
                    }
                    // Late by a whole period or more: skip to the current tick rather
                    // than sending a burst.
                    let current = ((now - self.go).as_nanos() / period.as_nanos()) as u64;
                    if current > self.tick {
                        self.report.missed_ticks += current - self.tick;
                        self.tick = current;
                    }
                    self.tick += 1;
                    break;
                }
                Rate::Max => {
                    let slowest = self.acked.iter().copied().min().unwrap_or(u64::MAX);
                    if self.next_seq < slowest.saturating_add(AHEAD) {
                        self.ack_wait = None;
                        break;
                    }
                    let since = *self.ack_wait.get_or_insert_with(Instant::now);
                    if since.elapsed() >= ACK_TIMEOUT {
                        // What it waits for was lost: send on rather than stall.
                        self.report.ack_timeouts += 1;
                        self.ack_wait = None;
                        break;
                    }
                    self.wait_ack();
                }
            }
        }
        let stamp = Stamp {
            seq: self.next_seq,
            capture_ns: now_ns(),
        };
        self.next_seq += 1;
        if self
            .window
            .as_ref()
            .is_some_and(|w| w.contains(stamp.capture_ns))
        {
            self.report.published += 1;
        }
        Some(stamp)
    }

    fn note_ack(&mut self, msg: &[u8]) {
        let Ok(msg) = <[u8; 12]>::try_from(msg) else {
            return;
        };
        let index = u32::from_le_bytes(msg[..4].try_into().expect("4 bytes")) as usize;
        let seq = u64::from_le_bytes(msg[4..].try_into().expect("8 bytes"));
        if let Some(a) = self.acked.get_mut(index) {
            *a = (*a).max(seq + 1);
        }
    }

    /// Takes every acknowledgement already waiting, without blocking.
    fn drain_acks(&mut self) {
        let mut buf = [0u8; 16];
        while let Ok(n) = rustix::net::recv(&self.acks, &mut buf, rustix::net::RecvFlags::DONTWAIT)
        {
            self.note_ack(&buf[..n.0.min(buf.len())]);
        }
    }

    /// Blocks for one acknowledgement (at most 20 ms).
    fn wait_ack(&mut self) {
        let mut buf = [0u8; 16];
        if let Ok(n) = self.acks.recv(&mut buf) {
            self.note_ack(&buf[..n]);
        }
    }

    /// Prints the report (waits for the window's end).
    pub fn finish(mut self) -> Result<()> {
        let Some(mut window) = self.window.take() else {
            bail!("the sender never got `go`");
        };
        let cpu = window.cpu_ns();
        self.report.window_ns = window.end - window.start;
        self.report.cpu_ns = cpu;
        self.report.local = std::mem::take(&mut self.local)
            .into_iter()
            .map(|r| r.finish(&window, 0))
            .collect();
        say(&format!("report {}", serde_json::to_string(&self.report)?))
    }
}

/// A consumer's side of a cell: the window, latencies, acknowledgements.
#[derive(Debug)]
pub struct SinkCtx {
    spec: Spec,
    frames: Frames,
    window: Option<Window>,
    recorder: Recorder,
    acks: UnixDatagram,
}

impl SinkCtx {
    /// Consumer `spec.index` of `spec`.
    pub fn new(spec: Spec) -> Result<SinkCtx> {
        let frames = Frames::new(spec.profile)?;
        let acks = UnixDatagram::unbound()?;
        acks.set_nonblocking(true)?;
        Ok(SinkCtx {
            spec,
            frames,
            window: None,
            recorder: Recorder::new(),
            acks,
        })
    }

    /// The cell.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// What the sender announced.
    pub fn endpoint(&self) -> &str {
        &self.spec.endpoint
    }

    /// The multi-frame the sender sends (to check what arrives).
    pub fn frames(&self) -> &Frames {
        &self.frames
    }

    /// Tells the runner this consumer is connected and waits for `go`.
    pub fn ready(&mut self) -> Result<()> {
        say("ready")?;
        self.window = Some(Window::wait_go()?);
        Ok(())
    }

    /// Records a multi-frame received whole; returns false once the window is over (the
    /// consumer should return).
    pub fn frame(&mut self, seq: u64, capture_ns: u64, bytes: usize) -> bool {
        let mut msg = [0u8; 12];
        msg[..4].copy_from_slice(&self.spec.index.to_le_bytes());
        msg[4..].copy_from_slice(&seq.to_le_bytes());
        // A full socket only delays the sender's next check; never block a consumer.
        let _ = self.acks.send_to(&msg, self.spec.ack_path());
        if let Some(w) = self.window.as_ref() {
            self.recorder.frame(w, seq, capture_ns, bytes);
        }
        !self.done()
    }

    /// Counts a multi-frame that arrived damaged or not as sent.
    pub fn corrupt(&mut self) {
        self.recorder.report.corrupt += 1;
    }

    /// True once the window is over.
    pub fn done(&self) -> bool {
        self.window.as_ref().is_none_or(|w| now_ns() >= w.end)
    }

    /// Time left in the window (for receive timeouts).
    pub fn remaining(&self) -> Duration {
        self.window.as_ref().map_or(Duration::ZERO, |w| {
            Duration::from_nanos(w.end.saturating_sub(now_ns()))
        })
    }

    /// Prints the report (waits for the window's end).
    pub fn finish(mut self) -> Result<()> {
        let Some(mut window) = self.window.take() else {
            bail!("the consumer never got `go`");
        };
        let cpu = window.cpu_ns();
        let report = self.recorder.finish(&window, cpu);
        say(&format!("report {}", serde_json::to_string(&report)?))
    }
}

/// Removes a cell's directory when dropped.
#[derive(Debug)]
pub struct DirGuard(pub PathBuf);

impl DirGuard {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_at_max_rate_sends_on_when_acknowledgements_are_lost() {
        let dir =
            DirGuard(std::env::temp_dir().join(format!("camring-ctx-test-{}", std::process::id())));
        std::fs::create_dir_all(dir.path()).unwrap();
        let spec = Spec {
            transport: Transport::Udp,
            profile: Profile::Small,
            rate: Rate::Max,
            consumers: 1,
            index: 0,
            name: "ctx-test".into(),
            dir: dir.path().to_path_buf(),
            endpoint: String::new(),
        };
        let mut ctx = SourceCtx::new(spec).unwrap();
        // No consumer ever acknowledges: AHEAD multi-frames go at once, then one per
        // ACK_TIMEOUT instead of none.
        let t0 = Instant::now();
        let seqs: Vec<u64> = (0..AHEAD + 2)
            .map(|_| ctx.next_stamp().unwrap().seq)
            .collect();
        assert_eq!(seqs, (0..AHEAD + 2).collect::<Vec<_>>());
        assert_eq!(ctx.report.ack_timeouts, 2);
        assert!(t0.elapsed() >= ACK_TIMEOUT * 2);
        // An acknowledgement lets the next one go without a timeout.
        ctx.note_ack(&[0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ctx.next_stamp().unwrap().seq, AHEAD + 2);
        assert_eq!(ctx.report.ack_timeouts, 2);
    }
}
