//! The session driven by hand: no sockets, no sleeps, time given.

use super::*;
use crate::control::{CameraSet, SettingsUpdate};

/// A frame: its number, when it was read, and its cameras (id, width, height).
#[derive(Debug, Clone, PartialEq)]
struct F {
    n: u64,
    read_ns: u64,
    cameras: Vec<(u32, u32, u32)>,
}

impl Offered for F {
    fn read_ns(&self) -> u64 {
        self.read_ns
    }
    fn cameras(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.cameras.iter().copied()
    }
}

const T0_NS: u64 = 1_700_000_000_000_000_000;

/// A clock that moves only when told.
struct Clock {
    start: Instant,
    elapsed: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }
    fn now(&self) -> Now {
        Now {
            at: self.start + self.elapsed,
            wall_ns: T0_NS + self.elapsed.as_nanos() as u64,
        }
    }
    fn advance(&mut self, d: Duration) -> Now {
        self.elapsed += d;
        self.now()
    }
    /// Frame `n`, read just now, with cameras 0 and 1 at 1280×720.
    fn frame(&self, n: u64) -> F {
        F {
            n,
            read_ns: self.now().wall_ns,
            cameras: vec![(0, 1280, 720), (1, 1280, 720)],
        }
    }
}

fn status() -> RingStatus {
    RingStatus {
        producer: ProducerStatus::Live,
        cameras: Vec::new(),
    }
}

fn session(clock: &Clock, settings: Settings) -> Session<F> {
    let mut s = Session::new("r", status(), settings, Cadence::default(), clock.now());
    // The greeting.
    assert!(matches!(
        s.poll_output(),
        Some(Output::Text(ServerMessage::State(_)))
    ));
    assert_eq!(s.poll_output(), None);
    s
}

fn texts(s: &mut Session<F>) -> Vec<ServerMessage> {
    std::iter::from_fn(|| s.poll_text()).collect()
}

fn stats(s: &mut Session<F>) -> Stats {
    match texts(s)
        .into_iter()
        .find(|m| matches!(m, ServerMessage::Stats(_)))
    {
        Some(ServerMessage::Stats(stats)) => stats,
        _ => panic!("no stats"),
    }
}

#[test]
fn a_newer_frame_replaces_the_pending_one_and_counts_it_dropped() {
    let mut c = Clock::new();
    let mut s = session(&c, Settings::default());
    assert_eq!(s.handle_frame(c.now(), c.frame(1)), Offer::Pending);
    c.advance(Duration::from_millis(33));
    assert_eq!(s.handle_frame(c.now(), c.frame(2)), Offer::Replaced);
    let Some(Output::Frame(job)) = s.poll_output() else {
        panic!("no frame")
    };
    assert_eq!(job.frame.n, 2);
    assert_eq!(job.mask, 0b11);
    assert_eq!(s.poll_output(), None);
    // Delivered 5 ms after it was read; camera 1 was missing from the message.
    c.advance(Duration::from_millis(5));
    s.handle_sent(c.now(), &[(0, 1000, job.frame.read_ns), (1, 0, 0)], 1600);
    c.advance(Duration::from_secs(1));
    s.handle_timeout(c.now());
    let st = stats(&mut s);
    assert_eq!((st.connection.sent, st.connection.dropped), (1, 1));
    assert_eq!(st.connection.bytes, 1600);
    let cams: Vec<_> = st
        .cameras
        .iter()
        .map(|c| (c.id, c.sent, c.dropped))
        .collect();
    assert_eq!(cams, [(0, 1, 1), (1, 0, 1)]);
    // Latency is from the oldest capture time to delivery.
    let p50 = st.connection.latency_us.p50;
    assert!((4950.0..=5050.0).contains(&p50), "p50 {p50}");
}

#[test]
fn a_stale_frame_is_not_offered() {
    let mut c = Clock::new();
    let mut s = session(&c, Settings::default());
    let old = c.frame(1);
    c.advance(Duration::from_nanos(STALE_NS));
    assert_eq!(s.handle_frame(c.now(), old), Offer::Pass);
    assert_eq!(s.handle_frame(c.now(), c.frame(2)), Offer::Pending);
}

#[test]
fn fps_cap_takes_every_other_frame_at_half_rate_despite_jitter() {
    let mut c = Clock::new();
    let mut s = session(
        &c,
        Settings {
            fps: 15.0,
            ..Settings::default()
        },
    );
    let mut taken = 0;
    for i in 0..300u64 {
        // 30 fps with 0 to 6 ms of jitter.
        c.elapsed = Duration::from_micros(i * 33_333) + Duration::from_millis((i * 5) % 7);
        if s.handle_frame(c.now(), c.frame(i)) != Offer::Pass {
            taken += 1;
            s.poll_frame().expect("pending");
        }
    }
    assert!((148..=152).contains(&taken), "taken {taken}");
}

