//! One measured cell: a sender child process and one child per consumer, driven through
//! the line protocol of [`crate::ctx`] (camring-testkit's [`Child`]), with a deadline on
//! every step. Whatever happens
//! (an error, a timeout, Ctrl-C), the children are killed and waited for, and the cell's
//! ring and directory are removed.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use camring_shm::clock::now_ns;
use camring_testkit::{clip, Child, RingGuard};

use crate::ctx::{DirGuard, SinkReport, SourceReport, Spec};
use crate::profile::{Profile, Rate, Transport};

/// How long a child may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after the window's end a report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to exit once it reported.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a wait checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The transport measured.
    pub transport: Transport,
    /// The payload.
    pub profile: Profile,
    /// The sender's pace.
    pub rate: Rate,
    /// Number of consumers.
    pub consumers: u32,
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.consumers == 1 { "" } else { "s" };
        write!(
            f,
            "{} {} {} {} consumer{s}",
            self.transport, self.profile, self.rate, self.consumers
        )
    }
}

/// What the children of one cell reported.
#[derive(Debug, Clone)]
pub struct CellReport {
    /// The sender's report.
    pub source: SourceReport,
    /// One per consumer (for memcpy, the sender's in-process consumers).
    pub sinks: Vec<SinkReport>,
}

/// How a cell is run: the child command, the timing, the Ctrl-C flag.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The command that starts a child (`camring bench-child`).
    pub child: Vec<String>,
    /// Warm-up before the window.
    pub warmup: Duration,
    /// The measuring window.
    pub window: Duration,
    /// Raised by SIGINT or SIGTERM.
    pub interrupted: Arc<AtomicBool>,
}

impl Setup {
    /// Whether SIGINT or SIGTERM arrived.
    pub fn interrupted(&self) -> bool {
        // SYNC POINT: Relaxed: a flag raised by the signal handler, no data behind it.
        self.interrupted.load(Ordering::Relaxed)
    }

    /// Sleeps until CLOCK_REALTIME reaches `t` (ns), checking for Ctrl-C.
    fn sleep_until(&self, t: u64) -> Result<()> {
        loop {
            self.check_interrupted()?;
            let now = now_ns();
            if now >= t {
                return Ok(());
            }
            std::thread::sleep(Duration::from_nanos(t - now).min(POLL));
        }
    }

    fn check_interrupted(&self) -> Result<()> {
        if self.interrupted() {
            bail!("interrupted");
        }
        Ok(())
    }
}

/// Runs `cell` as the `n`th cell of this process: a fresh directory and ring name, the
/// children, the window; returns their reports or why it failed (with the children's
/// stderr).
pub fn run(setup: &Setup, cell: Cell, n: usize) -> Result<CellReport> {
    setup.check_interrupted()?;
    let name = format!("bench-{}-{n}", std::process::id());
    let dir = DirGuard(std::env::temp_dir().join(format!("camring-{name}")));
    create_private_dir(dir.path().to_path_buf())?;
    let _ring = RingGuard(name.clone());
    let spec = Spec {
        transport: cell.transport,
        profile: cell.profile,
        rate: cell.rate,
        consumers: cell.consumers,
        index: 0,
        name,
        dir: dir.path().to_path_buf(),
        endpoint: String::new(),
    };
    let mut children = Children::default();
    let result = drive(setup, &spec, &mut children);
    match result {
        Ok(report) => {
            children.wait_all(EXIT_TIMEOUT)?;
            Ok(report)
        }
        Err(e) => {
            children.kill_all();
            // A killed iceoryx2 sender leaves its segments behind: remove those of dead
            // senders now rather than at the next iceoryx2 cell (there may be none).
            crate::transport::iceoryx2::remove_dead_segments();
            Err(anyhow!("{e:#}{}", children.stderr_tails()))
        }
    }
}

