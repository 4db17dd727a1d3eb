//! The QUIC adapter (`camring_bridge::quic::QuicBridge`) against bare quinn sending the
//! same bytes, and its capture-to-receive latency at a camera's rate.
//!
//! The bench process is the producer: a `camring_shm::Writer` on a 4-slot ring of 4 JPEG
//! cameras, publishing 4 JPEGs (q80) made once from the synthetic pattern, every publish
//! re-stamped (`capture_ns` = `tick_ns` = the time the publish starts). The bridge runs in
//! this process on its own tokio runtime (2 worker threads, as `camring bridge quic` runs
//! it) and reads the ring like any reader. Clients are quinn connections over loopback on
//! another runtime, with the transport parameters of `camring view quic://` (8 streams at
//! once, 8 MiB per stream, 32 MiB per connection), the server pinned by its fingerprint;
//! each reads every unidirectional stream whole, concurrently, and parses the message with
//! `camring_protocol::wire::parse`. All timestamps are `camring_shm::clock::now_ns`.
//!
//! A. Throughput, one client taking messages as fast as it can, variants in a fresh random
//!    order every round (`kit::Order`), a fresh connection each time:
//!
//!    * `bridge`: ring → `QuicBridge` → client (control stream, hello, one stream per
//!      multi-frame). The producer keeps [`AHEAD`] frame numbers ahead of the newest one
//!      the client received (publishing anyway after a 50 ms stall).
//!    * `bare`: a quinn server with the bridge's TLS (same certificate, rustls/ring, TLS
//!      1.3) sending the very bytes of a message the bridge sent, one unidirectional stream
//!      per message, back to back (as many streams at once as the client allows).
//!
//!    Messages/s per run; the ratio bridge / bare is taken per round and its median
//!    reported (goal ≥ 0.9). Latency: bridge `send_ns` (stamped before it builds the
//!    message) → received; bare: the server starting the stream → received.
//!
//! B. Capture-to-receive latency: the producer publishes at 30 fps, 1 and 10 clients
//!    (tasks on a 2-worker runtime) record `now − capture_ns` for every camera of every
//!    message. Received fps per client, frames the bridge dropped (pending replaced or
//!    streams reset) and streams reset.
//!
//! `cargo bench -p camring-bench --bench quic` runs the full benchmark; without `--bench` (as under
//! `cargo test --all-targets`) a smoke run with tiny images checks that everything works.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    measure_clients, range, rate_cells, Gate, Pace, Recv, Ring, Running, Timing, Usage, CAMERAS,
    QUALITY, SLOTS,
};
use anyhow::{anyhow, ensure, Context, Result};
use bytes::Bytes;
use camring_bridge::quic::control::{
    Hello, Line, LineReader, ReadLine, MAX_SERVER_LINE, QUIC_VERSION,
};
use camring_bridge::quic::tls::{self, Identity};
use camring_bridge::quic::{QuicBridge, QuicConfig, QuicCounters};
use camring_client::quic::tls::{client_crypto, parse_fingerprint, Trust};
use camring_protocol::wire;
use camring_shm::clock::now_ns;
use camring_testkit::{self as kit, fmt_ns, median, Order, Table};
use quinn::VarInt;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How many multi-frames the producer may publish beyond what the client received (A),
/// unless the environment's `AHEAD` says otherwise.
const AHEAD: u64 = 3;

fn ahead() -> u64 {
    std::env::var("AHEAD")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(AHEAD)
}

#[derive(Debug, Clone)]
struct Params {
    t: Timing,
    fps: f64,
    clients: Vec<usize>,
    passes: usize,
}

// ---------------------------------------------------------------- the producer

// ---------------------------------------------------------------- clients

/// The client transport of `camring view quic://`.
fn client_config(fingerprint: &str) -> Result<quinn::ClientConfig> {
    let pin = parse_fingerprint(fingerprint)?;
    let mut c = quinn::ClientConfig::new(client_crypto(&Trust::Pinned(pin))?);
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_uni_streams(VarInt::from_u32(8))
        .stream_receive_window(VarInt::from_u32(8 << 20))
        .receive_window(VarInt::from_u32(32 << 20));
    c.transport_config(Arc::new(t));
    Ok(c)
}

