//! Putting fragments back together: the [`Reassembler`], sans IO.

use super::*;

/// The limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblerConfig {
    /// How long an incomplete frame waits for its missing fragments, counted from its first
    /// fragment, nanoseconds ([`DEFAULT_DEADLINE_NS`]). Keep it above the time a paced
    /// sender takes to send the largest frame.
    pub deadline_ns: u64,
    /// Most incomplete frames held at once, at least 1 ([`DEFAULT_MAX_FRAMES`]).
    pub max_frames: usize,
    /// Most bytes of incomplete frames held at once, at least 1 ([`DEFAULT_MAX_BYTES`]):
    /// the sum of their declared total lengths (buffers are allocated whole when a frame's
    /// first fragment arrives). A frame declaring more is refused. The bitmaps of received
    /// fragments add at most 1/4320 of it.
    pub max_bytes: usize,
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        ReassemblerConfig {
            deadline_ns: DEFAULT_DEADLINE_NS,
            max_frames: DEFAULT_MAX_FRAMES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A whole message out of a [`Reassembler`].
#[derive(Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// The stream it came on.
    pub stream: u32,
    /// Its frame number (strictly above every frame delivered before in this stream).
    pub frame: u64,
    /// The message: exactly `total_len` bytes, to give to [`crate::wire::parse`].
    pub message: Vec<u8>,
}

impl fmt::Debug for Reassembled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembled")
            .field("stream", &self.stream)
            .field("frame", &self.frame)
            .field("message_len", &self.message.len())
            .finish()
    }
}

/// What a [`Reassembler`] did with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// The datagram completed a frame: here is its message.
    Complete(Reassembled),
    /// Stored; its frame still misses fragments.
    Buffered,
    /// This fragment of its frame is already held: ignored.
    Duplicate,
    /// Its frame was already delivered, superseded by a newer one, or abandoned (timed out,
    /// evicted, inconsistent): ignored.
    Late,
    /// A fragment of another stream than the one being reassembled: ignored.
    OtherStream(u32),
    /// Its frame declares more bytes than [`ReassemblerConfig::max_bytes`]: refused.
    TooLarge(u32),
    /// Its frame is older than every frame held while the limits are reached: it was
    /// abandoned, as the oldest is.
    Evicted,
    /// Its count, total length or fragment size disagree with the first fragment of its
    /// frame: the whole frame was dropped.
    Inconsistent,
    /// Not a valid fragment.
    Invalid(DatagramError),
}

/// A [`Reassembler`]'s counters. Frame counters count frames, datagram counters datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReassemblyStats {
    /// Frames delivered whole.
    pub completed: u64,
    /// Incomplete frames dropped at their deadline.
    pub dropped_timeout: u64,
    /// Incomplete frames dropped because a newer frame completed (or [`Reassembler::reset`]
    /// discarded them).
    pub dropped_superseded: u64,
    /// Incomplete frames dropped to keep within the frame and byte limits, the oldest first
    /// (a newcomer older than all held frames counts here too).
    pub dropped_evicted: u64,
    /// Frames dropped because a fragment disagreed with their first one.
    pub dropped_inconsistent: u64,
    /// Datagrams: fragments already held.
    pub duplicates: u64,
    /// Datagrams: fragments of frames delivered, superseded or abandoned.
    pub late: u64,
    /// Datagrams: fragments of another stream.
    pub other_stream: u64,
    /// Datagrams: fragments of frames above the byte limit.
    pub too_large: u64,
    /// Datagrams: not valid fragments.
    pub invalid: u64,
    /// Incomplete frames held now.
    pub frames_held: usize,
    /// Bytes of incomplete frames held now (their declared total lengths).
    pub bytes_held: usize,
    /// Highest `bytes_held` so far.
    pub bytes_held_max: usize,
}

/// One incomplete frame.
struct Partial {
    frame: u64,
    total_len: u32,
    fragment_size: u32,
    count: u32,
    received: u32,
    /// One bit per fragment index: received.
    have: Vec<u64>,
    buf: Vec<u8>,
    deadline: u64,
}

impl Partial {
    fn has(&self, index: u32) -> bool {
        self.have[index as usize / 64] & (1 << (index % 64)) != 0
    }

    fn mark(&mut self, index: u32) {
        self.have[index as usize / 64] |= 1 << (index % 64);
        self.received += 1;
    }
}

/// How many abandoned frame numbers are remembered, so that their late fragments do not
/// start them again.
const ABANDONED_MEMORY: usize = 64;

/// Why a held frame is dropped.
#[derive(Clone, Copy)]
enum DropReason {
    Timeout,
    Superseded,
    Evicted,
    Inconsistent,
}

