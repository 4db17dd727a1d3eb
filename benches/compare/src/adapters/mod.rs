//! The network adapters against bare senders of the same bytes: each module a benchmark
//! run by a thin `[[bench]]` target of this crate (`cargo bench -p camring-bench --bench
//! ws|quic|udp`; without `--bench`, as under `cargo test --all-targets`, a smoke run),
//! measured with camring-testkit's kit (docs/benchmarks.md, "WebSocket", "QUIC", "UDP").
//!
//! - [`ws`]: `WsBridge` against bare tokio-tungstenite, 1 and 50 clients.
//! - [`quic`]: `QuicBridge` against bare quinn.
//! - [`udp`]: `UdpBridge` against a bare fragmenting sender, with datagram loss.
//!
//! What they share is here: the JPEG cameras the bench process publishes as the producer,
//! and a producer thread paced by what the client received or by a clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context, Result};
use camring_shm::clock::now_ns;
use camring_testkit::{self as kit, thread_cpu_ns, RingGuard};
use hdrhistogram::Histogram;
use tokio::runtime::Runtime;

use crate::ctx::Stamp;
use crate::ring::push_images;

pub mod quic;
pub mod udp;
pub mod ws;

/// Cameras of the benches' ring.
pub const CAMERAS: usize = 4;
/// Their JPEG quality.
pub const QUALITY: u8 = 80;
/// Slots of the ring.
pub const SLOTS: u32 = 4;
/// Pattern frame number the images show.
pub const FRAME: u64 = 7;

/// How long the parts of a bench run: A, rounds of variants; B, latency cases.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Whether this is the full run (`cargo bench`), not a smoke run.
    pub full: bool,
    /// The cameras' image size.
    pub size: (u32, u32),
    /// A: rounds (after warm-up rounds) and the time each variant runs per round, of
    /// which `settle` is not measured.
    pub warmup_rounds: usize,
    /// See `warmup_rounds`.
    pub rounds: usize,
    /// See `warmup_rounds`.
    pub run: Duration,
    /// See `warmup_rounds`.
    pub settle: Duration,
    /// B: measured time per case, and unmeasured time before it.
    pub case: Duration,
    /// See `case`.
    pub case_warmup: Duration,
}

impl Timing {
    /// This process's, and prints the machine: under `cargo bench`, 1280×720 images,
    /// `warmup_rounds` + `rounds` rounds (`ROUNDS=N` in the environment overrides
    /// `rounds`) of 1.5 s runs after 0.3 s, cases of 8 s after 1 s; else a smoke run of
    /// 64×48 images, one round, `smoke` = [run, settle, case, case warm-up] milliseconds.
    pub fn get(warmup_rounds: usize, rounds: usize, smoke: [u64; 4]) -> Result<Timing> {
        let full = kit::Run::get()?.full();
        println!("Machine: {}", kit::Machine::this());
        if !full {
            println!("(SMOKE RUN: tiny images, short runs, figures meaningless)");
        }
        println!();
        if full {
            let env = std::env::var("ROUNDS").ok().and_then(|a| a.parse().ok());
            return Ok(Timing {
                full,
                size: (1280, 720),
                warmup_rounds,
                rounds: env.unwrap_or(rounds),
                run: Duration::from_millis(1500),
                settle: Duration::from_millis(300),
                case: Duration::from_secs(8),
                case_warmup: Duration::from_secs(1),
            });
        }
        let [run, settle, case, case_warmup] = smoke.map(Duration::from_millis);
        Ok(Timing {
            full,
            size: (64, 48),
            warmup_rounds: 0,
            rounds: 1,
            run,
            settle,
            case,
            case_warmup,
        })
    }
}

/// A multi-threaded tokio runtime of 2 workers named `name` (as `camring bridge` runs its
/// adapters).
pub fn runtime(name: &str) -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// A current-thread tokio runtime, driven by the thread that blocks on it (one client).
pub fn current_thread() -> Result<Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// What the process and the machine have used so far, to take the difference over a
/// window.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    wall_ns: u64,
    cpu_ns: u64,
    faults: u64,
    switches: u64,
    busy_ns: u64,
}

impl Usage {
    /// Now.
    pub fn now() -> Usage {
        Usage {
            wall_ns: now_ns(),
            cpu_ns: kit::process_cpu_ns(),
            faults: kit::minor_faults(),
            switches: kit::context_switches(),
            busy_ns: kit::machine_busy_ns(),
        }
    }

    /// The CPU of this process and of the rest of the machine since `self`, in cores.
    pub fn cores(self) -> (f64, f64) {
        let (cpu, others) = (kit::process_cpu_ns() - self.cpu_ns, self.others_ns());
        let wall = now_ns().saturating_sub(self.wall_ns).max(1) as f64;
        (cpu as f64 / wall, others as f64 / wall)
    }

