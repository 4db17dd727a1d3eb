//! The WebSocket adapter (`camring_bridge::WsBridge`) against bare tokio-tungstenite, and
//! its capture-to-receive latency with 1 and 50 clients.
//!
//! The bench process is the producer: a `camring_shm::Writer` on a 4-slot ring of 4 JPEG
//! cameras, publishing 4 JPEGs (q80, 4:2:0) made once from the synthetic pattern, every
//! publish re-stamped (`capture_ns` = `tick_ns` = the time the publish starts). The bridge
//! runs in the same process on its own tokio runtime (2 worker threads, as `camring
//! bridge ws` runs it) and reads the ring like any reader; clients are `camring view`'s
//! WebSocket connections (`camring_client::ws`) over loopback on another runtime, each parsing every binary message with
//! `camring_protocol::wire::parse`. All timestamps are `camring_shm::clock::now_ns`.
//!
//! A. Throughput, one client taking messages as fast as it can, variants interleaved in a
//!    fresh random order every round (`kit::Order`), a fresh connection each time:
//!
//!    * `bridge`: ring → `WsBridge` → client. The producer keeps [`AHEAD`] frame numbers
//!      ahead of the newest one the client received (and publishes anyway after a 50 ms
//!      stall), so the bridge has a newer frame whenever its writer is free, and the ring
//!      is not flooded with frames nobody takes (its ring thread copies out every frame
//!      it sees while a client is connected).
//!    * `bare`: a tokio-tungstenite server (same runtime kind) sending the very bytes of a
//!      message the bridge sent (same size), back to back, on a socket with the bridge's
//!      options (`TCP_NODELAY`, `TCP_NOTSENT_LOWAT` = `camring_bridge::ws::NOTSENT_LOWAT`).
//!    * `bare, default socket`: the same without those options.
//!
//!    Messages/s and bytes/s per run; the ratio bridge / bare is taken per round and its
//!    median reported (goal ≥ 0.9). Latency per message: for the bridge `publish_ns` →
//!    receive and `send_ns` (stamped by the bridge before it builds the message) →
//!    receive; for bare, the time the server starts `send` → receive (stamps passed to the
//!    client on a channel, matched by order).
//!
//! B. Capture-to-receive latency: the producer publishes at 30 and 60 fps, 1 and 50
//!    clients (tokio tasks on a 2-worker runtime) record `now − capture_ns` for every
//!    camera of every message into an hdrhistogram. Received fps per client (min and
//!    median), frames the bridge dropped (`camring_bridge_frames_dropped_total`) and
//!    frame-number gaps seen by the clients. Producer, bridge and clients share the
//!    machine's cores: with 50 clients CPU contention is part of the result.
//!
//! `cargo bench -p camring-bench --bench ws` runs the full benchmark; without `--bench` (as under
//! `cargo test --all-targets`) a smoke run with tiny images checks that everything works.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    measure_clients, range, rate_cells, Gate, Pace, Produced, Recv, Ring, Running, Timing, Usage,
    CAMERAS, QUALITY, SLOTS,
};
use anyhow::{anyhow, ensure, Context, Result};
use bytes::Bytes;
use camring_bridge::{WsBridge, WsConfig};
use camring_client::ws::{WsClient, WsLink, WsTarget};
use camring_client::{ConnectFailure, Link, Received};
use camring_protocol::wire;
use camring_shm::clock::now_ns;
use camring_testkit::{self as kit, fmt_ns, median, Order, Table};
use futures_util::SinkExt;
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// How many multi-frames the producer may publish beyond what the client received (A).
const AHEAD: u64 = 2;

#[derive(Debug, Clone)]
struct Params {
    t: Timing,
    /// B: producer rates, client counts, passes over the cases (forward, then reversed).
    rates: Vec<f64>,
    clients: Vec<usize>,
    passes: usize,
}

// ---------------------------------------------------------------- setup

type Ws = WsLink;

/// Where a received message's send time comes from.
#[derive(Debug)]
enum Stamps {
    /// The bridge's header (`publish_ns`, `send_ns`, `capture_ns`).
    Header,
    /// A bare server's stamps, one per message in order.
    Channel(mpsc::UnboundedReceiver<u64>),
}

