//! JPEG encode throughput of the producer: a multi-frame of 4 fresh RGB8 synthetic images
//! encoded at quality 80 into a JPEG ring by `RingOutput::write` (every camera encoded in
//! parallel with rayon, straight into the slot), against turbojpeg called directly on the
//! same images (`camring_jpeg::Encoder::encode_into` into preallocated buffers).
//!
//! Variants, interleaved multi-frame by multi-frame in a fresh random order each time, so
//! that noise on a shared machine, and the state the previous variant left the two cores
//! in, hit all of them alike:
//!
//! * `producer`: `RingOutput::write` of a `MultiFrame` whose 4 picks are fresh images, into
//!   a 4-slot JPEG ring in /dev/shm (pre-faulted), published (no reader attached).
//! * `direct, 2 threads`: the calling thread encodes cameras 0 and 1, one persistent
//!   helper thread cameras 2 and 3, each with its own encoder into its own preallocated
//!   (pre-touched) buffers; the multi-frame is done when both are.
//! * `direct, 1 thread`: the calling thread encodes all four, one after the other: the
//!   figure that shows what the second core buys.
//! * `rayon direct`: the same encodes as a rayon `par_iter` on the global pool (encoders
//!   from a shared pool, heap buffers): the producer without the ring, to tell what the
//!   ring and the slot cost from what handing the work to rayon costs.
//! * `direct, 2 pinned threads`: two helper threads pinned to CPUs 0 and 1 (the calling
//!   thread only waits), to show what the scheduler's placement of woken threads costs.
//!
//! Then, for the producer and the two 2-thread direct variants, multi-frames at a
//! camera's pace (one every 33 ms, the CPUs idle in between), as a running group writes
//! them.
//!
//! Sizes 4 × 1280×720 and 4 × 1920×1080. The ratio producer / direct is a throughput
//! ratio (direct time / producer time), per round and over the run; the goal is ≥ 0.9.
//! Before timing, the bench checks that the producer's slot holds exactly the bytes the
//! direct encoder makes and that they decode to the synthetic pattern.
//!
//! `cargo bench -p camring-producer --bench encode` runs the full benchmark; without `--bench` (as under
//! `cargo test --all-targets`) a smoke run with tiny images checks that everything works.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use camring_jpeg::{Decoder, Encoder};
use camring_producer::frame::{Buffer, Image};
use camring_producer::output::{RingFormat, RingOutput, RingSpec};
use camring_producer::sync::{MultiFrame, Pick};
use camring_protocol::layout::CameraLayout;
use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;
use camring_shm::{ReadMode, Reader};
use camring_testkit::{self as kit, median, RingGuard, Table};
use hdrhistogram::Histogram;
use rayon::prelude::*;

const CAMERAS: usize = 4;
const QUALITY: u8 = 80;
const SLOTS: u32 = 4;
/// Pattern frame number the images carry.
const FRAME: u64 = 7;

#[derive(Debug, Clone)]
struct Params {
    sizes: Vec<(u32, u32)>,
    warmup_rounds: usize,
    rounds: usize,
    /// Iterations of each variant per round.
    per_round: usize,
    /// Multi-frames of each variant written at a camera's pace (one per `gap`).
    paced: usize,
    gap: Duration,
}

const VARIANTS: [&str; 5] = [
    "producer",
    "direct, 2 threads",
    "direct, 1 thread",
    "rayon direct",
    "direct, 2 pinned threads",
];
const LABELS: [&str; 5] = [
    "producer: RingOutput::write (rayon, into the slot)",
    "turbojpeg direct, 2 threads",
    "turbojpeg direct, 1 thread",
    "rayon par_iter, turbojpeg into heap buffers",
    "turbojpeg direct, 2 threads pinned to CPUs 0 and 1",
];
/// The variants also run at a camera's pace.
const PACED: [usize; 3] = [0, 1, 4];

fn main() -> Result<()> {
    let full = kit::Run::get()?.full();
    let p = if full {
        Params {
            sizes: vec![(1280, 720), (1920, 1080)],
            warmup_rounds: 2,
            rounds: 30,
            per_round: 10,
            paced: 60,
            gap: Duration::from_millis(33),
        }
    } else {
        Params {
            sizes: vec![(64, 48)],
            warmup_rounds: 1,
            rounds: 2,
            per_round: 2,
            paced: 2,
            gap: Duration::from_millis(1),
        }
    };
    println!("Machine: {}", kit::Machine::this());
    println!(
        "rayon threads: {}{}\n",
        rayon_threads(),
        if full {
            ""
        } else {
            " (SMOKE RUN: tiny images, figures meaningless)"
        }
    );
    for &(w, h) in &p.sizes {
        run_size(&p, w, h)?;
    }
    Ok(())
}

