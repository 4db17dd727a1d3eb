//! Unit tests of the ring itself (a `Writer` and `Reader`s of one ring) on an in-process
//! heap region instead of a `/dev/shm` file (`Segment::heap`), so that Miri runs them:
//! `cargo +nightly miri test -p camring-shm --lib`. Miri cannot map files, `flock` or
//! `fallocate`, but everything after the segment's creation (the superblock, loans and
//! commits, the seqlock, `try_read` in both modes, lapped and in-progress detection, the
//! racy views, the live words, the futex wait, the in-place take-over by a new producer
//! and `follow`ing it) is the code a file-backed ring runs.
//!
//! Each test drives its writer and readers from one thread, interleaving them by hand:
//! that is `Segment::heap`'s contract (the abstract machine sees the writer's writes to the
//! region, so they must not race the readers' copies), and it makes every interleaving
//! deterministic. The only threads are in `wait_wakes_on_publish`, whose waiting reader
//! touches only atomic words. What a real race does to a copy (a torn read) is the loom
//! model's subject (`tests/loom.rs`) and the threaded file-backed tests' (`tests/ring.rs`):
//! under the Rust memory model an optimistic seqlock read racing a write is a data race,
//! which Miri would report; the crate argues why it is harmless for a file mapping
//! (`racy.rs`), which Miri cannot run.
//!
//! Under Miri, rustix uses its libc backend (its build script picks it for Miri, which
//! runs no inline-asm syscalls), and Miri emulates `syscall(SYS_futex)` wait and wake, the
//! monotonic clock and `getpid`; it warns once of an integer-to-pointer cast inside
//! rustix's `futex_val2` (how that wrapper passes its unused timeout argument), which is
//! rustix's and harmless. `CLOCK_REALTIME` is refused under Miri's isolation, so
//! `clock::now_ns` has a Miri stand-in.
//!
//! What only the file-backed paths do (creating, locking, mapping and replacing segment
//! files, `flock` liveness and a dead producer, `follow` to a new segment, hostile files,
//! `admin`) is tested by `tests/ring.rs` and `tests/hostile.rs` against `/dev/shm`, and
//! cannot run under Miri, which has no file mappings.

use std::time::Duration;

use camring_protocol::layout::{
    CameraEntry, CameraLayout, CAM_MISSING, PAGE, STATE_LIVE, STATE_STOPPED,
};
use camring_protocol::PixelFormat;

use crate::reader::{Follow, OwnedFrame, ProducerState, ReadMode, Reader};
use crate::writer::{Origin, RingConfig, Writer};
use crate::{seqlock, ReadError, WriteError};

/// Gray camera: 16 x 8, stride 16.
const GRAY: (u32, u32) = (16, 8);
/// RGB camera: 8 x 4, stride 24.
const RGB: (u32, u32) = (8, 4);
/// Room for the JPEG-like camera, whose size is known only after it is written.
const JPEG_MAX: u32 = 200;

fn layouts(cameras: usize) -> Vec<CameraLayout> {
    let all = [
        CameraLayout {
            width: GRAY.0,
            height: GRAY.1,
            format: PixelFormat::Gray8.code(),
            max_len: GRAY.0 * GRAY.1,
        },
        CameraLayout {
            width: RGB.0,
            height: RGB.1,
            format: PixelFormat::Rgb8.code(),
            max_len: RGB.0 * RGB.1 * 3,
        },
        CameraLayout {
            width: 64,
            height: 48,
            format: PixelFormat::Jpeg.code(),
            max_len: JPEG_MAX,
        },
    ];
    all[..cameras].to_vec()
}

/// A heap-backed ring of `slots` slots and the first `cameras` of the cameras above.
fn ring(name: &str, slots: u32, cameras: usize) -> Writer {
    let config = RingConfig::new(slots, layouts(cameras), 30_000);
    // SAFETY: every test of this module drives the writer and the readers of its ring from
    // the thread that runs the test (only `wait_wakes_on_publish` starts another, whose
    // reader only loads atomic words and sleeps on the futex), so no access to the
    // region's bytes races another; and no test reads a frame's payloads while it holds a
    // loan buffer or inside a fill closure. That is `Segment::heap`'s contract.
    unsafe { Writer::create_heap(name, &config) }.expect("a valid test layout")
}

