//! A mapped ring segment: the file under `/dev/shm`, its mapping, and bounds-checked access
//! to its bytes and atomic words. Every unsafe access to a mapping is in this file and in
//! `racy.rs`, the volatile view of bytes that others may be writing.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use camring_protocol::layout::{
    LayoutError, Superblock, OFF_GENERATION, OFF_HEAD, OFF_HEARTBEAT, OFF_NOTIFY, OFF_PRODUCER_PID,
    OFF_PRODUCER_START, OFF_READERS, OFF_STATE, OFF_WAITERS, READER_ENTRY_SIZE, SLOT_OFF_SEQ,
    SUPERBLOCK_SIZE,
};
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::FlockOperation;
use zerocopy::{FromBytes, FromZeros};

use crate::racy::SharedBytes;

/// The superblock's atomic words, bytes 512..560 of the segment (docs/ring.md §4), as one
/// `repr(C)` struct: [`Segment::live`] hands it out.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct LiveWords {
    /// Bumped by each producer that (re)initialises the ring.
    pub generation: AtomicU64,
    /// The newest published frame number + 1 (0: none yet).
    pub head: AtomicU64,
    /// The producer's last sign of life, ring clock ns.
    pub heartbeat: AtomicU64,
    /// The producer's pid.
    pub producer_pid: AtomicU32,
    /// `STATE_*`.
    pub state: AtomicU32,
    /// The futex word readers sleep on.
    pub notify: AtomicU32,
    /// Readers sleeping (or about to sleep) on `notify`.
    pub waiters: AtomicU32,
    /// The producer's process start time (pid reuse check).
    pub producer_start: AtomicU64,
}

// Each field sits at the offset docs/ring.md gives it.
const _: () = {
    use std::mem::offset_of;
    let base = OFF_GENERATION;
    assert!(base + offset_of!(LiveWords, generation) == OFF_GENERATION);
    assert!(base + offset_of!(LiveWords, head) == OFF_HEAD);
    assert!(base + offset_of!(LiveWords, heartbeat) == OFF_HEARTBEAT);
    assert!(base + offset_of!(LiveWords, producer_pid) == OFF_PRODUCER_PID);
    assert!(base + offset_of!(LiveWords, state) == OFF_STATE);
    assert!(base + offset_of!(LiveWords, notify) == OFF_NOTIFY);
    assert!(base + offset_of!(LiveWords, waiters) == OFF_WAITERS);
    assert!(base + offset_of!(LiveWords, producer_start) == OFF_PRODUCER_START);
    assert!(base + size_of::<LiveWords>() <= OFF_READERS);
};

/// Directory where Linux keeps POSIX shared memory (`shm_open` names).
pub const SHM_DIR: &str = "/dev/shm";
/// Prefix of every camring segment's file name in [`SHM_DIR`].
pub const PREFIX: &str = "camring-";

/// Checks a ring name: 1-200 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn valid_name(name: &str) -> bool {
    (1..=200).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The path of ring `name`'s segment.
pub fn path_of(name: &str) -> PathBuf {
    PathBuf::from(SHM_DIR).join(format!("{PREFIX}{name}"))
}

/// A mapped segment. The mapping lives as long as this value; all access goes through
/// bounds-checked methods.
#[derive(Debug)]
pub(crate) struct Segment {
    backing: Backing,
    /// Validated copy of the immutable superblock.
    pub(crate) sb: Superblock,
}

/// The memory under a [`Segment`].
#[derive(Debug)]
enum Backing {
    /// A shared mapping of a segment file under `/dev/shm`: every ring outside this crate's
    /// unit tests.
    Mapped {
        map: MmapRaw,
        file: File,
        /// Inode of the file, to notice when the name points elsewhere.
        ino: u64,
    },
    /// An in-process, page-aligned heap region ([`heap::Region`]), for the unit tests
    /// (which Miri runs: it cannot map files). The writer's and each reader's segment hold
    /// the same region, as their processes would each map the same file.
    #[cfg(test)]
    Heap {
        region: std::sync::Arc<heap::Region>,
        /// Held by the writer's segment: the heap's stand-in for the producer's `flock`.
        lock: Option<heap::ProducerLock>,
    },
}

