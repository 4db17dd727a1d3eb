//! Helpers for the cross-process tests: run the real `camring` binary, with real shared
//! memory, and clean up whatever happens.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_camring");

/// A ring name unique to this test process and call.
pub fn ring_name(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn shm_path(ring: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/dev/shm/camring-{ring}"))
}

/// Permission bits of the ring's segment.
pub fn shm_mode(ring: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(shm_path(ring))
        .expect("ring exists")
        .permissions()
        .mode()
        & 0o777
}

/// Starts `camring produce --ring RING EXTRA...` (a synthetic producer).
pub fn produce(ring: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["produce", "--ring", ring];
    args.extend_from_slice(extra);
    Proc::spawn(&args)
}

/// Removes the ring's segment when dropped, whatever the test did.
pub struct RingGuard(pub String);

impl Drop for RingGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn camring");
        Proc { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).expect("pid");
        let _ = rustix::process::kill_process(pid, sig);
    }

    /// Waits for exit (SIGKILL after `timeout`, so a test never hangs) and collects output.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().expect("wait");
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs camring to completion (killed after `timeout`).
pub fn run(args: &[&str], timeout: Duration) -> Output {
    Proc::spawn(args).finish(timeout)
}

/// Waits until the ring's producer has published at least `frames` frames.
pub fn wait_for_frames(ring: &str, frames: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(head) = ls_field(ring, "frames").and_then(|v| v.as_u64()) {
            if head >= frames {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One field of the ring's entry in `camring ls --json`.
pub fn ls_field(ring: &str, field: &str) -> Option<serde_json::Value> {
    let out = Command::new(BIN).args(["ls", "--json"]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["rings"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == ring)
        .map(|r| r[field].clone())
}

/// Parses the JSON summary a `read --json` printed.
pub fn summary(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON summary; status {:?}\nstdout: {text}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("summary is JSON")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
