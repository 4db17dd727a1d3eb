//! The ring's clock: CLOCK_REALTIME nanoseconds since the Unix epoch, the same in every
//! process of the machine and meaningful to remote clients.

/// Now, in CLOCK_REALTIME nanoseconds.
#[cfg(not(miri))]
pub fn now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Now, in CLOCK_REALTIME nanoseconds; under Miri a stand-in.
///
/// Miri runs only this crate's unit tests, and with its default isolation it refuses
/// `clock_gettime(CLOCK_REALTIME)` (the host's wall clock). Its monotonic clock is allowed,
/// so this counts from a fixed wall-clock instant (2026-01-01 UTC) at the rate of
/// [`std::time::Instant`]: non-zero and non-decreasing, which is all the ring needs of
/// the clock (generations, heartbeats, publish times); only its distance from the real
/// wall clock differs.
#[cfg(miri)]
pub fn now_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    const EPOCH_2026_NS: u64 = 1_767_225_600 * 1_000_000_000;
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    EPOCH_2026_NS.wrapping_add(elapsed.as_nanos() as u64)
}
