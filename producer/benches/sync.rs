//! What the producer's synchronisation costs, per multi-frame, and how long an image takes
//! from capture to publication in a running group.
//!
//! A. Synchroniser overhead: `Synchroniser::pick` over 4 feeds that already hold images,
//!    timed pick by pick (hdrhistogram): every feed with a new image since the last pick
//!    ("fresh", the images published untimed between picks) and nothing new ("repeated").
//!    The timer's own cost (two `Instant::now`) is measured the same way and shown.
//!
//! B. The ring's own cost in `RingOutput::write`, for a native ring (images copied as they
//!    are) of 4 raw RGB8 images, against the same bytes copied with `copy_from_slice`
//!    into preallocated buffers, the same copies run as a rayon `par_iter` (one task per
//!    camera, as `RingOutput::write` runs them: the cost of handing work to rayon's
//!    pool), and a plain `camring_shm` publish (loan, `push_camera` + copy, commit) into
//!    the same ring. Small images (64×48) make the fixed cost visible; 1280×720 shows it
//!    next to a real copy. The four variants are interleaved in a fresh random order
//!    each time.
//!
//! C. Capture-to-publish latency of a real `Group` of 4 synthetic cameras at 30 fps,
//!    1280×720, into a raw RGB8 ring and into a JPEG q80 ring, in ABBA runs of a few
//!    seconds each: `published_ns` of each `TickReport` minus the `capture_ns` of each
//!    fresh image in it, and minus the tick's time (`tick_ns`).
//!
//! `cargo bench -p camring-producer --bench sync` runs the full benchmark; without `--bench` (as under
//! `cargo test --all-targets`) a smoke run with tiny images checks that everything works.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use camring_producer::frame::{Buffer, Feed, Image, Stop};
use camring_producer::group::{CameraConfig, GroupConfig, DEFAULT_HOLD};
use camring_producer::output::{RingFormat, RingOutput, RingSpec};
use camring_producer::source::{SourceSpec, SyntheticSpec};
use camring_producer::sync::{MultiFrame, Pick, SyncPolicy, Synchroniser};
use camring_protocol::layout::{CameraEntry, CameraLayout};
use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;
use camring_testkit::{self as kit, fmt_ns, median, RingGuard, Table};
use hdrhistogram::Histogram;
use rayon::prelude::*;

const CAMERAS: usize = 4;

#[derive(Debug, Clone)]
struct Params {
    /// Picks per variant (A).
    picks: usize,
    /// Sizes for the ring-cost comparison (B).
    ring_sizes: Vec<(u32, u32)>,
    warmup_rounds: usize,
    rounds: usize,
    per_round: usize,
    /// Group runs (C): size, rate, seconds per run, runs per ring format (ABBA).
    group_size: (u32, u32),
    group_fps: f64,
    run_secs: f64,
    runs_each: usize,
    /// Ticks discarded at the start of each run (encoders made, first touches).
    warmup_ticks: u64,
}

fn main() -> Result<()> {
    let full = kit::Run::get()?.full();
    let p = if full {
        Params {
            picks: 200_000,
            ring_sizes: vec![(64, 48), (1280, 720)],
            warmup_rounds: 2,
            rounds: 20,
            per_round: 50,
            group_size: (1280, 720),
            group_fps: 30.0,
            run_secs: 8.0,
            runs_each: 2,
            warmup_ticks: 10,
        }
    } else {
        Params {
            picks: 100,
            ring_sizes: vec![(64, 48)],
            warmup_rounds: 1,
            rounds: 2,
            per_round: 3,
            group_size: (64, 48),
            group_fps: 60.0,
            run_secs: 0.1,
            runs_each: 1,
            warmup_ticks: 1,
        }
    };
    println!("Machine: {}", kit::Machine::this());
    if !full {
        println!("(SMOKE RUN: tiny images, short runs, figures meaningless)");
    }
    println!();
    bench_pick(&p)?;
    for &(w, h) in &p.ring_sizes {
        bench_ring(&p, w, h)?;
    }
    bench_group(&p)?;
    Ok(())
}

// ---------------------------------------------------------------- A. pick

fn small_image(feed: &Feed, cam: u32, seq: u64) -> Image {
    let (w, h) = (64, 48);
    let mut buf = feed.buffer(w as usize * h as usize * 3);
    buf[0] = cam as u8;
    let mut image = Image::new(PixelFormat::Rgb8, w, h, w * 3, now_ns(), seq, buf);
    image.synthetic = true;
    image
}