/// A connection: for the bridge with its control stream open and the first line read.
struct Conn {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    _control: Option<(quinn::SendStream, quinn::RecvStream)>,
}

async fn connect(addr: SocketAddr, config: &quinn::ClientConfig, hello: bool) -> Result<Conn> {
    let mut endpoint = camring_client::quic::endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(config.clone());
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let control = if hello {
        let (mut send, mut recv) = conn.open_bi().await?;
        let h = Hello {
            version: QUIC_VERSION,
            token: None,
            settings: None,
        };
        send.write_all(h.to_line().as_bytes()).await?;
        let mut lines = LineReader::new(MAX_SERVER_LINE);
        match lines.read(&mut recv).await? {
            Line::Text(t) if t.contains("\"state\"") => {}
            other => anyhow::bail!("expected a state, got {other:?}"),
        }
        Some((send, recv))
    } else {
        None
    };
    Ok(Conn {
        _endpoint: endpoint,
        conn,
        _control: control,
    })
}

/// Where a message's send time comes from.
#[derive(Debug, Clone)]
enum Stamps {
    /// The bridge's header (`send_ns`).
    Header,
    /// The bare server's stamps by stream index.
    Bare(Arc<Mutex<HashMap<u64, u64>>>),
}

/// Reads every stream of `c` whole (concurrently) until `until`, recording what completes
/// from `from` on.
async fn receive(
    c: Conn,
    stamps: Stamps,
    gate: Option<Arc<Gate>>,
    from: Instant,
    until: Instant,
) -> Result<Recv> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut r = Recv::new((until - from).as_nanos() as u64);
    let mut last_frame: Option<u64> = None;
    let mut started: Option<Usage> = None;
    loop {
        tokio::select! {
            s = c.conn.accept_uni() => {
                let mut s = s.context("accepting a stream")?;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let index = s.id().index();
                    let got = s.read_to_end(256 << 20).await;
                    let _ = tx.send((index, got.map(|d| (d, now_ns()))));
                });
            }
            Some((index, got)) = rx.recv() => {
                let (data, now) = match got {
                    Ok(g) => g,
                    Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_))) => {
                        if Instant::now() >= from {
                            r.resets += 1;
                        }
                        continue;
                    }
                    Err(e) => return Err(e).context("reading a stream"),
                };
                let m = wire::parse(&data).map_err(|e| anyhow!("bad message: {e}"))?;
                if let Some(g) = &gate {
                    g.received(m.header.frame);
                }
                if Instant::now() < from {
                    last_frame = Some(m.header.frame);
                    continue;
                }
                started.get_or_insert_with(Usage::now);
                r.messages += 1;
                r.bytes += data.len() as u64;
                match &stamps {
                    Stamps::Header => {
                        kit::record(&mut r.send, now.saturating_sub(m.header.send_ns));
                        for cam in &m.cameras {
                            kit::record(&mut r.capture, now.saturating_sub(cam.info.capture_ns));
                        }
                        if let Some(l) = last_frame {
                            r.gaps += m.header.frame.saturating_sub(l + 1);
                        }
                        last_frame = Some(last_frame.map_or(m.header.frame, |l| l.max(m.header.frame)));
                    }
                    Stamps::Bare(map) => {
                        let sent = map.lock().unwrap_or_else(|e| e.into_inner()).remove(&index);
                        if let Some(sent) = sent {
                            kit::record(&mut r.send, now.saturating_sub(sent));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    if let Some(u) = started {
        u.record_since(&mut r);
    }
    c.conn.close(VarInt::from_u32(0), b"bye");
    // Let the close reach the server (or it keeps the connection until its idle timeout).
    let _ = tokio::time::timeout(Duration::from_millis(200), c._endpoint.wait_idle()).await;
    Ok(r)
}

/// A bare quinn server: every connection is sent `message` on one new stream after
/// another, back to back (each written into quinn's buffer and finished, the next opened
/// at once, as many open as the client allows); the stamp of each stream's start goes
/// into the map.
async fn bare_server(
    endpoint: quinn::Endpoint,
    message: Bytes,
    stamps: Arc<Mutex<HashMap<u64, u64>>>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let message = message.clone();
        let stamps = Arc::clone(&stamps);
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok(mut s) = conn.open_uni().await {
                stamps
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(s.id().index(), now_ns());
                if s.write_chunk(message.clone()).await.is_err() {
                    return;
                }
                let _ = s.finish();
            }
        });
    }
}

