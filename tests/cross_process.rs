//! Cross-process tests: real producer and reader processes over real shared memory.
//! Every accepted frame is checked against the synthetic pattern (camera and frame number
//! are encoded in the pixels).

mod common;

use std::time::Duration;

use common::*;
use rustix::process::Signal;

const T: Duration = Duration::from_secs(60);

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn several_readers_verify_every_frame() {
    let ring = ring_name("multi");
    let _g = RingGuard(ring.clone());
    let producer = produce_synthetic(
        &ring,
        3,
        "320x240",
        60,
        &["--slots", "4", "--duration", "8", "-q"],
    );
    assert!(wait_for_frames(&ring, 1, T), "producer did not start");
    let readers: Vec<Proc> = [
        &["--mode", "latest"][..],
        &["--mode", "next"],
        &["--mode", "next", "--copy"],
        &["--mode", "latest", "--copy", "--spin-us", "200"],
    ]
    .iter()
    .map(|mode| verifying_read(&ring, &[&["--duration", "4", "-q"], *mode].concat()))
    .collect();
    for r in readers {
        let out = r.finish(T);
        let s = summary(&out);
        assert!(out.status.success(), "reader failed: {}", stderr(&out));
        assert_eq!(u(&s, "corrupt"), 0, "{s}");
        // 60 fps for 4 s: a reader that got under a third of the frames is broken.
        assert!(u(&s, "frames") >= 80, "{s}");
        assert_eq!(u(&s, "verified"), u(&s, "frames"), "{s}");
        assert!(s["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{s}");
        assert!(
            s["latency_us"]["p99"].as_f64().unwrap() >= s["latency_us"]["p50"].as_f64().unwrap()
        );
    }
    let out = producer.finish(T);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !shm_path(&ring).exists(),
        "a clean producer exit removes the ring"
    );
}

#[test]
fn every_format_round_trips_between_processes() {
    for format in ["rgb8", "bgr8", "gray8", "yuyv", "nv12", "jpeg"] {
        let ring = ring_name(format);
        let _g = RingGuard(ring.clone());
        let producer = produce_synthetic(
            &ring,
            2,
            "320x240",
            50,
            &["--format", format, "--duration", "4", "-q"],
        );
        assert!(
            wait_for_frames(&ring, 1, T),
            "{format}: producer did not start"
        );
        let out = verifying_read(&ring, &["--mode", "next", "--duration", "1.5", "-q"]).finish(T);
        let s = summary(&out);
        assert_eq!(u(&s, "corrupt"), 0, "{format}: {s}");
        assert!(u(&s, "verified") >= 20, "{format}: {s}");
        assert_eq!(u(&s, "verified"), u(&s, "frames"), "{format}: {s}");
        producer.signal(Signal::INT);
        assert!(producer.finish(T).status.success());
        assert!(
            !shm_path(&ring).exists(),
            "{format}: SIGINT removes the ring"
        );
    }
}

#[test]
fn slow_reader_is_lapped_told_and_recovers() {
    let ring = ring_name("slow");
    let _g = RingGuard(ring.clone());
    let producer = produce_synthetic(
        &ring,
        1,
        "64x48",
        200,
        &["--slots", "4", "--duration", "6", "-q"],
    );
    assert!(wait_for_frames(&ring, 1, T));
    // 20 ms per frame against a 5 ms period: it falls behind at once and is lapped again
    // and again, but every frame it accepts is whole.
    let out = verifying_read(
        &ring,
        &[
            "--mode",
            "next",
            "--delay-ms",
            "20",
            "--duration",
            "3",
            "-q",
        ],
    )
    .finish(T);
    let s = summary(&out);
    assert_eq!(u(&s, "corrupt"), 0, "{s}");
    assert!(
        u(&s, "lapped") > 0,
        "a slow reader must be told it lost frames: {s}"
    );
    assert!(u(&s, "frames") >= 50, "the slow reader keeps reading: {s}");
    assert_eq!(u(&s, "verified"), u(&s, "frames"), "{s}");
    // Frames read + frames lost cannot exceed what was published during the run (200 fps
    // for 3 s, plus slack for the start).
    assert!(u(&s, "frames") + u(&s, "lapped") <= 200 * 4, "{s}");
    drop(producer);
}