fn bench_pick(p: &Params) -> Result<()> {
    let feeds: Vec<Arc<Feed>> = (0..CAMERAS)
        .map(|i| Arc::new(Feed::new(format!("cam{i}"))))
        .collect();
    let period = Duration::from_secs_f64(1.0 / 30.0);
    let policy = SyncPolicy::for_periods(period, period);
    let mut sync = Synchroniser::new(feeds.clone(), vec![policy; CAMERAS]);
    let mut seq = 0u64;
    let publish_all = |seq: u64| {
        for (c, f) in feeds.iter().enumerate() {
            f.publish(small_image(f, c as u32, seq));
        }
    };
    publish_all(seq);

    // 0: timer only, 1: fresh, 2: repeated.
    let labels = [
        "timer alone (two Instant::now)",
        "pick, 4 fresh images",
        "pick, 4 repeated images",
    ];
    let mut hist: Vec<Histogram<u64>> = labels.iter().map(|_| kit::histogram()).collect();
    let mut kinds = [0u64; 3]; // fresh, repeated, missing picks seen
    for i in 0..p.picks * 3 {
        if i % 10_000 == 0 {
            kit::check_interrupt()?;
        }
        let v = i % 3;
        if v == 1 {
            seq += 1;
            publish_all(seq);
        }
        let tick = now_ns();
        let t = Instant::now();
        let frame = if v == 0 { None } else { Some(sync.pick(tick)) };
        let ns = t.elapsed().as_nanos() as u64;
        kit::record(&mut hist[v], ns);
        if let Some(frame) = frame {
            for pick in &frame.picks {
                kinds[match pick {
                    Pick::Fresh(_) => 0,
                    Pick::Repeated(_) => 1,
                    Pick::Missing => 2,
                }] += 1;
            }
            let want_fresh = v == 1;
            ensure!(
                frame
                    .picks
                    .iter()
                    .all(|p| matches!(p, Pick::Fresh(_)) == want_fresh),
                "pick {i}: unexpected kinds"
            );
        }
    }

    println!("## A. Synchroniser::pick over {CAMERAS} feeds holding images\n");
    println!(
        "{} picks of each kind, alternating (timer, fresh, repeated); picks seen: {} fresh, {} \
         repeated, {} missing (camera images)\n",
        p.picks, kinds[0], kinds[1], kinds[2]
    );
    let mut t = Table::new(&["what", "p50", "p90", "p99", "p99.9", "min", "mean"]);
    for (v, h) in hist.iter().enumerate() {
        let mut row = vec![labels[v].to_owned()];
        row.extend(kit::quantiles(h, &[0.5, 0.9, 0.99, 0.999]));
        row.push(fmt_ns(h.min() as f64));
        row.push(fmt_ns(h.mean()));
        t.row(row);
    }
    t.print();
    Ok(())
}

// ---------------------------------------------------------------- B. ring cost

struct RingBench {
    out: RingOutput,
    frame: MultiFrame,
    images: Vec<Arc<Image>>,
    copies: Vec<Vec<u8>>,
}

impl RingBench {
    fn once(&mut self, v: usize) -> Result<u64> {
        let t = Instant::now();
        match v {
            0 => {
                for (image, dst) in self.images.iter().zip(&mut self.copies) {
                    dst.copy_from_slice(image.data());
                }
                std::hint::black_box(&mut self.copies);
            }
            1 => {
                self.images
                    .par_iter()
                    .zip(self.copies.par_iter_mut())
                    .for_each(|(image, dst)| dst.copy_from_slice(image.data()));
                std::hint::black_box(&mut self.copies);
            }
            2 => {
                let now = now_ns();
                let mut loan = self.out.writer_mut().loan();
                for (c, image) in self.images.iter().enumerate() {
                    let entry = CameraEntry {
                        camera_id: c as u32,
                        format: image.format.code(),
                        width: image.width,
                        height: image.height,
                        stride: image.stride,
                        capture_ns: image.capture_ns,
                        sequence: image.sequence,
                        ..CameraEntry::default()
                    };
                    loan.push_camera(entry, image.data().len())?
                        .copy_from_slice(image.data());
                }
                loan.commit(now, 0)?;
            }
            _ => {
                self.frame.tick_ns = now_ns();
                self.out.write(&self.frame)?;
            }
        }
        Ok(t.elapsed().as_nanos() as u64)
    }
}