// ---------------------------------------------------------------- the bench

/// Counters of the bridge read at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    read: u64,
    sent: u64,
    dropped: u64,
    reset: u64,
}

impl Counts {
    fn of(m: &camring_bridge::metrics::Metrics, q: &QuicCounters) -> Counts {
        let k = camring_bridge::metrics::kind("quic");
        Counts {
            read: m.frames_read.get(),
            sent: m.frames_sent.get_or_create(&k).get(),
            dropped: m.frames_dropped.get_or_create(&k).get(),
            reset: QuicCounters::get(&q.streams_reset),
        }
    }

    fn since(self, o: Counts) -> Counts {
        Counts {
            read: self.read - o.read,
            sent: self.sent - o.sent,
            dropped: self.dropped - o.dropped,
            reset: self.reset - o.reset,
        }
    }
}

struct Net {
    server: Runtime,
    client1: Runtime,
    clients: Runtime,
    bridge_addr: SocketAddr,
    config: quinn::ClientConfig,
    identity: Identity,
    metrics: Arc<camring_bridge::metrics::Metrics>,
    counters: Arc<QuicCounters>,
    /// The same bridge with `newest_first` off (`--in-order`).
    in_order: Served,
    bridge: Running,
}

/// A bridge running on the server runtime.
struct Served {
    addr: SocketAddr,
    config: quinn::ClientConfig,
    running: Running,
}

fn serve(server: &Runtime, config: QuicConfig) -> Result<Served> {
    let bridge = server.block_on(QuicBridge::bind(config))?;
    let addr = bridge.local_addr()?;
    let client = client_config(bridge.fingerprint())?;
    Ok(Served {
        addr,
        config: client,
        running: Running::spawn(server, move |stop| bridge.run(stop)),
    })
}

struct Bench {
    p: Params,
    ring: Ring,
    net: Net,
}

