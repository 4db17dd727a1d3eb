//! The UDP adapter (`camring_bridge::udp::UdpBridge`) against a bare UDP sender with the
//! same fragmentation (`camring_protocol::udp::Fragmenter`), and capture-to-receive
//! latency of 4 × 1280×720 JPEG at 30 fps with 0 %, 1 % and 5 % datagram loss.
//!
//! The bench process is the producer: a `camring_shm::Writer` on a 4-slot ring of 4 JPEG
//! cameras, publishing 4 JPEGs (q80, 4:2:0) made once from the synthetic pattern, every
//! publish re-stamped (`capture_ns` = the time the publish starts). The bridges run in the
//! same process on their own tokio runtime (2 worker threads named `udp-srv`, as `camring
//! bridge udp` runs it) and read the ring like any reader. The client is
//! `camring_client::udp::Client` (the one `camring view udp://` drives) on its own
//! thread over a blocking socket, parsing every whole message with
//! `camring_protocol::wire::parse`; the bare sender's client reassembles with the same
//! `Reassembler` (without subscribing: it sends one datagram so the sender learns its
//! address). All timestamps are `camring_shm::clock::now_ns`.
//!
//! A. Throughput, MTU 1200, no pacing (`pace` 0: fragments back to back, as the bare
//!    sender does), a fresh subscription each run, variants in a fresh random order
//!    every round: the producer (adapter) or the bare sender keeps [`AHEAD`] messages ahead
//!    of what the client received (and sends anyway after a 50 ms stall, so a lost
//!    fragment does not stop it). Messages/s, sender CPU per message (the `udp-srv` and
//!    ring threads, from `/proc/self/task/*/schedstat`), messages lost to reassembly; the
//!    adapter / bare ratio of messages/s per round, median reported.
//!
//! B. Latency at 30 fps with the default pacing (a message spread over half the frame
//!    period) through an in-process relay that drops each server-to-client datagram with
//!    probability p (seeded): capture → receive p50/p99 per camera of the messages
//!    delivered, delivered / sent against (1 − p)^K (K fragments per message), at MTU 1200
//!    and, for comparison, 65507 (one datagram per ~64 KB: only on loopback or jumbo
//!    paths). The bare sender stamps a fresh message at each 30 fps tick and paces it the
//!    same way. Last, what pacing costs in latency: both unpaced, no loss, MTU 1200.
//!
//! `cargo bench -p camring-bench --bench udp` runs the full benchmark; without `--bench` (as under
//! `cargo test --all-targets`) a smoke run with tiny images checks that everything works.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{range, rate_cells, JpegSource, Ring, Running, Timing};
use anyhow::{anyhow, bail, ensure, Context, Result};
use camring_bridge::udp::{CountersHandle, UdpBridge, UdpConfig};
use camring_client::udp::{self as client, Client, ClientConfig, Event};
use camring_protocol::udp::{
    Fragmenter, Reassembler, ReassemblerConfig, DEFAULT_MTU, FRAGMENT_HEADER_SIZE, MAX_MTU,
};
use camring_protocol::wire::{self};
use camring_shm::clock::now_ns;
use camring_shm::Writer;
use camring_testkit::{self as kit, fmt_ns, median, Order, Table};
use hdrhistogram::Histogram;
use tokio::runtime::Runtime;

/// How many messages the sender may be ahead of what the client received (A).
const AHEAD: u64 = 2;
/// The bare sender's stream id.
const BARE_STREAM: u32 = 0xBA7E;

#[derive(Debug, Clone)]
struct Params {
    t: Timing,
    losses: Vec<f64>,
    mtus: Vec<usize>,
}

// ---------------------------------------------------------------- the source

/// How a sender paces its messages.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Whenever fewer than `AHEAD` were sent beyond what the client received (or after a
    /// 50 ms stall).
    Ahead,
    /// At a fixed rate.
    Fps(f64),
}

