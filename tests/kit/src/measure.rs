//! Smoke or full run, Ctrl-C, histograms, CPU time, the machine, the order of variants.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;

use crate::child::CHILD_MARKER;

/// True under `cargo bench` (full run), false under `cargo test` (smoke run).
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// If this process was started as a helper ([`crate::Helpers`]), its arguments after the
/// marker.
pub fn child_args() -> Option<Vec<String>> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(CHILD_MARKER) {
        Some(args.collect())
    } else {
        None
    }
}

/// What a bench binary was started to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// `cargo bench`: the full benchmark (SIGINT and SIGTERM now raise [`interrupted`]).
    Full,
    /// `cargo test --all-targets`: a smoke run.
    Smoke,
    /// Re-executed as a helper process: its arguments after the marker.
    Helper(Vec<String>),
}

impl Run {
    /// This process's: a helper, else a full or a smoke run (see [`full_run`]).
    pub fn get() -> std::io::Result<Run> {
        if let Some(args) = child_args() {
            return Ok(Run::Helper(args));
        }
        if full_run() {
            interrupt_flag()?;
            Ok(Run::Full)
        } else {
            Ok(Run::Smoke)
        }
    }

    /// The `main` of a bench with helper processes: `helper(args)` in a helper, else
    /// `bench(full)`.
    pub fn dispatch(
        helper: impl FnOnce(&[String]) -> Result<()>,
        bench: impl FnOnce(bool) -> Result<()>,
    ) -> Result<()> {
        match Run::get()? {
            Run::Helper(args) => helper(&args),
            run => bench(run.full()),
        }
    }

    /// Whether this is the full run of a bench without helpers: `Run::get()?.full()`
    /// (a helper is not).
    pub fn full(&self) -> bool {
        *self == Run::Full
    }
}

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The flag SIGINT and SIGTERM raise (registered on the first call; a second signal ends
/// the process at once, with status 130). Bench loops poll it so that Ctrl-C unwinds
/// normally and the rings are removed; child processes run in their own process group and
/// are killed by whoever started them.
pub fn interrupt_flag() -> std::io::Result<Arc<AtomicBool>> {
    if let Some(flag) = INTERRUPTED.get() {
        return Ok(Arc::clone(flag));
    }
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(Arc::clone(INTERRUPTED.get_or_init(|| flag)))
}

/// Whether SIGINT or SIGTERM arrived since [`interrupt_flag`] was first called (false if
/// it never was).
pub fn interrupted() -> bool {
    // SYNC POINT: Relaxed: a flag raised by the signal handler, no data behind it.
    INTERRUPTED.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Fails once the user interrupted the run.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// A histogram of nanoseconds, 1 ns to 100 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `ns` into `h`, clamped into its range.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1));
}

/// The recorded buckets as `[value, count]` pairs, to ship a histogram between processes.
pub fn buckets(h: &Histogram<u64>) -> Vec<[u64; 2]> {
    h.iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect()
}

/// Adds `[value, count]` pairs made by [`buckets`] to `h` (values clamped into its range).
pub fn add_buckets(h: &mut Histogram<u64>, pairs: &[[u64; 2]]) -> Result<()> {
    for &[value, count] in pairs {
        h.record_n(value.clamp(h.low(), h.high()), count)?;
    }
    Ok(())
}

/// The values at quantiles `qs` of a histogram of nanoseconds, formatted by
/// [`crate::fmt_ns`]: the cells of a latency row.
pub fn quantiles(h: &Histogram<u64>, qs: &[f64]) -> Vec<String> {
    qs.iter()
        .map(|&q| crate::fmt_ns(h.value_at_quantile(q) as f64))
        .collect()
}

/// The heads of the cells [`spread`] makes.
pub const SPREAD: [&str; 4] = ["p50", "p90", "p99", "min"];

/// A histogram of nanoseconds' p50, p90, p99 and minimum, formatted: the cells under
/// [`SPREAD`].
pub fn spread(h: &Histogram<u64>) -> Vec<String> {
    let mut cells = quantiles(h, &[0.5, 0.9, 0.99]);
    cells.push(crate::fmt_ns(h.min() as f64));
    cells
}

/// CPU time of the calling thread, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the whole process, nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Minor page faults of the whole process so far (`/proc/self/stat`, field 10).
pub fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(7)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// CPU time all processes used so far (`/proc/stat`: every state but idle and iowait),
/// nanoseconds, at the clock tick's resolution.
pub fn machine_busy_ns() -> u64 {
    let ticks = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        let cpu = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
        let v: Vec<u64> = cpu
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        Some(v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?)
    });
    // USER_HZ is 100 on Linux.
    ticks.unwrap_or(0) * 10_000_000
}

/// Context switches (voluntary and not) of the process's live threads so far.
pub fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split(':').nth(1)?.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// The machine the figures come from.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// The CPU model (/proc/cpuinfo).
    pub cpu: String,
    /// The kernel release.
    pub kernel: String,
}

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel,
        }
    }
}

/// One line: cores, CPU model, kernel.
impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cores, {}, Linux {}",
            self.cores, self.cpu, self.kernel
        )
    }
}

/// The order of a benchmark's variants, shuffled each iteration from a fixed seed so runs
/// repeat. A plain rotation would make every variant always follow the same other one,
/// and what ran before (one core left idle, or both busy) changes how fast the next
/// multi-frame starts on both cores.
#[derive(Debug)]
pub struct Order(fastrand::Rng);

impl Order {
    /// A sequence of orders from `seed`.
    pub fn new(seed: u64) -> Self {
        Order(fastrand::Rng::with_seed(seed))
    }

    /// `items` in a fresh random order.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        self.0.shuffle(items);
    }

    /// The variants `0..n` in a fresh random order.
    pub fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_travel_whole() {
        let mut h = histogram();
        for ns in [0, 5, 5, 1_000, 200_000_000_000] {
            record(&mut h, ns);
        }
        let mut back = histogram();
        add_buckets(&mut back, &buckets(&h)).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.min(), 1);
        assert_eq!(quantiles(&back, &[0.5]), vec!["5 ns".to_owned()]);
    }

    #[test]
    fn orders_repeat_from_a_seed() {
        let (mut a, mut b) = (Order::new(7), Order::new(7));
        assert_eq!(a.shuffled(6), b.shuffled(6));
        assert!(Machine::this().cores > 0);
        assert!(!interrupted());
    }
}
