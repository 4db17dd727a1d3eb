//! The UDP fragmentation and reassembly layer (`camring_protocol::udp`) through its public
//! API: round trips, reordering, duplicates, loss, deadlines, supersession, memory limits
//! under hostile input, a lossy-link simulation, and seeded random programs checked by the
//! same invariant harness as the fuzz target.
//!
//! `cargo test -p camring-protocol --test udp -- --ignored stress` runs the long versions.

#[path = "support/udp_harness.rs"]
mod harness;

use camring_protocol::udp::{
    self, DatagramError, Fragment, FragmentHeader, Fragmenter, Outcome, Reassembled, Reassembler,
    ReassemblerConfig, DEFAULT_DEADLINE_NS, FRAGMENT_HEADER_SIZE,
};
use camring_protocol::wire::{self, CameraFrame, CameraInfo, Message, MessageHeader};
use camring_protocol::PixelFormat;

const MS: u64 = 1_000_000;
const STREAM: u32 = 7;

/// A valid wire message for `frame` with one JPEG camera of `payload_len` random bytes.
fn message(rng: &mut fastrand::Rng, frame: u64, payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
        .take(payload_len.max(1))
        .collect();
    Message {
        header: MessageHeader {
            frame,
            tick_ns: rng.u64(..),
            ..MessageHeader::default()
        },
        cameras: vec![CameraFrame {
            info: CameraInfo {
                camera_id: 0,
                format: PixelFormat::Jpeg,
                width: 1280,
                height: 720,
                stride: 0,
                flags: 0,
                capture_ns: rng.u64(..),
                sequence: frame,
            },
            payload: &payload,
        }],
    }
    .encode()
    .unwrap()
}

/// The datagrams of a message.
fn datagrams(message: &[u8], frame: u64, mtu: usize) -> Vec<Vec<u8>> {
    Fragmenter::new(message, STREAM, frame, mtu)
        .unwrap()
        .map(|f| f.to_vec())
        .collect()
}

fn complete(outcome: Outcome) -> Reassembled {
    match outcome {
        Outcome::Complete(r) => r,
        other => panic!("expected a complete frame, got {other:?}"),
    }
}

/// Feeds all but the last datagram (each must be buffered), then the last, which must
/// complete the frame.
fn feed_frame(r: &mut Reassembler, now: u64, dgrams: &[Vec<u8>]) -> Reassembled {
    let (last, rest) = dgrams.split_last().unwrap();
    for d in rest {
        assert_eq!(r.handle_datagram(now, d), Outcome::Buffered);
    }
    complete(r.handle_datagram(now, last))
}

#[test]
fn round_trip_random_messages_at_several_mtus() {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let mut frame = 0;
    for mtu in [
        udp::MIN_MTU,
        1000,
        udp::DEFAULT_MTU,
        1500,
        9000,
        udp::MAX_MTU,
    ] {
        for _ in 0..20 {
            frame += 1 + rng.u64(..3);
            let len = match rng.u8(..4) {
                0 => rng.usize(1..100),
                1 => rng.usize(1..5000),
                _ => rng.usize(1..300_000),
            };
            let msg = message(&mut rng, frame, len);
            let dgrams = datagrams(&msg, frame, mtu);
            let fragment_size = mtu - FRAGMENT_HEADER_SIZE;
            assert_eq!(dgrams.len(), msg.len().div_ceil(fragment_size));
            for d in &dgrams {
                assert!(d.len() <= mtu, "{} bytes at MTU {mtu}", d.len());
            }
            // Every fragment but the last is full.
            for d in &dgrams[..dgrams.len() - 1] {
                assert_eq!(d.len(), mtu);
            }
            let done = feed_frame(&mut r, 0, &dgrams);
            assert_eq!((done.stream, done.frame), (STREAM, frame));
            assert_eq!(done.message, msg);
            assert_eq!(wire::parse(&done.message).unwrap().header.frame, frame);
        }
    }
    let s = r.stats();
    assert_eq!(s.completed, 120);
    assert_eq!(s.frames_held, 0);
    assert_eq!(s.bytes_held, 0);
    assert!(s.bytes_held_max > 0 && s.bytes_held_max < 400_000);
}

