//! In-process functional tests of the real ring: a `Writer` and `Reader`s on a segment in
//! `/dev/shm`, in one or several threads.
//!
//! Cross-process behaviour (a producer killed mid-write and taken over, readers in other
//! processes) is tested in the workspace's `tests/`. Timing is never asserted, only
//! ordering; everything that waits has a timeout, and the threaded tests run under a
//! watchdog.
#![cfg(not(loom))]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use camring_protocol::layout::{CameraEntry, CameraLayout, CAM_MISSING, CAM_REPEATED};
use camring_protocol::PixelFormat;
use camring_shm::{
    admin, path_of, CreateError, Follow, OwnedFrame, ProducerState, ReadError, ReadMode, Reader,
    RingConfig, WriteError, Writer, MODE_GROUP, MODE_OWNER,
};

const SHORT: Duration = Duration::from_millis(50);
/// A timeout for things that must happen; never reached unless the code is broken.
const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Removes the segments a test used, even when it panics.
struct Cleanup(Vec<PathBuf>);

impl Cleanup {
    fn new() -> Self {
        Cleanup(Vec::new())
    }

    /// A ring name unique to this process and `test`, registered for removal.
    fn name(&mut self, test: &str) -> String {
        let name = format!("t-ring-{}-{test}", std::process::id());
        let path = path_of(&name);
        let _ = fs::remove_file(&path);
        self.0.push(path);
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// Runs `f` on its own thread and fails the test if it does not finish within `limit`
/// (instead of hanging the test run).
fn with_watchdog<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            handle.join().unwrap();
            v
        }
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the closure returned without sending"),
        },
        Err(RecvTimeoutError::Timeout) => panic!("watchdog: not finished after {limit:?}"),
    }
}

// The three cameras of the functional tests: raw RGB, raw gray, and a JPEG-like payload
// whose size is known only after it is written.
const RGB: (u32, u32) = (64, 48);
const GRAY: (u32, u32) = (32, 16);
const JPEG_MAX: usize = 1000;

fn cameras() -> Vec<CameraLayout> {
    vec![
        CameraLayout {
            width: RGB.0,
            height: RGB.1,
            format: PixelFormat::Rgb8.code(),
            max_len: RGB.0 * RGB.1 * 3,
        },
        CameraLayout {
            width: GRAY.0,
            height: GRAY.1,
            format: PixelFormat::Gray8.code(),
            max_len: GRAY.0 * GRAY.1,
        },
        CameraLayout {
            width: RGB.0,
            height: RGB.1,
            format: PixelFormat::Jpeg.code(),
            max_len: JPEG_MAX as u32,
        },
    ]
}

fn config(slots: u32) -> RingConfig {
    RingConfig::new(slots, cameras(), 30_000)
}

/// Payload byte `i` of camera `cam` in frame `n`: varies with all three, so a payload read
/// from the wrong place, frame or camera is noticed.
fn pattern(n: u64, cam: usize, i: usize) -> u8 {
    (i as u8)
        .wrapping_mul(31)
        .wrapping_add(n as u8)
        .wrapping_add((cam as u8) << 6)
        ^ (i >> 8) as u8
}

/// Length of the JPEG-like camera's payload in frame `n`.
fn jpeg_len(n: u64) -> usize {
    1 + (n as usize * 37) % JPEG_MAX
}

/// Publishes one frame of the three cameras; camera 1 is missing in every 5th frame.
fn publish_one(w: &mut Writer) -> u64 {
    let mut loan = w.loan();
    let n = loan.frame();
    let rgb = CameraEntry {
        camera_id: 0,
        format: PixelFormat::Rgb8.code(),
        width: RGB.0,
        height: RGB.1,
        stride: RGB.0 * 3,
        capture_ns: 1_000 + n,
        sequence: n,
        ..Default::default()
    };
    let buf = loan.push_camera(rgb, (RGB.0 * RGB.1 * 3) as usize).unwrap();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(n, 0, i);
    }
    if n % 5 == 4 {
        let missing = CameraEntry {
            camera_id: 1,
            format: PixelFormat::Gray8.code(),
            flags: CAM_MISSING,
            capture_ns: 2_000 + n,
            sequence: n,
            ..Default::default()
        };
        loan.push_camera(missing, 0).unwrap();
    } else {
        let gray = CameraEntry {
            camera_id: 1,
            format: PixelFormat::Gray8.code(),
            width: GRAY.0,
            height: GRAY.1,
            stride: GRAY.0,
            flags: if n % 2 == 1 { CAM_REPEATED } else { 0 },
            capture_ns: 2_000 + n,
            sequence: n,
            ..Default::default()
        };
        let buf = loan.push_camera(gray, (GRAY.0 * GRAY.1) as usize).unwrap();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = pattern(n, 1, i);
        }
    }
    let jpeg = CameraEntry {
        camera_id: 2,
        format: PixelFormat::Jpeg.code(),
        width: RGB.0,
        height: RGB.1,
        capture_ns: 3_000 + n,
        sequence: n,
        ..Default::default()
    };
    let used = loan
        .push_camera_with::<WriteError>(jpeg, JPEG_MAX, |buf| {
            let len = jpeg_len(n);
            for (i, b) in buf[..len].iter_mut().enumerate() {
                *b = pattern(n, 2, i);
            }
            Ok(len)
        })
        .unwrap();
    assert_eq!(used, jpeg_len(n));
    loan.commit(10_000 + n, 7 * n).unwrap()
}