/// `camring view`'s WebSocket connection (camring-client), to the bridge or a bare server.
async fn connect(addr: SocketAddr) -> Result<Ws> {
    let client = WsClient {
        target: WsTarget::new(&format!("ws://{addr}/ws"), None, &Default::default())
            .map_err(anyhow::Error::msg)?,
        rcvbuf: None,
    };
    client
        .open()
        .await
        .map_err(|e| anyhow!("connecting to {addr}: {}", e.describe()))
}

/// Receives until `until`, recording what arrives from `from` on.
async fn receive(
    mut ws: Ws,
    mut stamps: Stamps,
    gate: Option<&Gate>,
    from: Instant,
    until: Instant,
) -> Result<Recv> {
    let mut r = Recv::new((until - from).as_nanos() as u64);
    let mut last_frame: Option<u64> = None;
    // What the process and the machine used at the first message measured.
    let mut started: Option<Usage> = None;
    loop {
        let received = match tokio::time::timeout_at(until, ws.recv()).await {
            Err(_) => break,
            Ok(r) => r.map_err(|e| anyhow!("the connection ended: {e}"))?,
        };
        let (bytes, now) = match received {
            Received::Message { data, received_ns } => (data, received_ns),
            Received::Text(_) => {
                r.texts += 1;
                continue;
            }
        };
        let m = wire::parse(&bytes).map_err(|e| anyhow!("bad message: {e}"))?;
        let sent = match &mut stamps {
            Stamps::Header => m.header.send_ns,
            Stamps::Channel(rx) => rx.try_recv().context("no send stamp for a message")?,
        };
        if let Some(g) = gate {
            g.received(m.header.frame);
        }
        let measuring = Instant::now() >= from;
        if measuring {
            started.get_or_insert_with(Usage::now);
            r.messages += 1;
            r.bytes += bytes.len() as u64;
            kit::record(&mut r.send, now.saturating_sub(sent));
            if matches!(stamps, Stamps::Header) {
                kit::record(&mut r.publish, now.saturating_sub(m.header.publish_ns));
                for c in &m.cameras {
                    kit::record(&mut r.capture, now.saturating_sub(c.info.capture_ns));
                }
                if let Some(l) = last_frame {
                    r.gaps += m.header.frame.saturating_sub(l + 1);
                }
            }
        }
        last_frame = Some(m.header.frame);
    }
    if let Some(u) = started {
        u.record_since(&mut r);
    }
    Ok(r)
}

/// A bare tokio-tungstenite server: every connection is sent `message` back to back; the
/// stamp of each send goes to the sender waiting in `stamps`.
async fn bare_server(
    listener: TcpListener,
    tuned: bool,
    message: Bytes,
    stamps: Arc<Mutex<Option<mpsc::UnboundedSender<u64>>>>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        if tuned {
            let _ = tcp.set_nodelay(true);
            let _ = socket2::SockRef::from(&tcp)
                .set_tcp_notsent_lowat(camring_bridge::ws::NOTSENT_LOWAT);
        }
        let Some(tx) = stamps.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            continue;
        };
        let message = message.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            loop {
                if tx.send(now_ns()).is_err() {
                    return;
                }
                if ws.send(Message::Binary(message.clone())).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Counters of the bridge read at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    read: u64,
    sent: u64,
    dropped: u64,
    forwarded: u64,
    encodes: u64,
}

impl Counts {
    fn of(m: &camring_bridge::metrics::Metrics) -> Counts {
        let ws = camring_bridge::metrics::kind("ws");
        Counts {
            read: m.frames_read.get(),
            sent: m.frames_sent.get_or_create(&ws).get(),
            dropped: m.frames_dropped.get_or_create(&ws).get(),
            forwarded: m.forwarded.get(),
            encodes: m.encodes.get(),
        }
    }

    fn since(self, o: Counts) -> Counts {
        Counts {
            read: self.read - o.read,
            sent: self.sent - o.sent,
            dropped: self.dropped - o.dropped,
            forwarded: self.forwarded - o.forwarded,
            encodes: self.encodes - o.encodes,
        }
    }
}

/// The bridge and the runtimes.
struct Net {
    server: Runtime,
    /// One client: a current-thread runtime driven by the calling thread.
    client1: Runtime,
    /// Many clients: tasks on 2 workers.
    clients: Runtime,
    bridge_addr: SocketAddr,
    metrics: Arc<camring_bridge::metrics::Metrics>,
    bridge: Running,
}

