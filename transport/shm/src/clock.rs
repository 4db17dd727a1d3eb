//! The ring's clock: CLOCK_REALTIME nanoseconds since the Unix epoch, the same in every
//! process of the machine and meaningful to remote clients.

/// Now, in CLOCK_REALTIME nanoseconds.
pub fn now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}