fn publish(w: &mut Writer, count: u64) {
    for _ in 0..count {
        publish_one(w);
    }
}

/// Checks a frame's header, entries and payloads against what `publish_one` wrote.
fn check(n: u64, header_frame: u64, entries: &[CameraEntry], payload: &dyn Fn(usize) -> Vec<u8>) {
    assert_eq!(header_frame, n);
    assert_eq!(entries.len(), 3, "frame {n}");
    for (cam, e) in entries.iter().enumerate() {
        assert_eq!(e.camera_id, cam as u32, "frame {n}");
        assert_eq!(e.sequence, n, "frame {n} camera {cam}");
        assert_eq!(
            e.capture_ns,
            1_000 * (cam as u64 + 1) + n,
            "frame {n} camera {cam}"
        );
        let p = payload(cam);
        assert_eq!(p.len() as u64, e.length, "frame {n} camera {cam}");
        if cam == 1 && n % 5 == 4 {
            assert!(e.is_missing(), "frame {n}");
            assert!(p.is_empty());
            continue;
        }
        let want_len = match cam {
            0 => (RGB.0 * RGB.1 * 3) as usize,
            1 => (GRAY.0 * GRAY.1) as usize,
            _ => jpeg_len(n),
        };
        assert_eq!(p.len(), want_len, "frame {n} camera {cam}");
        let bad = p
            .iter()
            .enumerate()
            .position(|(i, &b)| b != pattern(n, cam, i));
        assert_eq!(bad, None, "frame {n} camera {cam}: first wrong byte");
    }
    assert_eq!(entries[0].pixel_format(), Some(PixelFormat::Rgb8));
    assert_eq!(entries[0].stride, RGB.0 * 3);
    assert_eq!(entries[2].pixel_format(), Some(PixelFormat::Jpeg));
    assert_eq!(
        entries[1].flags & CAM_REPEATED != 0,
        n % 2 == 1 && n % 5 != 4
    );
}

fn check_owned(f: &OwnedFrame, n: u64, generation: u64) {
    check(n, f.header.frame, &f.cameras, &|cam| {
        f.payloads[cam].clone()
    });
    assert_eq!(f.header.generation, generation);
    assert_eq!(f.header.tick_ns, 10_000 + n);
    assert_eq!(f.header.spread_ns, 7 * n);
    assert_eq!(f.header.camera_count, 3);
}