impl Segment {
    /// Reads `file`'s superblock, validates it against the file's size, and only then maps
    /// the `total_size` bytes it describes, read-write and pre-faulted. A hostile file
    /// (say a huge sparse one) is refused before anything is mapped or allocated.
    pub(crate) fn open_existing(file: File) -> Result<Self, MapError> {
        let meta = file.metadata().map_err(MapError::Io)?;
        let size = meta.len();
        if size < SUPERBLOCK_SIZE {
            return Err(MapError::Short(size));
        }
        let mut raw = [0u8; size_of::<Superblock>()];
        file.read_exact_at(&mut raw, 0).map_err(MapError::Io)?;
        let sb = Superblock::read_from_bytes(&raw).expect("size matches");
        sb.validate(size)
            .map_err(|e| MapError::Layout(e, Box::new(sb)))?;
        // A producer allocates its whole segment (fallocate) before publishing it. A sparse
        // file is not a producer's ring, and mapping it pre-faulted would make tmpfs
        // allocate up to `total_size` bytes (or SIGBUS when /dev/shm is full).
        if meta.blocks().saturating_mul(512) < sb.total_size {
            return Err(MapError::Layout(
                LayoutError::Invalid("segment is not fully allocated (sparse file)"),
                Box::new(sb),
            ));
        }
        let len = usize::try_from(sb.total_size).map_err(|_| MapError::Short(size))?;
        let map = MmapOptions::new()
            .len(len)
            .populate()
            .map_raw(&file)
            .map_err(MapError::Io)?;
        Ok(Segment {
            backing: Backing::Mapped {
                map,
                file,
                ino: meta.ino(),
            },
            sb,
        })
    }

    /// Maps a fresh (zero-filled, not yet visible) file of `sb.total_size` bytes. The
    /// caller writes the superblock with [`Segment::write_superblock`].
    pub(crate) fn map_fresh(file: File, sb: &Superblock) -> Result<Self, MapError> {
        let meta = file.metadata().map_err(MapError::Io)?;
        if meta.len() < sb.total_size {
            return Err(MapError::Short(meta.len()));
        }
        let len = usize::try_from(sb.total_size).map_err(|_| MapError::Short(meta.len()))?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(MapError::Io)?;
        Ok(Segment {
            backing: Backing::Mapped {
                map,
                file,
                ino: meta.ino(),
            },
            sb: Superblock::new_zeroed(),
        })
    }

    /// A fresh segment of `sb.total_size` zero bytes on the heap, for the writer of a ring
    /// that lives inside this process (unit tests; Miri runs them). It holds the region's
    /// producer lock until dropped. The caller writes the superblock with
    /// [`Segment::write_superblock`]; readers get their own segments over the same region
    /// from [`Segment::heap_attach`].
    ///
    /// # Safety
    ///
    /// The Rust abstract machine sees every access to a heap region: the writer and the
    /// readers of the region all use one Rust allocation, where with a file each has its
    /// own mapping (or is another process), whose accesses are outside what Rust sees. For
    /// as long as any segment over the region lives, the caller must therefore ensure:
    ///
    /// 1. the writer's writes to the region's bytes (loan buffers, `copy_in`) and the
    ///    readers' copies and views of the same bytes never race: they are not made from
    ///    different threads without a happens-before between them (the unit tests drive a
    ///    region's writer and readers from one thread; the atomic words may be used from
    ///    any thread);
    /// 2. no reader reads bytes that a live loan buffer covers (the `&mut [u8]` that
    ///    `SlotLoan::push_camera` returns or the fill closures get): no read of a `Frame`'s
    ///    payloads while such a buffer is held or inside a fill closure.
    ///
    /// These are what Miri's data-race detector and aliasing model check, so Miri reports
    /// a unit test that breaks them on the interleaving it runs (tried: a payload view read
    /// between two writes through a loan buffer over the same byte is reported as
    /// undefined behaviour, with Stacked and with Tree Borrows).
    #[cfg(test)]
    pub(crate) unsafe fn heap(sb: &Superblock) -> Segment {
        let len = usize::try_from(sb.total_size).expect("a test ring fits in memory");
        let region = heap::Region::new(len);
        Segment {
            backing: Backing::Heap {
                lock: Some(heap::ProducerLock::try_take(&region).expect("a new region")),
                region,
            },
            sb: Superblock::new_zeroed(),
        }
    }

