//! Model check of the per-slot seqlock protocol (`camring_shm::seqlock`) with loom.
//!
//! Under `cfg(loom)` the seqlock functions take loom's `AtomicU64` and use loom's fences, so
//! this checks the very code the ring runs. The payload bytes of a slot are stood in for by
//! a few `Relaxed` atomic words (loom cannot model the plain racy byte copy itself; what it
//! checks is the ordering argument: a read that validates saw only the frame it began on).
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p camring-shm --test loom --release --target-dir target/loom
//! ```
#![cfg(loom)]

use std::sync::atomic::Ordering;

use camring_shm::seqlock::{complete, read_begin, read_validate, write_begin, write_end};
use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;

/// Frames the writer publishes into the one slot.
const FRAMES: u64 = 2;

/// One slot: its sequence word and `N` data words standing in for the header and payload.
struct Slot<const N: usize> {
    seq: AtomicU64,
    data: [AtomicU64; N],
}

impl<const N: usize> Slot<N> {
    fn new() -> Self {
        Slot {
            seq: AtomicU64::new(0),
            data: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }

    /// The writer: frames `0..FRAMES`, each written between `write_begin` and `write_end`.
    fn write_all(&self) {
        for n in 0..FRAMES {
            write_begin(&self.seq, n);
            for word in &self.data {
                word.store(n, Ordering::Relaxed);
            }
            write_end(&self.seq, n);
        }
    }

    /// One optimistic read. Returns the frame read if it validated.
    fn read_once(&self) -> Option<u64> {
        let begin = read_begin(&self.seq);
        let words: [u64; N] = std::array::from_fn(|i| self.data[i].load(Ordering::Relaxed));
        if !read_validate(&self.seq, begin) {
            return None;
        }
        // A validated read began on an even, unchanged sequence word.
        assert_eq!(begin % 2, 0, "validated an odd sequence value {begin}");
        if begin == 0 {
            // Nothing was published yet: the slot holds its initial content.
            assert!(
                words.iter().all(|&w| w == u64::MAX),
                "validated the empty slot but saw {words:?}"
            );
            return None;
        }
        let n = begin / 2 - 1;
        assert_eq!(begin, complete(n));
        assert!(
            words.iter().all(|&w| w == n),
            "validated frame {n} but read {words:?}"
        );
        Some(n)
    }

    /// A reader that reads twice, checking frames never go backwards.
    fn read_twice(&self) {
        let first = self.read_once();
        let second = self.read_once();
        if let (Some(a), Some(b)) = (first, second) {
            assert!(b >= a, "frame went backwards: {a} then {b}");
        }
    }
}

/// A model builder bounded to `preemptions` forced context switches per execution (like
/// crossbeam's loom CI), which keeps the state space tractable while still covering every
/// interleaving with that many preemptions. `LOOM_MAX_PREEMPTIONS` in the environment wins.
fn builder(preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        b.preemption_bound = Some(preemptions);
    }
    b
}

#[test]
fn seqlock_one_reader_two_words() {
    builder(3).check(|| {
        let slot = Arc::new(Slot::<2>::new());
        let w = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.write_all())
        };
        slot.read_twice();
        w.join().unwrap();
        // After the writer is done, a read validates and sees the last frame.
        assert_eq!(slot.read_once(), Some(FRAMES - 1));
    });
}

#[test]
fn seqlock_one_reader_three_words() {
    builder(3).check(|| {
        let slot = Arc::new(Slot::<3>::new());
        let w = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.write_all())
        };
        slot.read_twice();
        w.join().unwrap();
    });
}

#[test]
fn seqlock_two_readers() {
    // Bound 2: bound 3 takes ~40 s here for little extra coverage.
    builder(2).check(|| {
        let slot = Arc::new(Slot::<2>::new());
        let w = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.write_all())
        };
        let r = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                slot.read_once();
            })
        };
        slot.read_once();
        w.join().unwrap();
        r.join().unwrap();
    });
}