/// The byte `i` of camera `cam`'s payload in frame `frame`.
fn pattern(frame: u64, cam: u32, i: usize) -> u8 {
    (frame as usize * 31 + cam as usize * 7 + i) as u8
}

fn payload(frame: u64, cam: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern(frame, cam, i)).collect()
}

fn gray_entry(frame: u64) -> CameraEntry {
    CameraEntry {
        camera_id: 0,
        format: PixelFormat::Gray8.code(),
        width: GRAY.0,
        height: GRAY.1,
        stride: GRAY.0,
        capture_ns: 1_000 + frame,
        sequence: frame,
        ..CameraEntry::default()
    }
}

fn rgb_entry(frame: u64) -> CameraEntry {
    CameraEntry {
        camera_id: 1,
        format: PixelFormat::Rgb8.code(),
        width: RGB.0,
        height: RGB.1,
        stride: RGB.0 * 3,
        capture_ns: 2_000 + frame,
        sequence: frame * 2,
        ..CameraEntry::default()
    }
}

fn jpeg_entry(frame: u64) -> CameraEntry {
    CameraEntry {
        camera_id: 2,
        format: PixelFormat::Jpeg.code(),
        width: 64,
        height: 48,
        capture_ns: 3_000 + frame,
        sequence: frame * 3,
        ..CameraEntry::default()
    }
}

/// The JPEG-like camera's length in frame `frame` (varies, as an encoder's does).
fn jpeg_len(frame: u64) -> usize {
    50 + (frame as usize * 37) % 150
}

/// Publishes one frame with the gray camera only; returns its number.
fn publish_gray(w: &mut Writer) -> u64 {
    let mut loan = w.loan();
    let n = loan.frame();
    let len = (GRAY.0 * GRAY.1) as usize;
    let buf = loan.push_camera(gray_entry(n), len).expect("fits");
    buf.copy_from_slice(&payload(n, 0, len));
    loan.commit(10_000 + n, 5).expect("valid")
}

/// Publishes one frame with all three cameras, through the three ways of filling a loan.
fn publish_three(w: &mut Writer) -> u64 {
    let mut loan = w.loan();
    let n = loan.frame();
    let gray = (GRAY.0 * GRAY.1) as usize;
    loan.push_camera(gray_entry(n), gray)
        .expect("fits")
        .copy_from_slice(&payload(n, 0, gray));
    let rgb = (RGB.0 * RGB.1 * 3) as usize;
    let lens = loan
        .push_cameras_with::<WriteError>(&[(rgb_entry(n), rgb)], |bufs| {
            bufs[0].copy_from_slice(&payload(n, 1, rgb));
            Ok(vec![Some(rgb)])
        })
        .expect("fits");
    assert_eq!(lens, [rgb]);
    let used = loan
        .push_camera_with::<WriteError>(jpeg_entry(n), JPEG_MAX as usize, |buf| {
            let len = jpeg_len(n);
            buf[..len].copy_from_slice(&payload(n, 2, len));
            Ok(len)
        })
        .expect("fits");
    assert_eq!(used, jpeg_len(n));
    loan.commit(10_000 + n, 7).expect("valid")
}

/// Reads frame `want` (in `mode`) and checks every byte of its gray camera, in place.
fn expect_gray(r: &mut Reader, mode: ReadMode, want: u64) {
    let frame = r.try_read(mode).expect("no error").expect("a frame");
    assert_eq!(frame.number(), want);
    assert_eq!(frame.header().tick_ns, 10_000 + want);
    let len = (GRAY.0 * GRAY.1) as usize;
    assert!(frame.payload(0) == payload(want, 0, len)[..]);
    frame.validate().expect("nothing overwrote it");
}