    fn others_ns(self) -> u64 {
        let cpu = kit::process_cpu_ns() - self.cpu_ns;
        kit::machine_busy_ns()
            .saturating_sub(self.busy_ns)
            .saturating_sub(cpu)
    }

    /// Sets `r`'s wall and CPU time, faults, context switches and other processes' CPU to
    /// what was used since `self`.
    pub fn record_since(self, r: &mut Recv) {
        r.wall_ns = now_ns().saturating_sub(self.wall_ns);
        r.cpu_ns = kit::process_cpu_ns() - self.cpu_ns;
        r.others_ns = self.others_ns();
        r.faults = kit::minor_faults().saturating_sub(self.faults);
        r.switches = kit::context_switches().saturating_sub(self.switches);
    }
}

/// What a bridge's `run` is given to stop on.
pub type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A bridge running on a runtime until [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Spawns `run(stop)` (a bridge's `run`) on `rt`; `stop` completes at
    /// [`Running::stop`].
    pub fn spawn<F>(rt: &Runtime, run: impl FnOnce(Stop) -> F) -> Running
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(run(Box::pin(async move {
            let _ = rx.await;
        })));
        Running { stop, task }
    }

    /// Stops the bridge (closing its clients) and waits for it to end.
    pub fn stop(self, rt: &Runtime) -> Result<()> {
        let _ = self.stop.send(());
        rt.block_on(self.task)
            .context("bridge task")?
            .context("bridge")
    }
}

/// `min–max` of `xs`, three decimals: the range of per-round ratios.
pub fn range(xs: &[f64]) -> String {
    format!(
        "{:.3}–{:.3}",
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    )
}

/// A throughput row's first cells from the messages/s of each round and the mean message
/// size: messages/s (median), MB/s, messages/s per round.
pub fn rate_cells(rates: &[f64], mean_bytes: f64) -> Vec<String> {
    let rate = kit::median(rates);
    vec![
        format!("{rate:.0}"),
        format!("{:.0}", rate * mean_bytes / 1e6),
        rates
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
    ]
}

/// The end of a latency case: waits for `from`, takes `counts()` and the usage, waits for
/// `until`, takes them again; then every client's [`Recv`] (each must have received a
/// frame). Returns them, the counts at `from` and at `until`, and the cores this process
/// and the rest of the machine used in between.
pub async fn measure_clients<C>(
    tasks: Vec<tokio::task::JoinHandle<Result<Recv>>>,
    from: tokio::time::Instant,
    until: tokio::time::Instant,
    counts: impl Fn() -> C,
) -> Result<(Vec<Recv>, C, C, (f64, f64))> {
    tokio::time::sleep_until(from).await;
    let c0 = counts();
    let u0 = Usage::now();
    tokio::time::sleep_until(until).await;
    let c1 = counts();
    let cores = u0.cores();
    let mut recvs = Vec::new();
    for t in tasks {
        let r = t.await.context("client task")??;
        anyhow::ensure!(r.messages > 0, "a client received no frame");
        recvs.push(r);
    }
    Ok((recvs, c0, c1, cores))
}

/// What one client received in its measuring window.
#[derive(Debug)]
pub struct Recv {
    /// Whole messages.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Text messages (WebSocket).
    pub texts: u64,
    /// Streams reset before they were read whole (QUIC).
    pub resets: u64,
    /// now − capture_ns, per camera.
    pub capture: Histogram<u64>,
    /// now − publish_ns (bridge only, WebSocket).
    pub publish: Histogram<u64>,
    /// now − send time.
    pub send: Histogram<u64>,
    /// Frame numbers skipped between consecutive messages.
    pub gaps: u64,
    /// The measuring window (`until − from`).
    pub window_ns: u64,
    /// Wall time and process CPU time from the first message measured to the end.
    pub wall_ns: u64,
    /// See `wall_ns`.
    pub cpu_ns: u64,
    /// The process's minor page faults and context switches over the same time.
    pub faults: u64,
    /// See `faults`.
    pub switches: u64,
    /// CPU time the rest of the machine used over the same time (other processes).
    pub others_ns: u64,
}

impl Recv {
    /// Nothing received yet in a window of `window_ns`.
    pub fn new(window_ns: u64) -> Recv {
        Recv {
            messages: 0,
            bytes: 0,
            texts: 0,
            resets: 0,
            capture: kit::histogram(),
            publish: kit::histogram(),
            send: kit::histogram(),
            gaps: 0,
            window_ns,
            wall_ns: 0,
            cpu_ns: 0,
            faults: 0,
            switches: 0,
            others_ns: 0,
        }
    }

    /// Messages per second of the window.
    pub fn fps(&self) -> f64 {
        self.messages as f64 / (self.window_ns as f64 / 1e9)
    }

