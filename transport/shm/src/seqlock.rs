//! The per-slot seqlock protocol, on one `AtomicU64` sequence word.
//!
//! Writing frame `n` into a slot: [`write_begin`] stores `2n + 1` (odd: being written),
//! the writer writes the header and payload, and [`write_end`] stores `2n + 2` with
//! Release. A reader calls [`read_begin`] (Acquire), copies what it needs, and calls
//! [`read_validate`] (Acquire fence, then a reload): the copy is whole only if the word is
//! unchanged and equal to `2n + 2`. This is the protocol of Boehm, "Can seqlocks get along
//! with programming language memory models?" (MSPC 2012), and of crossbeam's `SeqLock`.
//!
//! The data between the two loads is read without atomics (it is megabytes of pixels).
//! Under the Rust memory model a read that races a write is a data race, which crossbeam
//! also admits for its optimistic reads; camring limits the consequence by only ever
//! reading plain bytes (`u8` and zerocopy `FromBytes` structs, for which every bit pattern
//! is a valid value), through raw-pointer copies that the compiler cannot assume are
//! unchanged, and by trusting nothing read until [`read_validate`] succeeded.
//!
//! `tests/loom.rs` model-checks these functions (`RUSTFLAGS="--cfg loom"`).

use std::sync::atomic::Ordering;

use crate::sync::{fence, AtomicU64};

/// The sequence value of slot content frame `n` while it is being written.
pub const fn writing(n: u64) -> u64 {
    2 * n + 1
}

/// The sequence value of a slot that holds frame `n`, complete.
pub const fn complete(n: u64) -> u64 {
    2 * n + 2
}

/// Marks the slot as being written with frame `n`. Call before touching the slot.
pub fn write_begin(seq: &AtomicU64, n: u64) {
    // SYNC POINT: this store may be Relaxed because the Release fence below orders it before
    // every data write that follows; a reader whose Acquire fence (in `read_validate`)
    // follows a load of any of that data then sees this odd value (or a later one) in
    // its second load of `seq`.
    seq.store(writing(n), Ordering::Relaxed);
    fence(Ordering::Release);
}

/// Marks the slot as holding frame `n`, complete. Call after the last write to the slot.
pub fn write_end(seq: &AtomicU64, n: u64) {
    // SYNC POINT: Release pairs with the Acquire load in `read_begin`: a reader that sees
    // `complete(n)` sees every write made to the slot before this store.
    seq.store(complete(n), Ordering::Release);
}

/// Starts an optimistic read: returns the sequence value to pass to [`read_validate`].
pub fn read_begin(seq: &AtomicU64) -> u64 {
    // SYNC POINT: Acquire pairs with the Release store in `write_end`.
    seq.load(Ordering::Acquire)
}

/// Ends an optimistic read begun with sequence value `begin`: true if no write overlapped
/// the reads made in between.
pub fn read_validate(seq: &AtomicU64, begin: u64) -> bool {
    // SYNC POINT: this Acquire fence pairs with the Release fence in `write_begin`: if any
    // read since `read_begin` saw data written after a `write_begin`, the load below sees
    // that `write_begin`'s odd value or a later one, so it differs from `begin`.
    fence(Ordering::Acquire);
    let end = seq.load(Ordering::Relaxed);
    end == begin && begin.is_multiple_of(2)
}