#[test]
fn a_tiny_fps_takes_one_frame_and_never_panics() {
    for fps in [1e-300, 1e-19, f64::MIN_POSITIVE] {
        let mut c = Clock::new();
        let mut s = session(
            &c,
            Settings {
                fps,
                ..Settings::default()
            },
        );
        assert_eq!(s.handle_frame(c.now(), c.frame(1)), Offer::Pending);
        for i in 2..10 {
            c.advance(Duration::from_secs(3600));
            let f = c.frame(i);
            assert_eq!(s.handle_frame(c.now(), f), Offer::Pass, "fps {fps}");
        }
    }
}

#[test]
fn skip_and_pause() {
    let c = Clock::new();
    let mut s = session(
        &c,
        Settings {
            skip: 3,
            ..Settings::default()
        },
    );
    let taken: Vec<_> = (0..9)
        .map(|i| {
            let offer = s.handle_frame(c.now(), c.frame(i));
            s.poll_frame();
            offer == Offer::Pending
        })
        .collect();
    assert_eq!(
        taken,
        [true, false, false, true, false, false, true, false, false]
    );
    // A pending frame goes with the pause: nothing follows the `state` that says paused.
    s.handle_message(&ClientMessage::Resume);
    texts(&mut s);
    s.handle_frame(c.now(), c.frame(9));
    assert!(s.has_pending());
    s.handle_message(&ClientMessage::Pause);
    assert!(matches!(s.poll_output(), Some(Output::Text(ServerMessage::State(st))) if st.paused));
    assert_eq!(s.poll_output(), None);
    assert!((10..15).all(|i| s.handle_frame(c.now(), c.frame(i)) == Offer::Pass));
    s.handle_message(&ClientMessage::Resume);
    texts(&mut s);
    // Frames offered while paused are not considered: the skip count goes on from frame
    // 9 (the 10th considered, taken), so 17 is the next taken.
    let offers: Vec<_> = (15..18)
        .map(|i| s.handle_frame(c.now(), c.frame(i)) != Offer::Pass)
        .collect();
    assert_eq!(offers, [false, false, true]);
}

#[test]
fn only_wanted_cameras_are_sent_and_a_frame_without_them_is_passed() {
    let c = Clock::new();
    let mut s = session(
        &c,
        Settings {
            cameras: CameraSet::Only(vec![1]),
            ..Settings::default()
        },
    );
    s.handle_frame(c.now(), c.frame(1));
    assert_eq!(s.poll_frame().map(|j| j.mask), Some(0b10));
    let only_0 = F {
        cameras: vec![(0, 64, 64)],
        ..c.frame(2)
    };
    assert_eq!(s.handle_frame(c.now(), only_0), Offer::Pass);
}