    /// A reader's segment over the same heap region as `self` (see [`Segment::heap`]):
    /// reads the superblock out of the region and validates it against the region's size,
    /// as [`Segment::open_existing`] does with a file. Panics if `self` is not heap-backed.
    #[cfg(test)]
    pub(crate) fn heap_attach(&self) -> Result<Segment, MapError> {
        let Backing::Heap { region, .. } = &self.backing else {
            panic!("heap_attach on a mapped segment");
        };
        let mut raw = [0u8; size_of::<Superblock>()];
        self.copy_out(0, &mut raw);
        let sb = Superblock::read_from_bytes(&raw).expect("size matches");
        sb.validate(region.len() as u64)
            .map_err(|e| MapError::Layout(e, Box::new(sb)))?;
        Ok(Segment {
            backing: Backing::Heap {
                region: std::sync::Arc::clone(region),
                lock: None,
            },
            sb,
        })
    }

    /// Takes the producer lock of a heap-backed segment's region into this segment, as a
    /// producer `flock`s a segment file; false if a writer's segment holds it. Panics if
    /// `self` is not heap-backed.
    #[cfg(test)]
    pub(crate) fn heap_lock(&mut self) -> bool {
        let Backing::Heap { region, lock } = &mut self.backing else {
            panic!("heap_lock on a mapped segment");
        };
        if lock.is_none() {
            *lock = heap::ProducerLock::try_take(region);
        }
        lock.is_some()
    }

    /// Writes the superblock of a segment no reader can see yet, and keeps its copy.
    pub(crate) fn write_superblock(&mut self, sb: &Superblock) {
        self.copy_in(0, zerocopy::IntoBytes::as_bytes(sb));
        self.sb = *sb;
    }

    /// The start and length of the memory under the segment. Both backings are
    /// page-aligned (a mapping always; a heap region is allocated so) and stay put for as
    /// long as the segment lives. Outside unit tests there is one backing and the match
    /// compiles to the two loads it always was.
    pub(crate) fn base(&self) -> (*mut u8, usize) {
        match &self.backing {
            Backing::Mapped { map, .. } => (map.as_mut_ptr(), map.len()),
            #[cfg(test)]
            Backing::Heap { region, .. } => (region.ptr(), region.len()),
        }
    }

    /// The segment's file, `None` for a heap region (unit tests), which has none.
    pub(crate) fn file(&self) -> Option<&File> {
        match &self.backing {
            Backing::Mapped { file, .. } => Some(file),
            #[cfg(test)]
            Backing::Heap { .. } => None,
        }
    }

    /// The inode of the segment's file, to notice when the name points elsewhere; `None`
    /// for a heap region (unit tests), which no name leads to.
    pub(crate) fn ino(&self) -> Option<u64> {
        match &self.backing {
            Backing::Mapped { ino, .. } => Some(*ino),
            #[cfg(test)]
            Backing::Heap { .. } => None,
        }
    }

