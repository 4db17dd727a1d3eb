//! The producer side: creating or taking over a ring, and writing multi-frames into slots
//! in place through loans.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use camring_protocol::layout::{
    self, CameraEntry, CameraLayout, SlotHeader, Superblock, MAX_CAMERAS, MAX_FRAME, MAX_SLOTS,
    OFF_PRODUCER_PID, OFF_STATE, PAYLOAD_ALIGN, SLOT_HEADER_SIZE, SLOT_OFF_CAMERAS,
    SLOT_OFF_HEADER, STATE_LIVE, STATE_REPLACED, STATE_STOPPED,
};
use rustix::fs::{FallocateFlags, FlockOperation, Mode};
use zerocopy::IntoBytes;

use crate::clock::now_ns;
use crate::error::{CreateError, WriteError};
use crate::segment::{path_of, valid_name, MapError, Segment, SHM_DIR};
use crate::{notify, seqlock};

/// Permissions of a new segment: owner read/write only.
pub const MODE_OWNER: u32 = 0o600;
/// Permissions of a segment shared with the owner's group.
pub const MODE_GROUP: u32 = 0o660;

/// The layout and options of a ring a producer creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingConfig {
    /// Number of slots (at least 2).
    pub slots: u32,
    /// Nominal layout of each camera; `max_len` sizes the slot.
    pub cameras: Vec<CameraLayout>,
    /// Nominal group frame rate in millihertz (informational).
    pub fps_millihz: u32,
    /// Permission bits of the segment file ([`MODE_OWNER`] by default).
    pub mode: u32,
}

impl RingConfig {
    /// A configuration with owner-only permissions.
    pub fn new(slots: u32, cameras: Vec<CameraLayout>, fps_millihz: u32) -> Self {
        RingConfig {
            slots,
            cameras,
            fps_millihz,
            mode: MODE_OWNER,
        }
    }

    fn superblock(&self) -> Result<Superblock, CreateError> {
        if self.slots < 2 || self.slots > MAX_SLOTS {
            return Err(CreateError::InvalidLayout("slot count must be 2..=65536"));
        }
        if self.cameras.is_empty() || self.cameras.len() > MAX_CAMERAS {
            return Err(CreateError::InvalidLayout("camera count must be 1..=16"));
        }
        if self.cameras.iter().any(|c| c.max_len == 0) {
            return Err(CreateError::InvalidLayout(
                "a camera has no room (max_len 0)",
            ));
        }
        if self.mode & !0o777 != 0 {
            return Err(CreateError::InvalidLayout(
                "mode must be permission bits only",
            ));
        }
        let sb = Superblock::new(
            self.slots,
            layout::slot_size_for(&self.cameras),
            self.fps_millihz,
            &self.cameras,
        );
        sb.validate(sb.total_size)
            .map_err(|_| CreateError::InvalidLayout("ring would be larger than 1 TiB"))?;
        Ok(sb)
    }
}

/// How the writer came to own its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// There was no segment of that name.
    Created,
    /// A dead producer's segment of the same layout was taken over in place; frame numbers
    /// continue.
    TookOver,
    /// A dead producer's segment of another layout (or a broken one) was replaced.
    Replaced,
}

/// The single producer of a ring. Holds the producer lock (an exclusive `flock` the
/// kernel releases if the process dies). Dropping it stops the ring and removes the
/// segment.
#[derive(Debug)]
pub struct Writer {
    seg: Segment,
    name: String,
    path: PathBuf,
    next: u64,
    generation: u64,
    origin: Origin,
}

fn io_err(name: &str, source: io::Error) -> CreateError {
    match source.kind() {
        io::ErrorKind::PermissionDenied => CreateError::PermissionDenied(name.to_owned()),
        _ => CreateError::Io {
            name: name.to_owned(),
            source,
        },
    }
}