#[test]
fn bad_control_is_answered_with_an_error_and_changes_nothing() {
    let c = Clock::new();
    let mut s = session(&c, Settings::default());
    assert!(s.handle_control(r#"{"type":"settings","fps":-1}"#).is_err());
    assert!(s.handle_control("not json").is_err());
    let t = texts(&mut s);
    assert_eq!(t.len(), 2);
    assert!(
        t.iter().all(|m| matches!(m, ServerMessage::Error(_))),
        "{t:?}"
    );
    assert_eq!(s.settings(), &Settings::default());
    s.handle_control(r#"{"type":"settings","max_width":320}"#)
        .unwrap();
    match s.poll_text() {
        Some(ServerMessage::State(st)) => assert_eq!(st.settings.max_width, 320),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stats_come_at_their_cadence_and_missed_ticks_are_not_made_up() {
    let mut c = Clock::new();
    let mut s = session(&c, Settings::default());
    let first = s.poll_timeout();
    assert_eq!(first, c.now().at + Duration::from_millis(STATS_INTERVAL_MS));
    c.advance(Duration::from_millis(999));
    s.handle_timeout(c.now());
    assert_eq!(s.poll_text(), None, "not due yet");
    c.advance(Duration::from_millis(1));
    s.handle_timeout(c.now());
    assert!(matches!(s.poll_text(), Some(ServerMessage::Stats(_))));
    assert_eq!(s.poll_text(), None, "no state: nothing changed");
    // Asleep for 5 s: one stats message, and the next a period later.
    c.advance(Duration::from_secs(5));
    s.handle_timeout(c.now());
    assert_eq!(texts(&mut s).len(), 1);
    assert_eq!(s.poll_timeout(), c.now().at + Duration::from_secs(1));
}

#[test]
fn a_lossy_transport_gets_the_state_every_few_stats() {
    let mut c = Clock::new();
    let cadence = Cadence {
        state_every: 3,
        ..Cadence::default()
    };
    let mut s: Session<F> = Session::new("r", status(), Settings::default(), cadence, c.now());
    texts(&mut s);
    let mut states = 0;
    for _ in 0..9 {
        c.advance(Duration::from_secs(1));
        s.handle_timeout(c.now());
        states += texts(&mut s)
            .iter()
            .filter(|m| matches!(m, ServerMessage::State(_)))
            .count();
    }
    assert_eq!(states, 3);
}

#[test]
fn auto_quality_steps_down_while_frames_are_dropped_and_says_so() {
    let mut c = Clock::new();
    let mut s = session(
        &c,
        Settings {
            quality: Quality::Auto,
            ..Settings::default()
        },
    );
    let mut qualities = Vec::new();
    for window in 0..3u64 {
        // 30 frames a second, of which the pump takes every third: two of three dropped.
        for i in 0..30 {
            c.advance(Duration::from_millis(33));
            s.handle_frame(c.now(), c.frame(window * 30 + i));
            if i % 3 == 0 {
                let job = s.poll_frame().expect("pending");
                qualities.push(job.variant.quality);
            }
        }
        c.advance(Duration::from_millis(10));
        s.handle_timeout(c.now());
        let t = texts(&mut s);
        assert!(
            t.iter().any(|m| matches!(m, ServerMessage::State(_))),
            "a changed level is announced: {t:?}"
        );
    }
    qualities.dedup();
    assert_eq!(qualities, [80, 70, 60]);
    assert_eq!(
        s.variant(1280, 720),
        Variant {
            quality: 50,
            max_width: 0,
            max_height: 0
        }
    );
}

#[test]
fn auto_variant_scales_the_ring_size_within_the_user_limit() {
    let c = Clock::new();
    let mut s = session(
        &c,
        Settings {
            quality: Quality::Auto,
            max_width: 600,
            ..Settings::default()
        },
    );
    assert_eq!(
        s.variant(1280, 720),
        Variant {
            quality: 80,
            max_width: 600,
            max_height: 0
        }
    );
    s.auto = Auto {
        quality: AUTO_QUALITIES.len() - 1,
        scale: 2,
        ..Auto::default()
    };
    assert_eq!(
        s.variant(1280, 720),
        Variant {
            quality: 30,
            max_width: 600,
            max_height: 360
        }
    );
    // A settings message asking for auto again starts over.
    s.handle_message(&ClientMessage::Settings(SettingsUpdate {
        quality: Some(Quality::Auto),
        ..SettingsUpdate::default()
    }));
    assert_eq!(s.variant(1280, 720).quality, 80);
}

#[test]
fn status_changes_give_a_log_and_the_new_state() {
    let c = Clock::new();
    let mut s = session(&c, Settings::default());
    s.handle_status(RingStatus {
        producer: ProducerStatus::Dead,
        cameras: Vec::new(),
    });
    let t = texts(&mut s);
    assert!(
        matches!(&t[0], ServerMessage::Log(l) if l.message.contains("died")),
        "{t:?}"
    );
    assert!(matches!(&t[1], ServerMessage::State(st) if st.producer == ProducerStatus::Dead));
}

#[test]
fn close_comes_after_the_queued_texts_and_nothing_follows_it() {
    let c = Clock::new();
    let mut s = session(&c, Settings::default());
    s.handle_frame(c.now(), c.frame(1));
    let _ = s.handle_control("{");
    s.close(Close::Stopping);
    assert!(matches!(
        s.poll_output(),
        Some(Output::Text(ServerMessage::Error(_)))
    ));
    assert_eq!(s.poll_output(), Some(Output::Close(Close::Stopping)));
    assert_eq!(s.poll_output(), None);
    assert_eq!(s.handle_frame(c.now(), c.frame(2)), Offer::Pass);
    s.handle_status(status());
    assert_eq!(s.poll_output(), None);
}

#[test]
fn texts_queue_is_bounded() {
    let mut c = Clock::new();
    let mut s = session(&c, Settings::default());
    for _ in 0..MAX_QUEUED_TEXTS * 3 {
        c.advance(Duration::from_secs(1));
        s.handle_timeout(c.now());
    }
    assert_eq!(texts(&mut s).len(), MAX_QUEUED_TEXTS);
}
