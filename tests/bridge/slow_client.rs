use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// What `camring bridge ws` lets the kernel hold unsent per connection
/// (`camring_bridge::ws::NOTSENT_LOWAT`).
const NOTSENT_LOWAT: u64 = 128 * 1024;

#[test]
fn slow_client_lags_a_bounded_number_of_frames_and_fast_ones_keep_the_rate() {
    const FPS: u32 = 30;
    const RUN: Duration = Duration::from_secs(30);
    const RCVBUF: u32 = 16 * 1024;
    const READ_BUFFER: usize = 8 * 1024;
    const PAUSE: Duration = Duration::from_millis(300);
    let rig = Rig::start("wsslow", (2, "320x240", FPS, "jpeg"), &[]);
    let addr = rig.addr();
    let rt = runtime();
    let newest = Arc::new(AtomicU64::new(0));
    let (fast, slow, dropped_metric) = rt.block_on(async {
        let fast: Vec<_> = (0..5)
            .map(|i| {
                let newest = Arc::clone(&newest);
                tokio::spawn(async move {
                    let mut c = Checker::new(format!("fast client {i}"));
                    let mut ws = connect(addr, "/ws").await;
                    let end = Instant::now() + RUN;
                    while let Some(g) = frame_before(&mut ws, &mut c, end).await {
                        newest.fetch_max(g.frame, Ordering::Relaxed);
                    }
                    (c, RUN)
                })
            })
            .collect();
        let slow = {
            let newest = Arc::clone(&newest);
            tokio::spawn(async move {
                let how = Dial {
                    rcvbuf: Some(RCVBUF),
                    read_buffer: Some(READ_BUFFER),
                    ..Dial::default()
                };
                let mut ws = dial(addr, "/ws", &how).await.expect("slow client connects");
                let mut c = Checker::new("slow client");
                // (when, lag in frames behind the fast clients' newest)
                let mut lags: Vec<(Instant, u64)> = Vec::new();
                let end = Instant::now() + RUN;
                while let Some(g) = frame_before(&mut ws, &mut c, end).await {
                    let ahead = newest.load(Ordering::Relaxed);
                    lags.push((g.at, ahead.saturating_sub(g.frame)));
                    tokio::time::sleep(PAUSE).await;
                }
                (c, lags)
            })
        };
        let mut done = Vec::new();
        for t in fast {
            done.push(t.await.expect("fast client"));
        }
        let slow = slow.await.expect("slow client");
        let m = bridge_metrics(addr, None).await;
        (
            done,
            slow,
            metric(&m, r#"camring_bridge_frames_dropped_total{kind="ws"}"#),
        )
    });
    // The fast clients: (nearly) every frame the ring produced while they listened.
    let mut rates = Vec::new();
    for (c, run) in &fast {
        let got = c.frames.len() as u64;
        let produced = span(&c.frames);
        rates.push(got as f64 / run.as_secs_f64());
        assert!(
            got * 10 >= produced * 8,
            "{}: {got} frames of the {produced} the ring produced meanwhile",
            c.name
        );
    }
    let (c, lags) = slow;
    let first = c.frames.first().expect("the slow client got frames");
    let last = c.frames.last().expect("frames");
    let ring_fps = fast
        .iter()
        .map(|(c, run)| span(&c.frames) as f64 / run.as_secs_f64())
        .fold(0.0, f64::max);
    // Lag over thirds of the slow client's run.
    let t0 = first.at;
    let third = last.at.duration_since(t0) / 3;
    let part = |k: u32| -> Vec<f64> {
        lags.iter()
            .filter(|(at, _)| {
                let d = at.duration_since(t0);
                d >= third * k && (k == 2 || d < third * (k + 1))
            })
            .map(|&(_, l)| l as f64)
            .collect()
    };
    // (median, max) lag of each third.
    let thirds: Vec<(f64, f64)> = (0..3)
        .map(|k| {
            let v = part(k);
            assert!(v.len() >= 5, "too few slow frames: {}", c.frames.len());
            let max = v.iter().copied().fold(0.0, f64::max);
            (median(&v), max)
        })
        .collect();
    let ((early_median, early_max), (late_median, late_max)) = (thirds[0], thirds[2]);
    // Frames queued ahead of the newest one at most: two in flight in the bridge, what the
    // kernel holds unsent (NOTSENT_LOWAT), in flight (the receive window) and in our
    // socket and read buffers, counted in the smallest messages; each costs one read.
    let smallest = c.frames.iter().map(|g| g.bytes).min().unwrap_or(1) as u64;
    let buffered = NOTSENT_LOWAT + 4 * u64::from(RCVBUF) + READ_BUFFER as u64;
    let queued = 2 + buffered.div_ceil(smallest) + 1;
    let read_period = last.at.duration_since(t0).as_secs_f64() / (c.frames.len() - 1) as f64;
    let bound = (queued as f64 * read_period * ring_fps * 1.5 + 10.0).ceil();
    let stats_dropped = c
        .stats
        .iter()
        .map(|s| s.connection.dropped)
        .max()
        .unwrap_or(0);
    let time_lag: Vec<f64> = c
        .frames
        .iter()
        .map(|g| (g.recv_ns.saturating_sub(g.capture_ns)) as f64 * ring_fps / 1e9)
        .collect();
    eprintln!(
        "fast clients {:.1?} fps (ring {ring_fps:.1} fps); slow client {} frames (one per {:.0} ms), \
         lag in frames: first third median {early_median} max {early_max}, last third median \
         {late_median} max {late_max}, bound {bound} ({queued} messages of >= {smallest} B); \
         capture-to-receive lag {:.0}..{:.0} frames; dropped for it: {stats_dropped} (stats), \
         {dropped_metric} (metric)",
        rates,
        c.frames.len(),
        read_period * 1000.0,
        time_lag.iter().copied().fold(f64::MAX, f64::min),
        time_lag.iter().copied().fold(0.0, f64::max),
    );
    // Without drops the lag would grow by the ring's rate minus the client's, ~270 frames
    // per third here; with them it only moves with this machine's noise.
    assert!(
        late_median <= (2.0 * early_median).max(early_max) + 10.0,
        "the slow client's lag grows: median {early_median} frames in the first third, \
         {late_median} in the last"
    );
    for (third, (m, _)) in ["first", "middle", "last"].iter().zip(&thirds) {
        assert!(
            *m <= bound,
            "the slow client's median lag in the {third} third, {m} frames, exceeds the {bound} \
             its buffers explain"
        );
    }
    let worst = lags.iter().map(|&(_, l)| l).max().unwrap_or(0) as f64;
    assert!(
        worst <= 2.0 * bound,
        "the slow client lagged {worst} frames, far more than the {bound} its buffers explain"
    );
    // It got far fewer frames than the ring made, and the server says it dropped them.
    assert!(span(&c.frames) > 2 * c.frames.len() as u64);
    assert!(
        stats_dropped > 0,
        "its stats report no drops: {:?}",
        c.stats.last()
    );
    assert!(dropped_metric > 0.0);
    drop(rig);
}