#[test]
fn one_fragment_frames_are_delivered_without_being_held() {
    let mut rng = fastrand::Rng::with_seed(2);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let msg = message(&mut rng, 1, 10);
    let dgrams = datagrams(&msg, 1, udp::DEFAULT_MTU);
    assert_eq!(dgrams.len(), 1);
    assert_eq!(complete(r.handle_datagram(0, &dgrams[0])).message, msg);
    assert_eq!(r.stats().bytes_held_max, 0);
    assert_eq!(r.handle_datagram(0, &dgrams[0]), Outcome::Late);
}

#[test]
fn shuffled_order_reassembles() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    for frame in 1..=50 {
        let len = rng.usize(1..40_000);
        let msg = message(&mut rng, frame, len);
        let mut dgrams = datagrams(&msg, frame, 576);
        rng.shuffle(&mut dgrams);
        assert_eq!(feed_frame(&mut r, frame * MS, &dgrams).message, msg);
    }
    // Two frames interleaved, the older one completing first: both come out, in order.
    let a = message(&mut rng, 100, 5000);
    let b = message(&mut rng, 101, 5000);
    let (da, db) = (datagrams(&a, 100, 576), datagrams(&b, 101, 576));
    for d in &db[1..] {
        assert_eq!(r.handle_datagram(0, d), Outcome::Buffered);
    }
    let done = feed_frame(&mut r, 0, &da);
    assert_eq!(done.frame, 100);
    assert_eq!(complete(r.handle_datagram(0, &db[0])).message, b);
    assert_eq!(r.stats().dropped_superseded, 0);
}

#[test]
fn duplicates_are_ignored() {
    let mut rng = fastrand::Rng::with_seed(4);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let msg = message(&mut rng, 9, 10_000);
    let dgrams = datagrams(&msg, 9, udp::DEFAULT_MTU);
    let n = dgrams.len();
    for d in &dgrams[..n - 1] {
        assert_eq!(r.handle_datagram(0, d), Outcome::Buffered);
        assert_eq!(r.handle_datagram(0, d), Outcome::Duplicate);
    }
    assert_eq!(r.handle_datagram(0, &dgrams[0]), Outcome::Duplicate);
    assert_eq!(complete(r.handle_datagram(0, &dgrams[n - 1])).message, msg);
    // After delivery, every copy is late: the frame is never delivered twice.
    for d in &dgrams {
        assert_eq!(r.handle_datagram(0, d), Outcome::Late);
    }
    let s = r.stats();
    assert_eq!((s.completed, s.duplicates, s.late), (1, n as u64, n as u64));
}

#[test]
fn a_lost_fragment_drops_the_frame_at_its_deadline_and_the_next_frame_comes() {
    let mut rng = fastrand::Rng::with_seed(5);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let first = message(&mut rng, 1, 5000);
    let second = message(&mut rng, 2, 5000);
    let d1 = datagrams(&first, 1, udp::DEFAULT_MTU);
    let t0 = 1_000 * MS;
    // Fragment 2 of frame 1 is lost.
    for (i, d) in d1.iter().enumerate() {
        if i != 2 {
            assert_eq!(r.handle_datagram(t0 + i as u64, d), Outcome::Buffered);
        }
    }
    let deadline = t0 + DEFAULT_DEADLINE_NS;
    assert_eq!(r.poll_timeout(), Some(deadline));
    r.handle_timeout(deadline - 1);
    assert_eq!(r.stats().frames_held, 1);
    r.handle_timeout(deadline);
    let s = *r.stats();
    assert_eq!((s.frames_held, s.bytes_held, s.dropped_timeout), (0, 0, 1));
    assert_eq!(s.bytes_held_max, first.len());
    assert_eq!(r.poll_timeout(), None);
    // The lost fragment, arriving after all, does not start the frame again.
    assert_eq!(r.handle_datagram(deadline + 1, &d1[2]), Outcome::Late);
    assert_eq!(r.handle_datagram(deadline + 1, &d1[0]), Outcome::Late);
    assert_eq!(r.stats().frames_held, 0);
    // The next frame is delivered.
    let done = feed_frame(
        &mut r,
        deadline + 2,
        &datagrams(&second, 2, udp::DEFAULT_MTU),
    );
    assert_eq!((done.frame, done.message), (2, second));

    // A deadline is also enforced by the datagrams themselves, without handle_timeout.
    let third = message(&mut rng, 3, 5000);
    let d3 = datagrams(&third, 3, udp::DEFAULT_MTU);
    assert_eq!(r.handle_datagram(deadline + 3, &d3[0]), Outcome::Buffered);
    let too_late = deadline + 3 + DEFAULT_DEADLINE_NS;
    assert_eq!(r.handle_datagram(too_late, &d3[1]), Outcome::Late);
    assert_eq!(r.stats().dropped_timeout, 2);
}

