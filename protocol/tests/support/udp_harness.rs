//! Drives a `udp::Reassembler` with a program read from arbitrary bytes and checks its
//! invariants after every step. Shared by `tests/udp.rs` (seeded random programs on stable
//! Rust) and `fuzz/fuzz_targets/udp_reassemble.rs` (libFuzzer), which include this file
//! with `#[path]`.
//!
//! The program's first three bytes choose the limits (deadline 1 to 256 ms, 0 to 5 frames,
//! 0 bytes to 1 MiB); then each step is an opcode byte and its operands (missing bytes read
//! as 0): advance time, feed a genuine fragment, a whole genuine frame in rotated order
//! (maybe missing one fragment), a mutated genuine fragment, raw bytes, a fragment with a
//! hostile header, a genuine fragment of another stream, call `handle_timeout`, move the
//! window of frame numbers, or `reset`.
//!
//! A "genuine" frame's message is a valid wire message (one JPEG camera) whose size and MTU
//! follow from its frame number, so every genuine fragment of a frame agrees with the others.
//!
//! Checked after every step: nothing panics; the frames and bytes held stay within the
//! limits (also the high-water mark); no deadline is left at or before the present after a
//! call; delivered frames are strictly increasing since the last reset and of the current
//! stream; each delivered message is exactly as long as a total length declared for its
//! frame, and is byte for byte the genuine message (which parses) unless something other
//! than genuine fragments was fed for that frame; `completed` counts the deliveries.

use std::collections::{HashMap, HashSet};

use camring_protocol::udp::{
    self, FragmentHeader, Fragmenter, Outcome, Reassembler, ReassemblerConfig,
};
use camring_protocol::wire::{self, CameraFrame, CameraInfo, Message, MessageHeader};
use camring_protocol::PixelFormat;

/// The stream of genuine fragments.
pub const STREAM: u32 = 0xC0FF_EE00;
/// The other stream some steps use.
pub const OTHER_STREAM: u32 = STREAM ^ 1;

/// What a run (or many) saw: the reassembler's final counters, summed, and deliveries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Programs run.
    pub runs: u64,
    /// Datagrams fed.
    pub datagrams: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Of those, genuine ones compared byte for byte.
    pub genuine: u64,
    /// Sums of the final counters.
    pub completed: u64,
    pub dropped_timeout: u64,
    pub dropped_superseded: u64,
    pub dropped_evicted: u64,
    pub dropped_inconsistent: u64,
    pub duplicates: u64,
    pub late: u64,
    pub other_stream: u64,
    pub too_large: u64,
    pub invalid: u64,
}

impl Summary {
    /// Adds another summary's counts to this one.
    #[allow(dead_code)] // Used by tests/udp.rs, not by the fuzz target.
    pub fn add(&mut self, o: &Summary) {
        self.runs += o.runs;
        self.datagrams += o.datagrams;
        self.delivered += o.delivered;
        self.genuine += o.genuine;
        self.completed += o.completed;
        self.dropped_timeout += o.dropped_timeout;
        self.dropped_superseded += o.dropped_superseded;
        self.dropped_evicted += o.dropped_evicted;
        self.dropped_inconsistent += o.dropped_inconsistent;
        self.duplicates += o.duplicates;
        self.late += o.late;
        self.other_stream += o.other_stream;
        self.too_large += o.too_large;
        self.invalid += o.invalid;
    }
}

/// The program's bytes; reading past the end gives zeros.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let start = self.at.min(self.data.len());
        let end = self.at.saturating_add(n).min(self.data.len());
        self.at = self.at.saturating_add(n);
        self.data[start..end].to_vec()
    }
}

/// splitmix64: a frame number's hash.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const MTUS: [usize; 4] = [576, 700, udp::DEFAULT_MTU, 1500];

/// The genuine message of a frame and the MTU it is cut at.
fn make_genuine(frame: u64) -> (Vec<u8>, usize) {
    let h = mix(frame);
    let len = 1 + (h % 4000) as usize;
    let payload: Vec<u8> = (0..len).map(|i| (h >> (i % 56)) as u8 ^ i as u8).collect();
    let message = Message {
        header: MessageHeader {
            frame,
            tick_ns: h,
            ..MessageHeader::default()
        },
        cameras: vec![CameraFrame {
            info: CameraInfo {
                camera_id: (h % 16) as u32,
                format: PixelFormat::Jpeg,
                width: 64,
                height: 48,
                stride: 0,
                flags: 0,
                capture_ns: h,
                sequence: frame,
            },
            payload: &payload,
        }],
    };
    let bytes = message.encode().expect("a valid message");
    (bytes, MTUS[(h >> 40) as usize % MTUS.len()])
}

/// One run's state next to the reassembler.
struct Run {
    r: Reassembler,
    limits: ReassemblerConfig,
    now: u64,
    base: u64,
    genuine: HashMap<u64, (Vec<u8>, usize)>,
    /// (stream, frame) that were fed something other than genuine fragments, with the
    /// total lengths they declared.
    tainted: HashMap<(u32, u64), HashSet<u32>>,
    /// The last frame delivered since the last reset.
    last: Option<u64>,
    summary: Summary,
}