/// Runs the benchmark: in full under `cargo bench` (`--bench`), else a smoke run.
pub fn main() -> Result<()> {
    let t = Timing::get(1, 12, [100, 20, 150, 50])?;
    let p = Params {
        fps: 30.0,
        clients: if t.full { vec![1, 10] } else { vec![1, 2] },
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
        let ring = Ring::create("quic", p.t.size)?;
        let (name, src) = (ring.name().to_owned(), &ring.src);
        let (w, h) = p.t.size;
        let server = super::runtime("bench-server")?;
        let client1 = super::current_thread()?;
        let clients = super::runtime("bench-clients")?;
        let identity = Identity::generate(&["localhost".into(), "127.0.0.1".into()])?;
        let mut config = QuicConfig::new(name, identity.clone());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let in_order = serve(
            &server,
            QuicConfig {
                newest_first: false,
                ..config.clone()
            },
        )?;
        let bridge = server.block_on(QuicBridge::bind(config))?;
        let bridge_addr = bridge.local_addr()?;
        let client_config = client_config(bridge.fingerprint())?;
        let metrics = bridge.metrics();
        let counters = bridge.counters();
        let bridge = Running::spawn(&server, move |stop| bridge.run(stop));
        println!(
            "{CAMERAS} × {w}×{h} JPEG q{QUALITY} (synthetic pattern, made once; every publish \
             re-stamped): JPEGs {} bytes; ring of {SLOTS} slots\n",
            src.jpegs
                .iter()
                .map(|j| j.len().to_string())
                .collect::<Vec<_>>()
                .join(" / "),
        );
        Ok(Bench {
            p: p.clone(),
            ring,
            net: Net {
                server,
                client1,
                clients,
                bridge_addr,
                config: client_config,
                identity,
                metrics,
                counters,
                in_order,
                bridge,
            },
        })
    }

    fn run(&mut self) -> Result<()> {
        let template = self.check()?;
        self.throughput(template)?;
        self.latency()
    }

    fn stop(self) -> Result<()> {
        let Bench { net, ring, .. } = self;
        net.bridge.stop(&net.server)?;
        net.in_order.running.stop(&net.server)?;
        net.server.shutdown_timeout(Duration::from_secs(1));
        drop(ring);
        Ok(())
    }

    /// One message through the bridge: the JPEGs forwarded byte for byte.
    fn check(&mut self) -> Result<Bytes> {
        let gate = Gate::default();
        let net = &self.net;
        let (message, _) = self.ring.with_producer(Pace::Fps(30.0), &gate, || {
            net.client1.block_on(async {
                let c = connect(net.bridge_addr, &net.config, true).await?;
                let mut s = tokio::time::timeout(Duration::from_secs(5), c.conn.accept_uni())
                    .await
                    .context("no frame from the bridge within 5 s")??;
                let data = s.read_to_end(256 << 20).await?;
                c.conn.close(VarInt::from_u32(0), b"bye");
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), c._endpoint.wait_idle()).await;
                Ok::<_, anyhow::Error>(Bytes::from(data))
            })
        })?;
        self.ring.src.check_forwarded(&message)?;
        println!(
            "Check: a bridge message carries the ring's 4 JPEGs byte for byte ({} bytes, \
             forwarded); the bare server sends this very message.\n",
            message.len()
        );
        Ok(message)
    }

    // ------------------------------------------------------------ A. throughput

    fn throughput(&mut self, template: Bytes) -> Result<()> {
        let p = self.p.clone();
        let stamps = Arc::new(Mutex::new(HashMap::new()));
        let bare_addr = {
            let _guard = self.net.server.enter();
            let mut server =
                quinn::ServerConfig::with_crypto(tls::server_crypto(&self.net.identity)?);
            let mut t = quinn::TransportConfig::default();
            t.max_concurrent_uni_streams(VarInt::from_u32(0));
            server.transport_config(Arc::new(t));
            // The bridge's socket buffers too.
            let endpoint = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server),
                camring_bridge::quic::udp_socket(SocketAddr::from(([127, 0, 0, 1], 0)))?,
                Arc::new(quinn::TokioRuntime),
            )?;
            let addr = endpoint.local_addr()?;
            self.net
                .server
                .spawn(bare_server(endpoint, template, Arc::clone(&stamps)));
            addr
        };
        let labels = [
            "bridge: ring → QuicBridge → client",
            "bare quinn, same bytes",
            "bridge, in order (--in-order)",
        ];
        let n = labels.len();
        let mut total: Vec<Recv> = (0..n).map(|_| Recv::new(0)).collect();
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut cpu_per_msg: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut cores: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut others: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut ratio = Vec::new();
        let mut ratio_in_order = Vec::new();
        let mut efficiency = Vec::new();
        let mut order = Order::new(0x0071_c0de);
        let counts0 = Counts::of(&self.net.metrics, &self.net.counters);
        for round in 0..p.t.warmup_rounds + p.t.rounds {
            kit::check_interrupt()?;
            let measured = round >= p.t.warmup_rounds;
            let mut round_rate = vec![0.0; n];
            let mut round_cpu = vec![0.0; n];
            for v in order.shuffled(n) {
                let net = &self.net;
                let r = if v != 1 {
                    let gate = Arc::new(Gate::default());
                    let g = Arc::clone(&gate);
                    let (addr, config) = if v == 0 {
                        (net.bridge_addr, &net.config)
                    } else {
                        (net.in_order.addr, &net.in_order.config)
                    };
                    let (r, _) = self.ring.with_producer(Pace::Ahead(ahead()), &gate, || {
                        net.client1.block_on(async {
                            let c = connect(addr, config, true).await?;
                            let from = Instant::now() + p.t.settle;
                            receive(c, Stamps::Header, Some(g), from, from + p.t.run).await
                        })
                    })?;
                    r
                } else {
                    stamps.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    net.client1.block_on(async {
                        let c = connect(bare_addr, &net.config, false).await?;
                        let from = Instant::now() + p.t.settle;
                        receive(
                            c,
                            Stamps::Bare(Arc::clone(&stamps)),
                            None,
                            from,
                            from + p.t.run,
                        )
                        .await
                    })?
                };
                ensure!(r.messages > 0, "{}: no message received", labels[v]);
                round_rate[v] = r.fps();
                round_cpu[v] = r.cpu_ns as f64 / r.messages as f64;
                if measured {
                    rates[v].push(r.fps());
                    cpu_per_msg[v].push(round_cpu[v]);
                    cores[v].push(r.cpu_ns as f64 / r.wall_ns.max(1) as f64);
                    others[v].push(r.others_ns as f64 / r.wall_ns.max(1) as f64);
                    total[v].add(&r)?;
                }
            }
            if measured {
                ratio.push(round_rate[0] / round_rate[1]);
                ratio_in_order.push(round_rate[2] / round_rate[1]);
                efficiency.push(round_cpu[1] / round_cpu[0]);
            }
        }
        let counts = Counts::of(&self.net.metrics, &self.net.counters).since(counts0);
        println!("## A. Throughput: one client over loopback, bridge vs bare quinn\n");
        println!(
            "{} rounds (after {} warm-up) of the 3 variants in a fresh random order, each a new \
             connection measured for {:.1} s after {:.1} s; the producer keeps {} \
             multi-frames ahead of the bridge's client. Send → receive: bridge `send_ns` → \
             message read whole; bare: stream opened → read whole.\n",
            p.t.rounds,
            p.t.warmup_rounds,
            p.t.run.as_secs_f64(),
            p.t.settle.as_secs_f64(),
            ahead()
        );
        let mut t = Table::new(&[
            "variant",
            "messages/s",
            "MB/s",
            "messages/s per round",
            "CPU per message (whole process)",
            "CPU (cores)",
            "other processes (cores)",
            "streams reset",
            "send → receive p50",
            "p99",
            "capture → receive p50",
            "p99",
        ]);
        for v in 0..n {
            let r = &total[v];
            let mean = r.bytes as f64 / r.messages.max(1) as f64;
            let bridge_only = |q: f64| {
                if v != 1 {
                    fmt_ns(r.capture.value_at_quantile(q) as f64)
                } else {
                    "-".to_owned()
                }
            };
            let mut row = vec![labels[v].to_owned()];
            row.extend(rate_cells(&rates[v], mean));
            row.extend([
                fmt_ns(median(&cpu_per_msg[v])),
                format!("{:.2}", median(&cores[v])),
                format!("{:.2}", median(&others[v])),
                r.resets.to_string(),
                fmt_ns(r.send.value_at_quantile(0.5) as f64),
                fmt_ns(r.send.value_at_quantile(0.99) as f64),
                bridge_only(0.5),
                bridge_only(0.99),
            ]);
            t.row(row);
        }
        t.print();
        println!(
            "bridge / bare, messages/s: median of the {} per-round ratios **{:.3}** (goal ≥ \
             0.9), range {}; per round: {}",
            ratio.len(),
            median(&ratio),
            range(&ratio),
            ratio
                .iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "bridge in order / bare: median {:.3}, range {}",
            median(&ratio_in_order),
            range(&ratio_in_order)
        );
        println!(
            "CPU per message, bare / bridge: median of the per-round ratios {:.3}, range {}",
            median(&efficiency),
            range(&efficiency)
        );
        println!(
            "Bridge (newest first), all rounds: ring thread read {}, frames delivered {}, \
             dropped {} (of which streams reset {}).\n",
            counts.read, counts.sent, counts.dropped, counts.reset
        );
        Ok(())
    }

    // ------------------------------------------------------------ B. latency

    fn latency(&mut self) -> Result<()> {
        let p = self.p.clone();
        let mut results: Vec<Vec<Case>> = p.clients.iter().map(|_| Vec::new()).collect();
        for pass in 0..p.passes {
            let mut idx: Vec<usize> = (0..p.clients.len()).collect();
            if pass % 2 == 1 {
                idx.reverse();
            }
            for i in idx {
                kit::check_interrupt()?;
                results[i].push(self.case(p.clients[i])?);
            }
        }
        println!(
            "## B. Capture → receive at {:.0} fps, {}×{} JPEG × {CAMERAS}\n",
            p.fps, p.t.size.0, p.t.size.1
        );
        println!(
            "{} pass(es) (the second in reverse order), each measured for {:.1} s after {:.1} \
             s with fresh connections; clients are tasks on a 2-worker runtime sharing the 2 \
             cores with the producer and the bridge. Per camera image, over all clients and \
             passes.\n",
            p.passes,
            p.t.case.as_secs_f64(),
            p.t.case_warmup.as_secs_f64()
        );
        let mut t = Table::new(&[
            "clients",
            "messages",
            "per-client fps min",
            "median",
            "capture → receive p50",
            "p99",
            "max",
            "send → receive p50",
            "p99",
            "dropped (bridge)",
            "streams reset",
            "gaps (clients)",
            "late ticks",
            "CPU (cores)",
        ]);
        for (i, runs) in results.iter().enumerate() {
            let mut all = Recv::new(0);
            let mut fps = Vec::new();
            let (mut dropped, mut reset, mut late) = (0, 0, 0);
            let mut cpu = Vec::new();
            for c in runs {
                for r in &c.recvs {
                    all.add(r)?;
                    fps.push(r.fps());
                }
                dropped += c.counts.dropped;
                reset += c.counts.reset;
                late += c.late;
                cpu.push(c.cores);
            }
            t.row(vec![
                p.clients[i].to_string(),
                all.messages.to_string(),
                format!("{:.1}", fps.iter().copied().fold(f64::INFINITY, f64::min)),
                format!("{:.1}", median(&fps)),
                fmt_ns(all.capture.value_at_quantile(0.5) as f64),
                fmt_ns(all.capture.value_at_quantile(0.99) as f64),
                fmt_ns(all.capture.max() as f64),
                fmt_ns(all.send.value_at_quantile(0.5) as f64),
                fmt_ns(all.send.value_at_quantile(0.99) as f64),
                dropped.to_string(),
                reset.to_string(),
                all.gaps.to_string(),
                late.to_string(),
                format!("{:.2}", median(&cpu)),
            ]);
        }
        t.print();
        println!(
            "dropped (bridge): `camring_bridge_frames_dropped_total{{kind=\"quic\"}}` over the \
             measured window (pending frames replaced and streams reset), all clients; streams \
             reset: `camring_bridge_quic_streams_reset_total`; gaps: frame numbers missing \
             between consecutive messages; late ticks: producer ticks skipped.\n"
        );
        Ok(())
    }

    fn case(&mut self, n: usize) -> Result<Case> {
        let p = &self.p;
        let gate = Gate::default();
        let net = &self.net;
        let ((recvs, counts, cores), produced) =
            self.ring.with_producer(Pace::Fps(p.fps), &gate, || {
                net.clients.block_on(async {
                    let mut conns = Vec::new();
                    for _ in 0..n {
                        conns.push(connect(net.bridge_addr, &net.config, true).await?);
                    }
                    let from = Instant::now() + p.t.case_warmup;
                    let until = from + p.t.case;
                    let tasks: Vec<_> = conns
                        .into_iter()
                        .map(|c| tokio::spawn(receive(c, Stamps::Header, None, from, until)))
                        .collect();
                    let counts = || Counts::of(&net.metrics, &net.counters);
                    let (recvs, c0, c1, cores) =
                        measure_clients(tasks, from, until, counts).await?;
                    Ok((recvs, c1.since(c0), cores.0))
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
    cores: f64,
    late: u64,
}