#[test]
fn a_newer_complete_frame_supersedes_an_incomplete_older_one() {
    let mut rng = fastrand::Rng::with_seed(6);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let old = datagrams(&message(&mut rng, 10, 5000), 10, udp::DEFAULT_MTU);
    let older = datagrams(&message(&mut rng, 9, 5000), 9, udp::DEFAULT_MTU);
    let newer = message(&mut rng, 11, 5000);
    assert_eq!(r.handle_datagram(0, &old[0]), Outcome::Buffered);
    assert_eq!(r.handle_datagram(0, &older[0]), Outcome::Buffered);
    let done = feed_frame(&mut r, 1, &datagrams(&newer, 11, udp::DEFAULT_MTU));
    assert_eq!(done.frame, 11);
    let s = *r.stats();
    assert_eq!(
        (s.dropped_superseded, s.frames_held, s.bytes_held),
        (2, 0, 0)
    );
    // Their remaining fragments are late: fewer frames, never older ones.
    for d in old.iter().chain(&older) {
        assert_eq!(r.handle_datagram(2, d), Outcome::Late);
    }
    assert_eq!(r.last_delivered(), Some(11));
}

#[test]
fn the_oldest_frame_is_evicted_first() {
    let mut rng = fastrand::Rng::with_seed(7);
    let config = ReassemblerConfig {
        max_frames: 2,
        ..ReassemblerConfig::default()
    };
    let mut r = Reassembler::new(config);
    let f: Vec<Vec<Vec<u8>>> = (0..5)
        .map(|i| datagrams(&message(&mut rng, i, 3000), i, udp::DEFAULT_MTU))
        .collect();
    assert_eq!(r.handle_datagram(0, &f[2][0]), Outcome::Buffered);
    assert_eq!(r.handle_datagram(0, &f[3][0]), Outcome::Buffered);
    // Frame 4 needs room: frame 2, the oldest, goes.
    assert_eq!(r.handle_datagram(0, &f[4][0]), Outcome::Buffered);
    assert_eq!(r.stats().dropped_evicted, 1);
    assert_eq!(r.handle_datagram(0, &f[2][1]), Outcome::Late);
    // Frame 1 is older than everything held: it is the one evicted.
    assert_eq!(r.handle_datagram(0, &f[1][0]), Outcome::Evicted);
    assert_eq!(r.handle_datagram(0, &f[1][1]), Outcome::Late);
    assert_eq!(r.stats().dropped_evicted, 2);
    assert_eq!(r.stats().frames_held, 2);
    // Frames 3 and 4 still complete, in order.
    assert_eq!(feed_frame(&mut r, 0, &f[3][1..]).frame, 3);
    assert_eq!(feed_frame(&mut r, 0, &f[4][1..]).frame, 4);

    // The byte limit evicts the same way.
    let config = ReassemblerConfig {
        max_bytes: 7000,
        ..ReassemblerConfig::default()
    };
    let mut r = Reassembler::new(config);
    let g: Vec<Vec<Vec<u8>>> = (0..3)
        .map(|i| datagrams(&message(&mut rng, i, 3000), i, udp::DEFAULT_MTU))
        .collect();
    assert_eq!(r.handle_datagram(0, &g[0][0]), Outcome::Buffered);
    assert_eq!(r.handle_datagram(0, &g[1][0]), Outcome::Buffered);
    assert_eq!(r.handle_datagram(0, &g[2][0]), Outcome::Buffered);
    let s = *r.stats();
    assert_eq!((s.dropped_evicted, s.frames_held), (1, 2));
    assert!(s.bytes_held_max <= 7000);
}

/// A frame declaring more than the byte limit is refused outright.
#[test]
fn a_frame_above_the_byte_limit_is_refused() {
    let config = ReassemblerConfig {
        max_bytes: 100_000,
        ..ReassemblerConfig::default()
    };
    let mut r = Reassembler::new(config);
    let big = vec![0u8; 100_001];
    let d = datagrams(&big, 1, udp::DEFAULT_MTU);
    assert_eq!(r.handle_datagram(0, &d[0]), Outcome::TooLarge(100_001));
    assert_eq!(r.stats().too_large, 1);
    assert_eq!(r.stats().bytes_held_max, 0);
    let fits = vec![1u8; 100_000];
    let done = feed_frame(&mut r, 0, &datagrams(&fits, 2, udp::DEFAULT_MTU));
    assert_eq!(done.message, fits);
}

