//! Wake-ups: readers sleep on a futex word in the superblock; the writer bumps it after
//! every publish and calls `FUTEX_WAKE` only when someone sleeps.
//!
//! The futex is a shared (not `FUTEX_PRIVATE`) futex, keyed by the page of the segment, so
//! it works across processes, and a reader that dies while waiting leaves nothing locked:
//! at worst the waiter count stays one too high, which costs the writer a wake syscall per
//! frame and nothing else. Measured here (../shared/measured.md) a futex wake is ~5 µs
//! one-way, as fast as eventfd and needing no fd passing; spinning first gets ~0.2 µs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::segment::Segment;

/// After publishing (the head store, with Release, is sequenced before this), wakes the
/// readers that sleep.
pub(crate) fn publish(seg: &Segment) {
    let notify = &seg.live().notify;
    // SYNC POINT: SeqCst read-modify-write, paired with the SeqCst `waiters` increment and
    // `notify` reload in `wait_until`. Either this increment comes first in the single
    // total order and the waiter's reload sees it (and does not sleep), or the waiter's
    // increment of `waiters` comes first and the load below sees it (and wakes). Reading
    // this value with SeqCst also makes the earlier head store visible to the waiter.
    notify.fetch_add(1, Ordering::SeqCst);
    // SYNC POINT: SeqCst, see above.
    if seg.live().waiters.load(Ordering::SeqCst) > 0 {
        wake(notify);
    }
}

/// After a state change (stop, take-over, replacement), wakes every sleeping reader
/// unconditionally. Bumps the futex word first so a reader about to sleep sees the change.
pub(crate) fn wake_all(seg: &Segment) {
    let notify = &seg.live().notify;
    // SYNC POINT: SeqCst, as in `publish`: a waiter that loaded the old value before our
    // state store now fails its futex comparison instead of sleeping.
    notify.fetch_add(1, Ordering::SeqCst);
    wake(notify);
}

fn wake(notify: &std::sync::atomic::AtomicU32) {
    // A failure to wake (EFAULT cannot happen on a live mapping) only delays readers until
    // their timeout, so it is not worth an error path.
    let _ = futex::wake(notify, futex::Flags::empty(), i32::MAX as u32);
}

/// Waits until `ready()` is true or `deadline` passes; spins for up to `spin` first.
/// Returns the last value of `ready()`.
pub(crate) fn wait_until(
    seg: &Segment,
    mut ready: impl FnMut() -> bool,
    deadline: Instant,
    spin: Duration,
) -> bool {
    if ready() {
        return true;
    }
    if !spin.is_zero() {
        let start = Instant::now();
        let spin_end = (start + spin).min(deadline);
        let mut i = 0u32;
        loop {
            if ready() {
                return true;
            }
            i = i.wrapping_add(1);
            if i.is_multiple_of(64) && Instant::now() >= spin_end {
                break;
            }
            std::hint::spin_loop();
        }
    }
    let notify = &seg.live().notify;
    let waiters = &seg.live().waiters;
    loop {
        // SYNC POINT: SeqCst, pairs with the `fetch_add` in `publish`.
        let seen = notify.load(Ordering::SeqCst);
        if ready() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        // SYNC POINT: SeqCst, pairs with the `waiters` load in `publish`.
        waiters.fetch_add(1, Ordering::SeqCst);
        // SYNC POINT: SeqCst reload, pairs with the `fetch_add` in `publish`: a publish
        // that did not see our increment has already changed `notify`.
        if notify.load(Ordering::SeqCst) == seen && !ready() {
            let left = deadline - now;
            let ts = futex::Timespec {
                tv_sec: left.as_secs() as _,
                tv_nsec: left.subsec_nanos() as _,
            };
            // EAGAIN (the word changed), EINTR and ETIMEDOUT all mean "look again".
            let _ = futex::wait(notify, futex::Flags::empty(), seen, Some(&ts));
        }
        // SYNC POINT: SeqCst, keeps the count exact for `publish`.
        waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