/// Shared between a sender and the client.
#[derive(Debug, Default)]
struct Gate {
    stop: AtomicBool,
    /// The highest frame number the client received, plus one (0: none yet).
    received: AtomicU64,
    /// Messages the bare sender sent whole.
    sent: AtomicU64,
}

impl Gate {
    fn stopped(&self) -> bool {
        // SYNC POINT: Relaxed: a flag; nothing is published through it.
        self.stop.load(Ordering::Relaxed)
    }

    fn received(&self) -> u64 {
        // SYNC POINT: Relaxed: a count the sender polls; nothing is published through it.
        self.received.load(Ordering::Relaxed)
    }

    fn got(&self, frame: u64) {
        // SYNC POINT: Relaxed, see `received`.
        self.received.fetch_max(frame + 1, Ordering::Relaxed);
    }

    fn sent(&self) -> u64 {
        // SYNC POINT: Relaxed, see `received`.
        self.sent.load(Ordering::Relaxed)
    }
}

/// When the next message may go.
struct Pacer {
    pace: Pace,
    start: Instant,
    /// Messages sent or skipped so far (at a fixed rate: ticks).
    sent: u64,
    /// The frame number of the first message.
    first: u64,
    last_progress: (u64, Instant),
}

impl Pacer {
    fn new(pace: Pace, first: u64) -> Pacer {
        let now = Instant::now();
        Pacer {
            pace,
            start: now,
            sent: 0,
            first,
            last_progress: (0, now),
        }
    }

    /// How long to wait before the message numbered `next` (zero: now). Messages are
    /// counted by number: one the client never got (sent before it subscribed, or
    /// skipped by the bridge, which reads the newest) is not waited for, and after a
    /// 50 ms stall (a lost fragment) the next goes anyway.
    fn wait(&mut self, gate: &Gate, next: u64) -> Duration {
        match self.pace {
            Pace::Ahead => {
                let received = gate.received();
                if received != self.last_progress.0 {
                    self.last_progress = (received, Instant::now());
                }
                if next >= received.max(self.first) + AHEAD
                    && self.last_progress.1.elapsed() < Duration::from_millis(50)
                {
                    return Duration::from_millis(1);
                }
                self.last_progress.1 = Instant::now();
                Duration::ZERO
            }
            Pace::Fps(fps) => {
                let period = Duration::from_secs_f64(1.0 / fps);
                let mut due = self.start + period.mul_f64(self.sent as f64);
                let now = Instant::now();
                // Late ticks are skipped, not caught up.
                while now > due + period {
                    self.sent += 1;
                    due += period;
                }
                due.saturating_duration_since(now)
            }
        }
    }
}

/// The ring's producer thread, until `gate.stop`.
fn produce(writer: &mut Writer, src: &JpegSource, pace: Pace, gate: &Gate) -> Result<u64> {
    let mut pacer = Pacer::new(pace, writer.next_frame());
    while !gate.stopped() {
        let wait = pacer.wait(gate, writer.next_frame());
        if !wait.is_zero() {
            std::thread::sleep(wait.min(Duration::from_millis(5)));
            continue;
        }
        src.publish(writer, pacer.sent)?;
        pacer.sent += 1;
    }
    Ok(pacer.sent)
}

// ---------------------------------------------------------------- the bare sender