/// Takes the producer lock, retrying briefly: readers probe liveness by taking a shared
/// lock for a few microseconds.
fn lock_exclusive(file: &File) -> bool {
    for _ in 0..100 {
        if rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn same_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Removes a half-made temporary segment unless disarmed.
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

enum Attempt {
    Done(Box<Writer>),
    Retry,
}

impl Writer {
    /// Creates ring `name`, or takes over the segment a dead producer left under that name
    /// (in place if its layout matches, else by replacing it). Refuses if a live producer
    /// owns it.
    pub fn create(name: &str, config: &RingConfig) -> Result<Writer, CreateError> {
        if !valid_name(name) {
            return Err(CreateError::InvalidName(name.to_owned()));
        }
        let sb = config.superblock()?;
        let path = path_of(name);
        for _ in 0..20 {
            let attempt = match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc_o_nofollow())
                .open(&path)
            {
                Ok(file) => Self::take_over(name, &path, file, &sb, config)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Self::create_fresh(name, &path, &sb, config, None, 0)?
                }
                Err(e) => return Err(io_err(name, e)),
            };
            if let Attempt::Done(w) = attempt {
                return Ok(*w);
            }
        }
        Err(CreateError::Io {
            name: name.to_owned(),
            source: io::Error::other(
                "the segment kept changing under us; is another producer starting?",
            ),
        })
    }

    fn take_over(
        name: &str,
        path: &Path,
        file: File,
        sb: &Superblock,
        config: &RingConfig,
    ) -> Result<Attempt, CreateError> {
        if !lock_exclusive(&file) {
            let pid = read_pid(&file).unwrap_or(0);
            return Err(CreateError::ProducerAlive {
                name: name.to_owned(),
                pid,
            });
        }
        if !same_file(path, &file) {
            // Replaced or removed between our open and our lock: look again.
            return Ok(Attempt::Retry);
        }
        let seg = match Segment::open_existing(file.try_clone().map_err(|e| io_err(name, e))?) {
            Ok(seg) => seg,
            Err(MapError::Short(_)) => {
                return Self::create_fresh(name, path, sb, config, Some(file), 0);
            }
            Err(MapError::Layout(_, old)) => {
                // Broken or of another version. If it is a camring segment at all, tell its
                // readers to re-open (the state word keeps its offset in every version; a
                // 4-byte aligned pwrite is seen whole), then replace it.
                if old.magic == layout::MAGIC {
                    let _ = file.write_all_at(&STATE_REPLACED.to_le_bytes(), OFF_STATE as u64);
                }
                return Self::create_fresh(name, path, sb, config, Some(file), 0);
            }
            Err(MapError::Io(e)) => return Err(io_err(name, e)),
        };
        let (seg, old_generation) = match Self::take_over_in_place(seg, name, path, sb) {
            Ok(writer) => return Ok(Attempt::Done(Box::new(writer))),
            Err(old) => *old,
        };
        // Another layout, or broken: tell its readers to re-open, then replace it.
        // SYNC POINT: Release pairs with readers' Acquire load of the state.
        seg.live().state.store(STATE_REPLACED, Ordering::Release);
        notify::wake_all(&seg);
        drop(seg);
        Self::create_fresh(
            name,
            path,
            sb,
            config,
            Some(file),
            old_generation.wrapping_add(1),
        )
    }

    /// Takes over `seg`, whose producer lock this process holds, in place: if its layout is
    /// `sb`'s and it is not marked replaced, claims it with a new generation and continues
    /// its frame numbers. Otherwise hands it back with its generation, to be replaced.
    fn take_over_in_place(
        seg: Segment,
        name: &str,
        path: &Path,
        sb: &Superblock,
    ) -> Result<Writer, Box<(Segment, u64)>> {
        // SYNC POINT: Acquire pairs with the dead producer's Release head store (it is dead,
        // but its stores may still be in flight to this core).
        let head = seg.live().head.load(Ordering::Acquire);
        let old_generation = seg.live().generation.load(Ordering::Relaxed);
        // SYNC POINT: Acquire pairs with producers' Release stores of the state.
        let state = seg.live().state.load(Ordering::Acquire);
        if !(seg.sb.same_layout(sb) && state != STATE_REPLACED && head < MAX_FRAME) {
            return Err(Box::new((seg, old_generation)));
        }
        let generation = claim(&seg, old_generation.wrapping_add(1));
        notify::wake_all(&seg);
        Ok(Writer {
            seg,
            name: name.to_owned(),
            path: path.to_owned(),
            next: head,
            generation,
            origin: Origin::TookOver,
        })
    }

    /// Creates a new segment under a temporary name, sets it up completely, and only then
    /// gives it the ring's name: a reader never sees a half-made segment under that name.
    /// `replacing` is the locked old segment to replace, if any.
    fn create_fresh(
        name: &str,
        path: &Path,
        sb: &Superblock,
        config: &RingConfig,
        replacing: Option<File>,
        min_generation: u64,
    ) -> Result<Attempt, CreateError> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tmp = PathBuf::from(SHM_DIR).join(format!(
            ".camring-tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(config.mode)
            .open(&tmp)
            .map_err(|e| io_err(name, e))?;
        let mut guard = TmpGuard(Some(tmp.clone()));
        // The umask may have cleared bits the caller asked for; set them exactly.
        rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(config.mode))
            .map_err(|e| io_err(name, e.into()))?;
        if !lock_exclusive(&file) {
            return Err(io_err(
                name,
                io::Error::other("cannot lock a fresh segment"),
            ));
        }
        // fallocate makes tmpfs allocate every page now, so a full /dev/shm is a clear
        // error here instead of a SIGBUS at the first write.
        rustix::fs::fallocate(file.as_fd(), FallocateFlags::empty(), 0, sb.total_size).map_err(
            |e| match e {
                rustix::io::Errno::NOSPC => CreateError::NoSpace {
                    name: name.to_owned(),
                    bytes: sb.total_size,
                },
                e => io_err(name, e.into()),
            },
        )?;
        let seg = match Segment::map_fresh(file, sb) {
            Ok(seg) => seg,
            Err(MapError::Io(e)) => return Err(io_err(name, e)),
            Err(_) => {
                return Err(io_err(
                    name,
                    io::Error::other("fresh segment has the wrong size"),
                ))
            }
        };
        seg.prefault_fresh();
        let mut seg = seg;
        seg.write_superblock(sb);
        seg.live().head.store(0, Ordering::Relaxed);
        // Readers cannot open the segment before the rename below publishes its name, and
        // that syscall happens after every store made here, so they see the whole superblock.
        let generation = claim(&seg, min_generation);
        let origin = if replacing.is_some() {
            std::fs::rename(&tmp, path).map_err(|e| io_err(name, e))?;
            Origin::Replaced
        } else {
            match rustix::fs::renameat_with(
                rustix::fs::CWD,
                &tmp,
                rustix::fs::CWD,
                path,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => Origin::Created,
                // Someone created the ring meanwhile: start over (and meet their lock).
                Err(rustix::io::Errno::EXIST) => return Ok(Attempt::Retry),
                Err(e) => return Err(io_err(name, e.into())),
            }
        };
        guard.0 = None;
        drop(replacing);
        Ok(Attempt::Done(Box::new(Writer {
            seg,
            name: name.to_owned(),
            path: path.to_owned(),
            next: 0,
            generation,
            origin,
        })))
    }

    /// A writer of a ring that lives inside this process, on a heap region instead of a
    /// segment file (`Segment::heap`): for the unit tests, which Miri runs (it cannot map
    /// files, `flock` or `fallocate`). Readers attach with [`Reader::open_heap`]. Everything
    /// after the segment's creation is as in [`Writer::create`]'s fresh case: the same
    /// superblock and the same `claim`, so the ring is byte for byte what a file would
    /// hold.
    ///
    /// [`Reader::open_heap`]: crate::Reader::open_heap
    ///
    /// # Safety
    ///
    /// `Segment::heap`'s contract, for as long as the writer or any reader of its ring
    /// lives: no racing access to the region's bytes (drive the writer and its readers from
    /// one thread) and no reader reading bytes a live loan buffer covers.
    #[cfg(test)]
    pub(crate) unsafe fn create_heap(
        name: &str,
        config: &RingConfig,
    ) -> Result<Writer, CreateError> {
        let sb = config.superblock()?;
        // SAFETY: the caller takes on `Segment::heap`'s contract (`# Safety` above).
        let mut seg = unsafe { Segment::heap(&sb) };
        // Zeroed already (like a fresh file), and nothing to pre-fault: no `prefault_fresh`.
        seg.write_superblock(&sb);
        // SYNC POINT: Relaxed, as in `create_fresh`: no reader can attach before this
        // returns (`Reader::open_heap` needs the writer, and whatever hands it to another
        // thread orders these stores before that thread's loads); `claim` ends with the
        // Release state store that `Reader::open_heap`'s Acquire load pairs with.
        seg.live().head.store(0, Ordering::Relaxed);
        let generation = claim(&seg, 0);
        Ok(Writer {
            seg,
            name: name.to_owned(),
            path: path_of(name),
            next: 0,
            generation,
            origin: Origin::Created,
        })
    }

    /// A new producer of the heap-backed ring `reader` reads (`Writer::create_heap`), after
    /// its writer was dropped: [`Writer::create`]'s in-place take-over (new generation,
    /// frame numbers continued), without the file. Refused while a writer lives, or if
    /// `config` is another layout (a heap ring is not replaced).
    ///
    /// # Safety
    ///
    /// `Segment::heap`'s contract, for this writer and the region's readers, for as long as
    /// they live.
    #[cfg(test)]
    pub(crate) unsafe fn take_over_heap(
        reader: &crate::Reader,
        config: &RingConfig,
    ) -> Result<Writer, CreateError> {
        let name = reader.name();
        let sb = config.superblock()?;
        let mut seg = reader
            .segment()
            .heap_attach()
            .map_err(|_| CreateError::InvalidLayout("the heap ring's superblock is invalid"))?;
        if !seg.heap_lock() {
            return Err(CreateError::ProducerAlive {
                name: name.to_owned(),
                // SYNC POINT: Relaxed: only reported in the error.
                pid: seg.live().producer_pid.load(Ordering::Relaxed),
            });
        }
        Self::take_over_in_place(seg, name, &path_of(name), &sb)
            .map_err(|_| CreateError::InvalidLayout("another layout: a heap ring is not replaced"))
    }

    /// The segment, for `Reader::open_heap` (which attaches its own segment to the same
    /// heap region) and the unit tests.
    #[cfg(test)]
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How this writer came to own the segment.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// This producer's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number the next published frame will get.
    pub fn next_frame(&self) -> u64 {
        self.next
    }

    /// The ring's layout.
    pub fn layout(&self) -> &Superblock {
        &self.seg.sb
    }

    /// Payload bytes available in each slot.
    pub fn payload_capacity(&self) -> u64 {
        self.seg.sb.slot_size - SLOT_HEADER_SIZE
    }

    /// Refreshes the liveness heartbeat (publishing does it too).
    pub fn heartbeat(&self) {
        self.seg.live().heartbeat.store(now_ns(), Ordering::Relaxed);
    }

    /// Starts writing the next frame into its slot. Readers see the slot as being written
    /// until [`SlotLoan::commit`]; a loan dropped without commit leaves the slot marked as
    /// being written and the frame number is reused by the next loan.
    pub fn loan(&mut self) -> SlotLoan<'_> {
        let n = self.next;
        let slot_off = self
            .seg
            .sb
            .slot_offset(n % u64::from(self.seg.sb.slot_count)) as usize;
        seqlock::write_begin(self.seg.slot_seq(slot_off), n);
        SlotLoan {
            writer: self,
            frame: n,
            slot_off,
            entries: [CameraEntry::default(); MAX_CAMERAS],
            count: 0,
            used: 0,
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SYNC POINT: Release pairs with readers' Acquire load of the state.
        self.seg
            .live()
            .state
            .store(STATE_STOPPED, Ordering::Release);
        notify::wake_all(&self.seg);
        // A heap-backed ring (unit tests) has no file and no name to remove.
        if let Some(file) = self.seg.file() {
            if same_file(&self.path, file) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Makes this process the segment's producer: a new generation (at least `min_generation`),
/// its pid, start time and heartbeat, then the state LIVE. Returns the generation.
fn claim(seg: &Segment, min_generation: u64) -> u64 {
    let generation = now_ns().max(min_generation);
    seg.live().generation.store(generation, Ordering::Relaxed);
    seg.live()
        .producer_pid
        .store(std::process::id(), Ordering::Relaxed);
    seg.live().producer_start.store(now_ns(), Ordering::Relaxed);
    seg.live().heartbeat.store(now_ns(), Ordering::Relaxed);
    // SYNC POINT: Release pairs with readers' Acquire loads of the state (in `attach`,
    // `producer`, `follow`): a reader that sees LIVE sees the generation and pid above.
    seg.live().state.store(STATE_LIVE, Ordering::Release);
    generation
}

fn read_pid(file: &File) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    file.read_exact_at(&mut b, OFF_PRODUCER_PID as u64).ok()?;
    Some(u32::from_le_bytes(b))
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// One slot on loan to the writer: fill camera payloads in place, then [`commit`].
///
/// [`commit`]: SlotLoan::commit
#[derive(Debug)]
pub struct SlotLoan<'a> {
    writer: &'a mut Writer,
    frame: u64,
    slot_off: usize,
    entries: [CameraEntry; MAX_CAMERAS],
    count: usize,
    used: u64,
}

impl SlotLoan<'_> {
    /// The frame number this slot will publish.
    pub fn frame(&self) -> u64 {
        self.frame
    }

    /// Payload bytes the next camera can still get (after alignment).
    pub fn remaining(&self) -> u64 {
        self.writer
            .payload_capacity()
            .saturating_sub(self.used.next_multiple_of(PAYLOAD_ALIGN))
    }

    /// Appends a camera and returns its payload buffer of `len` bytes to fill in place.
    /// `entry`'s `offset` and `length` are set by the loan.
    pub fn push_camera(&mut self, entry: CameraEntry, len: usize) -> Result<&mut [u8], WriteError> {
        let (offset, len) = self.reserve(entry, len as u64)?;
        self.count += 1;
        Ok(self.payload_mut(offset, len))
    }

    /// Appends a camera whose payload size is known only after writing it (an encoder):
    /// `fill` gets up to `max_len` bytes and returns how many it used.
    pub fn push_camera_with<E: From<WriteError>>(
        &mut self,
        entry: CameraEntry,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let (offset, max) = self.reserve(entry, max_len as u64)?;
        let used = fill(self.payload_mut(offset, max))?;
        let used = used.min(max);
        self.entries[self.count].length = used as u64;
        self.used = offset as u64 - SLOT_HEADER_SIZE + used as u64;
        self.count += 1;
        Ok(used)
    }

    /// Appends several cameras at once, each with room for up to its `max_len` bytes, and
    /// hands all their buffers to `fill` together, so they can be filled in parallel (one
    /// encoder per camera). `fill` returns, per camera, how many bytes it used, or `None`
    /// to leave that camera without an image (it is then flagged missing instead of
    /// repeated, length 0).
    /// Returns how many bytes each camera used.
    pub fn push_cameras_with<E: From<WriteError>>(
        &mut self,
        cameras: &[(CameraEntry, usize)],
        fill: impl FnOnce(&mut [&mut [u8]]) -> Result<Vec<Option<usize>>, E>,
    ) -> Result<Vec<usize>, E> {
        let first = self.count;
        let start = self.used.next_multiple_of(PAYLOAD_ALIGN);
        let used_before = self.used;
        let mut ranges = Vec::with_capacity(cameras.len());
        for &(entry, max_len) in cameras {
            match self.reserve(entry, max_len as u64) {
                Ok(range) => {
                    ranges.push(range);
                    self.count += 1;
                }
                Err(e) => {
                    // Nothing of this batch is kept: the loan is as it was.
                    self.count = first;
                    self.used = used_before;
                    return Err(e.into());
                }
            }
        }
        // One mutable view over everything reserved, split into disjoint camera buffers.
        let base = SLOT_HEADER_SIZE as usize + start as usize;
        let end = SLOT_HEADER_SIZE as usize + self.used as usize;
        let area = self.payload_mut(base, end - base);
        let mut bufs: Vec<&mut [u8]> = Vec::with_capacity(ranges.len());
        let mut rest = area;
        let mut at = base;
        for &(offset, len) in &ranges {
            let (_gap, tail) = rest.split_at_mut(offset - at);
            let (buf, tail) = tail.split_at_mut(len);
            bufs.push(buf);
            rest = tail;
            at = offset + len;
        }
        let used = match fill(&mut bufs) {
            Ok(used) => used,
            Err(e) => {
                self.count = first;
                self.used = used_before;
                return Err(e);
            }
        };
        let mut lens = Vec::with_capacity(ranges.len());
        for (i, &(_, max)) in ranges.iter().enumerate() {
            let e = &mut self.entries[first + i];
            match used.get(i).copied().flatten() {
                Some(n) => {
                    let n = n.min(max);
                    e.length = n as u64;
                    lens.push(n);
                }
                None => {
                    e.length = 0;
                    e.flags = (e.flags & !layout::CAM_REPEATED) | layout::CAM_MISSING;
                    lens.push(0);
                }
            }
        }
        // Trailing room a camera did not use is given back to the slot.
        self.used = self.entries[..self.count]
            .iter()
            .filter(|e| e.length > 0)
            .map(|e| e.offset - SLOT_HEADER_SIZE + e.length)
            .max()
            .unwrap_or(0);
        Ok(lens)
    }

    fn reserve(&mut self, mut entry: CameraEntry, len: u64) -> Result<(usize, usize), WriteError> {
        let max = self.writer.seg.sb.camera_count;
        if self.count >= max as usize {
            return Err(WriteError::TooManyCameras(self.count + 1, max));
        }
        let start = self.used.next_multiple_of(PAYLOAD_ALIGN);
        let capacity = self.writer.payload_capacity();
        if start.saturating_add(len) > capacity {
            return Err(WriteError::SlotFull {
                needed: start.saturating_add(len),
                capacity,
            });
        }
        entry.offset = SLOT_HEADER_SIZE + start;
        entry.length = len;
        self.entries[self.count] = entry;
        self.used = start + len;
        Ok((entry.offset as usize, len as usize))
    }

    fn payload_mut(&mut self, offset_in_slot: usize, len: usize) -> &mut [u8] {
        // SAFETY: the range lies in this loan's slot payload area (`reserve` checked it
        // against the capacity; callers pass a range `reserve` returned, or the span of
        // several). Exclusivity comes from the borrow, not from the ranges: the returned
        // slice borrows `self` mutably, so while it lives no other slice of this loan can
        // exist (each caller makes one view and returns it or splits it with
        // `split_at_mut`), and the loan holds `&mut Writer`, so no other loan, `copy_in` or
        // reference into the writer's mapping can be made either. Readers in this process
        // read the same pages only through their own mappings, by volatile loads
        // (`Segment::bytes`), and readers elsewhere are other processes: neither is an
        // access through this mapping, and the seqlock (odd since `loan`) tells them the
        // bytes are being written.
        unsafe {
            self.writer
                .seg
                .bytes_mut(self.slot_off + offset_in_slot, len)
        }
    }

    /// Publishes the slot: validates the camera entries as a reader would, writes the
    /// header, completes the seqlock and wakes waiting readers. `tick_ns` is the group
    /// clock tick and `spread_ns` the spread of the cameras' capture times.
    pub fn commit(self, tick_ns: u64, spread_ns: u64) -> Result<u64, WriteError> {
        let seg = &self.writer.seg;
        let header = SlotHeader {
            frame: self.frame,
            generation: self.writer.generation,
            tick_ns,
            publish_ns: now_ns(),
            spread_ns,
            camera_count: self.count as u32,
            flags: 0,
            payload_used: self.used,
            reserved: 0,
        };
        layout::validate_slot(
            &header,
            &self.entries,
            self.frame,
            seg.sb.slot_size,
            seg.sb.camera_count,
        )?;
        seg.copy_in(self.slot_off + SLOT_OFF_HEADER, header.as_bytes());
        seg.copy_in(self.slot_off + SLOT_OFF_CAMERAS, self.entries.as_bytes());
        seqlock::write_end(seg.slot_seq(self.slot_off), self.frame);
        // SYNC POINT: Release pairs with the readers' Acquire load of the head: a reader
        // that sees head > n finds slot n complete (or overwritten by a later frame).
        seg.live().head.store(self.frame + 1, Ordering::Release);
        seg.live()
            .heartbeat
            .store(header.publish_ns, Ordering::Relaxed);
        notify::publish(seg);
        self.writer.next = self.frame + 1;
        Ok(self.frame)
    }
}
