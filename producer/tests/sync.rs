//! The synchroniser on a real ring: a [`Group`] of synthetic cameras (different rates,
//! jitter, a stall, a death and return) writes into rings in /dev/shm while a thread ticks
//! it, and every published multi-frame is read back in-process with `camring_shm::Reader`
//! in `ReadMode::Next` and checked: frame numbers, the group clock (from the header's
//! `tick_ns`, computed, never timed), the spread, each camera's flags and sequences, and
//! every synthetic payload against its pattern.
//!
//! No assertion is on how long anything took; deadlines only keep a broken run from
//! hanging.

use camring_testkit::{ring_name, RingGuard};
use std::time::{Duration, Instant};

use camring_producer::frame::Stop;
use camring_producer::group::{CameraConfig, CameraStats, Group, GroupConfig, DEFAULT_HOLD};
use camring_producer::output::{OutputStats, RingFormat, RingSpec};
use camring_producer::source::{SourceSpec, SyntheticSpec};
use camring_protocol::layout::{CameraEntry, CAM_MISSING, CAM_REPEATED, CAM_SYNTHETIC};
use camring_protocol::PixelFormat;
use camring_reader::{Verdict, Verifier};
use camring_shm::{ReadMode, Reader, ReaderStats};

/// Longest any run may take before the test gives up (a hang guard, not an assertion).
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Tolerance on a `tick_ns` difference being a whole number of periods. The header's
/// tick time is computed from the absolute deadline; the only error is the few
/// instructions between reading the two clocks.
const TICK_SLACK_NS: f64 = 2_000_000.0;

/// Requests stop when dropped, so a panicking reader ends the ticking thread at once.
struct StopOnDrop(Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn ring(name: &str, format: RingFormat, slots: u32) -> RingSpec {
    RingSpec {
        name: name.to_owned(),
        format,
        quality: 80,
        slots,
        mode: camring_shm::MODE_OWNER,
    }
}

fn synthetic(width: u32, height: u32, fps: Option<f64>) -> SyntheticSpec {
    SyntheticSpec {
        width,
        height,
        fps,
        ..SyntheticSpec::default()
    }
}

fn group(fps: f64, cameras: Vec<SyntheticSpec>, rings: Vec<RingSpec>) -> GroupConfig {
    GroupConfig {
        fps,
        hold: DEFAULT_HOLD,
        cameras: cameras
            .into_iter()
            .enumerate()
            .map(|(i, s)| CameraConfig::new(i, SourceSpec::Synthetic(s)))
            .collect(),
        rings,
    }
}

/// One camera of a multi-frame as read from the ring, with the verdict on its payload.
#[derive(Debug, Clone)]
struct Cam {
    entry: CameraEntry,
    verdict: Verdict,
}

impl Cam {
    fn missing(&self) -> bool {
        self.entry.flags & CAM_MISSING != 0
    }
    fn repeated(&self) -> bool {
        self.entry.flags & CAM_REPEATED != 0
    }
    fn fresh(&self) -> bool {
        !self.missing() && !self.repeated()
    }
    fn kind(&self) -> char {
        if self.missing() {
            'M'
        } else if self.repeated() {
            'R'
        } else {
            'F'
        }
    }
}

/// One multi-frame as read from the ring.
#[derive(Debug, Clone)]
struct Rec {
    number: u64,
    tick_ns: u64,
    spread_ns: u64,
    cams: Vec<Cam>,
}

/// When the ticking thread stops.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// This long after the group started (its sources' schedules count from then).
    Elapsed(Duration),
    /// After this many multi-frames.
    Frames(u64),
}

/// What a run saw.
struct Run {
    /// Per ring, every multi-frame read, in order.
    rings: Vec<Vec<Rec>>,
    /// Ticks the group clock skipped (`Group::missed_ticks`).
    missed: u64,
    /// Multi-frames `tick` returned.
    ticks: u64,
    cameras: Vec<CameraStats>,
    outputs: Vec<(String, OutputStats)>,
    readers: Vec<ReaderStats>,
}

/// Reads every frame available, verifying each camera's payload, then checks the slot was
/// not overwritten meanwhile.
fn drain(reader: &mut Reader, verifier: &mut Verifier, out: &mut Vec<Rec>) {
    loop {
        let frame = match reader.try_read(ReadMode::Next) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => panic!("ring {}: read failed: {e}", reader.name()),
        };
        let h = *frame.header();
        let cams = frame
            .cameras()
            .iter()
            .enumerate()
            .map(|(i, e)| Cam {
                entry: *e,
                verdict: verifier.check(e, &frame.payload(i).to_vec()),
            })
            .collect();
        frame.validate().unwrap_or_else(|e| {
            panic!(
                "ring {}: frame {} overwritten while read ({e}): the reader was lapped",
                reader.name(),
                h.frame
            )
        });
        out.push(Rec {
            number: h.frame,
            tick_ns: h.tick_ns,
            spread_ns: h.spread_ns,
            cams,
        });
    }
}

