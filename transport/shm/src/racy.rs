//! Bytes of a ring that another party may be writing while they are read: a racy view.
//!
//! A reader's payloads live in shared memory that the producer may overwrite at any
//! moment, from another process or through its own mapping in this one. A `&[u8]` to such
//! bytes would be undefined behaviour the moment they change (a shared reference promises
//! the compiler they do not), so the reader hands out [`SharedBytes`] instead: a pointer,
//! a length and a lifetime tied to the mapping, read only by volatile loads.
//!
//! # Why volatile, and why this is sound
//!
//! Every reader maps the segment itself (`Segment::open_existing`), so the range a
//! `SharedBytes` points into belongs to a mapping that nothing in this process writes
//! through and that holds no Rust allocation: the producer (another process, or the
//! [`Writer`](crate::Writer) of this one, which has its own mapping of the same file)
//! changes the bytes from outside of what the Rust abstract machine sees. Volatile
//! accesses are the operations Rust defines for memory outside any Rust allocation that
//! changes behind the program's back (`core::ptr::read_volatile`: each is an externally
//! observable event, never elided, duplicated or assumed stable). That is the semantics a
//! seqlock reader needs, and the one the byte-wise atomic memcpy of RFC 3301 would give;
//! crossbeam's `AtomicCell` reads through `read_volatile` for the same reason. A racing
//! write makes a copy some mixture of old and new bytes, each still a valid `u8`; the
//! slot's sequence word, checked after the copy ([`Frame::validate`](crate::Frame::validate)),
//! tells whether it is whole.
//!
//! The unit tests (which Miri runs) back a ring with one heap region instead
//! (`Segment::heap`): there the writer's writes are accesses the abstract machine sees, so
//! they must not race the views' reads, and a test drives its writer and readers from one
//! thread; a view then reads what the last write left, torn or not, and the seqlock still
//! tells which.
//!
//! The copy loads 16 bytes at a time on x86_64 (SSE2 is part of the baseline) and 8
//! elsewhere. `cargo bench -p camring-shm --bench copy` compares it with a memcpy of the
//! same mapped bytes: 0.86–0.91× for a 6.2 MB image and 0.70–0.75× for 100 KB here (a
//! memcpy uses 32-byte AVX loads; unrolling the volatile loop gained nothing).
//!
//! What a view cannot give safely is a `&[u8]`: [`SharedBytes::as_slice_unchecked`] is
//! `unsafe`, for a caller who knows no one writes the bytes meanwhile.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::ptr::NonNull;

/// A racy view of bytes in a ring segment that the producer may be writing.
///
/// Reads are volatile copies: whatever they return is untrusted until the frame's
/// sequence word is validated after them ([`Frame::validate`](crate::Frame::validate) or
/// [`Frame::read_with`](crate::Frame::read_with)).
#[derive(Clone, Copy)]
pub struct SharedBytes<'a> {
    ptr: NonNull<u8>,
    len: usize,
    _mapping: PhantomData<&'a [u8]>,
}

// SAFETY: a `SharedBytes` is a read-only window on shared memory that is only ever read
// by volatile loads; those are as valid from any thread as from the one that made the
// view (the mapping is process-wide and outlives `'a`). Nothing is written through it.
unsafe impl Send for SharedBytes<'_> {}
// SAFETY: as for `Send`: shared use from several threads only adds more volatile readers.
unsafe impl Sync for SharedBytes<'_> {}