impl Run {
    fn genuine(&mut self, frame: u64) -> &(Vec<u8>, usize) {
        self.genuine
            .entry(frame)
            .or_insert_with(|| make_genuine(frame))
    }

    /// Genuine fragment `index` (taken modulo the count) of `frame` in `stream`.
    fn genuine_fragment(&mut self, stream: u32, frame: u64, index: u32) -> Vec<u8> {
        let (message, mtu) = self.genuine(frame);
        let f = Fragmenter::new(message, stream, frame, *mtu).expect("a valid MTU");
        f.fragment(index % f.fragment_count())
            .expect("an index below the count")
            .to_vec()
    }

    fn fragment_count(&mut self, frame: u64) -> u32 {
        let (message, mtu) = self.genuine(frame);
        Fragmenter::new(message, STREAM, frame, *mtu)
            .expect("a valid MTU")
            .fragment_count()
    }

    /// Feeds one datagram and checks the outcome.
    fn feed(&mut self, datagram: &[u8]) {
        // Taint the frame of anything that parses as a fragment but is not genuine.
        if let Ok(f) = udp::parse_fragment(datagram) {
            let h = f.header;
            let genuine = (h.stream == STREAM || h.stream == OTHER_STREAM)
                && self.genuine_fragment(h.stream, h.frame, h.index) == datagram;
            if !genuine {
                self.tainted
                    .entry((h.stream, h.frame))
                    .or_default()
                    .insert(h.total_len);
            }
        }
        self.summary.datagrams += 1;
        let completed = self.r.stats().completed;
        let outcome = self.r.handle_datagram(self.now, datagram);
        if let Outcome::Complete(done) = outcome {
            assert_eq!(self.r.stats().completed, completed + 1);
            self.check_delivery(done);
        } else {
            assert_eq!(self.r.stats().completed, completed, "{outcome:?}");
        }
        self.check();
    }

    fn check_delivery(&mut self, done: udp::Reassembled) {
        self.summary.delivered += 1;
        assert_eq!(self.r.stream(), Some(done.stream));
        assert_eq!(self.r.last_delivered(), Some(done.frame));
        if let Some(last) = self.last {
            assert!(done.frame > last, "frame {} after {last}", done.frame);
        }
        self.last = Some(done.frame);
        let key = (done.stream, done.frame);
        if !self.tainted.contains_key(&key) {
            let (message, _) = self.genuine(done.frame);
            assert!(done.message == *message, "frame {} differs", done.frame);
            let parsed = wire::parse(&done.message).expect("a genuine message parses");
            assert_eq!(parsed.header.frame, done.frame);
            self.summary.genuine += 1;
        } else {
            let len = done.message.len() as u32;
            let genuine_len = self.genuine(done.frame).0.len() as u32;
            let totals = &self.tainted[&key];
            assert!(
                totals.contains(&len) || len == genuine_len,
                "frame {} of {len} bytes, declared {totals:?}",
                done.frame
            );
        }
    }

    /// The invariants that hold between calls.
    fn check(&self) {
        let s = self.r.stats();
        assert!(s.frames_held <= self.limits.max_frames, "{s:?}");
        assert!(s.bytes_held <= self.limits.max_bytes, "{s:?}");
        assert!(s.bytes_held_max <= self.limits.max_bytes, "{s:?}");
        assert!(s.bytes_held <= s.bytes_held_max);
        match self.r.poll_timeout() {
            Some(deadline) => {
                assert!(deadline > self.now, "deadline {deadline} at {}", self.now);
                assert!(deadline <= self.now + self.limits.deadline_ns);
                assert!(s.frames_held > 0);
            }
            None => assert_eq!(s.frames_held, 0),
        }
    }

    fn finish(mut self) -> Summary {
        let s = *self.r.stats();
        let sum = &mut self.summary;
        sum.runs = 1;
        sum.completed = s.completed;
        sum.dropped_timeout = s.dropped_timeout;
        sum.dropped_superseded = s.dropped_superseded;
        sum.dropped_evicted = s.dropped_evicted;
        sum.dropped_inconsistent = s.dropped_inconsistent;
        sum.duplicates = s.duplicates;
        sum.late = s.late;
        sum.other_stream = s.other_stream;
        sum.too_large = s.too_large;
        sum.invalid = s.invalid;
        assert_eq!(sum.completed, sum.delivered);
        self.summary
    }
}