    /// Adds `o`'s messages, counts and latencies (not its times).
    pub fn add(&mut self, o: &Recv) -> Result<()> {
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.texts += o.texts;
        self.resets += o.resets;
        self.capture.add(&o.capture)?;
        self.publish.add(&o.publish)?;
        self.send.add(&o.send)?;
        self.gaps += o.gaps;
        Ok(())
    }
}

/// A group of JPEG cameras: each camera's pattern image (camera number and `frame` drawn
/// in), encoded once; every publish copies these JPEGs into the ring, re-stamped. What the
/// adapter benches (ws, quic, udp) serve.
#[derive(Debug)]
pub struct JpegSource {
    pub width: u32,
    pub height: u32,
    pub jpegs: Vec<Vec<u8>>,
}

impl JpegSource {
    pub fn new(
        cameras: usize,
        width: u32,
        height: u32,
        quality: u8,
        frame: u64,
    ) -> Result<JpegSource> {
        use camring_protocol::pattern::{self, Geometry};
        use camring_protocol::PixelFormat;
        let stride = width as usize * 3;
        let g = Geometry::new(PixelFormat::Rgb8, width, height, stride).context("geometry")?;
        let mut enc = camring_jpeg::Encoder::new(quality)?;
        let jpegs = (0..cameras as u32)
            .map(|cam| {
                let mut rgb = vec![0u8; g.len()];
                pattern::fill(&mut rgb, &g, cam, frame);
                enc.encode(&rgb, PixelFormat::Rgb8, width, height, stride)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JpegSource {
            width,
            height,
            jpegs,
        })
    }

    /// A ring of `slots` slots for these cameras.
    pub fn ring_config(&self, slots: u32) -> camring_shm::RingConfig {
        let max_len = self.jpegs.iter().map(Vec::len).max().unwrap_or(0) as u32;
        let cam = camring_protocol::layout::CameraLayout {
            width: self.width,
            height: self.height,
            format: camring_protocol::PixelFormat::Jpeg.code(),
            max_len,
        };
        camring_shm::RingConfig::new(slots, vec![cam; self.jpegs.len()], 30_000)
    }

    /// Publishes one multi-frame captured now; returns its frame number.
    pub fn publish(&self, writer: &mut camring_shm::Writer, sequence: u64) -> Result<u64> {
        let now = camring_shm::clock::now_ns();
        let mut loan = writer.loan();
        let entry = camring_protocol::layout::CameraEntry {
            format: camring_protocol::PixelFormat::Jpeg.code(),
            width: self.width,
            height: self.height,
            ..Default::default()
        };
        let stamp = Stamp {
            seq: sequence,
            capture_ns: now,
        };
        push_images(&mut loan, entry, &self.jpegs, stamp)?;
        Ok(loan.commit(now, 0)?)
    }

    /// Checks that a bridge's `message` carries these JPEGs byte for byte (forwarded, not
    /// re-encoded).
    pub fn check_forwarded(&self, message: &[u8]) -> Result<()> {
        use camring_protocol::wire;
        let m = wire::parse(message).map_err(|e| anyhow::anyhow!("bad message: {e}"))?;
        anyhow::ensure!(m.cameras.len() == CAMERAS, "{} cameras", m.cameras.len());
        for (c, cam) in m.cameras.iter().enumerate() {
            anyhow::ensure!(
                cam.payload == self.jpegs[c].as_slice(),
                "camera {c}: the bridge did not forward the ring's JPEG as it is"
            );
            anyhow::ensure!(
                cam.info.flags & wire::CAM_REENCODED == 0,
                "camera {c}: re-encoded"
            );
        }
        Ok(())
    }

    /// Payload bytes of one message: the JPEGs.
    pub fn message_payload(&self) -> usize {
        self.jpegs.iter().map(Vec::len).sum()
    }

    /// The wire message of these JPEGs as a bare sender would build it, captured at
    /// `capture_ns`.
    pub fn message(&self, frame: u64, capture_ns: u64) -> Result<Vec<u8>> {
        use camring_protocol::wire::{CameraFrame, CameraInfo, Message, MessageHeader};
        let cameras = self
            .jpegs
            .iter()
            .enumerate()
            .map(|(cam, jpeg)| CameraFrame {
                info: CameraInfo {
                    camera_id: cam as u32,
                    format: camring_protocol::PixelFormat::Jpeg,
                    width: self.width,
                    height: self.height,
                    stride: 0,
                    flags: 0,
                    capture_ns,
                    sequence: frame,
                },
                payload: jpeg,
            })
            .collect();
        Ok(Message {
            header: MessageHeader {
                frame,
                tick_ns: capture_ns,
                publish_ns: capture_ns,
                send_ns: camring_shm::clock::now_ns(),
                flags: 0,
            },
            cameras,
        }
        .encode()?)
    }

    /// Bytes of [`JpegSource::message`].
    pub fn message_len(&self) -> usize {
        camring_protocol::wire::prefix_len(self.jpegs.len()) + self.message_payload()
    }
}

/// How the producer publishes.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Whenever fewer than `ahead` frames were published beyond what the client received.
    Ahead(u64),
    /// At a fixed rate.
    Fps(f64),
}