/// Starts the group, ticks it on a thread until `until`, and reads every frame of every
/// ring on this thread meanwhile.
fn run(config: GroupConfig, until: Until) -> Run {
    let names: Vec<String> = config.rings.iter().map(|r| r.name.clone()).collect();
    let _guards: Vec<RingGuard> = names.iter().cloned().map(RingGuard).collect();
    let started = Instant::now();
    let mut group = Group::start(config).expect("the group starts");
    // Opened before the first tick: each reader starts at frame 0.
    let mut readers: Vec<Reader> = names
        .iter()
        .map(|n| Reader::open(n).expect("the ring opens"))
        .collect();
    let stop = Stop::new();
    let (rings, (missed, ticks, cameras, outputs)) = std::thread::scope(|s| {
        let _stop_on_panic = StopOnDrop(stop.clone());
        let ticker = s.spawn(|| {
            let mut ticks = 0u64;
            loop {
                let done = match until {
                    Until::Elapsed(d) => started.elapsed() >= d,
                    Until::Frames(n) => ticks >= n,
                };
                if done || started.elapsed() >= HANG_GUARD {
                    break;
                }
                match group.tick(&stop) {
                    Ok(Some(_)) => ticks += 1,
                    Ok(None) => break,
                    Err(e) => panic!("tick failed: {e}"),
                }
            }
            (
                group.missed_ticks(),
                ticks,
                group.camera_stats(),
                group.ring_stats(),
            )
        });
        let mut verifier = Verifier::new();
        let mut rings = vec![Vec::new(); readers.len()];
        loop {
            // Everything published before the ticker finished is read by the drain after.
            let finished = ticker.is_finished();
            for (r, out) in readers.iter_mut().zip(&mut rings) {
                drain(r, &mut verifier, out);
            }
            if finished {
                break;
            }
            readers[0].wait(Duration::from_millis(50));
        }
        (rings, ticker.join().expect("the ticking thread panicked"))
    });
    let readers = readers.iter().map(Reader::stats).collect();
    drop(group);
    for n in &names {
        assert!(
            !camring_shm::path_of(n).exists(),
            "dropping the group removes ring {n}"
        );
    }
    Run {
        rings,
        missed,
        ticks,
        cameras,
        outputs,
        readers,
    }
}

/// Frame numbers 0, 1, 2, ... with nothing lost, one per tick.
fn assert_consecutive(run: &Run, recs: &[Rec]) {
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.number, i as u64, "frame numbers are consecutive");
    }
    assert_eq!(recs.len() as u64, run.ticks, "every tick's frame was read");
    for s in &run.readers {
        assert_eq!((s.lapped, s.torn, s.corrupt), (0, 0, 0), "{s:?}");
    }
}

/// The group clock as the headers show it: every `tick_ns` difference is a whole number
/// of periods (no drift, ticks on absolute deadlines), also over the whole run. Returns
/// the number of ticks skipped between frames.
fn assert_clock(run: &Run, recs: &[Rec], fps: f64) -> u64 {
    let period = 1e9 / fps;
    let whole = |from: u64, to: u64| -> u64 {
        assert!(to > from, "tick_ns increases: {from} then {to}");
        let d = (to - from) as f64;
        let k = (d / period).round();
        assert!(
            k >= 1.0 && (d - k * period).abs() <= TICK_SLACK_NS,
            "tick_ns {from} -> {to}: {d} ns is not a whole number of {period} ns periods"
        );
        k as u64
    };
    let mut skipped = 0;
    for w in recs.windows(2) {
        skipped += whole(w[0].tick_ns, w[1].tick_ns) - 1;
    }
    let (first, last) = (recs[0].tick_ns, recs[recs.len() - 1].tick_ns);
    let total = whole(first, last);
    assert_eq!(
        total,
        recs.len() as u64 - 1 + skipped,
        "no drift over the run"
    );
    assert!(
        skipped <= run.missed,
        "{skipped} ticks missing between frames, the clock skipped only {}",
        run.missed
    );
    assert!(
        skipped <= 3 + recs.len() as u64 / 10,
        "the group rate was not held: {skipped} ticks skipped in {} frames",
        recs.len()
    );
    skipped
}