/// The size of rayon's global pool (what `RingOutput::write` runs on).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The 4 source images: camera `c`'s synthetic pattern, frame [`FRAME`].
fn images(w: u32, h: u32) -> Vec<Arc<Image>> {
    let stride = w as usize * 3;
    let g = Geometry::new(PixelFormat::Rgb8, w, h, stride).expect("pattern geometry");
    (0..CAMERAS as u32)
        .map(|cam| {
            let mut data = vec![0u8; g.len()];
            pattern::fill(&mut data, &g, cam, FRAME);
            let mut image = Image::new(
                PixelFormat::Rgb8,
                w,
                h,
                stride as u32,
                camring_shm::clock::now_ns(),
                FRAME,
                Buffer::unpooled(data),
            );
            image.synthetic = true;
            Arc::new(image)
        })
        .collect()
}

fn encode(enc: &mut Encoder, image: &Image, out: &mut [u8]) -> Result<usize> {
    Ok(enc.encode_into(
        image.data(),
        image.format,
        image.width,
        image.height,
        image.stride as usize,
        out,
    )?)
}

/// A preallocated output buffer for one JPEG, every page touched.
fn out_buffer(w: u32, h: u32) -> Vec<u8> {
    vec![1u8; PixelFormat::Jpeg.max_payload_len(w, h) as usize]
}