#[test]
fn sigkill_mid_write_then_takeover_readers_resume() {
    let ring = ring_name("kill");
    let _g = RingGuard(ring.clone());
    // The reader runs for the whole test and must never restart.
    let reader = verifying_read(
        &ring,
        &["--wait", "20", "--mode", "next", "--duration", "14"],
    )
    .watch();
    let mut seen = 0;
    for round in 0..3 {
        // A producer that stalls in the middle of writing a frame: killed there, it leaves
        // the slot marked as being written.
        let stall_after = (20 + round * 7).to_string();
        let p = produce_synthetic(
            &ring,
            2,
            "160x120",
            100,
            &["--slots", "4", "--stall-after", &stall_after],
        );
        // Killed only once it stalled mid-write (it says so when the stall begins).
        let p = p.watch();
        p.wait_for(0, "the stall", T, |l| l.contains("stalled in the middle"));
        p.signal(Signal::KILL);
        let out = p.finish(T);
        assert!(
            stderr(&out).contains("stalled in the middle"),
            "{}",
            stderr(&out)
        );
        // The segment outlives the killed producer, which is reported dead.
        assert!(shm_path(&ring).exists());
        let mut dead = false;
        for _ in 0..100 {
            if ls_field(&ring, "state").is_some_and(|s| s == "dead") {
                dead = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(dead, "round {round}: ls must report the producer dead");
        // The reader saw this producer die before the next one takes over.
        reader.wait_for(seen, "the reader seeing the death", T, |l| {
            l.contains("gone")
        });
        seen = reader.lines();
    }
    // A last producer of the same layout takes over and runs to a clean stop; then one of
    // another layout replaces it.
    let p = produce_synthetic(
        &ring,
        2,
        "160x120",
        100,
        &["--slots", "4", "--duration", "1.5"],
    );
    let out = p.finish(T);
    assert!(stderr(&out).contains("took over"), "{}", stderr(&out));
    let p = produce_synthetic(&ring, 1, "96x64", 100, &["--slots", "4", "--duration", "2"]);
    let out = p.finish(T);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = reader.finish(T);
    let err = stderr(&out);
    let s = summary(&out);
    assert_eq!(u(&s, "corrupt"), 0, "{s}\n{err}");
    assert!(
        err.contains("gone"),
        "the reader reports the producer gone:\n{err}"
    );
    assert!(
        u(&s, "resyncs") >= 3,
        "the reader follows every new producer: {s}\n{err}"
    );
    assert!(
        u(&s, "verified") >= 100,
        "frames verified across producers: {s}\n{err}"
    );
    assert!(!shm_path(&ring).exists());
}

#[test]
fn second_live_producer_is_refused() {
    let ring = ring_name("dup");
    let _g = RingGuard(ring.clone());
    let first = produce(&ring, &["--cameras", "1", "--size", "64x48", "-q"]);
    assert!(wait_for_frames(&ring, 1, T));
    let out = run(
        &[
            "produce",
            "--ring",
            &ring,
            "--cameras",
            "1",
            "--size",
            "64x48",
        ],
        T,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("live producer") && err.contains(&first.pid().to_string()),
        "{err}"
    );
    // The first producer is unaffected.
    let out = verifying_read(&ring, &["--duration", "0.5", "-q"]).finish(T);
    assert!(u(&summary(&out), "verified") > 0);
    first.signal(Signal::TERM);
    assert!(first.finish(T).status.success());
    assert!(!shm_path(&ring).exists(), "SIGTERM removes the ring");
}

#[test]
fn errors_are_clear_sentences() {
    let out = run(
        &["read", "--ring", "no-such-ring-here", "--duration", "1"],
        T,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such ring"), "{}", stderr(&out));

    let out = run(&["read", "--ring", "../etc/passwd"], T);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid ring name"),
        "{}",
        stderr(&out)
    );

    let out = run(&["rm", "no-such-ring-here"], T);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such ring"), "{}", stderr(&out));

    // A segment of a future layout version.
    let ring = ring_name("ver");
    let _g = RingGuard(ring.clone());
    let mut bytes = vec![0u8; 8192];
    bytes[..8].copy_from_slice(b"CAMRING\0");
    bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(shm_path(&ring), &bytes).unwrap();
    let out = run(&["read", "--ring", &ring], T);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("incompatible ring layout version 99"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn permissions_ls_and_rm() {
    let ring = ring_name("perm");
    let _g = RingGuard(ring.clone());
    let p = produce(&ring, &["--cameras", "1", "--size", "64x48", "-q"]);
    assert!(wait_for_frames(&ring, 1, T));
    let mode = shm_mode(&ring);
    assert_eq!(mode, 0o600, "owner-only by default");
    assert_eq!(ls_field(&ring, "state").unwrap(), "live");
    assert_eq!(ls_field(&ring, "cameras").unwrap(), "1x 64x48 rgb8");
    // rm refuses a live ring.
    let out = run(&["rm", &ring], T);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("live producer"), "{}", stderr(&out));
    // After a crash, rm cleans up.
    p.signal(Signal::KILL);
    drop(p.finish(T));
    assert_eq!(ls_field(&ring, "state").unwrap(), "dead");
    let out = run(&["rm", &ring], T);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!shm_path(&ring).exists());
    assert!(ls_field(&ring, "state").is_none());

    let ring = ring_name("group");
    let _g2 = RingGuard(ring.clone());
    let p = produce(
        &ring,
        &["--cameras", "1", "--size", "64x48", "--group", "-q"],
    );
    assert!(wait_for_frames(&ring, 1, T));
    let mode = shm_mode(&ring);
    assert_eq!(mode, 0o660, "--group shares with the group");
    p.signal(Signal::TERM);
    assert!(p.finish(T).status.success());
}

/// What `camring read` says about a ring it cannot attach to: the ring and each cause,
/// once (error types keep their cause as `source()`, out of their own message).
#[test]
fn an_unreadable_ring_is_explained_once() {
    let ring = ring_name("sparse-src");
    let _g = RingGuard(ring.clone());
    let producer = produce(&ring, &["--cameras", "1", "--size", "64x48", "-q"]);
    assert!(wait_for_frames(&ring, 1, T));
    // A segment with a valid header that was never allocated past it (a sparse file).
    let sparse = ring_name("sparse");
    let _g2 = RingGuard(sparse.clone());
    let bytes = std::fs::read(shm_path(&ring)).expect("read the segment");
    std::fs::write(shm_path(&sparse), &bytes[..65_536]).expect("write the header");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&sparse))
        .expect("open");
    file.set_len(bytes.len() as u64).expect("grow sparsely");
    drop(file);
    // A name that is a symlink (any local user can plant one in /dev/shm).
    let link = ring_name("link");
    let _g3 = RingGuard(link.clone());
    std::os::unix::fs::symlink(shm_path(&ring), shm_path(&link)).expect("symlink");
    drop(producer);
    for (name, cause) in [
        (&sparse, "not fully allocated (sparse file)"),
        (&link, "Too many levels of symbolic links"),
    ] {
        let out = run(&["read", "--ring", name, "--duration", "1"], T);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.matches(cause).count(), 1, "{err}");
        assert_eq!(err.matches(name.as_str()).count(), 1, "{err}");
    }
}