/// Spread is max - min of the capture times of the cameras present; missing entries are
/// empty; every camera present is synthetic, in its place, and verifies.
fn assert_frames(recs: &[Rec]) {
    for r in recs {
        let present: Vec<u64> = r
            .cams
            .iter()
            .filter(|c| !c.missing())
            .map(|c| c.entry.capture_ns)
            .collect();
        let spread = match (present.iter().max(), present.iter().min()) {
            (Some(hi), Some(lo)) => hi - lo,
            _ => 0,
        };
        assert_eq!(r.spread_ns, spread, "frame {}: spread", r.number);
        for (i, c) in r.cams.iter().enumerate() {
            assert_eq!(c.entry.camera_id, i as u32, "frame {}", r.number);
            if c.missing() {
                assert_eq!(c.entry.length, 0, "frame {} camera {i} missing", r.number);
                assert_eq!(c.verdict, Verdict::Unchecked);
            } else {
                assert_ne!(
                    c.entry.flags & CAM_SYNTHETIC,
                    0,
                    "frame {} camera {i}",
                    r.number
                );
                assert_eq!(
                    c.verdict,
                    Verdict::Verified,
                    "frame {} camera {i} (sequence {}, flags {:#x})",
                    r.number,
                    c.entry.sequence,
                    c.entry.flags
                );
            }
        }
    }
}

/// Per camera: a fresh image is newer than the last one sent, a repeated one is not older
/// (it is the one sent before, or one that came too late to be fresh); and the ring's
/// flags agree with the synchroniser's own counts.
fn assert_sequences(run: &Run, recs: &[Rec]) {
    let cameras = recs[0].cams.len();
    for cam in 0..cameras {
        let mut last: Option<u64> = None;
        let (mut fresh, mut repeated, mut missing) = (0, 0, 0);
        for r in recs {
            let c = &r.cams[cam];
            let seq = c.entry.sequence;
            match c.kind() {
                'F' => {
                    fresh += 1;
                    assert!(
                        last.is_none_or(|l| seq > l),
                        "frame {} camera {cam}: fresh sequence {seq} after {last:?}",
                        r.number
                    );
                }
                'R' => {
                    repeated += 1;
                    assert!(
                        last.is_some_and(|l| seq >= l),
                        "frame {} camera {cam}: repeated sequence {seq} after {last:?}",
                        r.number
                    );
                }
                _ => missing += 1,
            }
            if !c.missing() {
                last = Some(seq);
            }
        }
        let p = run.cameras[cam].picks;
        assert_eq!(
            (p.fresh, p.repeated, p.missing),
            (fresh, repeated, missing),
            "camera {cam}: the synchroniser's counts match the ring"
        );
    }
}

fn kinds(recs: &[Rec], cam: usize) -> String {
    recs.iter().map(|r| r.cams[cam].kind()).collect()
}

fn count(recs: &[Rec], cam: usize, f: impl Fn(&Cam) -> bool) -> usize {
    recs.iter().filter(|r| f(&r.cams[cam])).count()
}