/// A difference of nanoseconds with its sign.
fn signed_ns(ns: f64) -> String {
    if ns < 0.0 {
        format!("−{}", fmt_ns(-ns))
    } else {
        format!("+{}", fmt_ns(ns))
    }
}

fn bench_ring(p: &Params, w: u32, h: u32) -> Result<()> {
    let name = kit::ring_name("sync-ring");
    let _guard = RingGuard(name.clone());
    let stride = w * 3;
    let g = Geometry::new(PixelFormat::Rgb8, w, h, stride as usize).expect("geometry");
    let layout = CameraLayout {
        width: w,
        height: h,
        format: PixelFormat::Rgb8.code(),
        max_len: g.len() as u32,
    };
    let spec = RingSpec {
        name: name.clone(),
        format: RingFormat::Native,
        quality: 80,
        slots: 4,
        mode: camring_shm::MODE_OWNER,
    };
    let out = RingOutput::create(spec, vec![layout; CAMERAS], 30.0)?;
    let images: Vec<Arc<Image>> = (0..CAMERAS as u32)
        .map(|c| {
            let mut data = vec![0u8; g.len()];
            pattern::fill(&mut data, &g, c, 1);
            let mut image = Image::new(
                PixelFormat::Rgb8,
                w,
                h,
                stride,
                now_ns(),
                1,
                Buffer::unpooled(data),
            );
            image.synthetic = true;
            Arc::new(image)
        })
        .collect();
    let frame = MultiFrame {
        tick_ns: 0,
        spread_ns: 0,
        picks: images.iter().map(|i| Pick::Fresh(i.clone())).collect(),
    };
    let mut b = RingBench {
        out,
        frame,
        copies: vec![vec![1u8; g.len()]; CAMERAS],
        images,
    };

    // Check: a RingOutput::write delivers the images intact.
    {
        let mut reader = camring_shm::Reader::open(&name)?;
        b.once(3)?;
        let f = reader
            .try_read(camring_shm::ReadMode::Latest)?
            .ok_or_else(|| anyhow::anyhow!("no frame after write"))?;
        for (c, image) in b.images.iter().enumerate() {
            ensure!(
                f.payload(c).eq_bytes(image.data()),
                "camera {c}: payload differs"
            );
        }
        f.validate()?;
    }

    let labels = [
        "memcpy of the same bytes (heap, preallocated)",
        "rayon par_iter: the same memcpys, one task per camera",
        "camring_shm publish: loan + push_camera + copy + commit",
        "RingOutput::write, native ring (rayon, into the slot)",
    ];
    let n = labels.len();
    let mut hist: Vec<Histogram<u64>> = labels.iter().map(|_| kit::histogram()).collect();
    let mut round_diff = Vec::new();
    let mut order = kit::Order::new(0x9e37_79b9_7f4a_7c15);
    for round in 0..p.warmup_rounds + p.rounds {
        kit::check_interrupt()?;
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
        for _ in 0..p.per_round {
            for v in order.shuffled(n) {
                let ns = b.once(v)?;
                samples[v].push(ns as f64);
                if round >= p.warmup_rounds {
                    kit::record(&mut hist[v], ns);
                }
            }
        }
        if round >= p.warmup_rounds {
            round_diff.push(median(&samples[3]) - median(&samples[0]));
        }
    }
    let stats = b.out.stats();
    drop(b);

    let bytes = g.len() * CAMERAS;
    println!(
        "## B. Ring cost: {CAMERAS} × {w}×{h} RGB8 ({:.1} KB per multi-frame) into a native ring\n",
        bytes as f64 / 1e3
    );
    println!(
        "{} rounds × {} iterations of each variant, interleaved; RingOutput wrote {} \
         multi-frames ({} dropped)\n",
        p.rounds, p.per_round, stats.frames, stats.dropped
    );
    let base = hist[0].value_at_quantile(0.5) as f64;
    let head = [
        &["variant"][..],
        &kit::SPREAD,
        &["GB/s at p50", "p50 − memcpy p50"],
    ];
    let mut t = Table::new(&head.concat());
    for (v, h) in hist.iter().enumerate() {
        let p50 = h.value_at_quantile(0.5) as f64;
        let mut row = vec![labels[v].to_owned()];
        row.extend(kit::spread(h));
        row.push(format!("{:.2}", bytes as f64 / p50));
        row.push(if v == 0 {
            "-".to_owned()
        } else {
            signed_ns(p50 - base)
        });
        t.row(row);
    }
    t.print();
    println!(
        "RingOutput::write − memcpy, per-round difference of the medians: median {}, range \
         {} to {}\n",
        signed_ns(median(&round_diff)),
        signed_ns(round_diff.iter().copied().fold(f64::INFINITY, f64::min)),
        signed_ns(round_diff.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
    );
    Ok(())
}

// ---------------------------------------------------------------- C. group latency

#[derive(Debug)]
struct GroupResult {
    ticks: u64,
    /// published_ns − capture_ns of every fresh image.
    capture_to_publish: Histogram<u64>,
    /// tick_ns − capture_ns of every fresh image.
    capture_to_tick: Histogram<u64>,
    /// published_ns − tick_ns of every multi-frame.
    tick_to_publish: Histogram<u64>,
    fresh: u64,
    repeated: u64,
    missing: u64,
    missed_ticks: u64,
    dropped: u64,
    consecutive: bool,
    cpu_cores: f64,
    fps: f64,
}

fn run_group(p: &Params, format: RingFormat) -> Result<GroupResult> {
    let name = kit::ring_name("sync-group");
    let _guard = RingGuard(name.clone());
    let (w, h) = p.group_size;
    let synthetic = SourceSpec::Synthetic(SyntheticSpec {
        width: w,
        height: h,
        ..SyntheticSpec::default()
    });
    let config = GroupConfig {
        fps: p.group_fps,
        hold: DEFAULT_HOLD,
        cameras: (0..CAMERAS)
            .map(|i| CameraConfig::new(i, synthetic.clone()))
            .collect(),
        rings: vec![RingSpec {
            name: name.clone(),
            format,
            quality: 80,
            slots: 8,
            mode: camring_shm::MODE_OWNER,
        }],
    };
    let mut group = camring_producer::Group::start(config)?;
    let stop = Stop::new();
    let mut r = GroupResult {
        ticks: 0,
        capture_to_publish: kit::histogram(),
        capture_to_tick: kit::histogram(),
        tick_to_publish: kit::histogram(),
        fresh: 0,
        repeated: 0,
        missing: 0,
        missed_ticks: 0,
        dropped: 0,
        consecutive: true,
        cpu_cores: 0.0,
        fps: 0.0,
    };
    let mut last: Option<u64> = None;
    let mut seen = 0u64;
    let mut measuring: Option<(Instant, u64, u64)> = None; // start, cpu, missed
    loop {
        kit::check_interrupt()?;
        let Some(report) = group.tick(&stop)? else {
            bail!("group stopped");
        };
        seen += 1;
        let number = report.numbers[0];
        if let Some(l) = last {
            r.consecutive &= number == l + 1;
        }
        last = Some(number);
        if seen <= p.warmup_ticks {
            continue;
        }
        let (start, _, _) = *measuring
            .get_or_insert_with(|| (Instant::now(), kit::process_cpu_ns(), group.missed_ticks()));
        r.ticks += 1;
        let f = &report.frame;
        kit::record(
            &mut r.tick_to_publish,
            report.published_ns.saturating_sub(f.tick_ns),
        );
        for pick in &f.picks {
            match pick {
                Pick::Fresh(image) => {
                    r.fresh += 1;
                    kit::record(
                        &mut r.capture_to_publish,
                        report.published_ns.saturating_sub(image.capture_ns),
                    );
                    kit::record(
                        &mut r.capture_to_tick,
                        f.tick_ns.saturating_sub(image.capture_ns),
                    );
                }
                Pick::Repeated(_) => r.repeated += 1,
                Pick::Missing => r.missing += 1,
            }
        }
        if start.elapsed().as_secs_f64() >= p.run_secs {
            break;
        }
    }
    let (start, cpu0, missed0) = measuring.expect("measured");
    let wall = start.elapsed();
    r.cpu_cores = (kit::process_cpu_ns() - cpu0) as f64 / wall.as_nanos() as f64;
    r.fps = r.ticks.saturating_sub(1) as f64 / wall.as_secs_f64();
    r.missed_ticks = group.missed_ticks() - missed0;
    r.dropped = group.ring_stats()[0].1.dropped;
    drop(group);
    Ok(r)
}

fn bench_group(p: &Params) -> Result<()> {
    let formats = [
        ("raw rgb8", RingFormat::Fixed(PixelFormat::Rgb8)),
        ("jpeg q80", RingFormat::Fixed(PixelFormat::Jpeg)),
    ];
    // ABBA: raw, jpeg, jpeg, raw, ...
    let mut order = Vec::new();
    for i in 0..p.runs_each {
        if i % 2 == 0 {
            order.extend([0, 1]);
        } else {
            order.extend([1, 0]);
        }
    }
    let mut results: Vec<Vec<GroupResult>> = vec![Vec::new(), Vec::new()];
    for &f in &order {
        results[f].push(run_group(p, formats[f].1)?);
    }

    let (w, h) = p.group_size;
    println!(
        "## C. Capture → publish in a running Group: {CAMERAS} synthetic cameras {w}×{h} at {} \
         fps\n",
        p.group_fps
    );
    println!(
        "{} runs of {:.0} s per ring format in ABBA order (first {} ticks of each run \
         discarded); latencies over all runs of a format\n",
        p.runs_each, p.run_secs, p.warmup_ticks
    );
    let mut t = Table::new(&[
        "ring",
        "ticks",
        "capture → publish p50",
        "p99",
        "max",
        "tick → publish p50",
        "p99",
        "max",
        "capture → tick p50",
        "fresh / repeated / missing",
        "missed ticks",
        "frame numbers",
        "group fps",
        "CPU (cores)",
    ]);
    let mut per_run = Table::new(&[
        "ring",
        "run",
        "capture → publish p50",
        "p99",
        "tick → publish p50",
        "p99",
        "CPU (cores)",
    ]);
    for (f, runs) in results.iter().enumerate() {
        let mut c2p = kit::histogram();
        let mut c2t = kit::histogram();
        let mut t2p = kit::histogram();
        let (mut ticks, mut fresh, mut rep, mut miss, mut missed) = (0, 0, 0, 0, 0);
        let mut consecutive = true;
        for (i, r) in runs.iter().enumerate() {
            c2p.add(&r.capture_to_publish)?;
            c2t.add(&r.capture_to_tick)?;
            t2p.add(&r.tick_to_publish)?;
            ticks += r.ticks;
            fresh += r.fresh;
            rep += r.repeated;
            miss += r.missing;
            missed += r.missed_ticks;
            consecutive &= r.consecutive;
            ensure!(
                r.dropped == 0,
                "{}: {} images dropped",
                formats[f].0,
                r.dropped
            );
            per_run.row(vec![
                formats[f].0.to_owned(),
                format!("{}", i + 1),
                fmt_ns(r.capture_to_publish.value_at_quantile(0.5) as f64),
                fmt_ns(r.capture_to_publish.value_at_quantile(0.99) as f64),
                fmt_ns(r.tick_to_publish.value_at_quantile(0.5) as f64),
                fmt_ns(r.tick_to_publish.value_at_quantile(0.99) as f64),
                format!("{:.2}", r.cpu_cores),
            ]);
        }
        let fps: Vec<f64> = runs.iter().map(|r| r.fps).collect();
        let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_cores).collect();
        t.row(vec![
            formats[f].0.to_owned(),
            format!("{ticks}"),
            fmt_ns(c2p.value_at_quantile(0.5) as f64),
            fmt_ns(c2p.value_at_quantile(0.99) as f64),
            fmt_ns(c2p.max() as f64),
            fmt_ns(t2p.value_at_quantile(0.5) as f64),
            fmt_ns(t2p.value_at_quantile(0.99) as f64),
            fmt_ns(t2p.max() as f64),
            fmt_ns(c2t.value_at_quantile(0.5) as f64),
            format!("{fresh} / {rep} / {miss}"),
            format!("{missed}"),
            if consecutive {
                "consecutive".to_owned()
            } else {
                "GAPS".to_owned()
            },
            format!("{:.2}", median(&fps)),
            format!("{:.2}", median(&cpu)),
        ]);
    }
    t.print();
    per_run.print();
    Ok(())
}