impl fmt::Debug for SharedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<'a> SharedBytes<'a> {
    /// A view of `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must lie inside one mapping that stays mapped for `'a`, and nothing
    /// in this process may access those bytes other than by volatile (or atomic) reads
    /// while the view lives: no reference to them and no write through this mapping.
    /// The one exception is a heap-backed segment of the unit tests (`Segment::heap`),
    /// whose writer writes the same allocation while views of it live: its contract
    /// ensures those writes never race the view's reads (they are ordered, in practice
    /// made by the same thread) and that no reference to the bytes (a loan buffer) is
    /// alive while the view reads them, so each read sees a plain earlier write.
    pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        SharedBytes {
            ptr,
            len,
            _mapping: PhantomData,
        }
    }

    /// An empty view (a missing camera).
    pub fn empty() -> Self {
        SharedBytes {
            ptr: NonNull::dangling(),
            len: 0,
            _mapping: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the bytes are, for foreign code that reads them in place (a decoder, numpy).
    /// Such code must treat them as the racy bytes they are and its result as untrusted
    /// until the frame validates.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The byte at `index`, read now; `None` past the end.
    pub fn get(&self, index: usize) -> Option<u8> {
        if index >= self.len {
            return None;
        }
        // SAFETY: `index < len`, so the byte is inside the view, which `new`'s contract
        // keeps mapped for `'a`; a volatile read of memory another party may write is the
        // access this module's documentation argues for.
        Some(unsafe { self.ptr.as_ptr().wrapping_add(index).read_volatile() })
    }

    /// A sub-view. Panics if `range` is out of bounds, like slicing.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> SharedBytes<'a> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1).expect("range start overflows"),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1).expect("range end overflows"),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        assert!(
            start <= end && end <= self.len,
            "range {start}..{end} out of bounds of a view of {} bytes",
            self.len
        );
        // SAFETY: `start <= len`, so the pointer stays inside (or one past) the view.
        let ptr = unsafe { self.ptr.add(start) };
        SharedBytes {
            ptr,
            len: end - start,
            _mapping: PhantomData,
        }
    }

    /// Copies the bytes into `dst`, which must have the same length (panics otherwise).
    /// The copy is untrusted until the frame validates.
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        assert_eq!(
            dst.len(),
            self.len,
            "destination length differs from the view's"
        );
        // SAFETY: the source is the whole view (inside a live mapping, read only by
        // volatile loads, `new`'s contract); `dst` is an exclusive borrow of ordinary
        // memory of the same length, which cannot overlap a mapping that holds no Rust
        // allocation.
        unsafe { copy_volatile(self.ptr.as_ptr(), dst.as_mut_ptr(), self.len) };
    }

    /// Appends a copy of the bytes to `out` (untrusted until the frame validates). Copies
    /// straight into `out`'s spare capacity: no zero-filling first, one pass per frame.
    pub fn extend_vec(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        let at = out.len();
        let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        // SAFETY: `reserve` made room for `len` bytes after `at`, so `dst..dst + len` is
        // valid for writes, and it is ordinary heap memory that cannot overlap the view's
        // mapping; the source is the whole view (`new`'s contract).
        unsafe { copy_volatile(self.ptr.as_ptr(), dst, self.len) };
        // SAFETY: `copy_volatile` wrote every one of the `len` bytes after `at`, so they
        // are initialised, and `at + len` is within the capacity `reserve` ensured.
        unsafe { out.set_len(at + self.len) };
    }

    /// A copy of the bytes (untrusted until the frame validates).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.extend_vec(&mut v);
        v
    }

    /// Whether the bytes equal `other`, compared through a small copy, without
    /// allocating. Untrusted until the frame validates, like every read.
    pub fn eq_bytes(&self, other: &[u8]) -> bool {
        if other.len() != self.len {
            return false;
        }
        let mut buf = [0u8; 4096];
        let mut at = 0;
        while at < self.len {
            let n = (self.len - at).min(buf.len());
            self.slice(at..at + n).copy_to_slice(&mut buf[..n]);
            if buf[..n] != other[at..at + n] {
                return false;
            }
            at += n;
        }
        true
    }

    /// The bytes as an ordinary slice, in place.
    ///
    /// # Safety
    ///
    /// No one (the producer in any process, through any mapping) may write these bytes
    /// while the returned slice is alive: a shared reference whose bytes change is
    /// undefined behaviour, whatever the seqlock says afterwards. A caller can know this,
    /// for example, of a ring whose producer has stopped and that no new producer can
    /// take over meanwhile, or of a test that holds the only writer and does not publish.
    pub unsafe fn as_slice_unchecked(&self) -> &'a [u8] {
        // SAFETY: the view is inside a mapping live for `'a` (`new`'s contract) and any
        // byte pattern is a valid `u8`; the caller guarantees that nothing writes the
        // bytes while the slice lives (`# Safety`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl PartialEq<[u8]> for SharedBytes<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.eq_bytes(other)
    }
}