/// A bare sender: learns the client's address from its first datagram, then sends it
/// messages cut by `Fragmenter` at `mtu`, paced over `window` (0: back to back), as
/// `pace` says, until `gate.stop`: each a message made then (the 4 JPEGs copied, stamped
/// with the time), numbered from 0. Returns the messages it sent whole.
async fn bare_sender(
    socket: tokio::net::UdpSocket,
    src: Arc<JpegSource>,
    pace: Pace,
    mtu: usize,
    window: Duration,
    gate: Arc<Gate>,
) -> Result<u64> {
    let mut buf = vec![0u8; 2048];
    let (_, client) = socket.recv_from(&mut buf).await?;
    let mut pacer = Pacer::new(pace, 0);
    let mut out = vec![0u8; mtu];
    let mut sent = 0;
    while !gate.stopped() {
        let wait = pacer.wait(&gate, pacer.sent);
        if !wait.is_zero() {
            tokio::time::sleep(wait.min(Duration::from_millis(5))).await;
            continue;
        }
        let seq = pacer.sent;
        pacer.sent += 1;
        // A message made now (as the adapter makes one from the ring's frame).
        let message = src.message(seq, now_ns())?;
        let fragments = Fragmenter::new(&message, BARE_STREAM, seq + 1, mtu)?;
        let count = fragments.fragment_count();
        let start = tokio::time::Instant::now();
        for i in 0..count {
            if !window.is_zero() {
                let due = start + window.mul_f64(f64::from(i) / f64::from(count));
                if due > tokio::time::Instant::now() {
                    tokio::time::sleep_until(due).await;
                }
            }
            let f = fragments.fragment(i).context("fragment")?;
            let n = f.write_into(&mut out)?;
            socket.send_to(&out[..n], client).await?;
        }
        sent += 1;
        // SYNC POINT: Relaxed, see `Gate::received`.
        gate.sent.fetch_add(1, Ordering::Relaxed);
    }
    Ok(sent)
}

// ---------------------------------------------------------------- the client

/// What one client received in its measuring window.
#[derive(Debug)]
struct Recv {
    messages: u64,
    bytes: u64,
    /// now − capture_ns, per camera.
    capture: Histogram<u64>,
    /// Frames dropped incomplete by reassembly, in the window.
    incomplete: u64,
    window_ns: u64,
    /// Sender CPU over the window (its threads).
    sender_cpu_ns: u64,
    /// Messages the sender sent whole over the window.
    sent: u64,
}

impl Recv {
    fn new(window: Duration) -> Recv {
        Recv {
            messages: 0,
            bytes: 0,
            capture: kit::histogram(),
            incomplete: 0,
            window_ns: window.as_nanos() as u64,
            sender_cpu_ns: 0,
            sent: 0,
        }
    }

    fn rate(&self) -> f64 {
        self.messages as f64 / (self.window_ns as f64 / 1e9)
    }
}

/// How the client gets messages.
enum Receiver {
    /// Subscribed to a bridge.
    Adapter(Box<Client>),
    /// From the bare sender.
    Bare(Box<Reassembler>),
}

fn incomplete(s: &camring_protocol::udp::ReassemblyStats) -> u64 {
    s.dropped_timeout + s.dropped_superseded + s.dropped_evicted + s.dropped_inconsistent
}