/// Hostile: a flood of first fragments of distinct frames, each declaring a huge message.
/// The memory held never exceeds the limit, and a genuine frame afterwards still comes.
#[test]
fn memory_limit_holds_under_a_flood_of_huge_first_fragments() {
    let mut rng = fastrand::Rng::with_seed(8);
    for config in [
        ReassemblerConfig {
            max_bytes: 1 << 20,
            ..ReassemblerConfig::default()
        },
        ReassemblerConfig::default(),
    ] {
        let mut r = Reassembler::new(config);
        let cap = config.max_bytes as u64;
        let mut refused = 0;
        for i in 0..2000u64 {
            let total_len = match rng.u8(..4) {
                0 => u32::MAX,
                1 => cap as u32,
                _ => rng.u32(1..=(cap + cap / 2).min(u64::from(u32::MAX)) as u32),
            };
            let header = FragmentHeader {
                stream: STREAM,
                frame: 1_000 + i * 3 + rng.u64(..3),
                index: 0,
                count: total_len.div_ceil(1164),
                total_len,
                fragment_size: 1164,
            };
            let payload = vec![0xAA; header.payload_len()];
            let d = Fragment {
                header,
                payload: &payload,
            }
            .to_vec();
            if let Outcome::TooLarge(_) = r.handle_datagram(i * MS, &d) {
                refused += 1;
            }
            let s = r.stats();
            assert!(s.bytes_held as u64 <= cap && s.bytes_held_max as u64 <= cap);
            assert!(s.frames_held <= config.max_frames);
        }
        assert!(refused > 0);
        assert!(r.stats().dropped_evicted > 0 || r.stats().dropped_timeout > 0);
        let msg = message(&mut rng, 1_000_000, 20_000);
        let done = feed_frame(
            &mut r,
            3000 * MS,
            &datagrams(&msg, 1_000_000, udp::DEFAULT_MTU),
        );
        assert_eq!(done.message, msg);
    }
}

#[test]
fn inconsistent_fragments_drop_their_frame() {
    let mut rng = fastrand::Rng::with_seed(9);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let msg = message(&mut rng, 5, 5000);
    let good = datagrams(&msg, 5, udp::DEFAULT_MTU);
    // The same frame cut at another MTU: its fragment size and count disagree.
    let other = datagrams(&msg, 5, 576);
    assert_eq!(r.handle_datagram(0, &good[0]), Outcome::Buffered);
    assert_eq!(r.handle_datagram(0, &other[1]), Outcome::Inconsistent);
    let s = *r.stats();
    assert_eq!((s.dropped_inconsistent, s.frames_held), (1, 0));
    // The rest of the frame is late now.
    assert_eq!(r.handle_datagram(0, &good[1]), Outcome::Late);
    // A total length that disagrees does the same.
    let msg6 = message(&mut rng, 6, 5000);
    let good6 = datagrams(&msg6, 6, udp::DEFAULT_MTU);
    assert_eq!(r.handle_datagram(0, &good6[0]), Outcome::Buffered);
    let longer = [msg6.clone(), vec![0; 10]].concat();
    let liar = datagrams(&longer, 6, udp::DEFAULT_MTU);
    assert_eq!(r.handle_datagram(0, &liar[1]), Outcome::Inconsistent);
    assert_eq!(r.stats().dropped_inconsistent, 2);
}

#[test]
fn streams_and_reset() {
    let mut rng = fastrand::Rng::with_seed(10);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let msg = message(&mut rng, 50, 100);
    assert_eq!(
        complete(r.handle_datagram(0, &datagrams(&msg, 50, 1200)[0])).frame,
        50
    );
    assert_eq!(r.stream(), Some(STREAM));
    // A restarted server: another stream, frames from 0 again. Ignored until reset.
    let restarted = Fragmenter::new(&msg, STREAM + 1, 0, 1200)
        .unwrap()
        .fragment(0)
        .unwrap()
        .to_vec();
    assert_eq!(
        r.handle_datagram(1, &restarted),
        Outcome::OtherStream(STREAM + 1)
    );
    r.reset(Some(STREAM + 1));
    let done = complete(r.handle_datagram(2, &restarted));
    assert_eq!((done.stream, done.frame), (STREAM + 1, 0));
    // Non-fragments are invalid here.
    let ka = udp::Keepalive { cookie: [0; 16] }.encode();
    assert_eq!(
        r.handle_datagram(3, &ka),
        Outcome::Invalid(DatagramError::UnexpectedKind(udp::Kind::Keepalive))
    );
    assert_eq!(r.stats().invalid, 1);
    assert_eq!(r.stats().other_stream, 1);
}