struct Bench {
    p: Params,
    ring: Ring,
    net: Net,
}

/// Runs the benchmark: in full under `cargo bench` (`--bench`), else a smoke run.
pub fn main() -> Result<()> {
    let t = Timing::get(2, 12, [100, 20, 150, 50])?;
    let p = Params {
        rates: vec![30.0, 60.0],
        clients: if t.full { vec![1, 50] } else { vec![1, 4] },
        passes: if t.full { 2 } else { 1 },
        t,
    };
    let mut bench = Bench::new(&p)?;
    let result = bench.run();
    let stopped = bench.stop();
    result.and(stopped)
}

impl Bench {
    fn new(p: &Params) -> Result<Bench> {
        let ring = Ring::create("ws", p.t.size)?;
        let (name, src) = (ring.name().to_owned(), &ring.src);
        let (w, h) = p.t.size;
        let server = super::runtime("bench-server")?;
        let client1 = super::current_thread()?;
        let clients = super::runtime("bench-clients")?;
        let mut config = WsConfig::new(name);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let bridge = server.block_on(WsBridge::bind(config))?;
        let bridge_addr = bridge.local_addr()?;
        let metrics = bridge.metrics();
        let bridge = Running::spawn(&server, move |stop| bridge.run(stop));
        println!(
            "{CAMERAS} × {w}×{h} JPEG q{QUALITY} (synthetic pattern, made once; every publish \
             re-stamped): JPEGs {} bytes, {} bytes of payload per message; ring of {SLOTS} \
             slots\n",
            src.jpegs
                .iter()
                .map(|j| j.len().to_string())
                .collect::<Vec<_>>()
                .join(" / "),
            src.message_payload()
        );
        Ok(Bench {
            p: p.clone(),
            ring,
            net: Net {
                server,
                client1,
                clients,
                bridge_addr,
                metrics,
                bridge,
            },
        })
    }

    fn run(&mut self) -> Result<()> {
        let template = self.check()?;
        self.throughput(template)?;
        self.latency()
    }

    /// Stops the bridge (closing its clients) and its ring thread.
    fn stop(self) -> Result<()> {
        let Bench { net, ring, .. } = self;
        net.bridge.stop(&net.server)?;
        net.server.shutdown_timeout(Duration::from_secs(1));
        drop(ring);
        Ok(())
    }

    /// One message through the bridge: the JPEGs forwarded byte for byte. Returns the
    /// message, which the bare servers send.
    fn check(&mut self) -> Result<Bytes> {
        let gate = Gate::default();
        let net = &self.net;
        let (message, _) = self.ring.with_producer(Pace::Fps(30.0), &gate, || {
            net.client1.block_on(async {
                let mut ws = connect(net.bridge_addr).await?;
                loop {
                    let m = tokio::time::timeout(Duration::from_secs(5), ws.recv())
                        .await
                        .context("no frame from the bridge within 5 s")?
                        .map_err(anyhow::Error::msg)?;
                    if let Received::Message { data, .. } = m {
                        return Ok::<_, anyhow::Error>(data);
                    }
                }
            })
        })?;
        self.ring.src.check_forwarded(&message)?;
        println!(
            "Check: a bridge message carries the ring's 4 JPEGs byte for byte ({} bytes, \
             forwarded, not re-encoded); the bare servers send this very message.\n",
            message.len()
        );
        Ok(message)
    }

    // ------------------------------------------------------------ A. throughput