/// CPU time of this process's threads whose name starts with one of `prefixes`
/// (`/proc/self/task/*/schedstat`, nanoseconds).
fn threads_cpu_ns(prefixes: &[&str]) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| prefixes.iter().any(|p| c.starts_with(p)))
        })
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Receives on `sock` until `until`, recording what arrives from `from` on.
fn receive(
    sock: &UdpSocket,
    mut rx: Receiver,
    gate: &Gate,
    sender_threads: &[&str],
    sent: &dyn Fn() -> u64,
    from: Instant,
    until: Instant,
) -> Result<Recv> {
    let mut r = Recv::new(until - from);
    let epoch = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut started: Option<(u64, u64, u64)> = None;
    if let Receiver::Bare(_) = rx {
        // Tells the bare sender where to send.
        sock.send(b"hello")?;
    }
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if now >= from && started.is_none() {
            let incomplete0 = match &rx {
                Receiver::Adapter(c) => incomplete(c.reassembly()),
                Receiver::Bare(b) => incomplete(b.stats()),
            };
            started = Some((threads_cpu_ns(sender_threads), incomplete0, sent()));
        }
        if let Receiver::Adapter(c) = &mut rx {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                if let Some(Event::Refused(reason)) = c.handle_timeout(now) {
                    bail!("refused: {reason:?}");
                }
            }
            while let Some(d) = c.poll_transmit() {
                sock.send(&d)?;
            }
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if let Receiver::Bare(b) = &mut rx {
                    b.handle_timeout(epoch.elapsed().as_nanos() as u64);
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let t = Instant::now();
        let message = match &mut rx {
            Receiver::Adapter(c) => match c.handle(t, &buf[..n]) {
                Some(Event::Message(m)) => Some(m),
                Some(Event::Refused(reason)) => bail!("refused: {reason:?}"),
                _ => None,
            },
            Receiver::Bare(b) => {
                match b.handle_datagram(t.duration_since(epoch).as_nanos() as u64, &buf[..n]) {
                    camring_protocol::udp::Outcome::Complete(m) => Some(m.message),
                    _ => None,
                }
            }
        };
        let Some(message) = message else { continue };
        let now = now_ns();
        let m = wire::parse(&message).map_err(|e| anyhow!("bad message: {e}"))?;
        gate.got(m.header.frame);
        if t >= from {
            r.messages += 1;
            r.bytes += message.len() as u64;
            for c in &m.cameras {
                kit::record(&mut r.capture, now.saturating_sub(c.info.capture_ns));
            }
        }
    }
    if let Some((cpu0, incomplete0, sent0)) = started {
        r.sender_cpu_ns = threads_cpu_ns(sender_threads).saturating_sub(cpu0);
        r.sent = sent().saturating_sub(sent0);
        let incomplete1 = match &rx {
            Receiver::Adapter(c) => incomplete(c.reassembly()),
            Receiver::Bare(b) => incomplete(b.stats()),
        };
        r.incomplete = incomplete1 - incomplete0;
    }
    if let Receiver::Adapter(mut c) = rx {
        if let Some(bye) = c.close() {
            let _ = sock.send(&bye);
        }
    }
    Ok(r)
}

/// A blocking client socket connected to `server`.
fn client_socket(server: SocketAddr) -> Result<UdpSocket> {
    let sock = client::socket(server, client::RECV_BUFFER)?;
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_millis(2)))?;
    Ok(sock)
}

// ---------------------------------------------------------------- the relay