#[test]
fn time_going_backwards_counts_as_the_latest_time() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let d = datagrams(&message(&mut rng, 1, 5000), 1, udp::DEFAULT_MTU);
    r.handle_timeout(500 * MS);
    assert_eq!(r.handle_datagram(0, &d[0]), Outcome::Buffered);
    assert_eq!(r.poll_timeout(), Some(500 * MS + DEFAULT_DEADLINE_NS));
}

#[test]
fn hand_built_fragments_are_checked_too() {
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let header = FragmentHeader {
        stream: STREAM,
        frame: 1,
        index: 0,
        count: 2,
        total_len: 2000,
        fragment_size: 1164,
    };
    let short = Fragment {
        header,
        payload: &[0; 10],
    };
    assert!(matches!(
        r.handle_fragment(0, &short),
        Outcome::Invalid(DatagramError::Fragment(_))
    ));
    let bad = Fragment {
        header: FragmentHeader { count: 5, ..header },
        payload: &[0; 1164],
    };
    assert!(matches!(
        r.handle_fragment(0, &bad),
        Outcome::Invalid(DatagramError::Fragment(_))
    ));
    assert_eq!(r.stats().invalid, 2);
}

/// Random bytes, and genuine datagrams with random damage, into the parser and the
/// reassembler: never a panic, and the limits hold.
#[test]
fn garbage_and_mutated_datagrams_never_panic() {
    let mut rng = fastrand::Rng::with_seed(12);
    let config = ReassemblerConfig {
        max_bytes: 50_000,
        max_frames: 3,
        deadline_ns: 20 * MS,
    };
    let mut r = Reassembler::new(config);
    let msg = message(&mut rng, 1, 20_000);
    let good = datagrams(&msg, 1, 576);
    let requests = [
        udp::Subscribe {
            cookie: [3; 16],
            mtu: 1200,
            token: b"token",
            settings: br#"{"fps":5}"#,
        }
        .to_vec()
        .unwrap(),
        udp::Keepalive { cookie: [4; 16] }.encode().to_vec(),
    ];
    let (mut parsed, mut refused) = (0, 0);
    for i in 0..200_000u64 {
        let mut d = match rng.u8(..4) {
            0 => {
                let len = rng.usize(..1300);
                std::iter::repeat_with(|| rng.u8(..)).take(len).collect()
            }
            1 => requests[rng.usize(..2)].clone(),
            _ => good[rng.usize(..good.len())].clone(),
        };
        for _ in 0..rng.usize(..4) {
            let len = d.len();
            match rng.u8(..5) {
                0 if len > 0 => d[rng.usize(..len.min(40))] = rng.u8(..),
                1 if len > 0 => d[rng.usize(..len)] ^= 1 << rng.u8(..8),
                2 => d.truncate(rng.usize(..=len)),
                3 => d.push(rng.u8(..)),
                _ if len >= 40 => {
                    let at = 8 + rng.usize(..8) * 4;
                    let v = [0, 1, 2, 539, 540, 1164, 65_471, u32::MAX][rng.usize(..8)];
                    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => {}
            }
        }
        match udp::parse(&d) {
            Ok(_) => parsed += 1,
            Err(e) => {
                refused += 1;
                if let Some(reply) = udp::refusal_for(&d, &e) {
                    assert!(reply.encode().len() <= d.len());
                }
            }
        }
        let _ = r.handle_datagram(i * 10_000, &d);
        let s = r.stats();
        assert!(s.bytes_held <= 50_000 && s.frames_held <= 3);
    }
    assert!(parsed > 10_000 && refused > 10_000, "{parsed} {refused}");
}

/// A lossy link: independent loss of each datagram with probability p, fragments of a
/// frame in random order, one frame every 33 ms. A frame is delivered exactly when none of
/// its K fragments is lost, so the delivery ratio is (1 − p)^K; every delivered message is
/// byte for byte the one sent.
fn simulate_loss(p: f64, k: usize, frames: u64, seed: u64) -> f64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut r = Reassembler::new(ReassemblerConfig::default());
    let mtu = udp::DEFAULT_MTU;
    let payload = k * (mtu - FRAGMENT_HEADER_SIZE) - wire::prefix_len(1) - 100;
    let mut delivered = 0u64;
    for frame in 0..frames {
        let t0 = frame * 33 * MS;
        let msg = message(&mut rng, frame, payload);
        let mut dgrams = datagrams(&msg, frame, mtu);
        assert_eq!(dgrams.len(), k);
        rng.shuffle(&mut dgrams);
        let mut lost = false;
        let mut got = None;
        for (i, d) in dgrams.iter().enumerate() {
            if rng.f64() < p {
                lost = true;
                continue;
            }
            if let Outcome::Complete(done) = r.handle_datagram(t0 + i as u64 * 100_000, d) {
                got = Some(done);
            }
        }
        // Nothing incomplete outlives its deadline.
        let now = t0 + k as u64 * 100_000;
        r.handle_timeout(now);
        assert!(r.poll_timeout().is_none_or(|t| t > now));
        match got {
            Some(done) => {
                assert!(!lost, "frame {frame} delivered with a fragment lost");
                assert_eq!((done.frame, &done.message), (frame, &msg));
                delivered += 1;
            }
            None => assert!(lost, "frame {frame} not delivered without loss"),
        }
    }
    let s = *r.stats();
    assert_eq!(s.completed, delivered);
    assert_eq!(s.duplicates + s.invalid + s.late, 0);
    let ratio = delivered as f64 / frames as f64;
    let expected = (1.0 - p).powi(k as i32);
    let sigma = (expected * (1.0 - expected) / frames as f64).sqrt();
    println!(
        "p = {p}, K = {k}, {frames} frames: delivered {ratio:.4}, expected {expected:.4} ± {sigma:.4} \
         (dropped: {} superseded, {} timed out)",
        s.dropped_superseded, s.dropped_timeout
    );
    assert!(
        (ratio - expected).abs() < 4.0 * sigma,
        "ratio {ratio} vs {expected} ± {sigma}"
    );
    ratio
}

