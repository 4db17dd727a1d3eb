//! The consumer side: attaching to a ring, reading the newest or the next multi-frame
//! zero-copy or by copy, waiting without spinning, and following the ring across producer
//! restarts.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use camring_protocol::layout::{
    self, CameraEntry, SlotHeader, Superblock, MAX_CAMERAS, MAX_FRAME, MAX_READERS,
    SLOT_OFF_CAMERAS, SLOT_OFF_HEADER, STATE_INIT, STATE_LIVE, STATE_REPLACED, STATE_STOPPED,
};
use zerocopy::FromBytes;

use crate::error::{OpenError, ReadError};
use crate::racy::SharedBytes;
use crate::segment::{path_of, pid_alive, valid_name, MapError, Segment};
use crate::{notify, seqlock};

/// Which frame a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// The newest published frame, skipping any in between.
    #[default]
    Latest,
    /// The frame after the last one returned; frames overwritten before they could be
    /// read are counted as lapped.
    Next,
}

/// What a reader has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Frames handed out, less those that [`Frame::validate`] (or [`Frame::copy_to`])
    /// then found overwritten: those count as lapped (or torn) instead.
    pub frames: u64,
    /// Reads that a concurrent write invalidated (discarded).
    pub torn: u64,
    /// Frames lost because the producer overwrote them before this reader got to them.
    pub lapped: u64,
    /// Frames passed over on purpose in [`ReadMode::Latest`].
    pub skipped: u64,
    /// Slots whose consistent header failed validation (a hostile or corrupt ring).
    pub corrupt: u64,
    /// Producer restarts (new generation, in place or by a new segment) followed.
    pub resyncs: u64,
}

/// The producer's state as a reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerState {
    /// A producer holds the ring and publishes.
    Live {
        /// Its pid.
        pid: u32,
    },
    /// The producer stopped cleanly.
    Stopped,
    /// The producer died (its lock is gone) without stopping.
    Dead {
        /// The pid it had.
        pid: u32,
    },
    /// The segment was replaced by a new one; call [`Reader::follow`].
    Replaced,
}

/// What [`Reader::follow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Nothing changed.
    Same,
    /// A new producer took the segment over in place (new generation).
    NewGeneration,
    /// The name now refers to a new segment, which the reader attached to.
    Reattached,
    /// The segment is gone and nothing replaced it yet; keep calling.
    Gone,
}

/// An attached reader of one ring. Reads take `&mut self`; a thread that wants its own
/// position and counts opens its own reader.
#[derive(Debug)]
pub struct Reader {
    seg: Arc<Segment>,
    name: String,
    path: PathBuf,
    /// The frame the next read in `Next` mode wants; `Latest` wants anything at or after it.
    next: u64,
    generation: u64,
    stats: ReaderStats,
    /// Torn and lapped reads found by `Frame::validate`, after the frame was handed out.
    late: LateCounts,
    spin: Duration,
    table_index: Option<usize>,
    /// The segment state and generation `wait` last reported: it returns once when either
    /// changes, then sleeps again (whether or not the caller calls `follow`).
    wait_state: AtomicU32,
    wait_generation: AtomicU64,
}

fn open_file(name: &str) -> Result<File, OpenError> {
    if !valid_name(name) {
        return Err(OpenError::InvalidName(name.to_owned()));
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path_of(name))
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound(name.to_owned()),
            io::ErrorKind::PermissionDenied => OpenError::PermissionDenied(name.to_owned()),
            _ => OpenError::Io {
                name: name.to_owned(),
                source: e,
            },
        })
}

fn attach(name: &str) -> Result<Segment, OpenError> {
    let file = open_file(name)?;
    let seg = Segment::open_existing(file).map_err(|e| open_error(name, e))?;
    ready(name, seg)
}

fn open_error(name: &str, e: MapError) -> OpenError {
    match e {
        MapError::Short(actual) => OpenError::Layout {
            name: name.to_owned(),
            source: layout::LayoutError::Truncated {
                expected: layout::SUPERBLOCK_SIZE,
                actual,
            },
        },
        MapError::Layout(source, _) => OpenError::Layout {
            name: name.to_owned(),
            source,
        },
        MapError::Io(source) => OpenError::Io {
            name: name.to_owned(),
            source,
        },
    }
}