/// Runs one program; panics if an invariant breaks.
pub fn run(data: &[u8]) -> Summary {
    let mut input = Input { data, at: 0 };
    let config = ReassemblerConfig {
        deadline_ns: (u64::from(input.u8()) + 1) * 1_000_000,
        max_frames: usize::from(input.u8() % 6),
        max_bytes: [0, 600, 3000, 8000, 20_000, 1 << 20][usize::from(input.u8() % 6)],
    };
    let r = Reassembler::new(config);
    let limits = *r.config();
    assert!(limits.max_frames >= 1 && limits.max_bytes >= 1);
    let mut run = Run {
        r,
        limits,
        now: 0,
        base: 0,
        genuine: HashMap::new(),
        tainted: HashMap::new(),
        last: None,
        summary: Summary::default(),
    };
    while !input.is_empty() {
        let op = input.u8();
        match op % 10 {
            // Time passes: up to 655 ms.
            0 => run.now += u64::from(input.u16()) * 10_000,
            // One genuine fragment of a frame near the window.
            1 => {
                let frame = run.base + u64::from(input.u8() % 8);
                let index = u32::from(input.u16());
                let d = run.genuine_fragment(STREAM, frame, index);
                run.feed(&d);
            }
            // A whole genuine frame, from a rotated start, maybe without one fragment,
            // with a little time between fragments.
            2 => {
                let frame = run.base + u64::from(input.u8() % 8);
                let count = run.fragment_count(frame);
                let start = u32::from(input.u8());
                let skip = input.u8();
                let step = u64::from(input.u8() % 4) * 100_000;
                for i in 0..count {
                    if skip & 0x80 != 0 && u32::from(skip & 0x7F) % count == i {
                        continue;
                    }
                    let d = run.genuine_fragment(STREAM, frame, (start + i) % count);
                    run.feed(&d);
                    run.now += step;
                }
            }
            // A genuine fragment with a few bytes changed.
            3 => {
                let frame = run.base + u64::from(input.u8() % 8);
                let index = u32::from(input.u16());
                let mut d = run.genuine_fragment(STREAM, frame, index);
                for _ in 0..1 + input.u8() % 3 {
                    // Mostly in the header, where the checks are.
                    let at = usize::from(input.u16()) % if op & 0x10 != 0 { 40 } else { d.len() };
                    let at = at % d.len();
                    d[at] = input.u8();
                }
                run.feed(&d);
            }
            // Raw bytes, half of them behind a valid common header.
            4 => {
                let len = usize::from(input.u8()) * if op & 0x20 != 0 { 6 } else { 1 };
                let mut d = input.bytes(len);
                if op & 0x10 != 0 {
                    let mut prefixed = b"CAMU\x01\x01\x00\x00".to_vec();
                    prefixed.append(&mut d);
                    d = prefixed;
                }
                run.feed(&d);
            }
            // A fragment with a hostile header: huge totals, odd sizes and counts.
            5 => {
                let stream = if op & 0x10 != 0 { STREAM } else { input.u32() };
                let frame = if op & 0x20 != 0 {
                    input.u64()
                } else {
                    run.base + u64::from(input.u8() % 16)
                };
                let total_len = match input.u8() % 8 {
                    0 => 1,
                    1 => 600,
                    2 => 5000,
                    3 => 1 << 20,
                    4 => 64 << 20,
                    5 => u32::MAX,
                    _ => input.u32(),
                };
                let fragment_size = match input.u8() % 4 {
                    0 => 540,
                    1 => 1164,
                    2 => 65_471,
                    _ => u32::from(input.u16()),
                };
                let mut count = total_len.div_ceil(fragment_size.max(1));
                if op & 0x40 != 0 {
                    count = input.u32();
                }
                let index = input.u32() % count.max(1);
                let header = FragmentHeader {
                    stream,
                    frame,
                    index,
                    count,
                    total_len,
                    fragment_size,
                };
                let payload_len = if header.check().is_ok() && op & 0x80 == 0 {
                    header.payload_len()
                } else {
                    usize::from(input.u8())
                };
                let fill = input.u8();
                let mut d = header.encode().to_vec();
                d.resize(d.len() + payload_len, fill);
                run.feed(&d);
            }
            // A genuine fragment of the other stream, or of the right stream but cut at
            // another MTU (inconsistent with the frame's genuine fragments).
            6 => {
                let frame = run.base + u64::from(input.u8() % 8);
                let index = u32::from(input.u16());
                let d = if op & 0x10 != 0 {
                    run.genuine_fragment(OTHER_STREAM, frame, index)
                } else {
                    let (message, mtu) = run.genuine(frame).clone();
                    let other = MTUS[(MTUS.iter().position(|&m| m == mtu).unwrap() + 1) % 4];
                    let f = Fragmenter::new(&message, STREAM, frame, other).unwrap();
                    f.fragment(index % f.fragment_count()).unwrap().to_vec()
                };
                run.feed(&d);
            }
            7 => {
                run.r.handle_timeout(run.now);
                run.check();
            }
            // The window of frame numbers moves on.
            8 => run.base += u64::from(input.u8() % 4),
            // Reset: adopt the next stream seen, or pin one.
            _ => {
                let stream = match input.u8() % 3 {
                    0 => None,
                    1 => Some(STREAM),
                    _ => Some(OTHER_STREAM),
                };
                run.r.reset(stream);
                assert_eq!(run.r.stream(), stream);
                assert_eq!(run.r.last_delivered(), None);
                run.last = None;
                run.check();
            }
        }
    }
    run.finish()
}