#[test]
fn lossy_link_delivers_the_expected_ratio() {
    simulate_loss(0.01, 16, 2000, 0x1055_0001);
    simulate_loss(0.05, 16, 2000, 0x1055_0005);
    simulate_loss(0.05, 4, 2000, 0x1055_0054);
}

#[test]
#[ignore = "long: cargo test -p camring-protocol --test udp -- --ignored stress"]
fn stress_lossy_link() {
    for (i, &p) in [0.01, 0.05].iter().enumerate() {
        for k in [1, 8, 32, 64] {
            simulate_loss(p, k, 20_000, 0x57E5 + i as u64 * 100 + k as u64);
        }
    }
}

/// Random programs into the invariant harness shared with the fuzz target.
fn run_programs(count: u64, seed: u64) -> harness::Summary {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut total = harness::Summary::default();
    for _ in 0..count {
        let len = rng.usize(..600);
        let program: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        total.add(&harness::run(&program));
    }
    total
}

fn check_coverage(s: &harness::Summary) {
    println!("{s:#?}");
    assert!(s.genuine > 0 && s.delivered > s.genuine, "{s:?}");
    for (name, n) in [
        ("timeout", s.dropped_timeout),
        ("superseded", s.dropped_superseded),
        ("evicted", s.dropped_evicted),
        ("inconsistent", s.dropped_inconsistent),
        ("duplicates", s.duplicates),
        ("late", s.late),
        ("other stream", s.other_stream),
        ("too large", s.too_large),
        ("invalid", s.invalid),
    ] {
        assert!(n > 0, "no program reached {name}: {s:?}");
    }
}

#[test]
fn property_reassembler_invariants() {
    check_coverage(&run_programs(3000, 0xF0221));
}

#[test]
#[ignore = "long: cargo test -p camring-protocol --test udp -- --ignored stress"]
fn stress_reassembler_invariants() {
    check_coverage(&run_programs(100_000, 0xF0222));
}

/// The fuzz target's committed seeds pass the harness on stable too, and the simplest one
/// delivers every frame it sends.
#[test]
fn fuzz_seeds_pass_the_harness() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/udp_reassemble");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let summary = harness::run(&std::fs::read(&path).unwrap());
        if path.ends_with("in_order.bin") {
            assert_eq!((summary.delivered, summary.genuine), (6, 6), "{summary:?}");
        }
        seeds += 1;
    }
    assert!(seeds >= 5);
}