/// A persistent helper thread for the 2-thread direct variant: encodes the images it is
/// sent, each into its own buffer, and answers with their lengths.
struct Helper {
    jobs: Option<Sender<Vec<Arc<Image>>>>,
    done: Receiver<Result<Vec<usize>>>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// A helper with buffers for `count` images, pinned to CPU `pin` if given.
    fn start(w: u32, h: u32, count: usize, pin: Option<usize>) -> Result<Helper> {
        let (jobs, job_rx) = channel::<Vec<Arc<Image>>>();
        let (done_tx, done) = channel();
        let mut enc = Encoder::new(QUALITY)?;
        let mut bufs: Vec<Vec<u8>> = (0..count).map(|_| out_buffer(w, h)).collect();
        let thread = std::thread::Builder::new()
            .name("direct-helper".into())
            .spawn(move || {
                if let Some(cpu) = pin {
                    let mut set = rustix::thread::CpuSet::new();
                    set.set(cpu);
                    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
                        eprintln!("encode bench: cannot pin a helper to CPU {cpu}: {e}");
                    }
                }
                for job in job_rx {
                    let r = job
                        .iter()
                        .zip(&mut bufs)
                        .map(|(image, buf)| encode(&mut enc, image, buf))
                        .collect();
                    if done_tx.send(r).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Helper {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    fn send(&self, images: Vec<Arc<Image>>) -> Result<()> {
        self.jobs
            .as_ref()
            .expect("helper running")
            .send(images)
            .map_err(|_| anyhow!("helper thread gone"))
    }

    fn wait(&self) -> Result<Vec<usize>> {
        self.done.recv().context("helper thread gone")?
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Bench {
    out: RingOutput,
    images: Vec<Arc<Image>>,
    frame: MultiFrame,
    helper: Helper,
    /// Two helpers pinned to CPUs 0 and 1 (the calling thread only waits).
    pinned: [Helper; 2],
    enc: Encoder,
    /// The calling thread's output buffers, one per camera.
    bufs: Vec<Vec<u8>>,
    /// Output buffers of the rayon variant, one per camera.
    rbufs: Vec<Vec<u8>>,
    /// Encoders of the rayon variant, taken and returned by its tasks.
    pool: Mutex<Vec<Encoder>>,
}

impl Bench {
    fn new(name: &str, w: u32, h: u32) -> Result<Bench> {
        let spec = RingSpec {
            name: name.to_owned(),
            format: RingFormat::Fixed(PixelFormat::Jpeg),
            quality: QUALITY,
            slots: SLOTS,
            mode: camring_shm::MODE_OWNER,
        };
        let layout = CameraLayout {
            width: w,
            height: h,
            format: PixelFormat::Jpeg.code(),
            max_len: u32::try_from(PixelFormat::Jpeg.max_payload_len(w, h))?,
        };
        let out = RingOutput::create(spec, vec![layout; CAMERAS], 30.0)?;
        let images = images(w, h);
        let frame = MultiFrame {
            tick_ns: 0,
            spread_ns: 0,
            picks: images.iter().map(|i| Pick::Fresh(i.clone())).collect(),
        };
        Ok(Bench {
            out,
            frame,
            helper: Helper::start(w, h, CAMERAS / 2, None)?,
            pinned: [
                Helper::start(w, h, CAMERAS / 2, Some(0))?,
                Helper::start(w, h, CAMERAS / 2, Some(1))?,
            ],
            enc: Encoder::new(QUALITY)?,
            bufs: (0..CAMERAS).map(|_| out_buffer(w, h)).collect(),
            rbufs: (0..CAMERAS).map(|_| out_buffer(w, h)).collect(),
            pool: Mutex::new(Vec::new()),
            images,
        })
    }

    /// Runs variant `v` once; returns its wall time in nanoseconds.
    fn once(&mut self, v: usize) -> Result<u64> {
        let t = Instant::now();
        match v {
            0 => {
                self.frame.tick_ns = camring_shm::clock::now_ns();
                self.out.write(&self.frame)?;
            }
            1 => {
                let half = CAMERAS / 2;
                self.helper.send(self.images[half..].to_vec())?;
                for (image, buf) in self.images[..half].iter().zip(&mut self.bufs) {
                    encode(&mut self.enc, image, buf)?;
                }
                self.helper.wait()?;
            }
            2 => {
                for (image, buf) in self.images.iter().zip(&mut self.bufs) {
                    encode(&mut self.enc, image, buf)?;
                }
            }
            4 => {
                let half = CAMERAS / 2;
                self.pinned[0].send(self.images[..half].to_vec())?;
                self.pinned[1].send(self.images[half..].to_vec())?;
                self.pinned[0].wait()?;
                self.pinned[1].wait()?;
            }
            _ => {
                let pool = &self.pool;
                let lens: Vec<usize> = self
                    .rbufs
                    .par_iter_mut()
                    .zip(self.images.par_iter())
                    .map(|(buf, image)| {
                        let popped = pool.lock().expect("pool").pop();
                        let mut enc = match popped {
                            Some(e) => e,
                            None => Encoder::new(QUALITY)?,
                        };
                        let r = encode(&mut enc, image, buf);
                        pool.lock().expect("pool").push(enc);
                        r
                    })
                    .collect::<Result<_>>()?;
                std::hint::black_box(lens);
            }
        }
        Ok(t.elapsed().as_nanos() as u64)
    }

    /// Publishes one multi-frame and checks that every camera's payload is byte for byte
    /// what the direct encoder makes of the same image, and decodes to the pattern.
    /// Returns the JPEG sizes.
    fn check(&mut self, name: &str) -> Result<Vec<usize>> {
        let mut reader = Reader::open(name)?;
        self.frame.tick_ns = camring_shm::clock::now_ns();
        let n = self.out.write(&self.frame)?;
        let frame = reader
            .try_read(ReadMode::Latest)?
            .context("no frame after write")?;
        ensure!(frame.number() == n, "read frame {} not {n}", frame.number());
        ensure!(frame.cameras().len() == CAMERAS, "camera count");
        let mut dec = Decoder::new()?;
        let mut sizes = Vec::new();
        for (c, image) in self.images.iter().enumerate() {
            let entry = frame.cameras()[c];
            ensure!(
                entry.format == PixelFormat::Jpeg.code(),
                "camera {c}: not JPEG (flags {:#x})",
                entry.flags
            );
            let len = encode(&mut self.enc, image, &mut self.bufs[c])?;
            ensure!(
                frame.payload(c).eq_bytes(&self.bufs[c][..len]),
                "camera {c}: producer JPEG differs from the direct encoder's"
            );
            dec.verify_pattern(
                &frame.payload(c).to_vec(),
                image.width,
                image.height,
                c as u32,
                FRAME,
            )?;
            sizes.push(len);
        }
        frame.validate()?;
        let stats = self.out.stats();
        ensure!(stats.dropped == 0, "producer dropped images: {stats:?}");
        Ok(sizes)
    }
}

fn run_size(p: &Params, w: u32, h: u32) -> Result<()> {
    let name = kit::ring_name("encode");
    let _guard = RingGuard(name.clone());
    let mut bench = Bench::new(&name, w, h)?;
    let sizes = bench.check(&name)?;

    let n = VARIANTS.len();
    let mut hist: Vec<Histogram<u64>> = VARIANTS.iter().map(|_| kit::histogram()).collect();
    let mut wall = [0u64; VARIANTS.len()];
    let mut cpu = [0u64; VARIANTS.len()];
    // Per round: total time of each variant; ratios direct / producer.
    let mut ratio_2t = Vec::new();
    let mut ratio_1t = Vec::new();
    let mut order = kit::Order::new(0x9e37_79b9_7f4a_7c15);
    for round in 0..p.warmup_rounds + p.rounds {
        kit::check_interrupt()?;
        let mut total = [0u64; VARIANTS.len()];
        for _ in 0..p.per_round {
            for v in order.shuffled(n) {
                let c0 = kit::process_cpu_ns();
                let ns = bench.once(v)?;
                let c1 = kit::process_cpu_ns();
                total[v] += ns;
                if round >= p.warmup_rounds {
                    kit::record(&mut hist[v], ns);
                    wall[v] += ns;
                    cpu[v] += c1 - c0;
                }
            }
        }
        if round >= p.warmup_rounds {
            ratio_2t.push(total[1] as f64 / total[0] as f64);
            ratio_1t.push(total[2] as f64 / total[0] as f64);
        }
    }
    // At a camera's pace: one multi-frame every `gap`, the CPUs idle in between.
    let mut paced: Vec<Histogram<u64>> = PACED.iter().map(|_| kit::histogram()).collect();
    for i in 0..p.paced {
        for k in 0..PACED.len() {
            kit::check_interrupt()?;
            std::thread::sleep(p.gap);
            let j = (k + i) % PACED.len();
            let ns = bench.once(PACED[j])?;
            kit::record(&mut paced[j], ns);
        }
    }
    let stats = bench.out.stats();
    drop(bench);

    let count = (p.rounds * p.per_round) as f64;
    let mp = (CAMERAS as u64 * u64::from(w) * u64::from(h)) as f64 / 1e6;
    let kb: Vec<String> = sizes
        .iter()
        .map(|s| format!("{:.0}", *s as f64 / 1e3))
        .collect();
    println!(
        "## encode: {CAMERAS} × {w}×{h} RGB8 → JPEG q{QUALITY} 4:2:0 ({mp:.2} MP per multi-frame)\n"
    );
    println!(
        "{} rounds × {} multi-frames of each variant, interleaved, after {} warm-up rounds; \
         JPEG sizes {} KB; producer wrote {} multi-frames, {} images encoded, {} dropped\n",
        p.rounds,
        p.per_round,
        p.warmup_rounds,
        kb.join(" / "),
        stats.frames,
        stats.encoded,
        stats.dropped,
    );
    let fps = |v: usize| count / (wall[v] as f64 / 1e9);
    let head = [
        &["variant", "multi-frames/s", "MP/s"][..],
        &kit::SPREAD,
        &["CPU (cores)", "throughput / direct 2 threads"],
    ];
    let mut t = Table::new(&head.concat());
    for (v, h) in hist.iter().enumerate() {
        let mut row = vec![
            LABELS[v].to_owned(),
            format!("{:.1}", fps(v)),
            format!("{:.0}", fps(v) * mp),
        ];
        row.extend(kit::spread(h));
        row.push(format!("{:.2}", cpu[v] as f64 / wall[v] as f64));
        row.push(format!("{:.3}", fps(v) / fps(1)));
        t.row(row);
    }
    t.print();
    let fmt_list = |xs: &[f64]| {
        xs.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let min = |xs: &[f64]| xs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |xs: &[f64]| xs.iter().copied().fold(0.0, f64::max);
    println!(
        "producer / direct 2 threads (throughput), whole run: **{:.3}**; median of the {} \
         per-round ratios: **{:.3}** (goal ≥ 0.9), range {:.3}–{:.3}\n",
        fps(0) / fps(1),
        ratio_2t.len(),
        median(&ratio_2t),
        min(&ratio_2t),
        max(&ratio_2t),
    );
    println!("per-round ratios: {}\n", fmt_list(&ratio_2t));
    println!(
        "producer / direct 2 threads, ratio of the p50s (direct p50 / producer p50): {:.3}\n",
        hist[1].value_at_quantile(0.5) as f64 / hist[0].value_at_quantile(0.5) as f64
    );
    println!(
        "producer / direct 1 thread, median per round: {:.3} (range {:.3}–{:.3}); \
         2 threads / 1 thread, whole run: {:.2}×\n",
        median(&ratio_1t),
        min(&ratio_1t),
        max(&ratio_1t),
        fps(1) / fps(2),
    );
    println!(
        "At a camera's pace: {} multi-frames of each, one every {} ms (in turn), the \
         CPUs idle in between:\n",
        p.paced,
        p.gap.as_millis()
    );
    let mut t = Table::new(&["variant", "p50", "p90", "p99", "p50 / back-to-back p50"]);
    for (&v, h) in PACED.iter().zip(&paced) {
        let p50 = h.value_at_quantile(0.5) as f64;
        let mut row = vec![LABELS[v].to_owned()];
        row.extend(kit::quantiles(h, &[0.5, 0.9, 0.99]));
        row.push(format!(
            "{:.2}",
            p50 / hist[v].value_at_quantile(0.5) as f64
        ));
        t.row(row);
    }
    t.print();
    Ok(())
}
