//! What camring's tests and benchmarks share, so that it is written once: unique ring
//! names, the guard that removes a ring's segment whatever the test did, the median, and
//! the benchmarks' measuring kit:
//!
//! - [`Run`], [`full_run`]: `cargo bench` passes `--bench` to every bench binary; `cargo test
//!   --all-targets` runs them with no arguments, and each bench then runs a smoke version
//!   of itself in well under two seconds, asserting nothing about timing.
//! - [`Child`], [`Helpers`]: child processes (a bench binary re-executed as a helper, or
//!   `camring bench-child`) talking in lines, every wait with a deadline, killed and
//!   reaped whatever happens.
//! - [`histogram`], [`record`], [`buckets`], [`quantiles`], [`spread`]: hdrhistograms of nanoseconds
//!   and how they travel between processes; [`Table`] and [`fmt_ns`]: Markdown tables.
//! - [`Machine`], [`process_cpu_ns`], [`thread_cpu_ns`], [`minor_faults`],
//!   [`context_switches`], [`machine_busy_ns`]: where and at what cost; [`Order`]: the seeded shuffle of interleaved variants;
//!   [`interrupt_flag`]: Ctrl-C turned into a flag, so an interrupted run still removes
//!   its rings.
//!
//! It depends on no camring crate (any of them may use it as a dev-dependency); the
//! segment's path is the one docs/ring.md gives: `/dev/shm/camring-NAME`.

#![forbid(unsafe_code)]

mod child;
mod measure;
mod table;

pub use child::{clip, Child, Helpers, CHILD_MARKER};
pub use measure::{
    add_buckets, buckets, check_interrupt, child_args, context_switches, full_run, histogram,
    interrupt_flag, interrupted, machine_busy_ns, minor_faults, process_cpu_ns, quantiles, record,
    spread, thread_cpu_ns, Machine, Order, Run, SPREAD,
};
pub use table::{fmt_ns, Table};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A ring name unique to this process and call: `t-WHAT-PID-N`.
pub fn ring_name(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // SYNC POINT: Relaxed: a counter only, nothing is published through it.
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("t-{what}-{}-{n}", std::process::id())
}

/// Where ring `name`'s segment lives.
pub fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/camring-{name}"))
}

/// Removes the ring's segment when dropped, whatever the test did (a producer removes its
/// ring on a clean stop; this covers kills and panics).
#[derive(Debug)]
pub struct RingGuard(pub String);

impl Drop for RingGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

/// The median of `xs`: the middle value, the mean of the two middle ones for an even
/// count, 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_guards_remove_the_segment() {
        let (a, b) = (ring_name("kit"), ring_name("kit"));
        assert_ne!(a, b);
        std::fs::write(shm_path(&a), b"x").unwrap();
        drop(RingGuard(a.clone()));
        assert!(!shm_path(&a).exists());
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
