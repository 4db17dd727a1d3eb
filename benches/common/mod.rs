//! Shared by the custom-harness benches: bench/smoke mode, unique ring names, child
//! processes re-executed from the bench binary (and killed if anything goes wrong),
//! histograms, Markdown tables and a Ctrl-C flag so an interrupted run still removes its
//! rings.
//!
//! `cargo bench` passes `--bench` to every bench binary; `cargo test --all-targets` runs
//! them with no arguments, in which case each bench runs a smoke version of itself in well
//! under two seconds and asserts nothing about timing.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;

/// First argument of a bench binary re-executed as a helper process.
pub const CHILD_MARKER: &str = "--camring-bench-child";

/// True under `cargo bench` (full run), false under `cargo test` (smoke run).
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// If this process was started as a helper, its arguments after the marker.
pub fn child_args() -> Option<Vec<String>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(CHILD_MARKER) {
        Some(args.collect())
    } else {
        None
    }
}

// Not every bench uses each of them.
#[allow(unused_imports)]
pub use camring_testkit::{median, ring_name, RingGuard};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turns SIGINT/SIGTERM into a flag the bench loops poll, so Ctrl-C unwinds normally and
/// the rings are removed. Helper processes keep the default action (they own no ring).
pub fn catch_interrupts() {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
    }
    std::thread::spawn(move || loop {
        if flag.load(Ordering::Relaxed) {
            INTERRUPTED.store(true, Ordering::Relaxed);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
}

/// Fails once the user interrupted the run.
pub fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Helper processes (this binary re-executed with [`CHILD_MARKER`]): stdout piped, stderr
/// inherited. Every process still running when this is dropped is killed and reaped.
#[derive(Debug, Default)]
pub struct Children {
    procs: Vec<(Child, BufReader<ChildStdout>)>,
}

impl Children {
    /// Starts a helper with `args` after the marker.
    pub fn spawn(&mut self, args: &[String]) -> Result<()> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Command::new(exe)
            .arg(CHILD_MARKER)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning a helper process")?;
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        self.procs.push((child, out));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Reads one line from every helper (they print `ready` once attached).
    pub fn expect_line(&mut self, want: &str) -> Result<()> {
        for (i, (_, out)) in self.procs.iter_mut().enumerate() {
            let mut line = String::new();
            out.read_line(&mut line)
                .with_context(|| format!("reading helper {i}"))?;
            if line.trim() != want {
                bail!("helper {i} said {line:?}, expected {want:?}");
            }
        }
        Ok(())
    }

    /// Whether helper `i` has exited.
    pub fn exited(&mut self, i: usize) -> Result<bool> {
        Ok(self.procs[i].0.try_wait()?.is_some())
    }

    /// Waits (up to `timeout`, then kills) for every helper, checks that each succeeded and
    /// returns the rest of its stdout.
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut outputs = Vec::new();
        for (i, (child, out)) in self.procs.iter_mut().enumerate() {
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let status = child.wait()?;
            let mut text = String::new();
            out.read_to_string(&mut text)?;
            if !status.success() {
                bail!("helper {i} failed ({status}); stdout: {text}");
            }
            outputs.push(text);
        }
        self.procs.clear();
        Ok(outputs)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (child, _) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A histogram of nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds")
}

/// The recorded buckets as `[value, count]` pairs, to ship a histogram between processes.
pub fn buckets(h: &Histogram<u64>) -> Vec<[u64; 2]> {
    h.iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect()
}

/// Adds `[value, count]` pairs made by [`buckets`] to `h`.
pub fn add_buckets(h: &mut Histogram<u64>, pairs: &serde_json::Value) -> Result<()> {
    for pair in pairs.as_array().context("buckets: not an array")? {
        let v = pair[0].as_u64().context("bucket value")?;
        let n = pair[1].as_u64().context("bucket count")?;
        h.record_n(v.clamp(h.low(), h.high()), n)
            .context("recording a bucket")?;
    }
    Ok(())
}

/// Records `ns` into `h`, clamped into its range.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1));
}

/// Formats nanoseconds with a unit that keeps three or four significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 10_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 10_000_000.0 {
        format!("{:.3} ms", ns / 1e6)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// A Markdown table, columns padded for reading in a terminal.
#[derive(Debug)]
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.head.len(), "table row width");
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let n = self.head.len();
        let width: Vec<usize> = (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.head[i].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (c, w) in cells.iter().zip(&width) {
                let pad = w - c.chars().count();
                s.push_str(&format!(" {c}{} |", " ".repeat(pad)));
            }
            println!("{s}");
        };
        line(&self.head);
        let mut sep = String::from("|");
        for (i, w) in width.iter().enumerate() {
            // Right-align the columns of numbers, left-align the others.
            let text = self.rows.iter().any(|r| {
                r[i].chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '*')
            });
            if i == 0 || text {
                sep.push_str(&format!("{}|", "-".repeat(w + 2)));
            } else {
                sep.push_str(&format!("{}:|", "-".repeat(w + 1)));
            }
        }
        println!("{sep}");
        for r in &self.rows {
            line(r);
        }
        println!();
    }
}