    /// A pointer to `offset` after checking that `offset..offset + len` lies inside the
    /// segment and `offset` is a multiple of `align` (the memory is page-aligned, see
    /// [`Segment::base`], so the pointer is `align`-aligned). Panics otherwise: callers
    /// pass validated offsets, so a failure is a bug, never a hostile input.
    fn ptr_at(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        let (base, size) = self.base();
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|e| e <= size) && offset.is_multiple_of(align),
            "segment access {offset}+{len} outside mapping of {size} bytes"
        );
        // In bounds (just checked), so this equals the in-bounds `add(offset)`.
        base.wrapping_add(offset)
    }

    /// The superblock's live words, typed (docs/ring.md §4): a field cannot be read at a
    /// wrong offset or with a wrong width.
    pub(crate) fn live(&self) -> &LiveWords {
        let ptr = self.ptr_at(
            OFF_GENERATION,
            size_of::<LiveWords>(),
            align_of::<LiveWords>(),
        );
        // SAFETY: `ptr_at` proved the `size_of::<LiveWords>()` bytes at `OFF_GENERATION`
        // are inside the segment and aligned for `LiveWords` (8; the segment's memory, a
        // mapping or a heap region, is page-aligned). `LiveWords` is `repr(C)` of
        // `AtomicU64`/`AtomicU32` fields, which have the size and alignment of `u64`/`u32`
        // and no padding between them here (asserted at compile time after `LiveWords`),
        // so the bytes are a valid `LiveWords` whatever they hold. Every field is an atomic (interior mutability), so a shared
        // reference while this process's writer or another process stores to the same
        // words is what atomics are for; every process that follows the ring protocol
        // accesses these words only atomically (docs/ring.md lists them), and so does
        // this crate whatever the backing (a heap region is only ever accessed through
        // these methods), so there is no mixed atomic/non-atomic access. The memory lives
        // as long as `&self`, which bounds the returned lifetime.
        unsafe { &*ptr.cast::<LiveWords>() }
    }

    /// The pid word of reader-table entry `index` (docs/ring.md §4.2).
    pub(crate) fn reader_pid(&self, index: usize) -> &AtomicU32 {
        self.u32_at(OFF_READERS + index * READER_ENTRY_SIZE)
    }

    /// The seqlock word of the slot at `slot_off` (docs/ring.md §5).
    pub(crate) fn slot_seq(&self, slot_off: usize) -> &AtomicU64 {
        self.u64_at(slot_off + SLOT_OFF_SEQ)
    }

    /// The `u64` atomic word at `offset`.
    ///
    /// Panics if the word is not inside the mapping or not 8-byte aligned.
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        let ptr = self.ptr_at(offset, 8, 8).cast();
        // SAFETY: `ptr_at` proved `offset..offset + 8` is inside the segment, whose memory
        // (a mapping or a heap region) is page-aligned, so the pointer is valid and 8-byte
        // aligned as `AtomicU64::from_ptr` requires. The memory stays alive as long as
        // `&self`, which bounds the returned lifetime. Every process that follows the ring
        // protocol accesses this word only atomically (docs/ring.md lists the atomic
        // words), and so does this crate on either backing, so there is no mixed
        // atomic/non-atomic access to it.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    /// The `u32` atomic word at `offset`.
    ///
    /// Panics if the word is not inside the mapping or not 4-byte aligned.
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let ptr = self.ptr_at(offset, 4, 4).cast();
        // SAFETY: as in `u64_at`, with 4 bytes and 4-byte alignment.
        unsafe { AtomicU32::from_ptr(ptr) }
    }

    /// Copies `dst.len()` bytes at `offset` out of the segment.
    ///
    /// The bytes may be concurrently written by another process (or by this process's
    /// writer through its own mapping); the caller must treat the copy as untrusted until
    /// the slot's seqlock validates it (see `seqlock`). Panics if the range is outside the
    /// mapping.
    pub(crate) fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        self.bytes(offset, dst.len()).copy_to_slice(dst);
    }

    /// Copies `src` into the segment at `offset`.
    ///
    /// Panics if the range is outside the mapping.
    pub(crate) fn copy_in(&self, offset: usize, src: &[u8]) {
        let dst = self.ptr_at(offset, src.len(), 1);
        // SAFETY: `ptr_at` proved the destination is inside the live, writable segment, and
        // `src` cannot overlap it: no reference into a segment's memory is ever made
        // except a loan's buffers, which borrow the writer mutably and so cannot exist
        // during this call. Only the ring's single writer (holding the producer lock)
        // calls this, on its own segment, for the superblock and slot headers: ranges no
        // `SlotLoan` buffer covers and that no reference points into. Readers (other
        // processes, or other mappings in this one) may read the bytes meanwhile; they
        // trust nothing until the covering seqlock or state word is published after this
        // write. On a heap region (unit tests) readers of this process read the same
        // allocation, never racing this write (`Segment::heap`'s contract, point 1).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    }

    /// A racy view of `len` bytes at `offset`: the zero-copy read, whose result the caller
    /// trusts only after the seqlock validates it. Panics if the range is outside the
    /// mapping.
    ///
    /// Only a reader's segment hands these out: a reader maps the segment itself and never
    /// writes its payload area or makes references into it, so the view's bytes change only
    /// from outside this mapping (the producer, in another process or through the writer's
    /// own mapping in this one). `SharedBytes` reads them by volatile loads (racy.rs argues
    /// why that is sound). On a heap region (unit tests) the writer writes the same
    /// allocation instead, never racing the view's reads and never while the view reads
    /// bytes a live loan buffer covers (`Segment::heap`'s contract).
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> SharedBytes<'_> {
        let ptr = self.ptr_at(offset, len, 1);
        let ptr = NonNull::new(ptr).expect("a mapping is never at address 0");
        // SAFETY: `ptr_at` proved the range is inside the segment, whose memory lives as
        // long as `&self`. Nothing in this process accesses a reader's mapping other than
        // by atomic loads of its words and volatile loads of its bytes (the reader module
        // makes no references into it and never writes outside the atomic words), which is
        // `SharedBytes::new`'s contract. The writer's `copy_in`/`bytes_mut` are used only on
        // the writer's own segment, another mapping. A heap region (unit tests) is the one
        // exception, which `SharedBytes::new` allows: the writer's segment is the same
        // allocation, and `Segment::heap`'s contract keeps its writes from racing the
        // view's reads or overlapping them with a live loan buffer.
        unsafe { SharedBytes::new(ptr, len) }
    }

    /// An exclusive view of `len` bytes at `offset`.
    ///
    /// # Safety
    ///
    /// The caller must guarantee that no other reference (shared or exclusive) to any byte
    /// of the range exists while the returned slice is alive, and that nothing else in this
    /// process writes or reads it through this mapping. The ring's writer guarantees it by
    /// creating such views only of its own mapping (a reader in the same process maps the
    /// segment again and reads its view only by volatile loads, which the Rust abstract
    /// machine sees as outside accesses), and only inside a `SlotLoan`, which borrows the
    /// writer mutably, for the loaned slot's payload area. On a heap region (unit tests),
    /// where readers read the same allocation, the region's creator guarantees that no
    /// reader reads the range while the slice lives (`Segment::heap`'s contract).
    // The exclusive view comes from shared memory through a raw pointer, not from `&self`:
    // exclusivity is the caller's contract above, which is why this fn is unsafe.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        let ptr = self.ptr_at(offset, len, 1);
        // SAFETY: `ptr_at` proved the range is inside the live, writable segment; the
        // caller guarantees there is no other reference to it and no other access through
        // this mapping (see `# Safety`). Readers, in other processes or through their own
        // mappings in this one, may read the bytes concurrently; they only read (volatile
        // loads outside this mapping, which cannot invalidate an exclusive borrow's
        // assumptions about its own accesses), and the seqlock makes them detect the race.
        // On a heap region no reader reads the range while the slice lives
        // (`Segment::heap`'s contract, point 2).
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// Touches every page of the mapping for writing, so that the first frames do not pay
    /// for page faults (first touch is ~6x slower than a warm memcpy). Only for a segment
    /// no reader can see yet: it writes zeros.
    pub(crate) fn prefault_fresh(&self) {
        let page = 4096;
        for offset in (0..self.base().1).step_by(page) {
            let ptr = self.ptr_at(offset, 1, 1);
            // SAFETY: `ptr_at` proved the byte is inside the writable segment. The segment
            // is not published yet (the caller's contract), so no one else accesses it;
            // the byte is already zero (fresh file), so the write changes nothing but the
            // page tables.
            unsafe { ptr.write_volatile(0) };
        }
    }

    /// True if some process holds the producer lock on this segment.
    pub(crate) fn producer_locked(&self) -> bool {
        match &self.backing {
            Backing::Mapped { file, .. } => producer_locked(file),
            #[cfg(test)]
            Backing::Heap { region, .. } => region.locked(),
        }
    }
}