/// `seg`, unless its producer is still setting it up.
fn ready(name: &str, seg: Segment) -> Result<Segment, OpenError> {
    // SYNC POINT: Acquire pairs with the producer's Release store of the state after it
    // wrote the superblock.
    if seg.live().state.load(Ordering::Acquire) == STATE_INIT {
        return Err(OpenError::Initializing(name.to_owned()));
    }
    Ok(seg)
}

impl Reader {
    /// Attaches to ring `name`. Starts at the newest frame.
    pub fn open(name: &str) -> Result<Reader, OpenError> {
        Ok(Reader::over(name, attach(name)?))
    }

    /// Attaches to the in-process ring of `writer` (`Writer::create_heap`, unit tests): a
    /// segment of its own over the writer's heap region, validated as [`Reader::open`]
    /// validates a file. The writer's creator took on the region's contract
    /// (`Segment::heap`) for this reader too.
    #[cfg(test)]
    pub(crate) fn open_heap(writer: &crate::Writer) -> Result<Reader, OpenError> {
        let name = writer.name();
        let seg = writer
            .segment()
            .heap_attach()
            .map_err(|e| open_error(name, e))?;
        Ok(Reader::over(name, ready(name, seg)?))
    }

    /// The reader's own segment (unit tests look at its words).
    #[cfg(test)]
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    fn over(name: &str, seg: Segment) -> Reader {
        let mut reader = Reader {
            seg: Arc::new(seg),
            name: name.to_owned(),
            path: path_of(name),
            next: 0,
            generation: 0,
            stats: ReaderStats::default(),
            late: LateCounts::default(),
            spin: Duration::ZERO,
            table_index: None,
            wait_state: AtomicU32::new(STATE_LIVE),
            wait_generation: AtomicU64::new(0),
        };
        reader.reset_position();
        reader.register();
        reader
    }

