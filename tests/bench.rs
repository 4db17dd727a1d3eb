//! `camring bench --quick`, as CI runs it: the real binary, every transport, real children,
//! real shared memory. Its JSON must hold a sane entry for every transport at both rates,
//! its plot must name them all, and it must leave nothing behind.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use camring_bench::Transport;
use serde_json::Value;

/// Only a guard against a hung run (it takes well under a minute): never a figure under
/// test.
const HANG_GUARD: Duration = Duration::from_secs(900);

/// A fresh directory for the run's files, removed afterwards.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(common::ring_name("bench-test-out"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `camring ARGS`, stdout and stderr to files in `dir`; returns the status, the pid,
/// stdout and stderr.
fn run_camring(dir: &Path, args: &[&str]) -> (ExitStatus, u32, String, String) {
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    let mut child = Command::new(common::BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn camring");
    let pid = child.id();
    let deadline = Instant::now() + HANG_GUARD;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("camring bench hung");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status, pid, read(&out), read(&err))
}

/// iceoryx2's files (it keeps them in /dev/shm and /tmp/iceoryx2).
fn iceoryx2_files() -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![PathBuf::from("/dev/shm"), PathBuf::from("/tmp/iceoryx2")];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) && p.starts_with("/tmp/iceoryx2") {
                dirs.push(p);
            } else if p.starts_with("/tmp/iceoryx2")
                || e.file_name().to_string_lossy().starts_with("iox2_")
            {
                found.insert(p);
            }
        }
    }
    found
}

/// Names in `dir` that contain `part`.
fn names_with(dir: &str, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(part))
                .collect()
        })
        .unwrap_or_default()
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// One result's figures are sane.
fn check_result(r: &Value) {
    let name = format!(
        "{} {} {} consumers",
        r["transport"], r["rate"], r["consumers"]
    );
    assert!(r["error"].is_null(), "{name} failed: {}", r["error"]);
    assert_eq!(r["profile"], "small", "{name}");
    assert!(r["frames"].as_u64().unwrap_or(0) > 0, "{name}: no frames");
    let fps = num(&r["fps"], "fps");
    assert!(fps > 0.0, "{name}: fps {fps}");
    assert!(num(&r["bytes_per_s"], "bytes_per_s") > 0.0, "{name}");
    let l = &r["latency_us"];
    let (p50, p99, p999) = (
        num(&l["p50"], "p50"),
        num(&l["p99"], "p99"),
        num(&l["p999"], "p999"),
    );
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= p999,
        "{name}: latency {l}"
    );
    assert!(num(&r["cpu_us_per_frame"], "cpu") > 0.0, "{name}");
    assert!(r["dropped"].is_u64(), "{name}: dropped {}", r["dropped"]);
    assert_eq!(r["corrupt"], 0, "{name}");
    if r["rate"] == "30fps" {
        // The sender keeps a 30 fps clock: nobody receives faster than that.
        assert!(fps <= 35.0, "{name}: {fps} fps at 30 fps");
    }
}

#[test]
fn quick_run_measures_every_transport_and_cleans_up() {
    let dir = TempDir::new();
    let json = dir.0.join("out.json");
    let svg = dir.0.join("out.svg");
    let iox_before = iceoryx2_files();
    let (status, pid, stdout, stderr) = run_camring(
        &dir.0,
        &[
            "bench",
            "--quick",
            "--json",
            json.to_str().expect("utf-8 path"),
            "--plot",
            svg.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        status.success(),
        "status {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // The Markdown table names every transport.
    assert!(
        stdout.contains("| transport | consumers | fps |"),
        "{stdout}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid JSON");
    assert_eq!(doc["quick"], true);
    assert_eq!(doc["rounds"], 1);
    assert!(doc["command"]
        .as_str()
        .is_some_and(|c| c.contains("bench --quick")));
    let results = doc["results"].as_array().expect("results");
    for t in Transport::ALL {
        assert!(
            stdout.contains(&format!("| {} |", t.name())),
            "{t} not in the table"
        );
        for rate in ["30fps", "max"] {
            let mine: Vec<&Value> = results
                .iter()
                .filter(|r| r["transport"] == t.name() && r["rate"] == rate)
                .collect();
            assert!(!mine.is_empty(), "no {t} result at {rate}");
            mine.into_iter().for_each(check_result);
        }
    }

    let plot = std::fs::read_to_string(&svg).expect("plot written");
    assert!(plot.starts_with("<svg"), "{}", &plot[..plot.len().min(200)]);
    assert!(plot.trim_end().ends_with("</svg>"));
    for t in Transport::ALL {
        assert!(plot.contains(t.name()), "{t} not in the plot");
    }

    // Nothing left behind: rings, cell directories, iceoryx2's files.
    let mark = format!("bench-{pid}-");
    assert_eq!(names_with("/dev/shm", &mark), Vec::<String>::new());
    let tmp = std::env::temp_dir();
    assert_eq!(
        names_with(tmp.to_str().expect("utf-8"), &mark),
        Vec::<String>::new()
    );
    let leaked: Vec<PathBuf> = iceoryx2_files().difference(&iox_before).cloned().collect();
    assert!(leaked.is_empty(), "iceoryx2 files left: {leaked:?}");
}

#[test]
fn bad_options_are_refused() {
    let dir = TempDir::new();
    for args in [
        &["bench", "--transports", "carrier-pigeon"][..],
        &["bench", "--profiles", "huge"],
        &["bench", "--rounds", "0"],
        &[
            "bench",
            "--quick",
            "--window",
            "0",
            "--transports",
            "memcpy",
        ],
    ] {
        let (status, _, _, stderr) = run_camring(&dir.0, args);
        assert!(!status.success(), "{args:?} accepted");
        assert!(!stderr.is_empty(), "{args:?}: no message");
    }
}