/// The chunk the copy loads at once: one SSE2 register on x86_64, a word elsewhere.
#[cfg(target_arch = "x86_64")]
type Chunk = std::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Chunk = u64;

/// Copies `len` bytes from `src`, which another party may be writing, to `dst`, by
/// volatile loads (bytes up to `Chunk` alignment, then aligned chunks, then bytes).
///
/// # Safety
///
/// `src..src + len` must be inside a live mapping that this process only reads by volatile
/// or atomic loads; `dst..dst + len` must be valid for writes and must not overlap it.
unsafe fn copy_volatile(src: *const u8, dst: *mut u8, len: usize) {
    const C: usize = size_of::<Chunk>();
    let head = src.align_offset(align_of::<Chunk>()).min(len);
    let chunks = (len - head) / C;
    for i in 0..head {
        // SAFETY: `i < head <= len`: inside both ranges (`# Safety`).
        let b = unsafe { src.wrapping_add(i).read_volatile() };
        // SAFETY: as above, for `dst`.
        unsafe { dst.wrapping_add(i).write(b) };
    }
    for k in 0..chunks {
        let at = head + k * C;
        // SAFETY: `at + C <= head + chunks * C <= len`: the chunk is inside the source;
        // `src + head` is `Chunk`-aligned and `at - head` a multiple of `C`, so the load is
        // aligned. Every bit pattern is a valid `Chunk` (an integer vector or a `u64`).
        let v = unsafe { src.wrapping_add(at).cast::<Chunk>().read_volatile() };
        // SAFETY: inside `dst` likewise; `write_unaligned` needs no alignment.
        unsafe { dst.wrapping_add(at).cast::<Chunk>().write_unaligned(v) };
    }
    for i in head + chunks * C..len {
        // SAFETY: `i < len`: inside both ranges.
        let b = unsafe { src.wrapping_add(i).read_volatile() };
        // SAFETY: as above, for `dst`.
        unsafe { dst.wrapping_add(i).write(b) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(buf: &[u8]) -> SharedBytes<'_> {
        // SAFETY: a test buffer that nothing writes while the view lives; volatile reads
        // of ordinary memory are ordinary reads.
        unsafe { SharedBytes::new(NonNull::from(buf).cast(), buf.len()) }
    }

    #[test]
    fn copies_every_length_and_alignment() {
        let src: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..20 {
            for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 250] {
                let v = view(&src[start..start + len]);
                let mut dst = vec![0u8; len];
                v.copy_to_slice(&mut dst);
                assert_eq!(dst, &src[start..start + len], "start {start} len {len}");
                assert!(v == src[start..start + len]);
                assert_eq!(v.to_vec(), &src[start..start + len]);
                let mut grown = vec![9u8; 3];
                v.extend_vec(&mut grown);
                assert_eq!(grown[..3], [9, 9, 9]);
                assert_eq!(grown[3..], src[start..start + len]);
            }
        }
    }

    #[test]
    fn slices_and_gets_are_bounds_checked() {
        let src = [1u8, 2, 3, 4, 5];
        let v = view(&src);
        assert_eq!(v.get(4), Some(5));
        assert_eq!(v.get(5), None);
        assert_eq!(v.slice(1..3).to_vec(), [2, 3]);
        assert_eq!(v.slice(..=1).to_vec(), [1, 2]);
        assert!(v.slice(5..).is_empty());
        assert!(!v.eq_bytes(&[1, 2, 3, 4]));
        assert!(!v.eq_bytes(&[1, 2, 3, 4, 6]));
        assert!(SharedBytes::empty().is_empty());
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn slicing_past_the_end_panics() {
        let src = [0u8; 4];
        let _ = view(&src).slice(2..5);
    }

    #[test]
    fn compares_across_its_copy_buffer() {
        let src: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let v = view(&src);
        assert!(v == src[..]);
        let mut other = src.clone();
        other[9_000] ^= 1;
        assert!(!v.eq_bytes(&other));
    }
}
