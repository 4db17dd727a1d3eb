use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use camring_protocol::control::{CameraSet, ProducerStatus};
use rustix::process::Signal;

use crate::common::*;
use crate::support::*;

/// What a client of the producer-restart test has seen so far: live states, other states,
/// frames since the last live state.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    lives: usize,
    downs: usize,
    frames_since_live: usize,
}

#[test]
fn producer_killed_and_restarted_clients_follow_without_reconnecting() {
    let _serial = one_at_a_time();
    let ring = ring_name("wsrestart");
    let _g = RingGuard(ring.clone());
    let start = |cameras, size| {
        let args = [
            "--cameras",
            cameras,
            "--size",
            size,
            "--fps",
            "20",
            "--format",
            "jpeg",
        ];
        produce(&ring, &[&args[..], &["-q"]].concat())
    };
    let first = start("2", "320x240");
    assert!(wait_for_frames(&ring, 1, PATIENCE));
    let mut bridge = Bridge::start(&ring, &[]);
    let addr = bridge.addr;
    let rt = runtime();
    let queries = ["", "?quality=50&max_width=160", "?cameras=1&fps=5"];
    let seen = Arc::new(std::sync::Mutex::new(vec![
        Progress::default();
        queries.len()
    ]));
    let stop = Arc::new(AtomicU64::new(0));
    let clients = spawn_clients(rt.handle(), addr, &queries, {
        let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
        move |i, mut c, mut ws| {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            async move {
                while stop.load(Ordering::Relaxed) == 0 {
                    let end = Instant::now() + Duration::from_millis(100);
                    let event = match event_before(&mut ws, &mut c, end).await {
                        Until::Deadline => continue,
                        Until::Event(event) => event,
                        other => panic!("{}", c.ended(other)),
                    };
                    let mut s = seen.lock().expect("lock");
                    match event {
                        Event::State => {
                            let producer = c.states.last().expect("a state").producer;
                            if producer == ProducerStatus::Live {
                                if s[i].lives == s[i].downs {
                                    s[i].lives += 1;
                                    s[i].frames_since_live = 0;
                                }
                            } else if s[i].downs < s[i].lives {
                                s[i].downs += 1;
                            }
                        }
                        Event::Frame(_) => s[i].frames_since_live += 1,
                        Event::Closed(code) => panic!("{}: closed ({code:?})", c.name),
                        _ => {}
                    }
                }
                c
            }
        }
    });
    // Waits until every client is in `lives` live periods, `downs` ended ones, and (when
    // live) got `frames` frames in this one.
    let wait = |lives: usize, downs: usize, frames: usize, what: &str| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = seen.lock().expect("lock").clone();
            if now
                .iter()
                .all(|s| s.lives == lives && s.downs == downs && s.frames_since_live >= frames)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: clients saw {now:?}\nbridge: {}",
                bridge.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(1, 0, 5, "first producer");
    first.signal(Signal::KILL);
    let _ = first.finish(PATIENCE);
    wait(1, 1, 0, "producer killed");
    // The same layout: the new producer takes the ring over.
    let second = start("2", "320x240");
    wait(2, 1, 5, "second producer");
    // A clean stop removes the ring; a producer of another layout makes a new one.
    second.signal(Signal::INT);
    let out = second.finish(PATIENCE);
    assert!(out.status.success(), "{}", stderr(&out));
    wait(2, 2, 0, "producer stopped");
    let _third = start("3", "160x120");
    wait(3, 2, 5, "third producer");
    stop.store(1, Ordering::Relaxed);
    let clients: Vec<Checker> = rt.block_on(async {
        let mut out = Vec::new();
        for c in clients {
            out.push(c.await.expect("client"));
        }
        out
    });
    for c in &clients {
        let states: Vec<ProducerStatus> = c.states.iter().map(|s| s.producer).collect();
        eprintln!(
            "{}: states {states:?}, {} frames, {} images verified, logs {:?}",
            c.name,
            c.frames.len(),
            c.verified,
            c.logs
        );
        assert!(
            states.contains(&ProducerStatus::Dead) || states.contains(&ProducerStatus::Waiting),
            "{}: the kill was never told: {states:?}",
            c.name
        );
        // Each change of the producer is also told as a log line.
        assert!(
            c.logs.iter().any(|(level, _)| level == "warn"),
            "{}: no warning logged: {:?}",
            c.name,
            c.logs
        );
        // The last live period is the 3-camera ring (the checker checked each frame against
        // the cameras of the state before it).
        let last_live = c
            .states
            .iter()
            .rposition(|s| s.producer == ProducerStatus::Live)
            .expect("live");
        let frames = &c.frames[c.states[last_live].frames_before..];
        let all = c
            .settings
            .as_ref()
            .is_some_and(|s| s.cameras == CameraSet::All);
        for g in frames {
            assert_eq!(g.ids.len(), if all { 3 } else { 1 }, "{}: {g:?}", c.name);
        }
    }
    assert!(bridge.alive(), "bridge exited: {}", bridge.log());
    let log = bridge.log();
    assert!(!log.contains("panicked"), "{log}");
}