/// Forwards one client's datagrams to `server` and the server's back, dropping each
/// server-to-client datagram with probability `loss` (seeded). Until dropped.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(server: SocketAddr, loss: f64, seed: u64) -> Result<Relay> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        front.set_read_timeout(Some(Duration::from_millis(20)))?;
        let _ = socket2::SockRef::from(&*front).set_send_buffer_size(4 << 20);
        let up = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        up.connect(server)?;
        up.set_read_timeout(Some(Duration::from_millis(20)))?;
        let _ = socket2::SockRef::from(&*up).set_recv_buffer_size(8 << 20);
        let addr = front.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
        let mut threads = Vec::new();
        {
            let (front, up, stop, client) = (
                Arc::clone(&front),
                Arc::clone(&up),
                Arc::clone(&stop),
                Arc::clone(&client),
            );
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                // SYNC POINT: Relaxed: a stop flag; nothing is published through it.
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
                        let _ = up.send(&buf[..n]);
                    }
                }
            }));
        }
        {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = up.recv(&mut buf) {
                        let to = *client.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(to) = to {
                            if rng.f64() >= loss {
                                let _ = front.send_to(&buf[..n], to);
                            }
                        }
                    }
                }
            }));
        }
        Ok(Relay {
            addr,
            stop,
            threads,
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SYNC POINT: Relaxed, see the threads.
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- the bench

/// One running bridge.
struct Bridge {
    addr: SocketAddr,
    counters: CountersHandle,
    running: Running,
}

struct Bench {
    p: Params,
    ring: Ring,
    server: Runtime,
}

/// Runs the benchmark: in full under `cargo bench` (`--bench`), else a smoke run.
pub fn main() -> Result<()> {
    let t = Timing::get(2, 10, [150, 50, 300, 100])?;
    let p = Params {
        losses: if t.full {
            vec![0.0, 0.01, 0.05]
        } else {
            vec![0.0, 0.05]
        },
        mtus: if t.full {
            vec![DEFAULT_MTU, MAX_MTU]
        } else {
            vec![DEFAULT_MTU]
        },
        t,
    };
    let ring = Ring::create("udp", p.t.size)?;
    let server = super::runtime("udp-srv")?;
    let mut bench = Bench { p, ring, server };
    bench.throughput()?;
    bench.latency()
}

impl Bench {
    fn bridge(&self, pace: f64, mtu: usize) -> Result<Bridge> {
        let mut config = UdpConfig::new(self.ring.name().to_owned());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.pace = pace;
        config.mtu = mtu;
        let bridge = self.server.block_on(UdpBridge::bind(config))?;
        let addr = bridge.local_addr()?;
        let counters = bridge.counters_handle();
        Ok(Bridge {
            addr,
            counters,
            running: Running::spawn(&self.server, move |stop| bridge.run(stop)),
        })
    }

    fn stop_bridge(&self, b: Bridge) -> Result<()> {
        b.running.stop(&self.server)
    }

    /// The ring's producer on its own thread at `pace` while `f` runs.
    fn with_producer<T>(
        &mut self,
        pace: Pace,
        gate: &Gate,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let Ring { writer, src, .. } = &mut self.ring;
        std::thread::scope(|s| {
            let producer = s.spawn(|| produce(writer, src, pace, gate));
            let out = f();
            // SYNC POINT: Relaxed, see `Gate::stopped`.
            gate.stop.store(true, Ordering::Relaxed);
            producer
                .join()
                .map_err(|_| anyhow!("producer panicked"))??;
            out
        })
    }

    /// Subscribes a client to `server` (directly or through a relay) and receives.
    fn adapter_run(
        &mut self,
        server: SocketAddr,
        counters: &CountersHandle,
        pace: Pace,
        from: Duration,
        run: Duration,
    ) -> Result<Recv> {
        let gate = Gate::default();
        let sock = client_socket(server)?;
        let ring_thread = format!("ring {}", self.ring.name());
        let ring_thread = &ring_thread[..ring_thread.len().min(15)];
        let threads = ["udp-srv", ring_thread];
        self.with_producer(pace, &gate, || {
            let c = Client::new(ClientConfig::default(), Instant::now())?;
            let from = Instant::now() + from;
            let sent = || counters.get().frames_sent;
            receive(
                &sock,
                Receiver::Adapter(Box::new(c)),
                &gate,
                &threads,
                &sent,
                from,
                from + run,
            )
        })
    }

    /// The bare sender to a client (directly or through a relay) at `mtu` and `window`.
    /// A latency case of `bridge` at 30 fps through a relay losing `loss` of the datagrams
    /// (seeded by `seed`).
    fn adapter_case(&mut self, bridge: &Bridge, loss: f64, seed: u64) -> Result<Recv> {
        let relay = Relay::start(bridge.addr, loss, seed)?;
        let (from, run) = (self.p.t.case_warmup, self.p.t.case);
        self.adapter_run(relay.addr, &bridge.counters, Pace::Fps(30.0), from, run)
    }

    /// A latency case of the bare sender at 30 fps through a relay losing `loss` of the
    /// datagrams (seeded by `seed`), fragments of `mtu` spread over `window`.
    fn bare_case(&self, loss: f64, seed: u64, mtu: usize, window: Duration) -> Result<Recv> {
        let t = &self.p.t;
        let pace = Pace::Fps(30.0);
        self.bare_run(Some((loss, seed)), pace, mtu, window, t.case_warmup, t.case)
    }

    fn bare_run(
        &self,
        relay_loss: Option<(f64, u64)>,
        pace: Pace,
        mtu: usize,
        window: Duration,
        from: Duration,
        run: Duration,
    ) -> Result<Recv> {
        let gate = Arc::new(Gate::default());
        let socket = self
            .server
            .block_on(tokio::net::UdpSocket::bind(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            ))))?;
        let _ =
            socket2::SockRef::from(&socket).set_send_buffer_size(camring_bridge::udp::SEND_BUFFER);
        let addr = socket.local_addr()?;
        let task = self.server.spawn(bare_sender(
            socket,
            Arc::clone(&self.ring.src),
            pace,
            mtu,
            window,
            Arc::clone(&gate),
        ));
        let relay = relay_loss
            .map(|(loss, seed)| Relay::start(addr, loss, seed))
            .transpose()?;
        let target = relay.as_ref().map_or(addr, |r| r.addr);
        let sock = client_socket(target)?;
        let reassembler = Reassembler::new(ReassemblerConfig::default());
        let start = Instant::now() + from;
        let sent = || gate.sent();
        let r = receive(
            &sock,
            Receiver::Bare(Box::new(reassembler)),
            &gate,
            &["udp-srv"],
            &sent,
            start,
            start + run,
        );
        gate.stop.store(true, Ordering::Relaxed);
        self.server.block_on(task).context("bare sender task")??;
        r
    }

    // ------------------------------------------------------------ A. throughput

    fn throughput(&mut self) -> Result<()> {
        let p = self.p.clone();
        let bridge = self.bridge(0.0, DEFAULT_MTU)?;
        let labels = [
            "adapter: ring → UdpBridge → client",
            "bare: Fragmenter → send_to → client",
        ];
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 2];
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); 2];
        let mut lost = [0u64; 2];
        let mut received = [0u64; 2];
        let mut bytes = [0u64; 2];
        let mut ratio = Vec::new();
        let mut cpu_ratio = Vec::new();
        let mut order = Order::new(0x0d9_5eed);
        for round in 0..p.t.warmup_rounds + p.t.rounds {
            kit::check_interrupt()?;
            let measured = round >= p.t.warmup_rounds;
            let mut round_rate = [0.0; 2];
            let mut round_cpu = [0.0; 2];
            for v in order.shuffled(2) {
                let r = if v == 0 {
                    self.adapter_run(
                        bridge.addr,
                        &bridge.counters,
                        Pace::Ahead,
                        p.t.settle,
                        p.t.run,
                    )?
                } else {
                    self.bare_run(
                        None,
                        Pace::Ahead,
                        DEFAULT_MTU,
                        Duration::ZERO,
                        p.t.settle,
                        p.t.run,
                    )?
                };
                ensure!(r.messages > 0, "{}: no message received", labels[v]);
                round_rate[v] = r.rate();
                round_cpu[v] = r.sender_cpu_ns as f64 / r.messages as f64;
                if measured {
                    rates[v].push(r.rate());
                    cpu[v].push(round_cpu[v]);
                    lost[v] += r.incomplete;
                    received[v] += r.messages;
                    bytes[v] += r.bytes;
                }
            }
            if measured {
                ratio.push(round_rate[0] / round_rate[1]);
                cpu_ratio.push(round_cpu[0] / round_cpu[1]);
            }
        }
        let counters = bridge.counters.get();
        self.stop_bridge(bridge)?;
        let len = self.ring.src.message_len();
        println!("## A. Throughput: MTU {DEFAULT_MTU}, fragments back to back, over loopback\n");
        println!(
            "{} rounds (after {} warm-up rounds) of both variants in a fresh random order, each \
             a new subscription measured for {:.1} s after {:.1} s; the sender keeps {AHEAD} \
             messages ahead of the client. Message: {len} bytes, {} fragments.\n",
            p.t.rounds,
            p.t.warmup_rounds,
            p.t.run.as_secs_f64(),
            p.t.settle.as_secs_f64(),
            len.div_ceil(DEFAULT_MTU - FRAGMENT_HEADER_SIZE),
        );
        let mut t = Table::new(&[
            "variant",
            "messages/s",
            "MB/s",
            "messages/s per round",
            "sender CPU per message",
            "lost incomplete",
        ]);
        for v in 0..2 {
            let mean = bytes[v] as f64 / received[v].max(1) as f64;
            let mut row = vec![labels[v].to_owned()];
            row.extend(rate_cells(&rates[v], mean));
            row.extend([
                fmt_ns(median(&cpu[v])),
                format!("{} of {}", lost[v], lost[v] + received[v]),
            ]);
            t.row(row);
        }
        t.print();
        println!(
            "adapter / bare, messages/s: median of the {} per-round ratios **{:.3}**, range {}; \
             sender CPU per message adapter / bare: median {:.3}, range {}",
            ratio.len(),
            median(&ratio),
            range(&ratio),
            median(&cpu_ratio),
            range(&cpu_ratio),
        );
        println!(
            "Adapter, all rounds: frames sent {}, dropped {} (abandoned {}), datagrams {}, send \
             errors {}.\n",
            counters.frames_sent,
            counters.frames_dropped,
            counters.frames_abandoned,
            counters.datagrams_sent,
            counters.send_errors
        );
        Ok(())
    }

    // ------------------------------------------------------------ B. latency under loss

    fn latency(&mut self) -> Result<()> {
        let p = self.p.clone();
        let len = self.ring.src.message_len();
        println!("## B. Capture → receive at 30 fps, paced, through a lossy relay\n");
        println!(
            "Each case {:.0} s measured after {:.0} s; the relay drops each server-to-client \
             datagram with probability p (seeded). Message: {len} bytes. Latency per camera \
             of the messages delivered whole; delivered / sent against (1 − p)^K.\n",
            p.t.case.as_secs_f64(),
            p.t.case_warmup.as_secs_f64(),
        );
        let mut t = Table::new(&[
            "sender",
            "MTU",
            "K",
            "loss",
            "sent",
            "delivered",
            "ratio",
            "(1−p)^K",
            "capture → receive p50",
            "p99",
        ]);
        for &mtu in &p.mtus {
            let bridge = self.bridge(camring_bridge::udp::DEFAULT_PACE, mtu)?;
            let k = len.div_ceil(mtu - FRAGMENT_HEADER_SIZE);
            for (i, &loss) in p.losses.iter().enumerate() {
                kit::check_interrupt()?;
                let seed = 0x1055_0000 + i as u64;
                let expected = (1.0 - loss).powi(k as i32);
                // The adapter.
                let r = self.adapter_case(&bridge, loss, seed)?;
                t.row(row("adapter", mtu, k, loss, &r, expected));
                // The bare sender, same pacing window.
                let window = Duration::from_secs_f64(camring_bridge::udp::DEFAULT_PACE / 30.0);
                let r = self.bare_case(loss, seed, mtu, window)?;
                t.row(row("bare", mtu, k, loss, &r, expected));
            }
            self.stop_bridge(bridge)?;
        }
        // What pacing costs: the same without it, no loss, MTU 1200.
        kit::check_interrupt()?;
        let k = len.div_ceil(DEFAULT_MTU - FRAGMENT_HEADER_SIZE);
        let bridge = self.bridge(0.0, DEFAULT_MTU)?;
        let r = self.adapter_case(&bridge, 0.0, 1)?;
        self.stop_bridge(bridge)?;
        t.row(row("adapter, --pace 0", DEFAULT_MTU, k, 0.0, &r, 1.0));
        let r = self.bare_case(0.0, 1, DEFAULT_MTU, Duration::ZERO)?;
        t.row(row("bare, unpaced", DEFAULT_MTU, k, 0.0, &r, 1.0));
        t.print();
        Ok(())
    }
}

fn row(sender: &str, mtu: usize, k: usize, loss: f64, r: &Recv, expected: f64) -> Vec<String> {
    let lat = |q: f64| {
        if r.capture.is_empty() {
            "n/a".to_owned()
        } else {
            fmt_ns(r.capture.value_at_quantile(q) as f64)
        }
    };
    vec![
        sender.to_owned(),
        mtu.to_string(),
        k.to_string(),
        format!("{:.0} %", loss * 100.0),
        r.sent.to_string(),
        r.messages.to_string(),
        format!("{:.3}", r.messages as f64 / r.sent.max(1) as f64),
        format!("{expected:.3}"),
        lat(0.5),
        lat(0.99),
    ]
}