/// Reads everything readable in `mode` with copies, checking each frame; returns the frame
/// numbers read.
fn drain_copies(r: &mut Reader, mode: ReadMode, generation: u64) -> Vec<u64> {
    let mut out = OwnedFrame::default();
    let mut seen = Vec::new();
    while r.read_copy(mode, &mut out).unwrap() {
        check_owned(&out, out.header.frame, generation);
        seen.push(out.header.frame);
    }
    seen
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

#[test]
fn publish_then_read_latest_and_next() {
    let mut c = Cleanup::new();
    let name = c.name("latest-next");
    let mut w = Writer::create(&name, &config(8)).unwrap();
    assert_eq!(w.origin(), camring_shm::Origin::Created);
    assert_eq!(w.next_frame(), 0);
    let g = w.generation();

    let mut r = Reader::open(&name).unwrap();
    assert_eq!(r.name(), name);
    assert_eq!(r.generation(), g);
    assert_eq!(r.layout(), w.layout());
    assert_eq!(r.layout().camera_layouts(), &cameras()[..]);
    assert_eq!(r.head(), 0);
    assert!(!r.has_new());
    assert!(r.try_read(ReadMode::Latest).unwrap().is_none());
    assert!(r.try_read(ReadMode::Next).unwrap().is_none());

    assert_eq!(publish_one(&mut w), 0);
    assert_eq!(r.head(), 1);
    assert!(r.has_new());
    {
        let f = r.try_read(ReadMode::Latest).unwrap().unwrap();
        assert_eq!(f.number(), 0);
        assert_eq!(f.header().generation, g);
        check(0, f.number(), f.cameras(), &|cam| f.payload(cam).to_vec());
        f.validate().unwrap();
    }
    assert!(!r.has_new());

    // Latest skips to the newest.
    publish(&mut w, 3);
    {
        let f = r.try_read(ReadMode::Latest).unwrap().unwrap();
        assert_eq!(f.number(), 3);
        check(3, f.number(), f.cameras(), &|cam| f.payload(cam).to_vec());
        f.validate().unwrap();
    }
    assert!(r.try_read(ReadMode::Next).unwrap().is_none());

    // Next returns every frame in order.
    publish(&mut w, 5);
    for want in 4..9 {
        let f = r.try_read(ReadMode::Next).unwrap().unwrap();
        assert_eq!(f.number(), want);
        check(want, f.number(), f.cameras(), &|cam| {
            f.payload(cam).to_vec()
        });
        f.validate().unwrap();
    }
    assert!(r.try_read(ReadMode::Next).unwrap().is_none());
    assert!(r.try_read(ReadMode::Latest).unwrap().is_none());

    let s = r.stats();
    assert_eq!(s.frames, 7);
    assert_eq!(s.skipped, 2);
    assert_eq!((s.lapped, s.torn, s.corrupt, s.resyncs), (0, 0, 0, 0));
    assert_eq!(w.next_frame(), 9);
    assert!(r.heartbeat_age_ns() < 3_600_000_000_000);
}

#[test]
fn a_new_reader_starts_at_the_newest_frame() {
    let mut c = Cleanup::new();
    let name = c.name("start");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    publish(&mut w, 6);
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();
    assert_eq!(drain_copies(&mut r, ReadMode::Next, g), [5]);
    let mut r = Reader::open(&name).unwrap();
    assert_eq!(drain_copies(&mut r, ReadMode::Latest, g), [5]);
    assert_eq!(r.stats().lapped, 0);
}

#[test]
fn slow_next_reader_is_lapped_by_exactly_what_it_lost() {
    let mut c = Cleanup::new();
    let name = c.name("lapped");
    let slots = 4u64;
    let mut w = Writer::create(&name, &config(slots as u32)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();

    let mut expected_next = 0u64;
    let mut lost = 0u64;
    let mut delivered = Vec::new();
    // Bursts of various sizes between reads: within the ring, exactly the ring, far beyond.
    for burst in [1, 3, slots - 1, slots, slots + 1, 3 * slots + 2, 1, 50, 2] {
        publish(&mut w, burst);
        for n in drain_copies(&mut r, ReadMode::Next, g) {
            assert!(n >= expected_next, "frame {n} after {expected_next}");
            lost += n - expected_next;
            expected_next = n + 1;
            delivered.push(n);
        }
        assert_eq!(expected_next, w.next_frame(), "caught up after each burst");
        assert_eq!(r.stats().lapped, lost, "after a burst of {burst}");
    }
    // Frames come in order, and every frame is either delivered or counted as lapped.
    // (A burst of `slots` frames already loses one: while writing frame `head` the writer
    // may be in the slot of `head - slots`, so the reader does not count on it.)
    assert!(delivered.windows(2).all(|p| p[0] < p[1]));
    let s = r.stats();
    assert_eq!(s.frames, delivered.len() as u64);
    assert_eq!(
        s.frames + s.lapped,
        w.next_frame(),
        "every frame accounted once"
    );
    assert!(s.lapped > 0);
    assert_eq!((s.torn, s.corrupt, s.skipped), (0, 0, 0));

    // It recovers: the next frames read fine, without further loss.
    publish(&mut w, 2);
    let last = w.next_frame();
    assert_eq!(
        drain_copies(&mut r, ReadMode::Next, g),
        [last - 2, last - 1]
    );
    assert_eq!(r.stats().lapped, lost);
}

#[test]
fn latest_reader_counts_skipped_frames() {
    let mut c = Cleanup::new();
    let name = c.name("skipped");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();
    let mut total = 0;
    for burst in [1u64, 2, 10, 4, 1] {
        publish(&mut w, burst);
        total += burst;
        assert_eq!(drain_copies(&mut r, ReadMode::Latest, g), [total - 1]);
    }
    let s = r.stats();
    assert_eq!(s.frames, 5);
    assert_eq!(s.skipped + s.frames, total);
    assert_eq!(s.lapped, 0);
}

#[test]
fn read_copy_returns_validated_copies() {
    let mut c = Cleanup::new();
    let name = c.name("copy");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();
    let mut out = OwnedFrame::default();
    assert!(!r.read_copy(ReadMode::Latest, &mut out).unwrap());
    // One OwnedFrame reused for frames whose payload sizes differ (camera 1 missing in
    // frame 4, the JPEG-like camera varying).
    for n in 0..12 {
        publish_one(&mut w);
        assert!(r.read_copy(ReadMode::Next, &mut out).unwrap());
        check_owned(&out, n, g);
    }
    assert!(!r.read_copy(ReadMode::Next, &mut out).unwrap());
    // A copy outlives the slot it came from.
    let kept = out.clone();
    publish(&mut w, 8);
    check_owned(&kept, 11, g);
    // Frame::copy_to gives the same as read_copy.
    let f = r.try_read(ReadMode::Latest).unwrap().unwrap();
    let mut via_frame = OwnedFrame::default();
    f.copy_to(&mut via_frame).unwrap();
    check_owned(&via_frame, 19, g);
}

#[test]
fn validate_fails_once_the_writer_overwrote_the_slot() {
    let mut c = Cleanup::new();
    let name = c.name("validate");
    let slots = 4;
    let mut w = Writer::create(&name, &config(slots)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();
    publish(&mut w, 1);
    let before = r.stats();
    {
        let f = r.try_read(ReadMode::Latest).unwrap().unwrap();
        assert_eq!(f.number(), 0);
        assert_eq!(f.header().generation, g);
        // The writer fills the other slots: this one is untouched.
        publish(&mut w, u64::from(slots) - 1);
        f.validate().unwrap();
        check(0, f.number(), f.cameras(), &|cam| f.payload(cam).to_vec());
        f.validate().unwrap();
        // In place, the closure's result comes back while the slot holds the frame.
        let first = f.read_with(|f| f.payload(0).get(0)).unwrap();
        assert_eq!(first, Some(pattern(0, 0, 0)));
        // One more frame goes into this frame's slot: frame 0 was lapped after it was
        // handed out (docs/ring.md §8.4 step 8: the sequence word is past 2n + 2).
        publish(&mut w, 1);
        assert_eq!(f.validate(), Err(ReadError::Lapped));
        let mut out = OwnedFrame::default();
        assert_eq!(f.copy_to(&mut out), Err(ReadError::Lapped));
        assert_eq!(f.read_with(|f| f.payload(0).get(0)), Err(ReadError::Lapped));
        // The view now shows the newer frame's bytes: exactly why validation is needed.
        assert_eq!(f.payload(0).get(0), Some(pattern(u64::from(slots), 0, 0)));
    }
    let after = r.stats();
    assert_eq!(
        after.lapped - before.lapped,
        3,
        "late lapped reads are counted"
    );
    assert_eq!(after.torn, before.torn, "and not as torn");

    // A slot being written (a loan not committed yet) fails validation too.
    let f = r.try_read(ReadMode::Latest).unwrap().unwrap();
    let n = f.number();
    for _ in 0..slots - 1 {
        publish_one(&mut w);
    }
    f.validate().unwrap();
    {
        let loan = w.loan();
        assert_eq!(loan.frame(), n + u64::from(slots));
        assert_eq!(f.validate(), Err(ReadError::Lapped));
    } // the loan is abandoned: the slot stays marked as being written
    assert_eq!(f.validate(), Err(ReadError::Lapped));
}

#[test]
fn an_abandoned_loan_publishes_nothing_and_its_number_is_reused() {
    let mut c = Cleanup::new();
    let name = c.name("loan");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();
    publish(&mut w, 2);
    assert_eq!(drain_copies(&mut r, ReadMode::Next, g), [0, 1]);

    // Dropped without commit.
    {
        let mut loan = w.loan();
        assert_eq!(loan.frame(), 2);
        loan.push_camera(CameraEntry::default(), 10)
            .unwrap()
            .fill(0xEE);
    }
    // A commit refused by validation (raw geometry that does not fit the length).
    {
        let mut loan = w.loan();
        assert_eq!(loan.frame(), 2);
        let bad = CameraEntry {
            format: PixelFormat::Rgb8.code(),
            width: RGB.0,
            height: RGB.1,
            stride: RGB.0 * 3,
            ..Default::default()
        };
        loan.push_camera(bad, 10).unwrap();
        assert!(matches!(loan.commit(0, 0), Err(WriteError::Invalid(_))));
    }
    // Loan-level refusals.
    {
        let mut loan = w.loan();
        let huge = loan.remaining() as usize + 1;
        assert!(matches!(
            loan.push_camera(CameraEntry::default(), huge),
            Err(WriteError::SlotFull { .. })
        ));
        for _ in 0..3 {
            loan.push_camera(CameraEntry::default(), 0).unwrap();
        }
        assert!(matches!(
            loan.push_camera(CameraEntry::default(), 0),
            Err(WriteError::TooManyCameras(4, 3))
        ));
    }
    assert_eq!(r.head(), 2);
    assert!(!r.has_new());
    assert!(!r.wait(SHORT));
    assert_eq!(w.next_frame(), 2);
    assert_eq!(publish_one(&mut w), 2);
    assert_eq!(drain_copies(&mut r, ReadMode::Next, g), [2]);
    assert_eq!(r.stats().torn, 0);
}

#[test]
fn cameras_filled_together_in_parallel() {
    let mut c = Cleanup::new();
    let name = c.name("batch");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();
    let jpeg = |cam: u32| CameraEntry {
        camera_id: cam,
        format: PixelFormat::Jpeg.code(),
        width: RGB.0,
        height: RGB.1,
        ..Default::default()
    };
    // Three JPEG-like cameras filled on three threads; the middle one fails.
    let mut loan = w.loan();
    let n = loan.frame();
    let batch = [(jpeg(0), 700), (jpeg(1), 700), (jpeg(2), 700)];
    let lens = loan
        .push_cameras_with::<WriteError>(&batch, |bufs| {
            assert_eq!(bufs.len(), 3);
            assert!(bufs.iter().all(|b| b.len() == 700));
            Ok(thread::scope(|s| {
                let handles: Vec<_> = bufs
                    .iter_mut()
                    .enumerate()
                    .map(|(cam, buf)| {
                        s.spawn(move || {
                            if cam == 1 {
                                return None;
                            }
                            let len = 100 + cam * 50;
                            for (i, b) in buf[..len].iter_mut().enumerate() {
                                *b = pattern(n, cam, i);
                            }
                            Some(len)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            }))
        })
        .unwrap();
    assert_eq!(lens, [100, 0, 200]);
    loan.commit(1, 0).unwrap();
    let mut f = OwnedFrame::default();
    assert!(r.read_copy(ReadMode::Next, &mut f).unwrap());
    assert_eq!((f.header.frame, f.header.generation), (n, g));
    let cams = f.cameras.clone();
    assert_eq!(cams.len(), 3);
    assert!(cams[1].is_missing() && cams[1].length == 0);
    for cam in [0usize, 2] {
        let p = &f.payloads[cam];
        assert_eq!(p.len(), 100 + cam * 50);
        assert!(p.iter().enumerate().all(|(i, &b)| b == pattern(n, cam, i)));
    }
    // Room a camera did not use is given back: the slot ends after camera 2's bytes.
    assert_eq!(
        f.header.payload_used,
        cams[2].offset - camring_protocol::layout::SLOT_HEADER_SIZE + 200
    );

    // A batch that does not fit leaves the loan as it was; so does a failing fill.
    let mut loan = w.loan();
    let too_big = [(jpeg(0), 10), (jpeg(1), 1 << 30)];
    assert!(matches!(
        loan.push_cameras_with::<WriteError>(&too_big, |_| unreachable!()),
        Err(WriteError::SlotFull { .. })
    ));
    let failed = loan.push_cameras_with::<WriteError>(&[(jpeg(0), 10)], |_| {
        Err(WriteError::TooManyCameras(0, 0))
    });
    assert!(failed.is_err());
    let before = loan.remaining();
    loan.push_camera(jpeg(0), 1).unwrap()[0] = 9;
    assert!(loan.remaining() < before);
    loan.commit(2, 0).unwrap();
    assert!(r.read_copy(ReadMode::Next, &mut f).unwrap());
    assert_eq!(f.cameras.len(), 1);
    assert_eq!(f.payloads[0], [9]);
}

// ---------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------

const BIG: (u32, u32) = (256, 256); // GRAY8: 64 KiB
const SMALL: (u32, u32) = (16, 16); // RGB8

fn thread_config() -> RingConfig {
    RingConfig::new(
        4,
        vec![
            CameraLayout {
                width: BIG.0,
                height: BIG.1,
                format: PixelFormat::Gray8.code(),
                max_len: BIG.0 * BIG.1,
            },
            CameraLayout {
                width: SMALL.0,
                height: SMALL.1,
                format: PixelFormat::Rgb8.code(),
                max_len: SMALL.0 * SMALL.1 * 3,
            },
        ],
        0,
    )
}

/// Publishes frames whose camera 0 bytes all equal `n as u8` and camera 1 bytes all equal
/// `!(n as u8)`.
fn publish_uniform(w: &mut Writer) {
    let mut loan = w.loan();
    let n = loan.frame();
    let big = CameraEntry {
        camera_id: 0,
        format: PixelFormat::Gray8.code(),
        width: BIG.0,
        height: BIG.1,
        stride: BIG.0,
        sequence: n,
        ..Default::default()
    };
    loan.push_camera(big, (BIG.0 * BIG.1) as usize)
        .unwrap()
        .fill(n as u8);
    let small = CameraEntry {
        camera_id: 1,
        format: PixelFormat::Rgb8.code(),
        width: SMALL.0,
        height: SMALL.1,
        stride: SMALL.0 * 3,
        sequence: n,
        ..Default::default()
    };
    loan.push_camera(small, (SMALL.0 * SMALL.1 * 3) as usize)
        .unwrap()
        .fill(!(n as u8));
    loan.commit(n, 0).unwrap();
}

/// Whether payloads `p0`, `p1` are exactly frame `n`'s.
fn uniform(n: u64, p0: &[u8], p1: &[u8]) -> bool {
    p0.len() == (BIG.0 * BIG.1) as usize
        && p1.len() == (SMALL.0 * SMALL.1 * 3) as usize
        && p0.iter().all(|&b| b == n as u8)
        && p1.iter().all(|&b| b == !(n as u8))
}

#[derive(Debug, Default)]
struct Tally {
    /// Frames accepted (validated view, or validated copy) and checked whole.
    accepted: u64,
    /// Frames handed out whose `validate` then failed (zero-copy reader only).
    invalidated: u64,
    /// Reads that returned Torn or Lapped.
    rejected: u64,
}

/// A reader thread: zero-copy (`copy == false`) or copying, alternating Latest and Next,
/// until the producer stops and nothing is left. Panics on any accepted frame that is not
/// whole.
fn reader_thread(
    name: String,
    copy: bool,
    start: Arc<Barrier>,
) -> (Tally, camring_shm::ReaderStats) {
    let mut r = Reader::open(&name).unwrap();
    start.wait();
    let mut tally = Tally::default();
    let mut out = OwnedFrame::default();
    let mut i = 0u64;
    loop {
        i += 1;
        let mode = if i.is_multiple_of(2) {
            ReadMode::Latest
        } else {
            ReadMode::Next
        };
        if copy {
            match r.read_copy(mode, &mut out) {
                Ok(true) => {
                    let n = out.header.frame;
                    assert!(
                        uniform(n, &out.payloads[0], &out.payloads[1]),
                        "accepted a torn copy of frame {n}"
                    );
                    assert!(out.cameras.iter().all(|e| e.sequence == n));
                    tally.accepted += 1;
                    continue;
                }
                Ok(false) => {}
                Err(ReadError::Torn | ReadError::Lapped) => {
                    tally.rejected += 1;
                    continue;
                }
                Err(e @ ReadError::Corrupt(_)) => panic!("{e}"),
            }
        } else {
            match r.try_read(mode) {
                Ok(Some(f)) => {
                    let n = f.number();
                    let whole = uniform(n, &f.payload(0).to_vec(), &f.payload(1).to_vec());
                    let entries_ok = f.cameras().iter().all(|e| e.sequence == n);
                    if f.validate().is_ok() {
                        assert!(whole, "validated a torn view of frame {n}");
                        assert!(entries_ok);
                        tally.accepted += 1;
                    } else {
                        tally.invalidated += 1;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(ReadError::Torn | ReadError::Lapped) => {
                    tally.rejected += 1;
                    continue;
                }
                Err(e @ ReadError::Corrupt(_)) => panic!("{e}"),
            }
        }
        // Nothing new: stop once the producer did, else wait for it.
        if r.producer() == ProducerState::Stopped && !r.has_new() {
            break;
        }
        r.wait(Duration::from_millis(100));
    }
    (tally, r.stats())
}

fn run_threads(test: &str, frames: u64) {
    let mut c = Cleanup::new();
    let name = c.name(test);
    let w = Writer::create(&name, &thread_config()).unwrap();
    let start = Arc::new(Barrier::new(3));
    let name2 = name.clone();
    let results = with_watchdog(Duration::from_secs(600), move || {
        let readers: Vec<_> = [false, true]
            .into_iter()
            .map(|copy| {
                let (name, start) = (name2.clone(), Arc::clone(&start));
                thread::spawn(move || reader_thread(name, copy, start))
            })
            .collect();
        let writer = thread::spawn(move || {
            let mut w = w;
            start.wait();
            for n in 0..frames {
                publish_uniform(&mut w);
                // Mostly flat out (readers are lapped and torn all the time), with short
                // pauses so that whole frames are also read and validated.
                if n % 64 == 63 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            drop(w); // stops the ring: the readers drain and finish
        });
        writer.join().unwrap();
        readers
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (kind, (tally, stats)) in ["zero-copy", "copy"].iter().zip(&results) {
        eprintln!("{kind}: {tally:?} {stats:?}");
        assert_eq!(stats.corrupt, 0, "{kind}");
        assert!(tally.accepted > 0, "{kind} accepted nothing");
        assert!(stats.frames >= tally.accepted, "{kind}");
        assert!(stats.torn + stats.lapped >= tally.invalidated, "{kind}");
        // Each reader started at frame 0 and drained the ring: every frame was delivered,
        // skipped or lapped, and counted once.
        assert_eq!(
            stats.frames + stats.skipped + stats.lapped + stats.corrupt,
            frames,
            "{kind}: {stats:?}"
        );
    }
    let (zero_copy, _) = &results[0];
    // A view found overwritten after use is not counted as delivered.
    assert_eq!(results[0].1.frames, zero_copy.accepted);
    assert!(!path_of(&name).exists());
}

#[test]
fn threads_never_accept_a_torn_frame() {
    run_threads("threads", 20_000);
}

#[test]
#[ignore = "stress test: run with `-- --ignored stress`"]
fn stress_threads_never_accept_a_torn_frame() {
    run_threads("stress-threads", 1_000_000);
}

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

#[test]
fn wait_wakes_on_publish_and_times_out_otherwise() {
    let mut c = Cleanup::new();
    let name = c.name("wait");
    with_watchdog(Duration::from_secs(300), move || {
        let mut w = Writer::create(&name, &config(4)).unwrap();
        let g = w.generation();
        let mut r = Reader::open(&name).unwrap();
        assert!(!r.wait(SHORT), "nothing was published");

        for spin in [Duration::ZERO, Duration::from_millis(1)] {
            r.set_spin(spin);
            let publisher = thread::spawn(move || {
                thread::sleep(Duration::from_millis(100));
                publish_one(&mut w);
                w
            });
            assert!(r.wait(LONG), "woken by the publish (spin {spin:?})");
            w = publisher.join().unwrap();
            let n = w.next_frame() - 1;
            assert_eq!(drain_copies(&mut r, ReadMode::Next, g), [n]);
            assert!(!r.wait(SHORT));
        }
        // Already there: returns at once.
        publish_one(&mut w);
        assert!(r.wait(LONG));
        assert!(r.wait(Duration::ZERO));
        drain_copies(&mut r, ReadMode::Latest, g);

        // The producer stopping wakes a waiter too.
        let stopper = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            drop(w);
        });
        assert!(r.wait(LONG), "woken by the stop");
        stopper.join().unwrap();
        // Reported once: a caller that never calls `follow` does not spin.
        assert!(!r.wait(SHORT), "a state change wakes once");
        assert_eq!(r.producer(), ProducerState::Stopped);
        assert_eq!(r.follow().unwrap(), Follow::Gone);
        assert!(!r.wait(SHORT), "nothing more after follow()");
    });
}

#[test]
fn many_waiters_are_all_woken() {
    let mut c = Cleanup::new();
    let name = c.name("waiters");
    with_watchdog(Duration::from_secs(300), move || {
        let mut w = Writer::create(&name, &config(4)).unwrap();
        let ready = Arc::new(Barrier::new(5));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (name, ready) = (name.clone(), Arc::clone(&ready));
                thread::spawn(move || {
                    let r = Reader::open(&name).unwrap();
                    ready.wait();
                    r.wait(LONG)
                })
            })
            .collect();
        ready.wait();
        thread::sleep(Duration::from_millis(50));
        publish_one(&mut w);
        for h in waiters {
            assert!(h.join().unwrap());
        }
    });
}

/// Awaits a `wait_async` future under a watchdog timeout.
async fn bounded(wait: impl std::future::Future<Output = bool>) -> bool {
    tokio::time::timeout(LONG + LONG, wait)
        .await
        .expect("watchdog: wait_async did not return")
}

#[tokio::test]
async fn wait_async_wakes_on_publish_and_times_out_otherwise() {
    let mut c = Cleanup::new();
    let name = c.name("wait-async");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();

    assert!(!bounded(r.wait_async(SHORT)).await);
    // Longer than one 100 ms slice of the blocking wait.
    assert!(!bounded(r.wait_async(Duration::from_millis(250))).await);

    let publisher = thread::spawn(move || {
        thread::sleep(Duration::from_millis(150));
        publish_one(&mut w);
        w
    });
    assert!(bounded(r.wait_async(LONG)).await);
    let mut w = publisher.join().unwrap();
    assert_eq!(drain_copies(&mut r, ReadMode::Next, g), [0]);

    // A dropped wait_async future does not disturb the next one.
    let _ = tokio::time::timeout(SHORT, r.wait_async(LONG)).await;
    publish_one(&mut w);
    assert!(bounded(r.wait_async(LONG)).await);
    assert_eq!(drain_copies(&mut r, ReadMode::Next, g), [1]);
}

#[test]
fn open_wait_attaches_when_the_ring_appears() {
    let mut c = Cleanup::new();
    let name = c.name("open-wait");
    with_watchdog(Duration::from_secs(300), move || {
        let creator = {
            let name = name.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(100));
                let mut w = Writer::create(&name, &config(4)).unwrap();
                publish_one(&mut w);
                w
            })
        };
        let mut r = Reader::open_wait(&name, LONG).unwrap();
        let w = creator.join().unwrap();
        // Opened before or after the first publish: either way frame 0 is readable.
        let frames = drain_copies(&mut r, ReadMode::Next, w.generation());
        assert_eq!(frames, [0]);
    });
}

// ---------------------------------------------------------------------------------------
// Lifecycle and administration
// ---------------------------------------------------------------------------------------

#[test]
fn writer_drop_stops_and_removes_the_ring() {
    let mut c = Cleanup::new();
    let name = c.name("drop");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    let g = w.generation();
    let mut r = Reader::open(&name).unwrap();
    assert_eq!(
        r.producer(),
        ProducerState::Live {
            pid: std::process::id()
        }
    );
    publish(&mut w, 3);
    drop(w);
    assert_eq!(r.producer(), ProducerState::Stopped);
    assert!(!path_of(&name).exists());
    assert!(!admin::list().unwrap().contains(&name));
    // The reader keeps its mapping: what was published is still readable.
    assert_eq!(drain_copies(&mut r, ReadMode::Next, g), [0, 1, 2]);
    assert_eq!(r.follow().unwrap(), Follow::Gone);
    assert_eq!(r.follow().unwrap(), Follow::Gone);
    assert!(!r.wait(SHORT));
}

#[test]
fn follow_reattaches_to_a_new_producer() {
    let mut c = Cleanup::new();
    let name = c.name("follow");
    let mut a = Writer::create(&name, &config(4)).unwrap();
    let mut r = Reader::open(&name).unwrap();
    assert_eq!(r.follow().unwrap(), Follow::Same);
    publish(&mut a, 5);
    assert_eq!(drain_copies(&mut r, ReadMode::Latest, a.generation()), [4]);
    let old_generation = a.generation();
    drop(a);
    assert_eq!(r.follow().unwrap(), Follow::Gone);

    let mut b = Writer::create(&name, &config(8)).unwrap();
    assert_eq!(b.origin(), camring_shm::Origin::Created);
    assert_ne!(b.generation(), old_generation);
    assert_eq!(r.follow().unwrap(), Follow::Reattached);
    assert_eq!(r.generation(), b.generation());
    assert_eq!(r.layout().slot_count, 8);
    assert_eq!(r.stats().resyncs, 1);
    assert_eq!(r.follow().unwrap(), Follow::Same);
    assert_eq!(
        r.producer(),
        ProducerState::Live {
            pid: std::process::id()
        }
    );

    // The new producer's frames, from its frame 0.
    assert!(!r.has_new());
    publish(&mut b, 3);
    assert!(r.wait(LONG));
    assert_eq!(
        drain_copies(&mut r, ReadMode::Next, b.generation()),
        [0, 1, 2]
    );
    assert_eq!(r.stats().lapped, 0);
}

#[test]
fn a_replaced_segment_still_under_its_name_is_not_attached_again() {
    // The window of docs/ring.md §11.7: a new producer has marked the old segment replaced
    // but not yet renamed its own over the name. Re-opening the name finds the same
    // segment; attaching to it again would deliver its newest frame a second time.
    let mut c = Cleanup::new();
    let name = c.name("replaced-window");
    let mut a = Writer::create(&name, &config(4)).unwrap();
    let mut r = Reader::open(&name).unwrap();
    publish(&mut a, 3);
    assert_eq!(drain_copies(&mut r, ReadMode::Latest, a.generation()), [2]);
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(path_of(&name))
            .unwrap();
        let off = camring_protocol::layout::OFF_STATE as u64;
        f.write_all_at(&camring_protocol::layout::STATE_REPLACED.to_le_bytes(), off)
            .unwrap();
    }
    assert_eq!(r.producer(), ProducerState::Replaced);
    for _ in 0..3 {
        assert_eq!(r.follow().unwrap(), Follow::Gone);
        assert!(!r.has_new());
        assert!(
            drain_copies(&mut r, ReadMode::Latest, a.generation()).is_empty(),
            "frame 2 delivered twice"
        );
    }
    assert_eq!(r.stats().resyncs, 0);
    assert_eq!(r.stats().frames, 1);
}

#[test]
fn permissions_are_owner_only_unless_asked() {
    let mut c = Cleanup::new();
    let owner = c.name("mode-owner");
    let group = c.name("mode-group");
    let cfg = config(2);
    assert_eq!(cfg.mode, MODE_OWNER);
    let w1 = Writer::create(&owner, &cfg).unwrap();
    let mode = |name: &str| fs::metadata(path_of(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&owner), 0o600);
    assert_eq!(admin::inspect(&owner).unwrap().mode, 0o600);

    let mut cfg = config(2);
    cfg.mode = MODE_GROUP;
    let w2 = Writer::create(&group, &cfg).unwrap();
    assert_eq!(mode(&group), 0o660);
    assert_eq!(admin::inspect(&group).unwrap().mode, 0o660);
    drop((w1, w2));

    // Anything but permission bits is refused.
    let mut cfg = config(2);
    cfg.mode = 0o4600;
    assert!(matches!(
        Writer::create(&owner, &cfg),
        Err(CreateError::InvalidLayout(_))
    ));
    assert!(!path_of(&owner).exists());
}

#[test]
fn impossible_configs_are_refused() {
    let mut c = Cleanup::new();
    let name = c.name("config");
    let cam = cameras()[0];
    let cases = [
        RingConfig::new(0, vec![cam], 0),
        RingConfig::new(1, vec![cam], 0),
        RingConfig::new(70_000, vec![cam], 0),
        RingConfig::new(4, vec![], 0),
        RingConfig::new(4, vec![cam; 17], 0),
        RingConfig::new(4, vec![CameraLayout { max_len: 0, ..cam }], 0),
        // 65536 slots of 16 x 4 GiB: far more than 1 TiB.
        RingConfig::new(
            65_536,
            vec![
                CameraLayout {
                    max_len: u32::MAX,
                    ..cam
                };
                16
            ],
            0,
        ),
    ];
    for cfg in &cases {
        match Writer::create(&name, cfg) {
            Err(CreateError::InvalidLayout(_)) => {}
            Err(e) => panic!("{cfg:?}: {e:?}"),
            Ok(_) => panic!("created {cfg:?}"),
        }
        assert!(!path_of(&name).exists());
    }
}

#[test]
fn admin_lists_inspects_and_removes() {
    let mut c = Cleanup::new();
    let name = c.name("admin");
    let mut w = Writer::create(&name, &config(4)).unwrap();
    publish(&mut w, 3);
    assert!(admin::list().unwrap().contains(&name));
    let list = admin::list().unwrap();
    assert!(list.windows(2).all(|p| p[0] <= p[1]), "sorted");

    let info = admin::inspect(&name).unwrap();
    assert_eq!(info.name, name);
    assert_eq!(info.state, "live");
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.head, 3);
    assert_eq!(info.generation, w.generation());
    assert_eq!(info.layout.as_ref(), Some(w.layout()));
    assert!(info.error.is_none());
    assert_eq!(info.size, w.layout().total_size);
    let no_readers = info.readers;

    let r1 = Reader::open(&name).unwrap();
    let r2 = Reader::open(&name).unwrap();
    let info = admin::inspect(&name).unwrap();
    assert!(info.readers >= 1, "{info:?}");
    assert!(info.readers >= no_readers);
    drop((r1, r2));

    // A live ring is not removed without force.
    match admin::remove(&name, false) {
        Err(admin::RemoveError::Live { pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("{other:?}"),
    }
    assert!(path_of(&name).exists());
    let mut r = Reader::open(&name).unwrap();
    admin::remove(&name, true).unwrap();
    assert!(!path_of(&name).exists());
    assert!(!admin::list().unwrap().contains(&name));
    // The writer and attached readers carry on with their mapping.
    publish(&mut w, 1);
    assert_eq!(drain_copies(&mut r, ReadMode::Latest, w.generation()), [3]);
    assert!(matches!(
        admin::remove(&name, false),
        Err(admin::RemoveError::NotFound(_))
    ));
    // A new producer can start under the name meanwhile; the old writer's drop leaves it.
    let w2 = Writer::create(&name, &config(4)).unwrap();
    drop(w);
    assert!(path_of(&name).exists());
    assert_eq!(admin::inspect(&name).unwrap().state, "live");
    drop(w2);
    assert!(!path_of(&name).exists());

    // A dead or garbage segment is removed without force.
    fs::write(path_of(&name), b"garbage").unwrap();
    assert!(admin::list().unwrap().contains(&name));
    let info = admin::inspect(&name).unwrap();
    assert!(info.error.is_some());
    admin::remove(&name, false).unwrap();
    assert!(!path_of(&name).exists());
}

#[test]
fn readers_have_independent_positions_and_move_between_threads() {
    let mut c = Cleanup::new();
    let name = c.name("independent");
    let mut w = Writer::create(&name, &config(8)).unwrap();
    let g = w.generation();
    let mut next = Reader::open(&name).unwrap();
    let mut latest = Reader::open(&name).unwrap();
    publish(&mut w, 5);
    assert_eq!(drain_copies(&mut next, ReadMode::Next, g), [0, 1, 2, 3, 4]);
    assert_eq!(drain_copies(&mut latest, ReadMode::Latest, g), [4]);
    publish(&mut w, 2);
    // A reader is Send: it carries its position to another thread.
    let latest = thread::spawn(move || {
        assert_eq!(drain_copies(&mut latest, ReadMode::Next, g), [5, 6]);
        latest
    })
    .join()
    .unwrap();
    assert_eq!(latest.stats().frames, 3);
    assert_eq!(next.stats().frames, 5);
    assert_eq!(drain_copies(&mut next, ReadMode::Next, g), [5, 6]);
}