/// Puts fragments back together into messages, sans IO: the caller feeds it every fragment
/// datagram it receives with the current time, and gets whole messages back.
///
/// Time is nanoseconds on any monotonic clock the caller picks (e.g. the nanoseconds since
/// its start); a time earlier than one already seen counts as that one.
///
/// Calling order, as in quinn-proto: for each datagram received,
/// [`handle_datagram`](Self::handle_datagram) (or, after the caller's own [`parse`],
/// [`handle_fragment`](Self::handle_fragment)); whenever [`poll_timeout`](Self::poll_timeout)
/// passes, [`handle_timeout`](Self::handle_timeout), which only frees memory (nothing is
/// delivered from a timeout). After a new [`Accepted`], [`reset`](Self::reset) to its stream.
///
/// Rules:
///
/// * Frames come out strictly increasing: a fragment of a frame at or below the last one
///   delivered is [`Outcome::Late`]. When a frame completes, every older incomplete frame is
///   dropped (superseded): fewer frames, never older ones.
/// * An incomplete frame is dropped at its deadline (its first fragment's time plus
///   [`ReassemblerConfig::deadline_ns`]); the reassembler never waits longer.
/// * Duplicates are ignored; fragments of a frame may come in any order.
/// * At most [`ReassemblerConfig::max_frames`] incomplete frames and
///   [`ReassemblerConfig::max_bytes`] declared bytes are held; to admit a new frame, the
///   oldest are evicted first (the newcomer itself, if it is the oldest). A frame declaring
///   more than `max_bytes` is refused.
/// * A fragment whose count, total length or fragment size disagree with the first one of
///   its frame drops that frame.
/// * Dropped frames are remembered (the last 64), so their late fragments do not start them
///   again.
/// * The stream is the one given to [`reset`](Self::reset), or else the first one seen;
///   fragments of other streams are ignored.
pub struct Reassembler {
    config: ReassemblerConfig,
    stream: Option<u32>,
    last_delivered: Option<u64>,
    partials: Vec<Partial>,
    abandoned: [u64; ABANDONED_MEMORY],
    abandoned_len: usize,
    abandoned_next: usize,
    now: u64,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// An empty reassembler that adopts the stream of the first fragment it gets. Limits of
    /// 0 are taken as 1.
    pub fn new(config: ReassemblerConfig) -> Self {
        let config = ReassemblerConfig {
            max_frames: config.max_frames.max(1),
            max_bytes: config.max_bytes.max(1),
            ..config
        };
        Reassembler {
            config,
            stream: None,
            last_delivered: None,
            partials: Vec::with_capacity(config.max_frames.min(64)),
            abandoned: [0; ABANDONED_MEMORY],
            abandoned_len: 0,
            abandoned_next: 0,
            now: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ReassemblerConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// The stream being reassembled, once known.
    pub fn stream(&self) -> Option<u32> {
        self.stream
    }

    /// The last frame delivered in this stream.
    pub fn last_delivered(&self) -> Option<u64> {
        self.last_delivered
    }

    /// Drops every incomplete frame (counted as superseded), forgets the frames delivered
    /// and abandoned, and from now on takes only `stream` (or, with `None`, the first
    /// stream seen). Call it with the stream of each new [`Accepted`]; a restarted server
    /// has a new stream whose frames may start again from 0.
    pub fn reset(&mut self, stream: Option<u32>) {
        self.stats.dropped_superseded += self.partials.len() as u64;
        self.partials.clear();
        self.update_held();
        self.stream = stream;
        self.last_delivered = None;
        self.abandoned_len = 0;
        self.abandoned_next = 0;
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next: the earliest
    /// deadline of an incomplete frame.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.partials.iter().map(|p| p.deadline).min()
    }

    /// Drops the incomplete frames whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        let expired = |p: &Partial| p.deadline <= now;
        if self.partials.iter().any(expired) {
            self.drop_where(DropReason::Timeout, expired);
        }
    }

    /// Parses `datagram` as a fragment and handles it (see
    /// [`handle_fragment`](Self::handle_fragment)); anything else is
    /// [`Outcome::Invalid`].
    pub fn handle_datagram(&mut self, now: u64, datagram: &[u8]) -> Outcome {
        self.handle_timeout(now);
        match parse_fragment(datagram) {
            Ok(fragment) => self.handle_fragment(now, &fragment),
            Err(error) => {
                self.stats.invalid += 1;
                Outcome::Invalid(error)
            }
        }
    }

    /// Handles one fragment received at `now` (a fragment from [`parse`], whose header is
    /// checked; a header built by hand is checked here too).
    pub fn handle_fragment(&mut self, now: u64, fragment: &Fragment<'_>) -> Outcome {
        self.handle_timeout(now);
        let h = &fragment.header;
        let valid = h.check().map_err(DatagramError::from).and_then(|()| {
            if fragment.payload.len() == h.payload_len() {
                Ok(())
            } else {
                Err(FragmentError::PayloadLength {
                    expected: h.payload_len(),
                    actual: fragment.payload.len(),
                }
                .into())
            }
        });
        if let Err(error) = valid {
            self.stats.invalid += 1;
            return Outcome::Invalid(error);
        }
        match self.stream {
            Some(stream) if stream != h.stream => {
                self.stats.other_stream += 1;
                return Outcome::OtherStream(h.stream);
            }
            Some(_) => {}
            None => self.stream = Some(h.stream),
        }
        if self.last_delivered.is_some_and(|last| h.frame <= last) || self.is_abandoned(h.frame) {
            self.stats.late += 1;
            return Outcome::Late;
        }
        if h.total_len as usize > self.config.max_bytes {
            self.stats.too_large += 1;
            return Outcome::TooLarge(h.total_len);
        }

        let at = match self.partials.iter().position(|p| p.frame == h.frame) {
            Some(at) => {
                let p = &self.partials[at];
                if (p.total_len, p.fragment_size, p.count)
                    != (h.total_len, h.fragment_size, h.count)
                {
                    let frame = h.frame;
                    self.drop_where(DropReason::Inconsistent, |p| p.frame == frame);
                    return Outcome::Inconsistent;
                }
                if p.has(h.index) {
                    self.stats.duplicates += 1;
                    return Outcome::Duplicate;
                }
                at
            }
            // A one-fragment frame is complete at once and never held.
            None if h.count == 1 => {
                return self.deliver(h.frame, fragment.payload.to_vec());
            }
            None => match self.admit(h) {
                Some(at) => at,
                None => return Outcome::Evicted,
            },
        };

        let p = &mut self.partials[at];
        let offset = h.offset();
        p.buf[offset..offset + fragment.payload.len()].copy_from_slice(fragment.payload);
        p.mark(h.index);
        if p.received < p.count {
            return Outcome::Buffered;
        }
        let done = self.partials.swap_remove(at);
        self.update_held();
        self.deliver(done.frame, done.buf)
    }

    /// Makes room for a new frame and holds it; `None` if the newcomer is the one evicted.
    fn admit(&mut self, h: &FragmentHeader) -> Option<usize> {
        let needed = h.total_len as usize;
        loop {
            let fits = self.partials.len() < self.config.max_frames
                && self.stats.bytes_held + needed <= self.config.max_bytes;
            if fits {
                break;
            }
            // Not empty: an empty set holds 0 bytes and fewer than max_frames (≥ 1) frames,
            // and the newcomer is at most max_bytes.
            let oldest = self.partials.iter().map(|p| p.frame).min()?;
            if oldest > h.frame {
                self.stats.dropped_evicted += 1;
                self.remember_abandoned(h.frame);
                return None;
            }
            self.drop_where(DropReason::Evicted, |p| p.frame == oldest);
        }
        self.partials.push(Partial {
            frame: h.frame,
            total_len: h.total_len,
            fragment_size: h.fragment_size,
            count: h.count,
            received: 0,
            have: vec![0; (h.count as usize).div_ceil(64)],
            buf: vec![0; needed],
            deadline: self.now.saturating_add(self.config.deadline_ns),
        });
        self.update_held();
        Some(self.partials.len() - 1)
    }

    /// Delivers a whole frame: older incomplete frames are superseded.
    fn deliver(&mut self, frame: u64, message: Vec<u8>) -> Outcome {
        self.last_delivered = Some(frame);
        self.stats.completed += 1;
        if self.partials.iter().any(|p| p.frame < frame) {
            self.drop_where(DropReason::Superseded, |p| p.frame < frame);
        }
        Outcome::Complete(Reassembled {
            stream: self.stream.unwrap_or_default(),
            frame,
            message,
        })
    }

    /// Drops the held frames `which` selects, counting them under `why`.
    fn drop_where(&mut self, why: DropReason, which: impl Fn(&Partial) -> bool) {
        let mut dropped = Vec::new();
        self.partials.retain(|p| {
            let drop = which(p);
            if drop {
                dropped.push(p.frame);
            }
            !drop
        });
        let counter = match why {
            DropReason::Timeout => &mut self.stats.dropped_timeout,
            DropReason::Superseded => &mut self.stats.dropped_superseded,
            DropReason::Evicted => &mut self.stats.dropped_evicted,
            DropReason::Inconsistent => &mut self.stats.dropped_inconsistent,
        };
        *counter += dropped.len() as u64;
        if !matches!(why, DropReason::Superseded) {
            // Superseded frames are below the last delivered one: already refused as late.
            for frame in dropped {
                self.remember_abandoned(frame);
            }
        }
        self.update_held();
    }

    fn remember_abandoned(&mut self, frame: u64) {
        self.abandoned[self.abandoned_next] = frame;
        self.abandoned_next = (self.abandoned_next + 1) % ABANDONED_MEMORY;
        self.abandoned_len = (self.abandoned_len + 1).min(ABANDONED_MEMORY);
    }

    fn is_abandoned(&self, frame: u64) -> bool {
        self.abandoned[..self.abandoned_len].contains(&frame)
    }

    fn update_held(&mut self) {
        let held: usize = self.partials.iter().map(|p| p.buf.len()).sum();
        self.stats.frames_held = self.partials.len();
        self.stats.bytes_held = held;
        self.stats.bytes_held_max = self.stats.bytes_held_max.max(held);
    }
}

impl fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembler")
            .field("config", &self.config)
            .field("stream", &self.stream)
            .field("last_delivered", &self.last_delivered)
            .field("frames_held", &self.partials.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