/// Group at 30 fps: camera 0 at 30 fps, 1 at 15 fps, 2 at 60 fps (all with 5 ms of
/// jitter), 3 stalls for 0.7 s from 1 s, 4 dies at 1 s and comes back 1.5 s later (longer
/// than the 1 s hold, so it goes missing in between).
#[test]
fn group_rate_flags_and_spread_with_slow_stalled_and_dying_cameras() {
    let name = ring_name("mixed");
    let jitter = Duration::from_millis(5);
    let s = |fps: f64| SyntheticSpec {
        jitter,
        ..synthetic(160, 120, Some(fps))
    };
    let cameras = vec![
        s(30.0),
        s(15.0),
        s(60.0),
        SyntheticSpec {
            stall: Some((Duration::from_secs(1), Duration::from_millis(700))),
            ..synthetic(160, 120, Some(30.0))
        },
        SyntheticSpec {
            die: Some((Duration::from_secs(1), Duration::from_millis(1500))),
            ..synthetic(160, 120, Some(30.0))
        },
    ];
    let config = group(
        30.0,
        cameras,
        vec![ring(&name, RingFormat::Fixed(PixelFormat::Rgb8), 64)],
    );
    let run = run(config, Until::Elapsed(Duration::from_secs(4)));
    let recs = &run.rings[0];
    let n = recs.len();
    assert!(n >= 30, "only {n} frames in 4 s");
    assert_consecutive(&run, recs);
    let skipped = assert_clock(&run, recs, 30.0);
    assert_frames(recs);
    assert_sequences(&run, recs);
    for cam in 0..5 {
        assert_eq!(recs[0].cams.len(), 5);
        assert_eq!(recs[n - 1].cams[cam].entry.format, PixelFormat::Rgb8.code());
    }
    let summary = (0..5)
        .map(|c| format!("cam{c} {}", kinds(recs, c)))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("{n} frames, {skipped} ticks skipped\n{summary}");

    // Cameras 0..=2 never miss; the group-rate camera is fresh in nearly every frame. (A
    // repeat is a capture that landed after its tick: jitter and a loaded machine delay
    // captures by a few ms, and the tick comes only a quarter period after the capture
    // grid. Idle, every frame is fresh; with both cores busy elsewhere, 84-95 %.)
    for cam in 0..3 {
        assert_eq!(count(recs, cam, Cam::missing), 0, "camera {cam}\n{summary}");
    }
    let fresh0 = count(recs, 0, Cam::fresh);
    assert!(
        fresh0 * 4 >= n * 3,
        "30 fps camera fresh in {fresh0} of {n}\n{summary}"
    );
    // The 15 fps camera has something new every other tick.
    let rep1 = count(recs, 1, Cam::repeated);
    assert!(
        (n * 35..=n * 65).contains(&(rep1 * 100)),
        "15 fps camera repeated in {rep1} of {n}\n{summary}"
    );
    // The 60 fps camera always has something new.
    let fresh2 = count(recs, 2, Cam::fresh);
    assert!(
        fresh2 * 4 >= n * 3,
        "60 fps camera fresh in {fresh2} of {n}\n{summary}"
    );

    // Camera 3 stalls: a run of repeats of one image (never missing: 0.7 s < hold), then
    // fresh again with newer images.
    let k3 = kinds(recs, 3);
    assert!(!k3.contains('M'), "stalled camera went missing\n{summary}");
    let (start, len) = longest_run(&k3, 'R');
    assert!(len >= 10, "no stall seen\n{summary}");
    assert!(
        start > 0 && start + len < n,
        "stall not surrounded\n{summary}"
    );
    let before = recs[start - 1].cams[3].entry.sequence;
    for r in &recs[start..start + len] {
        assert_eq!(r.cams[3].entry.sequence, before, "frame {}", r.number);
    }
    let after = &recs[start + len].cams[3];
    assert!(after.fresh() && after.entry.sequence > before, "{after:?}");
    assert!(
        count(&recs[start + len..], 3, Cam::fresh) * 10 >= (n - start - len) * 7,
        "stalled camera did not recover\n{summary}"
    );

    // Camera 4 dies: repeated while its last image is younger than the hold, then missing
    // (empty), then it rejoins with newer images.
    let k4 = kinds(recs, 4);
    let m0 = k4.find('M').expect("the dead camera went missing");
    let m1 = k4.rfind('M').unwrap();
    assert!(
        k4[m0..=m1].chars().all(|c| c == 'M'),
        "one missing run\n{summary}"
    );
    assert!(m1 - m0 + 1 >= 5, "missing run too short\n{summary}");
    let (rstart, rlen) = longest_run(&k4[..m0], 'R');
    assert!(
        rlen >= 5 && rstart + rlen == m0,
        "the dead camera is repeated before it is missing\n{summary}"
    );
    let last_seen = recs[m0 - 1].cams[4].entry.sequence;
    for r in &recs[rstart..m0] {
        assert_eq!(r.cams[4].entry.sequence, last_seen, "frame {}", r.number);
    }
    assert!(m1 + 1 < n, "the dead camera never came back\n{summary}");
    let back = &recs[m1 + 1..];
    assert!(
        back.iter()
            .all(|r| !r.cams[4].missing() && r.cams[4].entry.sequence > last_seen),
        "the camera rejoins with newer images\n{summary}"
    );
    assert!(
        count(back, 4, Cam::fresh) * 10 >= back.len() * 7,
        "rejoined camera is fresh again\n{summary}"
    );
    assert!(run.cameras[4].feed.failures >= 1, "{:?}", run.cameras[4]);
}

/// The longest run of `c` in `s`: (start, length).
fn longest_run(s: &str, c: char) -> (usize, usize) {
    let (mut best, mut cur_start, mut cur) = ((0, 0), 0, 0);
    for (i, k) in s.chars().enumerate() {
        if k == c {
            if cur == 0 {
                cur_start = i;
            }
            cur += 1;
            if cur > best.1 {
                best = (cur_start, cur);
            }
        } else {
            cur = 0;
        }
    }
    best
}

