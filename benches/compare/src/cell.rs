//! One measured cell: a sender child process and one child per consumer, driven through
//! the line protocol of [`crate::ctx`], with a deadline on every step. Whatever happens
//! (an error, a timeout, Ctrl-C), the children are killed and waited for, and the cell's
//! ring and directory are removed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use camring_shm::clock::now_ns;

use crate::ctx::{DirGuard, SinkReport, SourceReport, Spec};
use crate::profile::{Profile, Rate, Transport};

/// How long a child may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long after the window's end a report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to exit once it reported.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of a child's stderr kept for error messages.
const STDERR_LINES: usize = 12;
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
    let endpoint = sender.expect(setup, "ready", Instant::now() + READY_TIMEOUT)?;
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
            c.expect(setup, "ready", deadline)?;
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
        let line = c.expect(setup, "report", deadline)?;
        sinks.push(parse::<SinkReport>(&line).with_context(|| format!("{}'s report", c.what))?);
    }
    // The sender sends until `stop`: not before the window's end (memcpy has no
    // consumer reports to wait for).
    setup.sleep_until(end)?;
    let sender = children.sender()?;
    sender.send("stop")?;
    let line = sender.expect(
        setup,
        "report",
        deadline.max(Instant::now() + REPORT_TIMEOUT),
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

/// At most 200 characters of a child's line, for error messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Creates the cell's directory, owner-only.
fn create_private_dir(dir: PathBuf) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Removes the ring's segment if a sender left it behind (killed before it could).
#[derive(Debug)]
struct RingGuard(String);

impl Drop for RingGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(camring_shm::path_of(&self.0));
    }
}

/// The children of a cell: the sender first, then the consumers. Dropping kills any still
/// running.
#[derive(Debug, Default)]
struct Children(Vec<ChildProc>);

impl Children {
    /// Starts `camring bench-child ROLE SPEC`.
    fn spawn(
        &mut self,
        setup: &Setup,
        role: &str,
        spec: &Spec,
        what: &str,
    ) -> Result<&mut ChildProc> {
        let c = ChildProc::spawn(&setup.child, role, spec, what)?;
        self.0.push(c);
        Ok(self.0.last_mut().expect("just pushed"))
    }

    fn all(&mut self) -> impl Iterator<Item = &mut ChildProc> {
        self.0.iter_mut()
    }

    fn sender(&mut self) -> Result<&mut ChildProc> {
        self.0.first_mut().context("no sender")
    }

    fn consumers(&mut self) -> impl Iterator<Item = &mut ChildProc> {
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
        let mut s = String::new();
        for c in &self.0 {
            let tail = c.stderr_tail();
            if !tail.is_empty() {
                s.push_str(&format!("\n  {} stderr: {}", c.what, tail.join("\n    ")));
            }
        }
        s
    }
}

/// A child process: its stdin, its stdout lines through a channel (read on a thread, so
/// every wait has a deadline), the last lines of its stderr.
#[derive(Debug)]
struct ChildProc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    exited: bool,
}

impl ChildProc {
    /// Starts the child in its own process group (Ctrl-C reaches the runner only, which
    /// stops the children itself; a kill reaches anything the child started).
    fn spawn(command: &[String], role: &str, spec: &Spec, what: &str) -> Result<ChildProc> {
        let (program, args) = command.split_first().context("empty child command")?;
        let mut child = Command::new(program)
            .args(args)
            .arg(role)
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the {what} ({program})"))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().context("child stdout")?;
        std::thread::Builder::new()
            .name("bench-child-out".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_thread = spawn_stderr_reader(&mut child, Arc::clone(&stderr))?;
        Ok(ChildProc {
            what: what.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            stderr_thread: Some(stderr_thread),
            exited: false,
        })
    }

    /// Sends one line.
    fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("telling the {} {line:?}", self.what))
    }

    /// Waits until `deadline` for a line `WORD REST` and returns `REST`; any other line,
    /// the child's exit or Ctrl-C is an error.
    fn expect(&mut self, setup: &Setup, word: &str, deadline: Instant) -> Result<String> {
        loop {
            setup.check_interrupted()?;
            let now = Instant::now();
            if now >= deadline {
                bail!("the {} did not say `{word}` in time", self.what);
            }
            match self.lines.recv_timeout((deadline - now).min(POLL)) {
                Ok(line) => {
                    let (first, rest) = line.split_once(' ').unwrap_or((&line, ""));
                    if first != word {
                        bail!(
                            "the {} said {:?}, expected `{word}`",
                            self.what,
                            clip(&line)
                        );
                    }
                    return Ok(rest.trim().to_owned());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait(Instant::now() + Duration::from_secs(1));
                    bail!(
                        "the {} exited before saying `{word}` ({})",
                        self.what,
                        status
                            .err()
                            .map_or("exit status 0".into(), |e| format!("{e:#}"))
                    );
                }
            }
        }
    }

    /// Waits until `deadline` for the child to exit successfully; kills it if it does not.
    fn wait(&mut self, deadline: Instant) -> Result<()> {
        self.stdin = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = true;
                self.join_stderr();
                if !status.success() {
                    bail!("the {} failed: {status}", self.what);
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("the {} did not exit in time (killed)", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the child's process group and waits for the child.
    fn kill(&mut self) {
        self.stdin = None;
        if !self.exited {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
        self.join_stderr();
    }

    /// Waits (briefly) for the stderr reader to see the end of the pipe.
    fn join_stderr(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while self
            .stderr_thread
            .as_ref()
            .is_some_and(|t| !t.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self
            .stderr_thread
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
        {
            let _ = self.stderr_thread.take().map(JoinHandle::join);
        }
    }

    /// The last lines the child wrote to stderr.
    fn stderr_tail(&self) -> Vec<String> {
        self.stderr
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Keeps the last [`STDERR_LINES`] lines of the child's stderr in `tail`.
fn spawn_stderr_reader(
    child: &mut Child,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> Result<JoinHandle<()>> {
    let stderr = child.stderr.take().context("child stderr")?;
    Ok(std::thread::Builder::new()
        .name("bench-child-err".into())
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut t) = tail.lock() {
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(clip(&line));
                }
            }
        })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_lines_and_cuts_long_ones() {
        assert_eq!(clip("ready x"), "ready x");
        let long = "é".repeat(300);
        let c = clip(&long);
        assert_eq!(c.chars().count(), 201);
        assert!(c.ends_with('…'));
    }

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