/// One line describing the machine: cores, CPU model, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown kernel".into());
    format!("{cores} cores, {model}, Linux {kernel}")
}

/// CPU time of the calling thread, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the whole process, nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A group of identical cameras with pre-generated source images (the synthetic pattern,
/// made once), published into a ring by copying: what a capture thread handing over a
/// finished image does.
#[derive(Debug)]
pub struct Group {
    pub format: camring_protocol::PixelFormat,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub sources: Vec<Vec<u8>>,
}

impl Group {
    pub fn new(
        cameras: u32,
        format: camring_protocol::PixelFormat,
        width: u32,
        height: u32,
    ) -> Group {
        use camring_protocol::pattern::{self, Geometry};
        let stride = format.min_stride(width).expect("raw format") as usize;
        let g = Geometry::new(format, width, height, stride).expect("pattern geometry");
        let sources = (0..cameras)
            .map(|cam| {
                let mut buf = vec![0u8; g.len()];
                pattern::fill(&mut buf, &g, cam, 0);
                buf
            })
            .collect();
        Group {
            format,
            width,
            height,
            stride,
            sources,
        }
    }

    /// Bytes of one camera image.
    pub fn image_len(&self) -> usize {
        self.sources[0].len()
    }

    /// Bytes of one multi-frame.
    pub fn frame_len(&self) -> usize {
        self.image_len() * self.sources.len()
    }

    /// A ring layout for this group with `slots` slots.
    pub fn ring_config(&self, slots: u32) -> camring_shm::RingConfig {
        let cam = camring_protocol::layout::CameraLayout {
            width: self.width,
            height: self.height,
            format: self.format.code(),
            max_len: u32::try_from(self.image_len()).expect("image under 4 GiB"),
        };
        camring_shm::RingConfig::new(slots, vec![cam; self.sources.len()], 30_000)
    }

    /// The entry of camera `cam` (the loan sets offset and length).
    pub fn entry(
        &self,
        cam: usize,
        capture_ns: u64,
        sequence: u64,
    ) -> camring_protocol::layout::CameraEntry {
        camring_protocol::layout::CameraEntry {
            camera_id: cam as u32,
            format: self.format.code(),
            width: self.width,
            height: self.height,
            stride: self.stride as u32,
            capture_ns,
            sequence,
            ..Default::default()
        }
    }

    /// Publishes one multi-frame: loan, for each camera `push_camera` + copy of the source
    /// image, commit. Returns the frame number.
    pub fn publish(&self, writer: &mut camring_shm::Writer) -> Result<u64> {
        let now = camring_shm::clock::now_ns();
        let mut loan = writer.loan();
        self.fill(&mut loan, now)?;
        Ok(loan.commit(now, 0)?)
    }

    /// Copies every camera's source image into the loan (captured at `now`).
    pub fn fill(&self, loan: &mut camring_shm::SlotLoan<'_>, now: u64) -> Result<()> {
        let seq = loan.frame();
        for (cam, src) in self.sources.iter().enumerate() {
            loan.push_camera(self.entry(cam, now, seq), src.len())?
                .copy_from_slice(src);
        }
        Ok(())
    }
}

/// The order of a benchmark's variants, shuffled each iteration from a fixed seed so runs
/// repeat. A plain rotation would make every variant always follow the same other one,
/// and what ran before (one core left idle, or both busy) changes how fast the next
/// multi-frame starts on both cores.
#[derive(Debug)]
pub struct Order(fastrand::Rng);

impl Order {
    /// A sequence of orders from `seed`.
    pub fn new(seed: u64) -> Self {
        Order(fastrand::Rng::with_seed(seed))
    }

    /// The variants `0..n` in a fresh random order.
    pub fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.0.shuffle(&mut v);
        v
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
        for (cam, jpeg) in self.jpegs.iter().enumerate() {
            let entry = camring_protocol::layout::CameraEntry {
                camera_id: cam as u32,
                format: camring_protocol::PixelFormat::Jpeg.code(),
                width: self.width,
                height: self.height,
                stride: 0,
                capture_ns: now,
                sequence,
                ..Default::default()
            };
            loan.push_camera(entry, jpeg.len())?.copy_from_slice(jpeg);
        }
        Ok(loan.commit(now, 0)?)
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

// ---------------------------------------------------------------- a producer thread

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
pub struct Ring {
    pub src: JpegSource,
    pub writer: camring_shm::Writer,
    pub _guard: RingGuard,
}

impl Ring {
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