/// The steps of a cell, each with a deadline.
fn drive(setup: &Setup, spec: &Spec, children: &mut Children) -> Result<CellReport> {
    let sender = children.spawn(setup, "source", spec, "sender")?;
    let endpoint = sender.expect("ready", Instant::now() + READY_TIMEOUT, &setup.interrupted)?;
    let hosted = spec.transport == Transport::Memcpy;
    if !hosted {
        for index in 0..spec.consumers {
            let mut s = spec.clone();
            s.index = index;
            s.endpoint.clone_from(&endpoint);
            children.spawn(setup, "sink", &s, &format!("consumer {index}"))?;
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        for c in children.consumers() {
            c.expect("ready", deadline, &setup.interrupted)?;
        }
    }
    let start = now_ns() + setup.warmup.as_nanos() as u64;
    let end = start + setup.window.as_nanos() as u64;
    for c in children.all() {
        c.send(&format!("go {start} {end}"))?;
    }
    let deadline = Instant::now() + setup.warmup + setup.window + REPORT_TIMEOUT;
    let mut sinks = Vec::new();
    for c in children.consumers() {
        let line = c.expect("report", deadline, &setup.interrupted)?;
        sinks.push(parse::<SinkReport>(&line).with_context(|| format!("{}'s report", c.what()))?);
    }
    // The sender sends until `stop`: not before the window's end (memcpy has no
    // consumer reports to wait for).
    setup.sleep_until(end)?;
    let sender = children.sender()?;
    sender.send("stop")?;
    let line = sender.expect(
        "report",
        deadline.max(Instant::now() + REPORT_TIMEOUT),
        &setup.interrupted,
    )?;
    let mut source = parse::<SourceReport>(&line).context("the sender's report")?;
    if hosted {
        sinks = std::mem::take(&mut source.local);
    }
    if sinks.len() != spec.consumers as usize {
        bail!("{} consumer reports for {}", sinks.len(), spec.consumers);
    }
    Ok(CellReport { source, sinks })
}

/// Parses a report's JSON.
fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).with_context(|| format!("bad report {:?}", clip(json)))
}

/// Creates the cell's directory, owner-only.
fn create_private_dir(dir: PathBuf) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// The children of a cell: the sender first, then the consumers. Dropping kills any still
/// running.
#[derive(Debug, Default)]
struct Children(Vec<Child>);

impl Children {
    /// Starts `camring bench-child ROLE SPEC`.
    fn spawn(&mut self, setup: &Setup, role: &str, spec: &Spec, what: &str) -> Result<&mut Child> {
        let (program, args) = setup.child.split_first().context("empty child command")?;
        let mut command = Command::new(program);
        command
            .args(args)
            .arg(role)
            .arg(serde_json::to_string(spec)?);
        self.0.push(Child::spawn(command, what)?);
        Ok(self.0.last_mut().expect("just pushed"))
    }

    fn all(&mut self) -> impl Iterator<Item = &mut Child> {
        self.0.iter_mut()
    }

    fn sender(&mut self) -> Result<&mut Child> {
        self.0.first_mut().context("no sender")
    }

    fn consumers(&mut self) -> impl Iterator<Item = &mut Child> {
        self.0.iter_mut().skip(1)
    }

    /// Waits for every child to exit successfully (killing those that do not in time).
    fn wait_all(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut failed = Vec::new();
        for c in &mut self.0 {
            if let Err(e) = c.wait(deadline) {
                failed.push(format!("{e:#}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("{}{}", failed.join("; "), self.stderr_tails()))
        }
    }

    fn kill_all(&mut self) {
        for c in &mut self.0 {
            c.kill();
        }
    }

    /// The end of every child's stderr, for an error message ("" when all were quiet).
    fn stderr_tails(&self) -> String {
        self.0.iter().map(Child::stderr_note).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(script: &str) -> Setup {
        Setup {
            child: vec!["sh".into(), "-c".into(), script.into(), "sh".into()],
            warmup: Duration::from_millis(10),
            window: Duration::from_millis(50),
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    const CELL: Cell = Cell {
        transport: Transport::Tcp,
        profile: Profile::Small,
        rate: Rate::Fixed,
        consumers: 1,
    };

    fn cell_dir(n: usize) -> PathBuf {
        std::env::temp_dir().join(format!("camring-bench-{}-{n}", std::process::id()))
    }

    #[test]
    fn a_child_that_dies_fails_the_cell_with_its_stderr() {
        let e = run(&setup("echo oops >&2; exit 3"), CELL, 1_000_001).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("the sender exited before saying `ready`"),
            "{msg}"
        );
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("sender stderr: oops"), "{msg}");
        assert!(!cell_dir(1_000_001).exists());
    }

    #[test]
    fn a_child_that_says_something_else_is_killed() {
        // Role `source` answers garbage; it would sleep for a minute if not killed.
        let e = run(&setup("echo hello; sleep 60"), CELL, 1_000_002).unwrap_err();
        assert!(
            format!("{e:#}").contains("said \"hello\", expected `ready`"),
            "{e:#}"
        );
        assert!(!cell_dir(1_000_002).exists());
    }

    #[test]
    fn an_interrupted_run_starts_nothing() {
        let s = setup("exit 0");
        s.interrupted.store(true, Ordering::Relaxed);
        assert_eq!(
            run(&s, CELL, 1_000_003).unwrap_err().to_string(),
            "interrupted"
        );
    }

    #[test]
    fn cell_names_read_well() {
        let c = Cell {
            transport: Transport::ShmCopy,
            profile: Profile::Small,
            rate: Rate::Max,
            consumers: 3,
        };
        assert_eq!(c.to_string(), "shm-copy small max 3 consumers");
    }
}