    /// Attaches to ring `name`, retrying for up to `timeout` while it does not exist yet or
    /// is being set up.
    pub fn open_wait(name: &str, timeout: Duration) -> Result<Reader, OpenError> {
        let deadline = Instant::now() + timeout;
        loop {
            match Reader::open(name) {
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    fn reset_position(&mut self) {
        self.generation = self.seg.live().generation.load(Ordering::Relaxed);
        self.note_seen();
        let head = self.head();
        self.next = head.saturating_sub(1);
    }

    /// Claims an entry of the reader table (for `camring ls`); best effort.
    fn register(&mut self) {
        let me = std::process::id();
        for i in 0..MAX_READERS {
            let pid = self.seg.reader_pid(i);
            let cur = pid.load(Ordering::Relaxed);
            if (cur == 0 || (cur != me && !pid_alive(cur)))
                // SYNC POINT: Relaxed: the table is advisory and holds no data to publish.
                && pid.compare_exchange(cur, me, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                self.table_index = Some(i);
                return;
            }
        }
    }

    fn unregister(&mut self) {
        if let Some(i) = self.table_index.take() {
            let pid = self.seg.reader_pid(i);
            // SYNC POINT: Relaxed, advisory table (see `register`).
            let _ =
                pid.compare_exchange(std::process::id(), 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ring's layout.
    pub fn layout(&self) -> &Superblock {
        &self.seg.sb
    }

    /// Counts so far.
    pub fn stats(&self) -> ReaderStats {
        let mut s = self.stats;
        // SYNC POINT: Relaxed: a statistics counter, no data depends on it.
        let torn = self.late.torn.load(Ordering::Relaxed);
        // SYNC POINT: Relaxed, as above.
        let lapped = self.late.lapped.load(Ordering::Relaxed);
        // A frame found overwritten after it was handed out was not delivered after all:
        // it moves from `frames` to `lapped` (or `torn`), so that every frame number is
        // counted once in frames, skipped, lapped and corrupt.
        s.frames = s.frames.saturating_sub(torn + lapped);
        s.torn += torn;
        s.lapped += lapped;
        s
    }

    /// Number of frames published so far (the newest is `head() - 1`).
    pub fn head(&self) -> u64 {
        // SYNC POINT: Acquire pairs with the Release store of the head in `commit`.
        self.seg.live().head.load(Ordering::Acquire)
    }

    /// The generation of the producer the reader last synchronised with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Spin for up to `spin` before sleeping in [`Reader::wait`]: lower wake-up latency
    /// (~0.2 µs instead of ~5 µs) for a busy core. Zero (the default) never spins.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Whether a read would find a frame not returned yet.
    pub fn has_new(&self) -> bool {
        let head = self.head();
        head > self.next && head < MAX_FRAME
    }

    /// Blocks until a frame not returned yet is published, the producer's state or
    /// generation changes (call [`Reader::follow`] then), or `timeout` passes; returns
    /// whether one of those happened. Sleeps on a futex (after the optional spin); never
    /// busy-waits while idle.
    pub fn wait(&self, timeout: Duration) -> bool {
        let ready = self.ready_fn();
        let woke = notify::wait_until(&self.seg, ready, Instant::now() + timeout, self.spin);
        self.note_seen();
        woke
    }

    /// Records the state and generation as reported by `wait`.
    fn note_seen(&self) {
        // SYNC POINT: Acquire pairs with the producers' Release stores of the state; the
        // two `wait_*` words are this reader's own bookkeeping (Relaxed).
        let state = self.seg.live().state.load(Ordering::Acquire);
        let generation = self.seg.live().generation.load(Ordering::Relaxed);
        self.wait_state.store(state, Ordering::Relaxed);
        self.wait_generation.store(generation, Ordering::Relaxed);
    }

    /// The condition `wait` waits for, owning what it needs (for the async form).
    fn ready_fn(&self) -> impl Fn() -> bool + Send + 'static {
        let seg = Arc::clone(&self.seg);
        // SYNC POINT: Relaxed: this reader's own bookkeeping, see `note_seen`.
        let state = self.wait_state.load(Ordering::Relaxed);
        let generation = self.wait_generation.load(Ordering::Relaxed);
        let next = self.next;
        move || {
            // SYNC POINT: Acquire pairs with the Release head store in `commit` and the
            // Release state stores of producers; the generation is Relaxed, it is only a
            // hint to call `follow`, which re-reads everything.
            let head = seg.live().head.load(Ordering::Acquire);
            (head > next && head < MAX_FRAME)
                || seg.live().state.load(Ordering::Acquire) != state
                || seg.live().generation.load(Ordering::Relaxed) != generation
        }
    }

    /// The async form of [`Reader::wait`], for tokio: the futex wait runs on tokio's
    /// blocking pool in slices of at most 100 ms, so a dropped future frees its thread soon.
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if (self.ready_fn())() {
                self.note_seen();
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let slice = (deadline - now).min(Duration::from_millis(100));
            let seg = Arc::clone(&self.seg);
            let ready = self.ready_fn();
            let woke = tokio::task::spawn_blocking(move || {
                notify::wait_until(&seg, ready, Instant::now() + slice, Duration::ZERO)
            })
            .await;
            if woke.unwrap_or(false) {
                self.note_seen();
                return true;
            }
        }
    }

    /// What the producer is doing.
    pub fn producer(&self) -> ProducerState {
        // SYNC POINT: Acquire pairs with the producers' Release stores of the state.
        let state = self.seg.live().state.load(Ordering::Acquire);
        let pid = self.seg.live().producer_pid.load(Ordering::Relaxed);
        match state {
            STATE_REPLACED => ProducerState::Replaced,
            STATE_STOPPED => ProducerState::Stopped,
            _ if self.seg.producer_locked() => ProducerState::Live { pid },
            _ => ProducerState::Dead { pid },
        }
    }

    /// Age of the producer's last heartbeat (its last publish), in nanoseconds.
    pub fn heartbeat_age_ns(&self) -> u64 {
        let hb = self.seg.live().heartbeat.load(Ordering::Relaxed);
        crate::clock::now_ns().saturating_sub(hb)
    }

    /// Follows producer restarts: notices a new generation in place, or a new segment
    /// under the ring's name (a producer that replaced it, or one started after `rm`), and
    /// attaches to it. Readers call it when frames stop coming; it costs a `stat`.
    pub fn follow(&mut self) -> Result<Follow, OpenError> {
        // What follow sees, `wait` need not report again.
        self.note_seen();
        let generation = self.seg.live().generation.load(Ordering::Relaxed);
        // SYNC POINT: Acquire pairs with the producers' Release stores of the state.
        let state = self.seg.live().state.load(Ordering::Acquire);
        // A heap-backed ring (unit tests) has no file: no name leads to it, so nothing
        // replaces it (and there is nothing to `stat`).
        let found = self
            .seg
            .ino()
            .map(|ino| (ino, std::fs::metadata(&self.path)));
        let moved = match found {
            None => false,
            Some((ino, Ok(m))) => m.ino() != ino,
            Some((_, Err(_))) => {
                if state == STATE_LIVE && generation != self.generation {
                    return Ok(self.generation_changed(generation));
                }
                // Remember what we saw, so that `wait` sleeps until something changes.
                self.generation = generation;
                return Ok(Follow::Gone);
            }
        };
        if !moved && state == STATE_REPLACED {
            // The old segment is marked replaced before the new one is renamed over the
            // name (docs/ring.md §11.7): the name still leads here, so re-opening it would
            // attach to this dead segment again and deliver its newest frame twice.
            return Ok(Follow::Gone);
        }
        if moved {
            match attach(&self.name) {
                // Raced with a rename back to the same segment: nothing new yet.
                Ok(seg) if seg.ino() == self.seg.ino() => return Ok(Follow::Gone),
                Ok(seg) => {
                    self.unregister();
                    self.seg = Arc::new(seg);
                    self.reset_position();
                    self.register();
                    self.stats.resyncs += 1;
                    return Ok(Follow::Reattached);
                }
                Err(e) if e.is_transient() => return Ok(Follow::Gone),
                Err(e) => return Err(e),
            }
        }
        if generation != self.generation {
            return Ok(self.generation_changed(generation));
        }
        Ok(Follow::Same)
    }

    fn generation_changed(&mut self, generation: u64) -> Follow {
        self.generation = generation;
        self.stats.resyncs += 1;
        let head = self.head();
        if self.next > head {
            self.next = head.saturating_sub(1);
        }
        Follow::NewGeneration
    }

    /// Reads a frame without copying it: the newest ([`ReadMode::Latest`]) or the one
    /// after the last returned ([`ReadMode::Next`]). `Ok(None)` when there is nothing new.
    ///
    /// The returned [`Frame`]'s header and camera entries are a validated copy; its
    /// payloads are views into shared memory that the producer may overwrite at any time:
    /// trust what you computed from them only after [`Frame::validate`] succeeds.
    pub fn try_read(&mut self, mode: ReadMode) -> Result<Option<Frame<'_>>, ReadError> {
        let slots = u64::from(self.seg.sb.slot_count);
        let mut last_err = ReadError::Torn;
        for _ in 0..4 {
            let head = self.head();
            if head <= self.next || head >= MAX_FRAME {
                return Ok(None);
            }
            let n = match mode {
                ReadMode::Latest => {
                    self.stats.skipped += head - 1 - self.next;
                    self.next = head - 1; // a retry must not count these frames again
                    head - 1
                }
                ReadMode::Next => {
                    // Frames older than this may already be overwritten (the writer may be
                    // writing frame `head` into the slot of `head - slots`).
                    let oldest = (head + 1).saturating_sub(slots);
                    if self.next < oldest {
                        self.stats.lapped += oldest - self.next;
                        self.next = oldest;
                    }
                    self.next
                }
            };
            match self.read_slot(n) {
                Ok((begin, slot_off, header, cameras)) => {
                    self.next = n + 1;
                    self.stats.frames += 1;
                    return Ok(Some(Frame {
                        seg: &self.seg,
                        slot_off,
                        begin,
                        header,
                        cameras,
                        late: &self.late,
                    }));
                }
                Err(ReadError::Lapped) => {
                    self.stats.lapped += 1;
                    self.next = n + 1;
                    last_err = ReadError::Lapped;
                }
                Err(ReadError::Torn) => {
                    self.stats.torn += 1;
                    last_err = ReadError::Torn;
                }
                Err(e @ ReadError::Corrupt(_)) => {
                    // A consistent but invalid header: skip this frame for good.
                    self.stats.corrupt += 1;
                    self.next = n + 1;
                    return Err(e);
                }
            }
        }
        // The slot stays torn (a producer died mid-write, or a hostile ring): move past it
        // so the caller waits for the next frame instead of spinning here.
        if last_err == ReadError::Torn {
            let skip_to = self.next.max(self.head().min(MAX_FRAME));
            self.stats.lapped += skip_to - self.next;
            self.next = skip_to;
        }
        Err(last_err)
    }

    /// Copies slot `n`'s header out and validates it.
    pub(crate) fn read_slot(
        &self,
        n: u64,
    ) -> Result<(u64, usize, SlotHeader, [CameraEntry; MAX_CAMERAS]), ReadError> {
        let sb = &self.seg.sb;
        let slot_off = sb.slot_offset(n % u64::from(sb.slot_count)) as usize;
        let seq = self.seg.slot_seq(slot_off);
        let begin = seqlock::read_begin(seq);
        let want = seqlock::complete(n);
        if begin > want {
            return Err(ReadError::Lapped);
        }
        if begin != want {
            return Err(ReadError::Torn);
        }
        let mut hbytes = [0u8; size_of::<SlotHeader>()];
        let mut cbytes = [0u8; MAX_CAMERAS * size_of::<CameraEntry>()];
        self.seg.copy_out(slot_off + SLOT_OFF_HEADER, &mut hbytes);
        // Only the entries the ring's layout allows and the header claims (a larger claim
        // fails validation below anyway); the rest stay zero. `read_from_bytes`, a copy:
        // a byte array has alignment 1, so a `&SlotHeader` into it (`ref_from_bytes`)
        // would fail whenever the array is not 8-aligned (Miri found that).
        let claimed = SlotHeader::read_from_bytes(&hbytes)
            .expect("sizes match")
            .camera_count;
        let count = claimed.min(sb.camera_count).min(MAX_CAMERAS as u32) as usize;
        let used = &mut cbytes[..count * size_of::<CameraEntry>()];
        self.seg.copy_out(slot_off + SLOT_OFF_CAMERAS, used);
        if !seqlock::read_validate(seq, begin) {
            return Err(if seq.load(Ordering::Relaxed) > want {
                ReadError::Lapped
            } else {
                ReadError::Torn
            });
        }
        let header = SlotHeader::read_from_bytes(&hbytes).expect("sizes match");
        let cameras = <[CameraEntry; MAX_CAMERAS]>::read_from_bytes(&cbytes).expect("sizes match");
        layout::validate_slot(&header, &cameras, n, sb.slot_size, sb.camera_count)?;
        Ok((begin, slot_off, header, cameras))
    }

    /// Reads a frame like [`Reader::try_read`] and copies it into `out`, returning `true`
    /// only for a copy the seqlock validated after copying. `out`'s buffers are reused.
    pub fn read_copy(&mut self, mode: ReadMode, out: &mut OwnedFrame) -> Result<bool, ReadError> {
        let Some(frame) = self.try_read(mode)? else {
            return Ok(false);
        };
        frame.copy_to(out)?;
        Ok(true)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Frames found torn or lapped after they were handed out ([`Frame::validate`]).
#[derive(Debug, Default)]
struct LateCounts {
    torn: AtomicU64,
    lapped: AtomicU64,
}

/// A zero-copy view of one multi-frame in the ring.
///
/// The header and camera entries were copied out and validated (every payload lies inside
/// the slot); the payloads are racy views ([`SharedBytes`]) into the shared segment that
/// the producer may overwrite at any time. Whatever is computed from them is trusted only
/// once [`Frame::validate`] returns `Ok` after the computation; [`Frame::read_with`] does
/// both in one call, and [`Frame::copy_to`] copies the frame and validates the copy.
#[derive(Debug)]
pub struct Frame<'a> {
    seg: &'a Segment,
    slot_off: usize,
    begin: u64,
    header: SlotHeader,
    cameras: [CameraEntry; MAX_CAMERAS],
    late: &'a LateCounts,
}

impl<'a> Frame<'a> {
    /// The frame number.
    pub fn number(&self) -> u64 {
        self.header.frame
    }

    /// The slot header (validated copy).
    pub fn header(&self) -> &SlotHeader {
        &self.header
    }

    /// The camera entries (validated copies).
    pub fn cameras(&self) -> &[CameraEntry] {
        &self.cameras[..self.header.camera_count as usize]
    }

    /// Camera `index`'s payload, in place in shared memory: a racy view whose bytes may
    /// change under you (see [`Frame::validate`]). Panics if `index` is not below the
    /// camera count.
    pub fn payload(&self, index: usize) -> SharedBytes<'a> {
        let c = &self.cameras()[index];
        if c.length == 0 {
            // A missing camera's offset is not validated: do not touch it.
            return SharedBytes::empty();
        }
        // Validation guaranteed offset + length <= slot_size, so this is in the slot.
        self.seg
            .bytes(self.slot_off + c.offset as usize, c.length as usize)
    }

    /// Whether the slot still holds this frame, untouched since it was read: call after
    /// using the payloads. `Err` means whatever was computed from them must be discarded:
    /// [`ReadError::Lapped`] if the producer has moved on to a later frame in this slot
    /// (docs/ring.md §8.4 step 8), else [`ReadError::Torn`]. Either is counted in the
    /// reader's stats.
    pub fn validate(&self) -> Result<(), ReadError> {
        let seq = self.seg.slot_seq(self.slot_off);
        if seqlock::read_validate(seq, self.begin) {
            return Ok(());
        }
        // SYNC POINT: Relaxed: which error to report, and statistics counters; no data
        // depends on them.
        if seq.load(Ordering::Relaxed) > self.begin {
            self.late.lapped.fetch_add(1, Ordering::Relaxed);
            Err(ReadError::Lapped)
        } else {
            self.late.torn.fetch_add(1, Ordering::Relaxed);
            Err(ReadError::Torn)
        }
    }

    /// Runs `f` on the frame in place, then validates: `f`'s result only if the slot still
    /// held this frame when it returned. The closure-scoped form of zero-copy reading.
    pub fn read_with<T>(&self, f: impl FnOnce(&Frame<'a>) -> T) -> Result<T, ReadError> {
        let out = f(self);
        self.validate().map(|()| out)
    }

    /// Copies the frame into `out` and validates the copy.
    pub fn copy_to(&self, out: &mut OwnedFrame) -> Result<(), ReadError> {
        out.header = self.header;
        out.cameras.clear();
        out.cameras.extend_from_slice(self.cameras());
        self.copy_payloads(&mut out.payloads);
        self.validate()
    }

    /// Copies every camera's payload into `out` (one buffer per camera, reused), without
    /// validating: the copies are untrusted until [`Frame::validate`] succeeds after this.
    pub fn copy_payloads(&self, out: &mut Vec<Vec<u8>>) {
        out.resize_with(self.cameras().len(), Vec::new);
        for (i, buf) in out.iter_mut().enumerate() {
            buf.clear();
            self.payload(i).extend_vec(buf);
        }
    }
}

/// A multi-frame copied out of the ring and validated.
#[derive(Debug, Clone, Default)]
pub struct OwnedFrame {
    /// The slot header.
    pub header: SlotHeader,
    /// One entry per camera.
    pub cameras: Vec<CameraEntry>,
    /// One payload per camera.
    pub payloads: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn reader_can_move_into_tokio_tasks() {
        // `wait_async` borrows the reader across an await: the future is Send only if the
        // reader is Sync.
        assert_send_sync::<Reader>();
    }
}