/// Shared between the producer thread and the clients.
#[derive(Debug, Default)]
pub struct Gate {
    pub stop: AtomicBool,
    /// The newest frame number the client received, plus one (0: none yet).
    pub received: AtomicU64,
    pub producer: OnceLock<std::thread::Thread>,
}

impl Gate {
    /// The client received frame `frame`.
    pub fn received(&self, frame: u64) {
        // SYNC POINT: Relaxed: a number the producer polls; nothing is published through it.
        self.received.fetch_max(frame + 1, Ordering::Relaxed);
        if let Some(t) = self.producer.get() {
            t.unpark();
        }
    }
}

#[derive(Debug, Default)]
pub struct Produced {
    pub published: u64,
    /// Ticks of a paced producer that came more than a period late (skipped).
    pub late: u64,
    pub cpu_ns: u64,
}

/// Runs on its own thread until `gate.stop`.
pub fn produce(
    writer: &mut camring_shm::Writer,
    src: &JpegSource,
    pace: Pace,
    gate: &Gate,
) -> Result<Produced> {
    let _ = gate.producer.set(std::thread::current());
    let cpu0 = thread_cpu_ns();
    let mut out = Produced::default();
    let start = std::time::Instant::now();
    let mut last_received = 0;
    let first_frame = writer.next_frame();
    let mut last_progress = start;
    // SYNC POINT: Relaxed: flags and counts, nothing is published through them.
    while !gate.stop.load(Ordering::Relaxed) {
        match pace {
            Pace::Ahead(ahead) => {
                // Frames are counted by number: one the bridge skipped (it reads the
                // newest) is not waited for. A frame published before the client's
                // connection registered with the bridge is not read at all (nobody wanted
                // it): after a stall, publish anyway.
                let received = gate.received.load(Ordering::Relaxed);
                if received != last_received {
                    last_received = received;
                    last_progress = std::time::Instant::now();
                }
                if writer.next_frame() >= received.max(first_frame) + ahead
                    && last_progress.elapsed() < Duration::from_millis(50)
                {
                    std::thread::park_timeout(Duration::from_millis(5));
                    continue;
                }
                last_progress = std::time::Instant::now();
            }
            Pace::Fps(fps) => {
                let period = Duration::from_secs_f64(1.0 / fps);
                let mut due = start + period.mul_f64((out.published + out.late) as f64);
                let now = std::time::Instant::now();
                while now > due + period {
                    out.late += 1;
                    due += period;
                }
                if now < due {
                    std::thread::sleep((due - now).min(Duration::from_millis(10)));
                    continue;
                }
            }
        }
        src.publish(writer, out.published)?;
        out.published += 1;
    }
    out.cpu_ns = thread_cpu_ns() - cpu0;
    Ok(out)
}

/// The producer's side: the ring and what it publishes.
#[derive(Debug)]
pub struct Ring {
    /// The images.
    pub src: Arc<JpegSource>,
    /// The ring's writer.
    pub writer: camring_shm::Writer,
    guard: RingGuard,
}

impl Ring {
    /// A ring named after `what` of [`SLOTS`] slots for [`CAMERAS`] JPEG cameras of
    /// `width`×`height` at [`QUALITY`]; removed when dropped.
    pub fn create(what: &str, (width, height): (u32, u32)) -> Result<Ring> {
        let src = JpegSource::new(CAMERAS, width, height, QUALITY, FRAME)?;
        let name = kit::ring_name(what);
        let guard = RingGuard(name.clone());
        let writer = camring_shm::Writer::create(&name, &src.ring_config(SLOTS))?;
        Ok(Ring {
            src: Arc::new(src),
            writer,
            guard,
        })
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.guard.0
    }

    /// Runs the producer at `pace` on its own thread while `f` runs on this one.
    pub fn with_producer<T>(
        &mut self,
        pace: Pace,
        gate: &Gate,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<(T, Produced)> {
        // SYNC POINT: Relaxed: a flag, nothing is published through it.
        gate.stop.store(false, Ordering::Relaxed);
        let Ring { src, writer, .. } = self;
        let (out, produced) = std::thread::scope(|s| {
            let producer = s.spawn(|| produce(writer, src, pace, gate));
            let out = f();
            gate.stop.store(true, Ordering::Relaxed);
            if let Some(t) = gate.producer.get() {
                t.unpark();
            }
            (out, producer.join())
        });
        let produced = produced.map_err(|_| anyhow::anyhow!("producer panicked"))??;
        Ok((out?, produced))
    }
}
