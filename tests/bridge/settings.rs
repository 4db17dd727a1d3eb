use std::time::{Duration, Instant};

use camring_protocol::control::{CameraSet, ProducerStatus, Quality};

use crate::common::*;
use crate::support::*;

/// The URL query each kind of client of the 50-client test starts with.
const KINDS: [&str; 10] = [
    "",
    "?quality=30",
    "?quality=auto&max_width=120",
    "?max_width=80",
    "?max_width=120&max_height=100&quality=60",
    "?fps=3&cameras=0,2",
    "?skip=3&quality=95",
    "?skip=2&cameras=1&max_height=60",
    // Changes its settings mid-stream.
    "?cameras=1&fps=5",
    // Pauses, then resumes.
    "?quality=70",
];
const CHANGE: &str = r#"{"type":"settings","cameras":[0,2],"max_width":80,"fps":0,"quality":50}"#;

#[test]
fn fifty_clients_with_their_own_settings_get_verified_frames() {
    const FPS: u32 = 15;
    const RUN: Duration = Duration::from_secs(12);
    let rig = Rig::start("ws50", (3, "160x120", FPS, "jpeg"), &[]);
    let addr = rig.addr();
    let rt = runtime();
    let results: Vec<(usize, Checker, Instant, Duration)> = rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                tokio::spawn(async move {
                    let kind = i % KINDS.len();
                    let query = KINDS[kind];
                    let (mut c, mut ws) = client(addr, i, query).await;
                    let start = Instant::now();
                    match kind {
                        // The phases are timed, but each ends with enough frames whatever
                        // the machine's load did to this client's reading.
                        8 => {
                            read_until(&mut ws, &mut c, start + RUN / 2).await;
                            send_for_state(&mut ws, &mut c, CHANGE).await;
                            let changed = c.states.last().expect("state").frames_before;
                            read_until(&mut ws, &mut c, start + RUN).await;
                            while c.frames.len() < changed + 10 {
                                next_frame(&mut ws, &mut c).await;
                            }
                        }
                        9 => {
                            read_until(&mut ws, &mut c, start + RUN / 3).await;
                            send_for_state(&mut ws, &mut c, r#"{"type":"pause"}"#).await;
                            read_until(&mut ws, &mut c, start + RUN * 2 / 3).await;
                            send_for_state(&mut ws, &mut c, r#"{"type":"resume"}"#).await;
                            let resumed = c.states.last().expect("state").frames_before;
                            read_until(&mut ws, &mut c, start + RUN).await;
                            while c.frames.len() < resumed + 3 {
                                next_frame(&mut ws, &mut c).await;
                            }
                        }
                        _ => {
                            read_until(&mut ws, &mut c, start + RUN).await;
                        }
                    }
                    let elapsed = start.elapsed();
                    let _ = ws.close(None).await;
                    (kind, c, start, elapsed)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client task"));
        }
        out
    });
    let ring_frames = results
        .iter()
        .filter(|(k, ..)| *k == 0)
        .map(|(_, c, ..)| span(&c.frames))
        .max()
        .unwrap_or(0);
    let mut report = Vec::new();
    for (kind, c, start, elapsed) in &results {
        let name = &c.name;
        let n = c.frames.len();
        let secs = elapsed.as_secs_f64();
        report.push(format!(
            "{name}: {n} frames over {} ring frames, {} images verified, {} missing, {} downscaled",
            span(&c.frames),
            c.verified,
            c.missing,
            c.downscaled
        ));
        assert!(n >= 5, "{name}: only {n} frames");
        assert!(c.verified >= n as u64, "{name}: {} verified", c.verified);
        assert!(c.errors.is_empty(), "{name}: {:?}", c.errors);
        // A stats message about once a second, counting what came.
        assert!(
            c.stats.len() >= 3,
            "{name}: {} stats messages",
            c.stats.len()
        );
        let last_stats = c.stats.last().expect("stats");
        assert!(
            last_stats.connection.sent <= n as u64 + 2,
            "{name}: {last_stats:?}"
        );
        // The first state may say `waiting` when the client connected before the bridge
        // had attached to the ring (a loaded machine); frames come once it is live.
        assert!(
            c.states.iter().any(|s| s.producer == ProducerStatus::Live),
            "{name}: {:?}",
            c.states.iter().map(|s| s.producer).collect::<Vec<_>>()
        );
        let first = &c.states[0];
        match kind {
            0..=4 => {
                // Uncapped: (nearly) every frame on a quiet machine; half on a noisy one.
                let made = span(&c.frames);
                assert!(
                    n as u64 * 2 >= made,
                    "{name}: {n} frames of the {made} the ring made meanwhile"
                );
                if *kind == 2 {
                    assert!(last_stats.connection.quality.is_some(), "{name}");
                }
            }
            5 => {
                let cap = 3.0;
                assert!(
                    n as f64 <= cap * secs * 1.5 + 2.0,
                    "{name}: {n} frames in {secs:.1} s at a cap of {cap} fps"
                );
                assert_eq!(
                    first.settings.cameras,
                    CameraSet::Only(vec![0, 2]),
                    "{name}"
                );
            }
            6 | 7 => {
                let skip = if *kind == 6 { 3 } else { 2 };
                let diffs: Vec<u64> = c
                    .frames
                    .windows(2)
                    .map(|w| w[1].frame - w[0].frame)
                    .collect();
                assert!(
                    diffs.iter().all(|&d| d >= skip),
                    "{name}: frame gaps {diffs:?} below the skip factor {skip}"
                );
                let multiples = diffs.iter().filter(|&&d| d % skip == 0).count();
                assert!(
                    multiples * 10 >= diffs.len() * 7,
                    "{name}: frame gaps {diffs:?} mostly not multiples of {skip}"
                );
            }
            8 => {
                // The settings message is answered by a state showing it; every frame
                // after that state follows it, every frame before follows the first.
                let s = c
                    .states
                    .iter()
                    .position(|st| st.settings.cameras == CameraSet::Only(vec![0, 2]))
                    .unwrap_or_else(|| panic!("{name}: no state shows the new settings"));
                let new = &c.states[s].settings;
                assert_eq!(new.max_width, 80, "{name}");
                assert_eq!(new.fps, 0.0, "{name}");
                assert_eq!(new.quality, Quality::Fixed(50), "{name}");
                assert_eq!(
                    new.max_height, 0,
                    "{name}: untouched fields keep their value"
                );
                let before = &c.frames[..c.states[s].frames_before];
                let after = &c.frames[c.states[s].frames_before..];
                assert!(before.iter().all(|g| g.ids == [1]), "{name}");
                assert!(
                    after.iter().all(
                        |g| g.ids == [0, 2] && g.sizes.iter().all(|&(w, h)| (w, h) == (80, 60))
                    ),
                    "{name}: frames after the new state do not follow it"
                );
                // Before: capped at 5 fps (until the new state came); after: uncapped, so
                // the frames come closer together in the ring's numbering.
                let capped_secs = c.states[s].at.duration_since(*start).as_secs_f64();
                assert!(
                    before.len() as f64 <= 5.0 * capped_secs * 1.5 + 2.0,
                    "{name}: {} frames at a cap of 5 fps in {capped_secs:.1} s",
                    before.len()
                );
                let gaps = |g: &[Got]| -> f64 {
                    let d: Vec<f64> = g
                        .windows(2)
                        .map(|w| (w[1].frame - w[0].frame) as f64)
                        .collect();
                    median(&d)
                };
                let (capped, uncapped) = (gaps(before), gaps(after));
                assert!(
                    uncapped < capped,
                    "{name}: median frame gap {capped} capped, {uncapped} uncapped"
                );
            }
            9 => {
                let p = c
                    .states
                    .iter()
                    .position(|st| st.paused)
                    .unwrap_or_else(|| panic!("{name}: no state says paused"));
                let r = c.states[p..]
                    .iter()
                    .position(|st| !st.paused)
                    .map(|i| p + i)
                    .unwrap_or_else(|| panic!("{name}: no state says resumed"));
                // Nothing between the two states (pause_stops_frames_from_its_state_on
                // tries harder, with a frame always pending at the pause).
                let during = c.states[r].frames_before - c.states[p].frames_before;
                assert_eq!(
                    during, 0,
                    "{name}: {during} frames between pause and resume"
                );
                assert_eq!(c.while_paused, 0, "{name}");
                let resumed = c.frames.len() - c.states[r].frames_before;
                assert!(resumed >= 3, "{name}: {resumed} frames after resuming");
            }
            _ => {}
        }
    }
    eprintln!(
        "ring frames over the run: {ring_frames}\n{}",
        report.join("\n")
    );
    drop(rig);
}

/// docs/protocol.md 6.1.2: `pause` stops binary messages and is answered with a `state`;
/// no frame may follow that `state` until `resume`. A slow reader always has a frame
/// pending in the bridge when its `pause` arrives, the case where one could slip through.
#[test]
fn pause_stops_frames_from_its_state_on() {
    let rig = Rig::start("wspause", (2, "320x240", 30, "jpeg"), &[]);
    let addr = rig.addr();
    runtime().block_on(async {
        let mut leaks = Vec::new();
        for round in 0..6 {
            let how = Dial {
                rcvbuf: Some(16 * 1024),
                read_buffer: Some(8 * 1024),
                ..Dial::default()
            };
            let mut ws = dial(addr, "/ws", &how).await.expect("connect");
            let mut c = Checker::new(format!("pausing client {round}"));
            for _ in 0..4 {
                next_frame(&mut ws, &mut c).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            send_for_state(&mut ws, &mut c, r#"{"type":"pause"}"#).await;
            assert!(c.paused, "{}: the state after pause says paused", c.name);
            read_until(
                &mut ws,
                &mut c,
                Instant::now() + Duration::from_millis(1000),
            )
            .await;
            leaks.push(c.while_paused);
            send_for_state(&mut ws, &mut c, r#"{"type":"resume"}"#).await;
            assert!(!c.paused);
            next_frame(&mut ws, &mut c).await;
        }
        assert!(
            leaks.iter().all(|&n| n == 0),
            "frames received after the state that said paused, per round: {leaks:?}"
        );
    });
}
