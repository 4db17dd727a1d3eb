//! Child processes that talk in lines: a runner writes to a child's stdin and reads its
//! stdout lines through a channel (read on a thread, so every wait has a deadline); the
//! last lines of its stderr are kept for error messages. Whatever happens (an error, a
//! timeout, Ctrl-C), a child is killed and reaped when dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// First argument of a bench binary re-executed as a helper process ([`Helpers`]).
pub const CHILD_MARKER: &str = "--camring-bench-child";

/// Lines of a child's stderr kept for error messages.
const STDERR_LINES: usize = 12;
/// How often a wait checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);
/// How long a helper may take to say its first line.
const HELPER_TIMEOUT: Duration = Duration::from_secs(20);

/// At most 200 characters of a child's line, for error messages.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A child process: its stdin, its stdout lines, the last lines of its stderr.
#[derive(Debug)]
pub struct Child {
    what: String,
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout_thread: Option<JoinHandle<()>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    exited: bool,
}

impl Child {
    /// Starts `command` (called `what` in messages) with its stdio piped, in its own
    /// process group: Ctrl-C reaches the runner only, which stops the children itself; a
    /// kill reaches anything the child started.
    pub fn spawn(mut command: Command, what: &str) -> Result<Child> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the {what} ({program})"))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().context("child stdout")?;
        let stdout_thread = std::thread::Builder::new()
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
        let tail = Arc::clone(&stderr);
        let err = child.stderr.take().context("child stderr")?;
        let stderr_thread = std::thread::Builder::new()
            .name("bench-child-err".into())
            .spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == STDERR_LINES {
                            t.pop_front();
                        }
                        t.push_back(clip(&line));
                    }
                }
            })?;
        Ok(Child {
            what: what.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            stdout_thread: Some(stdout_thread),
            stderr,
            stderr_thread: Some(stderr_thread),
            exited: false,
        })
    }

    /// What the child is called in messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("telling the {} {line:?}", self.what))
    }

    /// Waits until `deadline` for a line `WORD REST` and returns `REST`; any other line,
    /// the child's exit or `interrupted` is an error.
    pub fn expect(
        &mut self,
        word: &str,
        deadline: Instant,
        interrupted: &AtomicBool,
    ) -> Result<String> {
        loop {
            // SYNC POINT: Relaxed: a flag raised by a signal handler, no data behind it.
            if interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
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

    /// Whether the child has exited.
    pub fn exited(&mut self) -> Result<bool> {
        Ok(self.exited || self.child.try_wait()?.is_some())
    }

    /// Waits until `deadline` for the child to exit successfully; kills it if it does not.
    pub fn wait(&mut self, deadline: Instant) -> Result<()> {
        self.stdin = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = true;
                self.join_readers();
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

    /// The stdout lines not read yet (all of them once the child has exited).
    pub fn rest(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Kills the child's process group and waits for the child.
    pub fn kill(&mut self) {
        self.stdin = None;
        if !self.exited {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
        self.join_readers();
    }

    /// Waits (briefly) for the stdout and stderr readers to see the end of their pipes.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        for thread in [&mut self.stdout_thread, &mut self.stderr_thread] {
            while thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.as_ref().is_some_and(JoinHandle::is_finished) {
                let _ = thread.take().map(JoinHandle::join);
            }
        }
    }

    /// The last lines the child wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `"\n  WHAT stderr: …"`, or "" if the child wrote nothing there.
    pub fn stderr_note(&self) -> String {
        let tail = self.stderr_tail();
        if tail.is_empty() {
            String::new()
        } else {
            format!("\n  {} stderr: {}", self.what, tail.join("\n    "))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Helper processes: this bench binary re-executed with [`CHILD_MARKER`] (see
/// [`crate::child_args`]). Every one still running when this is dropped is killed.
#[derive(Debug, Default)]
pub struct Helpers(Vec<Child>);

impl Helpers {
    /// Starts a helper with `args` after the marker.
    pub fn spawn(&mut self, args: &[String]) -> Result<()> {
        let mut command = Command::new(std::env::current_exe().context("current_exe")?);
        command.arg(CHILD_MARKER).args(args);
        let what = format!("helper {}", self.0.len());
        self.0.push(Child::spawn(command, &what)?);
        Ok(())
    }

    /// How many were started.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Waits for every helper to say `word` (they say `ready` once attached).
    pub fn expect_line(&mut self, word: &str) -> Result<()> {
        let deadline = Instant::now() + HELPER_TIMEOUT;
        let never = AtomicBool::new(false);
        let flag = crate::interrupt_flag().ok();
        let interrupted = flag.as_deref().unwrap_or(&never);
        for c in &mut self.0 {
            let rest = c
                .expect(word, deadline, interrupted)
                .map_err(|e| anyhow::anyhow!("{e:#}{}", c.stderr_note()))?;
            if !rest.is_empty() {
                bail!("the {} said {word:?} {rest:?}", c.what());
            }
        }
        Ok(())
    }

    /// Whether helper `i` has exited.
    pub fn exited(&mut self, i: usize) -> Result<bool> {
        self.0[i].exited()
    }

    /// Waits (up to `timeout`, then kills) for every helper, checks that each succeeded and
    /// returns the rest of its stdout.
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut outputs = Vec::new();
        for c in &mut self.0 {
            c.wait(deadline)
                .map_err(|e| anyhow::anyhow!("{e:#}{}", c.stderr_note()))?;
            outputs.push(c.rest().join("\n"));
        }
        Ok(outputs)
    }
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

    fn sh(script: &str) -> Child {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        Child::spawn(c, "shell").unwrap()
    }

    #[test]
    fn lines_are_expected_with_a_deadline_and_the_rest_collected() {
        let never = AtomicBool::new(false);
        let mut c = sh("echo ready now; echo oops >&2; read x; echo got $x; echo bye");
        let soon = Instant::now() + Duration::from_secs(10);
        assert_eq!(c.expect("ready", soon, &never).unwrap(), "now");
        c.send("it").unwrap();
        c.wait(soon).unwrap();
        assert_eq!(c.rest(), vec!["got it".to_owned(), "bye".to_owned()]);
        assert_eq!(c.stderr_tail(), vec!["oops".to_owned()]);
    }

    #[test]
    fn a_silent_child_times_out_and_a_dead_one_says_so() {
        let never = AtomicBool::new(false);
        let mut c = sh("sleep 60");
        let e = c.expect("ready", Instant::now() + Duration::from_millis(50), &never);
        assert!(format!("{:#}", e.unwrap_err()).contains("did not say `ready` in time"));
        drop(c);
        let mut c = sh("exit 3");
        let e = c.expect("ready", Instant::now() + Duration::from_secs(10), &never);
        let msg = format!("{:#}", e.unwrap_err());
        assert!(msg.contains("exited before saying `ready`"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
    }
}