/// Whether a process with this pid exists (a pid that cannot exist, such as 0 or one
/// above `i32::MAX` from a hostile table, does not).
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match rustix::process::Pid::from_raw(raw) {
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// Whether some process holds the producer lock (an exclusive `flock`) on `file`. Takes and
/// at once drops a shared lock; the kernel releases a dead producer's lock.
pub(crate) fn producer_locked(file: &File) -> bool {
    match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = rustix::fs::flock(file.as_fd(), FlockOperation::Unlock);
            false
        }
        Err(_) => true,
    }
}

/// Why a file could not be mapped as a segment.
#[derive(Debug)]
pub(crate) enum MapError {
    /// Smaller than a superblock.
    Short(u64),
    /// The superblock is not valid (the superblock as found, unvalidated).
    Layout(LayoutError, Box<Superblock>),
    /// OS error.
    Io(io::Error),
}

/// The heap backing of [`Segment`] for unit tests: a zero-initialised, page-aligned region
/// of a segment's full size, shared by the segments of one in-process ring.
#[cfg(test)]
pub(crate) mod heap {
    use std::alloc::{self, Layout};
    use std::ptr::NonNull;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Zeroed, page-aligned heap memory owned by the `Arc`s of the segments over it.
    #[derive(Debug)]
    pub(crate) struct Region {
        ptr: NonNull<u8>,
        layout: Layout,
        /// Whether the writer's segment lives: what `flock` tells of a mapped segment.
        locked: AtomicBool,
    }