    fn throughput(&mut self, template: Bytes) -> Result<()> {
        let p = self.p.clone();
        let mut bare_addrs = Vec::new();
        let mut bare_slots = Vec::new();
        for tuned in [true, false] {
            let listener = self
                .net
                .server
                .block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))?;
            bare_addrs.push(listener.local_addr()?);
            let slot = Arc::new(Mutex::new(None));
            bare_slots.push(Arc::clone(&slot));
            self.net
                .server
                .spawn(bare_server(listener, tuned, template.clone(), slot));
        }
        let labels = [
            "bridge: ring → WsBridge → client",
            "bare tokio-tungstenite, bridge's socket options",
            "bare tokio-tungstenite, default socket",
        ];
        let n = labels.len();
        let mut total: Vec<Recv> = (0..n).map(|_| Recv::new(0)).collect();
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut cores: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut others: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut cpu_per_msg: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut ratio = Vec::new();
        let mut ratio_default = Vec::new();
        let mut efficiency = Vec::new();
        let mut orders = Vec::new();
        let mut producer = Produced::default();
        let mut producer_wall = 0u64;
        let mut order = Order::new(0x5eed_0fb1_d9e5);
        let counts0 = Counts::of(&self.net.metrics);
        for round in 0..p.t.warmup_rounds + p.t.rounds {
            kit::check_interrupt()?;
            let measured = round >= p.t.warmup_rounds;
            let mut round_rate = vec![0.0; n];
            let mut round_cpu = vec![0.0; n];
            let vs = order.shuffled(n);
            for &v in &vs {
                let (r, produced) = if v == 0 {
                    let gate = Arc::new(Gate::default());
                    let net = &self.net;
                    let g = Arc::clone(&gate);
                    let (r, produced) =
                        self.ring.with_producer(Pace::Ahead(AHEAD), &gate, || {
                            net.client1.block_on(async {
                                let ws = connect(net.bridge_addr).await?;
                                let from = Instant::now() + p.t.settle;
                                receive(ws, Stamps::Header, Some(&g), from, from + p.t.run).await
                            })
                        })?;
                    (r, Some(produced))
                } else {
                    let (tx, rx) = mpsc::unbounded_channel();
                    *bare_slots[v - 1].lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
                    let addr = bare_addrs[v - 1];
                    let r = self.net.client1.block_on(async {
                        let ws = connect(addr).await?;
                        let from = Instant::now() + p.t.settle;
                        receive(ws, Stamps::Channel(rx), None, from, from + p.t.run).await
                    })?;
                    (r, None)
                };
                ensure!(r.messages > 0, "{}: no message received", labels[v]);
                round_rate[v] = r.fps();
                round_cpu[v] = r.cpu_ns as f64 / r.messages as f64;
                if measured {
                    rates[v].push(r.fps());
                    cores[v].push(r.cpu_ns as f64 / r.wall_ns as f64);
                    others[v].push(r.others_ns as f64 / r.wall_ns as f64);
                    cpu_per_msg[v].push(r.cpu_ns as f64 / r.messages as f64);
                    total[v].add(&r)?;
                    total[v].faults += r.faults;
                    total[v].switches += r.switches;
                    if let Some(pr) = produced {
                        producer.published += pr.published;
                        producer.cpu_ns += pr.cpu_ns;
                        producer_wall += (p.t.settle + p.t.run).as_nanos() as u64;
                    }
                }
            }
            if measured {
                ratio.push(round_rate[0] / round_rate[1]);
                ratio_default.push(round_rate[0] / round_rate[2]);
                efficiency.push(round_cpu[1] / round_cpu[0]);
                orders.push(vs);
            }
        }
        let counts = Counts::of(&self.net.metrics).since(counts0);

        println!("## A. Throughput: one client over loopback, bridge vs bare tokio-tungstenite\n");
        println!(
            "{} rounds (after {} warm-up rounds) of the 3 variants in a fresh random order, \
             each a new connection measured for {:.1} s after {:.1} s; the producer keeps {AHEAD} \
             multi-frames ahead of the bridge's client. Latency: bridge `send_ns` (stamped \
             before building the message) → received and parsed; bare: the server starting \
             `send` → received and parsed.\n",
            p.t.rounds,
            p.t.warmup_rounds,
            p.t.run.as_secs_f64(),
            p.t.settle.as_secs_f64()
        );
        let mut t = Table::new(&[
            "variant",
            "messages/s",
            "MB/s",
            "messages/s per round",
            "CPU (cores)",
            "other processes (cores)",
            "CPU per message",
            "page faults per message",
            "context switches per message",
            "send → receive p50",
            "p99",
            "publish → receive p50",
            "p99",
            "capture → receive p50",
            "p99",
        ]);
        for v in 0..n {
            let r = &total[v];
            let mean_size = r.bytes as f64 / r.messages.max(1) as f64;
            let bridge_only = |h: &Histogram<u64>, q: f64| {
                if v == 0 {
                    fmt_ns(h.value_at_quantile(q) as f64)
                } else {
                    "-".to_owned()
                }
            };
            let mut row = vec![labels[v].to_owned()];
            row.extend(rate_cells(&rates[v], mean_size));
            row.extend([
                format!("{:.2}", median(&cores[v])),
                format!("{:.2}", median(&others[v])),
                fmt_ns(median(&cpu_per_msg[v])),
                format!("{:.1}", r.faults as f64 / r.messages.max(1) as f64),
                format!("{:.1}", r.switches as f64 / r.messages.max(1) as f64),
                fmt_ns(r.send.value_at_quantile(0.5) as f64),
                fmt_ns(r.send.value_at_quantile(0.99) as f64),
                bridge_only(&r.publish, 0.5),
                bridge_only(&r.publish, 0.99),
                bridge_only(&r.capture, 0.5),
                bridge_only(&r.capture, 0.99),
            ]);
            t.row(row);
        }
        t.print();
        println!(
            "bridge / bare (bridge's socket options), messages/s: median of the {} per-round \
             ratios **{:.3}** (goal ≥ 0.9), range {}; ratio of the medians {:.3}",
            ratio.len(),
            median(&ratio),
            range(&ratio),
            median(&rates[0]) / median(&rates[1])
        );
        println!(
            "bridge / bare (default socket): median {:.3}, range {}",
            median(&ratio_default),
            range(&ratio_default)
        );
        println!(
            "CPU per message, bare / bridge (the throughput ratio of a machine where CPU is the \
             limit): median of the per-round ratios {:.3}, range {}",
            median(&efficiency),
            range(&efficiency)
        );
        println!(
            "per-round ratios (bridge / bare): {}",
            ratio
                .iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "orders (0 bridge, 1 bare, 2 bare default): {}\n",
            orders
                .iter()
                .map(|o| o.iter().map(|v| v.to_string()).collect::<String>())
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "Bridge, all rounds incl. warm-up and settling: producer published {}, ring thread \
             read {}, frames sent {}, dropped (replaced while pending) {}, camera images \
             forwarded {} / re-encoded {}; producer thread CPU {:.2} cores while the bridge ran \
             (measured rounds).\n",
            self.published_total(),
            counts.read,
            counts.sent,
            counts.dropped,
            counts.forwarded,
            counts.encodes,
            producer.cpu_ns as f64 / producer_wall.max(1) as f64
        );
        Ok(())
    }

    fn published_total(&self) -> u64 {
        self.ring.writer.next_frame()
    }

    // ------------------------------------------------------------ B. latency

    fn latency(&mut self) -> Result<()> {
        let p = self.p.clone();
        let mut cases = Vec::new();
        for &fps in &p.rates {
            for &n in &p.clients {
                cases.push((fps, n));
            }
        }
        let mut results: Vec<Vec<Case>> = cases.iter().map(|_| Vec::new()).collect();
        for pass in 0..p.passes {
            let mut idx: Vec<usize> = (0..cases.len()).collect();
            if pass % 2 == 1 {
                idx.reverse();
            }
            for i in idx {
                kit::check_interrupt()?;
                let (fps, n) = cases[i];
                results[i].push(self.case(fps, n)?);
            }
        }

        println!("## B. Capture → receive: producer at a camera rate, 1 and many clients\n");
        println!(
            "{} pass(es) over the cases (the second in reverse order), each measured for {:.1} \
             s after {:.1} s with fresh connections; clients are tokio tasks on a 2-worker \
             runtime in the bench process, sharing the 2 cores with the producer and the \
             bridge. `capture_ns` is stamped when the producer starts the publish (the JPEGs \
             are pre-made: a real camera group adds its capture → publish). Latencies are \
             per camera image (capture) or per message (publish, send), over all clients and \
             passes.\n",
            p.passes,
            p.t.case.as_secs_f64(),
            p.t.case_warmup.as_secs_f64()
        );
        let mut t = Table::new(&[
            "fps",
            "clients",
            "messages",
            "per-client fps min",
            "median",
            "capture → receive p50",
            "p99",
            "max",
            "publish → receive p50",
            "p99",
            "send → receive p50",
            "p99",
            "dropped (bridge)",
            "gaps (clients)",
            "late ticks",
            "CPU (cores)",
            "other processes (cores)",
        ]);
        let mut per_pass = Table::new(&[
            "fps",
            "clients",
            "pass",
            "capture → receive p50",
            "p99",
            "per-client fps min",
            "median",
            "dropped",
            "CPU (cores)",
            "other processes (cores)",
        ]);
        for (i, runs) in results.iter().enumerate() {
            let (fps, n) = cases[i];
            let mut all = Recv::new(0);
            let mut client_fps = Vec::new();
            let (mut dropped, mut late) = (0, 0);
            let mut cpu = Vec::new();
            let mut other = Vec::new();
            for (k, c) in runs.iter().enumerate() {
                let mut pass = Recv::new(0);
                let fpss: Vec<f64> = c.recvs.iter().map(Recv::fps).collect();
                for r in &c.recvs {
                    pass.add(r)?;
                }
                all.add(&pass)?;
                client_fps.extend(&fpss);
                dropped += c.counts.dropped;
                late += c.late;
                cpu.push(c.cores.0);
                other.push(c.cores.1);
                per_pass.row(vec![
                    format!("{fps:.0}"),
                    n.to_string(),
                    (k + 1).to_string(),
                    fmt_ns(pass.capture.value_at_quantile(0.5) as f64),
                    fmt_ns(pass.capture.value_at_quantile(0.99) as f64),
                    format!("{:.1}", fpss.iter().copied().fold(f64::INFINITY, f64::min)),
                    format!("{:.1}", median(&fpss)),
                    c.counts.dropped.to_string(),
                    format!("{:.2}", c.cores.0),
                    format!("{:.2}", c.cores.1),
                ]);
            }
            t.row(vec![
                format!("{fps:.0}"),
                n.to_string(),
                all.messages.to_string(),
                format!(
                    "{:.1}",
                    client_fps.iter().copied().fold(f64::INFINITY, f64::min)
                ),
                format!("{:.1}", median(&client_fps)),
                fmt_ns(all.capture.value_at_quantile(0.5) as f64),
                fmt_ns(all.capture.value_at_quantile(0.99) as f64),
                fmt_ns(all.capture.max() as f64),
                fmt_ns(all.publish.value_at_quantile(0.5) as f64),
                fmt_ns(all.publish.value_at_quantile(0.99) as f64),
                fmt_ns(all.send.value_at_quantile(0.5) as f64),
                fmt_ns(all.send.value_at_quantile(0.99) as f64),
                dropped.to_string(),
                all.gaps.to_string(),
                late.to_string(),
                format!("{:.2}", median(&cpu)),
                format!("{:.2}", median(&other)),
            ]);
        }
        t.print();
        per_pass.print();
        println!(
            "dropped (bridge): `camring_bridge_frames_dropped_total{{kind=\"ws\"}}` over the \
             measured window, all clients; gaps: frame numbers missing between consecutive \
             messages, summed over the clients; late ticks: producer ticks skipped because it \
             was more than a period late.\n"
        );
        Ok(())
    }

    fn case(&mut self, fps: f64, n: usize) -> Result<Case> {
        let p = &self.p;
        let gate = Gate::default();
        let net = &self.net;
        let ((recvs, counts, cores), produced) =
            self.ring.with_producer(Pace::Fps(fps), &gate, || {
                net.clients.block_on(async {
                    let conns =
                        futures_util::future::join_all((0..n).map(|_| connect(net.bridge_addr)))
                            .await;
                    let from = Instant::now() + p.t.case_warmup;
                    let until = from + p.t.case;
                    let mut tasks = Vec::new();
                    for ws in conns {
                        let ws = ws?;
                        tasks.push(tokio::spawn(receive(ws, Stamps::Header, None, from, until)));
                    }
                    let (recvs, c0, c1, cores) =
                        measure_clients(tasks, from, until, || Counts::of(&net.metrics)).await?;
                    Ok((recvs, c1.since(c0), cores))
                })
            })?;
        Ok(Case {
            recvs,
            counts,
            cores,
            late: produced.late,
        })
    }
}

/// One run of a latency case.
#[derive(Debug)]
struct Case {
    recvs: Vec<Recv>,
    counts: Counts,
    /// CPU of this process and of the other processes, cores.
    cores: (f64, f64),
    late: u64,
}