#[test]
fn the_heap_region_is_a_whole_page_aligned_segment() {
    let w = ring("heap-region", 4, 3);
    let seg = w.segment();
    let (base, len) = seg.base();
    assert_eq!(len as u64, w.layout().total_size);
    assert!((base as usize).is_multiple_of(PAGE as usize));
    assert_eq!(w.origin(), Origin::Created);
    assert!(seg.file().is_none() && seg.ino().is_none());
    // The reader's superblock is the one the writer wrote, validated.
    let r = Reader::open_heap(&w).expect("attaches");
    assert_eq!(r.layout(), w.layout());
    assert_eq!(r.layout().slot_count, 4);
    assert_eq!(r.layout().camera_count, 3);
}

#[test]
fn publish_then_read_latest_and_next() {
    let mut w = ring("latest-next", 4, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    assert!(r.try_read(ReadMode::Latest).expect("no error").is_none());
    assert!(!r.has_new());
    for want in 0..3 {
        assert_eq!(publish_gray(&mut w), want);
    }
    assert!(r.has_new());
    assert_eq!(r.head(), 3);
    // Latest skips to the newest, counting what it passed over.
    expect_gray(&mut r, ReadMode::Latest, 2);
    assert_eq!(r.stats().skipped, 2);
    assert!(r.try_read(ReadMode::Latest).expect("no error").is_none());
    publish_gray(&mut w);
    publish_gray(&mut w);
    // Next takes every frame in turn.
    expect_gray(&mut r, ReadMode::Next, 3);
    expect_gray(&mut r, ReadMode::Next, 4);
    assert!(r.try_read(ReadMode::Next).expect("no error").is_none());
    let s = r.stats();
    assert_eq!((s.frames, s.skipped, s.lapped, s.torn), (3, 2, 0, 0));
}

#[test]
fn a_reader_opened_late_starts_at_the_newest_frame() {
    let mut w = ring("late", 4, 1);
    for _ in 0..6 {
        publish_gray(&mut w);
    }
    let mut r = Reader::open_heap(&w).expect("attaches");
    expect_gray(&mut r, ReadMode::Next, 5);
    assert!(r.try_read(ReadMode::Next).expect("no error").is_none());
    assert_eq!(r.stats().lapped, 0);
}

#[test]
fn three_cameras_round_trip_in_place_and_by_copy() {
    let mut w = ring("three", 3, 3);
    let mut r = Reader::open_heap(&w).expect("attaches");
    let mut copy = OwnedFrame::default();
    for n in 0..4 {
        assert_eq!(publish_three(&mut w), n);
        let frame = r
            .try_read(ReadMode::Next)
            .expect("no error")
            .expect("a frame");
        let h = *frame.header();
        assert_eq!(
            (h.frame, h.generation, h.tick_ns, h.spread_ns),
            (n, w.generation(), 10_000 + n, 7)
        );
        assert_eq!(h.camera_count, 3);
        let entries = [gray_entry(n), rgb_entry(n), jpeg_entry(n)];
        let lens = [
            (GRAY.0 * GRAY.1) as usize,
            (RGB.0 * RGB.1 * 3) as usize,
            jpeg_len(n),
        ];
        for (i, cam) in frame.cameras().iter().enumerate() {
            assert_eq!(cam.camera_id, entries[i].camera_id);
            assert_eq!(
                (cam.format, cam.width, cam.height),
                (entries[i].format, entries[i].width, entries[i].height)
            );
            assert_eq!(
                (cam.capture_ns, cam.sequence),
                (entries[i].capture_ns, entries[i].sequence)
            );
            assert_eq!(cam.length, lens[i] as u64);
            assert!(cam
                .offset
                .is_multiple_of(camring_protocol::layout::PAYLOAD_ALIGN));
            assert_eq!(frame.payload(i).to_vec(), payload(n, i as u32, lens[i]));
        }
        frame.copy_to(&mut copy).expect("nothing overwrote it");
        assert_eq!(copy.header, h);
        assert_eq!(copy.cameras.len(), 3);
        for (i, p) in copy.payloads.iter().enumerate() {
            assert_eq!(*p, payload(n, i as u32, lens[i]));
        }
    }
    // read_copy: the same, in one call.
    publish_three(&mut w);
    assert!(r.read_copy(ReadMode::Latest, &mut copy).expect("no error"));
    assert_eq!(copy.header.frame, 4);
    assert_eq!(copy.payloads[2], payload(4, 2, jpeg_len(4)));
    assert!(!r.read_copy(ReadMode::Latest, &mut copy).expect("no error"));
    assert_eq!(r.stats().frames, 5);
}

#[test]
fn a_camera_left_without_an_image_is_flagged_missing() {
    let mut w = ring("missing", 2, 2);
    let mut r = Reader::open_heap(&w).expect("attaches");
    let mut loan = w.loan();
    let gray = (GRAY.0 * GRAY.1) as usize;
    let rgb = (RGB.0 * RGB.1 * 3) as usize;
    let lens = loan
        .push_cameras_with::<WriteError>(&[(gray_entry(0), gray), (rgb_entry(0), rgb)], |bufs| {
            bufs[0].copy_from_slice(&payload(0, 0, gray));
            Ok(vec![Some(gray), None])
        })
        .expect("fits");
    assert_eq!(lens, [gray, 0]);
    loan.commit(1, 0).expect("valid");
    let frame = r
        .try_read(ReadMode::Latest)
        .expect("no error")
        .expect("a frame");
    assert_eq!(frame.cameras()[1].flags & CAM_MISSING, CAM_MISSING);
    assert!(frame.payload(1).is_empty());
    assert!(frame.payload(0) == payload(0, 0, gray)[..]);
    frame.validate().expect("whole");
}

#[test]
fn a_full_slot_and_too_many_cameras_are_refused() {
    let mut w = ring("full", 2, 1);
    let mut loan = w.loan();
    let capacity = loan.remaining();
    assert!(matches!(
        loan.push_camera(gray_entry(0), capacity as usize + 1),
        Err(WriteError::SlotFull { .. })
    ));
    loan.push_camera(gray_entry(0), (GRAY.0 * GRAY.1) as usize)
        .expect("fits");
    assert!(matches!(
        loan.push_camera(gray_entry(0), 1),
        Err(WriteError::TooManyCameras(2, 1))
    ));
    loan.commit(0, 0).expect("valid");
}

#[test]
fn a_lapped_reader_is_told_how_many_frames_it_lost() {
    let mut w = ring("lapped", 4, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    for _ in 0..10 {
        publish_gray(&mut w);
    }
    // Frames 0..=6 may be overwritten (frame 10 would go into frame 6's slot): the oldest
    // a `Next` reader may still take is 7.
    expect_gray(&mut r, ReadMode::Next, 7);
    assert_eq!(r.stats().lapped, 7);
    expect_gray(&mut r, ReadMode::Next, 8);
    expect_gray(&mut r, ReadMode::Next, 9);
    let s = r.stats();
    assert_eq!((s.frames, s.lapped, s.skipped, s.torn), (3, 7, 0, 0));
}

#[test]
fn a_frame_overwritten_after_it_was_read_does_not_validate() {
    let mut w = ring("overwritten", 4, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    publish_gray(&mut w);
    let frame = r
        .try_read(ReadMode::Next)
        .expect("no error")
        .expect("a frame");
    assert_eq!(frame.number(), 0);
    let len = (GRAY.0 * GRAY.1) as usize;
    assert_eq!(
        frame.read_with(|f| f.payload(0).to_vec()),
        Ok(payload(0, 0, len))
    );
    // The writer laps the ring: frame 4 goes into frame 0's slot.
    for _ in 0..4 {
        publish_gray(&mut w);
    }
    // The view now shows frame 4's bytes, and says so.
    assert!(frame.payload(0) == payload(4, 0, len)[..]);
    assert_eq!(frame.validate(), Err(ReadError::Lapped));
    assert_eq!(
        frame.read_with(|f| f.payload(0).get(0)),
        Err(ReadError::Lapped)
    );
    let mut copy = OwnedFrame::default();
    assert_eq!(frame.copy_to(&mut copy), Err(ReadError::Lapped));
    // Each failed validation moves the frame from `frames` to `lapped`.
    let s = r.stats();
    assert_eq!((s.frames, s.lapped), (0, 3));
}

#[test]
fn a_slot_being_written_is_never_read_as_whole() {
    let mut w = ring("in-progress", 4, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    for _ in 0..4 {
        publish_gray(&mut w);
    }
    expect_gray(&mut r, ReadMode::Latest, 3);
    // A view of frame 0, then the writer starts frame 4 in its slot.
    let mut old = Reader::open_heap(&w).expect("attaches");
    let slot0 = w.layout().slot_offset(0) as usize;
    let begin0 = seqlock::read_begin(old.segment().slot_seq(slot0));
    assert_eq!(begin0, seqlock::complete(0));
    let len = (GRAY.0 * GRAY.1) as usize;
    {
        let mut loan = w.loan();
        assert_eq!(loan.frame(), 4);
        // The sequence word is odd: frame 4 is being written.
        assert_eq!(w_seq(&r, slot0), seqlock::writing(4));
        // The slot's new frame is in progress (torn) and its old one is gone (lapped),
        // before and after payload bytes change.
        assert_eq!(r.read_slot(4).map(|_| ()), Err(ReadError::Torn));
        assert_eq!(r.read_slot(0).map(|_| ()), Err(ReadError::Lapped));
        // Half of the new payload (the buffer is dropped before any reader reads).
        let buf = loan.push_camera(gray_entry(4), len).expect("fits");
        buf[..len / 2].copy_from_slice(&payload(4, 0, len / 2));
        assert_eq!(r.read_slot(4).map(|_| ()), Err(ReadError::Torn));
        assert!(!seqlock::read_validate(
            old.segment().slot_seq(slot0),
            begin0
        ));
        // The frame is not published: a reader finds nothing new.
        assert!(!r.has_new());
        assert!(r.try_read(ReadMode::Next).expect("no error").is_none());
        assert!(old
            .try_read(ReadMode::Latest)
            .expect("no error")
            .is_some_and(|f| f.number() == 3));
        // The loan is dropped without commit: the slot stays marked as being written.
    }
    assert_eq!(w_seq(&r, slot0), seqlock::writing(4));
    assert_eq!(r.read_slot(4).map(|_| ()), Err(ReadError::Torn));
    // The next loan reuses the number and completes it.
    assert_eq!(publish_gray(&mut w), 4);
    assert_eq!(w_seq(&r, slot0), seqlock::complete(4));
    expect_gray(&mut r, ReadMode::Next, 4);
    assert_eq!(r.stats().torn, 0);
}

/// The sequence word of the slot at `slot_off`, as the reader sees it.
fn w_seq(r: &Reader, slot_off: usize) -> u64 {
    r.segment()
        .slot_seq(slot_off)
        .load(std::sync::atomic::Ordering::Acquire)
}

#[test]
fn a_published_slot_that_stays_odd_is_torn_and_skipped() {
    // What a reader sees of a producer that died while rewriting a published frame's slot
    // (or of a hostile ring): the slot of a frame below the head is odd for good.
    let mut w = ring("stays-odd", 4, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    publish_gray(&mut w);
    publish_gray(&mut w);
    let slot1 = w.layout().slot_offset(1) as usize;
    seqlock::write_begin(w.segment().slot_seq(slot1), 1);
    // try_read retries a torn slot a few times, then moves past it.
    assert_eq!(
        r.try_read(ReadMode::Latest).map(|f| f.is_some()),
        Err(ReadError::Torn)
    );
    let s = r.stats();
    assert_eq!(s.torn, 4);
    assert_eq!(s.frames, 0);
    assert!(r.try_read(ReadMode::Latest).expect("no error").is_none());
    // The next frame reads normally.
    publish_gray(&mut w);
    expect_gray(&mut r, ReadMode::Next, 2);
}

#[test]
fn racy_views_of_a_live_slot() {
    let mut w = ring("views", 2, 3);
    let mut r = Reader::open_heap(&w).expect("attaches");
    publish_three(&mut w);
    let frame = r
        .try_read(ReadMode::Latest)
        .expect("no error")
        .expect("a frame");
    let rgb = frame.payload(1);
    let want = payload(0, 1, (RGB.0 * RGB.1 * 3) as usize);
    assert_eq!(rgb.len(), want.len());
    assert_eq!(rgb.get(5), Some(want[5]));
    assert_eq!(rgb.get(want.len()), None);
    assert_eq!(rgb.slice(3..9).to_vec(), want[3..9]);
    assert_eq!(rgb.slice(..=0).to_vec(), want[..1]);
    let mut part = [0u8; 10];
    rgb.slice(10..20).copy_to_slice(&mut part);
    assert_eq!(part, want[10..20]);
    let mut bufs = Vec::new();
    frame.copy_payloads(&mut bufs);
    assert_eq!(bufs[1], want);
    // A computation on the views, trusted only once the frame validates.
    let sum = frame.read_with(|f| {
        (0..f.cameras().len())
            .map(|i| {
                f.payload(i)
                    .to_vec()
                    .iter()
                    .map(|&b| u64::from(b))
                    .sum::<u64>()
            })
            .sum::<u64>()
    });
    let expected: u64 = [
        payload(0, 0, (GRAY.0 * GRAY.1) as usize),
        want,
        payload(0, 2, jpeg_len(0)),
    ]
    .iter()
    .flatten()
    .map(|&b| u64::from(b))
    .sum();
    assert_eq!(sum, Ok(expected));
    assert_eq!(r.stats().frames, 1);
}

#[test]
fn the_superblock_live_words() {
    use std::sync::atomic::Ordering::{Acquire, Relaxed};
    let mut w = ring("live-words", 4, 1);
    let seg = w.segment();
    let live = seg.live();
    assert_eq!(live.state.load(Acquire), STATE_LIVE);
    assert_eq!(live.producer_pid.load(Relaxed), std::process::id());
    assert_eq!(live.generation.load(Relaxed), w.generation());
    assert!(w.generation() > 0);
    assert!(live.producer_start.load(Relaxed) > 0);
    assert!(live.heartbeat.load(Relaxed) > 0);
    assert_eq!(live.head.load(Acquire), 0);
    assert_eq!(live.waiters.load(Relaxed), 0);
    let notify_before = live.notify.load(Relaxed);

    let r = Reader::open_heap(&w).expect("attaches");
    let r2 = Reader::open_heap(&w).expect("attaches");
    assert_eq!(r.generation(), w.generation());
    assert_eq!(
        r.producer(),
        ProducerState::Live {
            pid: std::process::id()
        }
    );
    // Each reader claimed an entry of the reader table.
    assert_eq!(r.segment().reader_pid(0).load(Relaxed), std::process::id());
    assert_eq!(r.segment().reader_pid(1).load(Relaxed), std::process::id());
    drop(r2);
    assert_eq!(r.segment().reader_pid(1).load(Relaxed), 0);

    for _ in 0..3 {
        publish_gray(&mut w);
    }
    // The reader's segment sees the writer's stores: one region, two segments.
    let live = r.segment().live();
    assert_eq!(live.head.load(Acquire), 3);
    assert_eq!(live.notify.load(Relaxed), notify_before.wrapping_add(3));
    assert_eq!(live.heartbeat.load(Relaxed), {
        let mut copy = OwnedFrame::default();
        let mut r3 = Reader::open_heap(&w).expect("attaches");
        assert!(r3.read_copy(ReadMode::Latest, &mut copy).expect("no error"));
        copy.header.publish_ns
    });
    w.heartbeat();
    assert!(r.heartbeat_age_ns() < 60_000_000_000);
    let mut r = r;
    assert_eq!(r.follow().expect("no error"), Follow::Same);

    // Dropping the writer stops the ring and releases its producer lock.
    assert!(r.segment().producer_locked());
    drop(w);
    assert_eq!(r.segment().live().state.load(Acquire), STATE_STOPPED);
    assert!(!r.segment().producer_locked());
    assert_eq!(r.producer(), ProducerState::Stopped);
    assert_eq!(r.follow().expect("no error"), Follow::Same);
    drop(r);
}

#[test]
fn wait_returns_at_once_for_a_new_frame_and_times_out_otherwise() {
    let mut w = ring("wait", 2, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    publish_gray(&mut w);
    assert!(r.wait(Duration::from_secs(60)));
    expect_gray(&mut r, ReadMode::Next, 0);
    // Nothing new: sleeps on the futex until the timeout.
    assert!(!r.wait(Duration::from_millis(5)));
    assert_eq!(
        r.segment()
            .live()
            .waiters
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // A state change wakes it too (the writer stops).
    drop(w);
    assert!(r.wait(Duration::from_secs(60)));
    assert!(!r.wait(Duration::from_millis(1)));
}

#[test]
fn wait_wakes_on_publish() {
    let mut w = ring("wake", 2, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    std::thread::scope(|s| {
        let r = &r;
        // The waiting thread loads only atomic words (head, state, generation, notify,
        // waiters) and sleeps on the futex: it touches no byte the writer writes.
        let waiter = s.spawn(move || r.wait(Duration::from_secs(60)));
        // Whether the waiter is asleep yet or not, one publish is enough: either it sees
        // the new head before sleeping, or the publish sees it waiting and wakes it.
        publish_gray(&mut w);
        assert!(waiter.join().expect("no panic"));
    });
    // The join orders the writer's writes before the reads.
    expect_gray(&mut r, ReadMode::Next, 0);
}

#[test]
fn a_new_producer_takes_the_ring_over_and_readers_follow() {
    let mut w = ring("take-over", 4, 1);
    let mut r = Reader::open_heap(&w).expect("attaches");
    for _ in 0..3 {
        publish_gray(&mut w);
    }
    expect_gray(&mut r, ReadMode::Next, 0);
    let config = RingConfig::new(4, layouts(1), 30_000);
    // SAFETY: as in `ring`: this test drives every writer and reader from its thread and
    // reads no payload while it holds a loan buffer.
    let alive = unsafe { Writer::take_over_heap(&r, &config) };
    assert!(matches!(
        alive,
        Err(crate::CreateError::ProducerAlive { pid, .. }) if pid == std::process::id()
    ));
    let old_generation = w.generation();
    drop(w);
    assert_eq!(r.producer(), ProducerState::Stopped);
    // Another layout is refused (a file-backed ring would be replaced instead).
    // SAFETY: as above.
    let other = unsafe { Writer::take_over_heap(&r, &RingConfig::new(2, layouts(1), 30_000)) };
    assert!(matches!(other, Err(crate::CreateError::InvalidLayout(_))));
    // SAFETY: as above.
    let mut w = unsafe { Writer::take_over_heap(&r, &config) }.expect("takes over");
    assert_eq!(w.origin(), Origin::TookOver);
    assert!(w.generation() > old_generation);
    assert_eq!(w.next_frame(), 3);
    assert_eq!(
        r.producer(),
        ProducerState::Live {
            pid: std::process::id()
        }
    );
    assert_eq!(r.follow().expect("no error"), Follow::NewGeneration);
    assert_eq!(r.generation(), w.generation());
    assert_eq!(r.stats().resyncs, 1);
    // The frames of the old producer are still there, then the new one's continue.
    expect_gray(&mut r, ReadMode::Next, 1);
    expect_gray(&mut r, ReadMode::Next, 2);
    assert_eq!(publish_gray(&mut w), 3);
    let frame = r
        .try_read(ReadMode::Next)
        .expect("no error")
        .expect("a frame");
    assert_eq!(
        (frame.number(), frame.header().generation),
        (3, w.generation())
    );
    frame.validate().expect("whole");
}