/// One capture, two rings: JPEG (encoded) and RGB8 (raw). Same frames, same per-camera
/// sequences and flags; the JPEG payloads decode to the pattern, the raw ones are exact.
#[test]
fn jpeg_and_raw_rings_from_the_same_capture() {
    let jpeg = ring_name("jpeg");
    let raw = ring_name("raw");
    let config = group(
        30.0,
        vec![
            synthetic(320, 240, Some(30.0)),
            SyntheticSpec {
                jitter: Duration::from_millis(5),
                ..synthetic(320, 240, Some(15.0))
            },
        ],
        vec![
            ring(&jpeg, RingFormat::Fixed(PixelFormat::Jpeg), 64),
            ring(&raw, RingFormat::Fixed(PixelFormat::Rgb8), 64),
        ],
    );
    let run = run(config, Until::Elapsed(Duration::from_millis(2500)));
    let (j, r) = (&run.rings[0], &run.rings[1]);
    assert!(j.len() >= 10, "only {} frames", j.len());
    assert_eq!(j.len(), r.len(), "both rings got every frame");
    for recs in [j, r] {
        assert_consecutive(&run, recs);
        assert_clock(&run, recs, 30.0);
        assert_frames(recs);
        assert_sequences(&run, recs);
    }
    let mut present = 0u64;
    for (a, b) in j.iter().zip(r) {
        assert_eq!(
            (a.number, a.tick_ns, a.spread_ns),
            (b.number, b.tick_ns, b.spread_ns)
        );
        assert_eq!(a.cams.len(), 2);
        for (ca, cb) in a.cams.iter().zip(&b.cams) {
            let (ea, eb) = (&ca.entry, &cb.entry);
            assert_eq!(
                (ea.sequence, ea.flags, ea.capture_ns, ea.width, ea.height),
                (eb.sequence, eb.flags, eb.capture_ns, eb.width, eb.height),
                "frame {}: both rings carry the same image",
                a.number
            );
            if !ca.missing() {
                present += 1;
                assert_eq!((ea.format, ea.stride), (PixelFormat::Jpeg.code(), 0));
                assert_eq!((eb.format, eb.stride), (PixelFormat::Rgb8.code(), 320 * 3));
                assert_eq!(eb.length, 320 * 240 * 3);
            }
        }
    }
    let kinds1 = kinds(r, 1);
    assert!(
        kinds1.contains('R') && kinds1.contains('F'),
        "the 15 fps camera is both fresh and repeated: {kinds1}"
    );
    let (jn, js) = &run.outputs[0];
    let (rn, rs) = &run.outputs[1];
    assert_eq!((jn, rn), (&jpeg, &raw));
    assert_eq!(
        (js.frames, js.encoded, js.dropped),
        (j.len() as u64, present, 0)
    );
    assert_eq!(
        (rs.frames, rs.encoded, rs.decoded, rs.dropped),
        (r.len() as u64, 0, 0, 0)
    );
}

/// A group whose only camera never delivers (it dies at once and stays down, or it stalls
/// from the start) still publishes at the group rate, every frame flagged missing.
fn only_camera_never_delivers(tag: &str, spec: SyntheticSpec) {
    let name = ring_name(tag);
    let config = group(
        30.0,
        vec![spec],
        vec![ring(&name, RingFormat::Fixed(PixelFormat::Rgb8), 16)],
    );
    let run = run(config, Until::Frames(40));
    let recs = &run.rings[0];
    assert_eq!(recs.len(), 40);
    assert_consecutive(&run, recs);
    assert_clock(&run, recs, 30.0);
    assert_frames(recs);
    for r in recs {
        let c = &r.cams[0];
        assert!(c.missing(), "frame {}: {:?}", r.number, c.entry);
        assert_eq!((c.entry.length, r.spread_ns), (0, 0));
    }
    let p = run.cameras[0].picks;
    assert_eq!((p.fresh, p.repeated, p.missing), (0, 0, 40));
    assert_eq!(run.cameras[0].feed.captured, 0);
}

#[test]
fn a_camera_that_dies_at_once_never_blocks_the_group() {
    only_camera_never_delivers(
        "dead",
        SyntheticSpec {
            die: Some((Duration::ZERO, Duration::from_secs(3600))),
            ..synthetic(64, 48, None)
        },
    );
}

#[test]
fn a_camera_stalled_from_the_start_never_blocks_the_group() {
    only_camera_never_delivers(
        "stalled",
        SyntheticSpec {
            stall: Some((Duration::ZERO, Duration::from_secs(3600))),
            ..synthetic(64, 48, None)
        },
    );
}