    // SAFETY: a `Region` is memory like a shared mapping (`MmapRaw`, which is Send and
    // Sync): it is only ever accessed through `Segment`'s bounds-checked methods, by atomic
    // loads and stores of its words (sound from any thread), volatile reads, and the
    // writer's copies and loan buffers, whose freedom from races the creator of the region
    // guarantees (`Segment::heap`'s contract), not the thread that holds the `Arc`. Its
    // memory is freed once, by the last `Arc`'s drop, when no segment refers to it.
    unsafe impl Send for Region {}
    // SAFETY: as for `Send`: shared use from several threads adds atomic accesses, and
    // non-atomic ones only under `Segment::heap`'s contract.
    unsafe impl Sync for Region {}

    /// The page size the layout aligns to (docs/ring.md §3); a mapping has at least it.
    const PAGE: usize = camring_protocol::layout::PAGE as usize;

    impl Region {
        /// `len` (> 0) zero bytes aligned to a page, like a fresh mapping of a new file.
        pub(crate) fn new(len: usize) -> Arc<Region> {
            let layout = Layout::from_size_align(len, PAGE).expect("a test ring's size");
            assert!(len > 0, "an empty segment");
            // SAFETY: `layout` has a non-zero size (asserted above).
            let ptr = unsafe { alloc::alloc_zeroed(layout) };
            let Some(ptr) = NonNull::new(ptr) else {
                alloc::handle_alloc_error(layout);
            };
            Arc::new(Region {
                ptr,
                layout,
                locked: AtomicBool::new(false),
            })
        }

        /// The region's first byte; every access to it is derived from this pointer.
        pub(crate) fn ptr(&self) -> *mut u8 {
            self.ptr.as_ptr()
        }

        /// The region's size in bytes.
        pub(crate) fn len(&self) -> usize {
            self.layout.size()
        }

        /// Whether a writer's segment over the region lives.
        pub(crate) fn locked(&self) -> bool {
            // SYNC POINT: Acquire pairs with the Release stores in `ProducerLock`; it
            // orders nothing else (like `flock`, it only says whether a producer lives).
            self.locked.load(Ordering::Acquire)
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: `ptr` came from `alloc_zeroed(layout)` and is freed only here, once;
            // this is the last `Arc`, so no segment (and no view, which borrows one) is left.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
        }
    }

    /// The producer lock of a heap region, held by its writer's segment; released when
    /// that segment is dropped, as the kernel releases a producer's `flock`.
    #[derive(Debug)]
    pub(crate) struct ProducerLock(Arc<Region>);

    impl ProducerLock {
        /// Takes the lock of `region`; `None` if a writer's segment holds it.
        pub(crate) fn try_take(region: &Arc<Region>) -> Option<ProducerLock> {
            // SYNC POINT: AcqRel pairs with the Release store of the previous holder's
            // drop, as in `locked`.
            let was = region.locked.swap(true, Ordering::AcqRel);
            (!was).then(|| ProducerLock(Arc::clone(region)))
        }
    }

    impl Drop for ProducerLock {
        fn drop(&mut self) {
            // SYNC POINT: Release pairs with the Acquire loads in `locked` and `take`.
            self.0.locked.store(false, Ordering::Release);
        }
    }
}
