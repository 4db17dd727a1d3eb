//! The browser viewer (consumers/viewer) in real Chromium: a synthetic 4-camera JPEG
//! producer and a real `camring bridge ws` (with a token), the page driven by
//! tests/browser/viewer_check.mjs (playwright-core), which asks for the server to be
//! restarted once to see the page reconnect. It needs /usr/bin/chromium, Node.js 20+ and
//! tests/browser/node_modules; scripts/setup.sh installs them, and without them this test
//! fails saying so.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use rustix::process::{Pid, Signal};

const CAMERAS: usize = 4;
const TOKEN: &str = "viewer-test-token";
const T: Duration = Duration::from_secs(60);
/// A watchdog for the whole browser run (its own waits time out well before), not a
/// performance requirement.
const BROWSER_WATCHDOG: Duration = Duration::from_secs(400);
/// Every camera draws more than this many frames in the ~3 s measuring window.
const MIN_FRAMES_IN_WINDOW: u64 = 10;

#[test]
fn viewer_shows_every_camera_in_chromium() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    require_browser(&browser_dir);

    let ring = ring_name("viewer");
    let _ring = RingGuard(ring.clone());
    let _producer = produce(
        &ring,
        &[
            "--cameras",
            "4",
            "--size",
            "640x480",
            "--fps",
            "30",
            "--format",
            "jpeg",
            "-q",
        ],
    );
    assert!(wait_for_frames(&ring, 1, T), "producer did not start");
    let mut bridge = Some(BridgeRun::start(&ring, "127.0.0.1:0"));
    let url = bridge.as_ref().expect("started").url.clone();
    let listen = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut bridge_logs = Vec::new();

    // The page passes its own query string on to the WebSocket: without the token there,
    // the server would refuse the connection.
    let page = format!("{url}?token={TOKEN}&quality=70");
    let mut node = NodeRun::spawn(&browser_dir, &page);
    let deadline = Instant::now() + BROWSER_WATCHDOG;
    let mut result = None;
    while let Some(line) = node.next_line(deadline) {
        match line.as_str() {
            "stop-server" => {
                let b = bridge.take().expect("the bridge runs");
                bridge_logs.push(b.stop());
                node.answer("stopped");
            }
            "start-server" => {
                // The same address, so that the page finds it again.
                let b = BridgeRun::start(&ring, &listen);
                assert_eq!(b.url, url, "the restarted bridge's address");
                bridge = Some(b);
                node.answer("started");
            }
            _ if line.starts_with('{') => result = Some(line),
            _ => println!("viewer_check: {line}"),
        }
    }
    let (status, stderr) = node.finish(deadline);
    bridge_logs.extend(bridge.map(BridgeRun::stop));
    let context = format!(
        "node {status}\nnode stderr:\n{stderr}\nbridge stderr:\n{}",
        bridge_logs.join("\n--- restarted ---\n")
    );
    let line = result.unwrap_or_else(|| panic!("no JSON line from viewer_check.mjs\n{context}"));
    println!("viewer_check: {line}");
    let r: serde_json::Value = serde_json::from_str(&line).expect("viewer_check prints JSON");

    assert!(
        r["failure"].is_null(),
        "the viewer failed at {}\nviewer status: {}\nconsole errors: {}\n{context}",
        r["failure"],
        r["viewer"]["status"],
        r["consoleErrors"],
    );
    // worker.js on the worked example of docs/protocol.md: both cameras parsed (camera 0's
    // 4-byte "JPEG" fails to decode, camera 2 is gray8, which the viewer does not draw),
    // and the same message a byte short or a byte long refused.
    let parser = &r["parser"];
    assert_eq!(parser["cameraRequests"], serde_json::json!([2]), "{parser}");
    assert_eq!(
        parser["invalid"].as_array().map(Vec::len),
        Some(2),
        "{parser}"
    );
    for id in [0, 2] {
        let c = parser["cameras"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["id"] == id))
            .unwrap_or_else(|| panic!("camera {id} of the worked example: {parser}"));
        assert_eq!(
            (
                u(c, "framesReceived"),
                u(c, "undecodable"),
                u(c, "framesDrawn")
            ),
            (1, 1, 0),
            "{c}"
        );
    }

    let cameras = r["cameras"].as_array().expect("cameras");
    assert_eq!(cameras.len(), CAMERAS, "cameras in the grid: {r}");
    for (i, c) in cameras.iter().enumerate() {
        assert_eq!(c["id"], i, "camera ids: {r}");
        println!(
            "camera {i}: display {:.1} fps (the page's own figure), {:.1} fps measured \
             over the window, {} frames drawn, latency {:.1} ms, {}x{}",
            f(c, "displayFps"),
            f(c, "measuredFps"),
            u(c, "framesDrawn"),
            f(c, "latencyMs"),
            u(c, "width"),
            u(c, "height"),
        );
        assert!(
            u(c, "drawnInWindow") > MIN_FRAMES_IN_WINDOW,
            "camera {i} drew too few frames: {c}"
        );
        assert!(
            u(c, "lastFrame") > u(c, "firstFrame"),
            "camera {i}: frame numbers did not advance: {c}"
        );
        assert!(f(c, "displayFps") > 0.0, "camera {i}: display fps: {c}");
        assert_eq!(
            (u(c, "width"), u(c, "height")),
            (640, 480),
            "camera {i} before resizing: {c}"
        );
    }
    assert_eq!(r["resized"].as_array().map(Vec::len), Some(CAMERAS), "{r}");
    for c in r["resized"].as_array().expect("resized") {
        assert_eq!(
            (u(c, "width"), u(c, "height")),
            (320, 240),
            "640x480 with max size 320x240 keeps the aspect ratio: {c}"
        );
    }

    // Settings changed on the same connection, never by reconnecting.
    assert_eq!(
        r["socketsBeforeRestart"], 1,
        "WebSocket connections before the restart: {r}"
    );
    assert_eq!(
        r["settingsSent"].as_array().map(Vec::len),
        Some(2),
        "settings messages (max size, quality) on the socket: {r}"
    );
    assert_eq!(r["paused"], 0, "binary messages while paused: {r}");

    // The server restarted: the page said so, and reconnected by itself keeping the token
    // and the settings chosen through the controls.
    let restart = &r["restart"];
    let down = restart["statusWhileDown"].as_str().unwrap_or_default();
    assert!(
        down.contains("disconnected") && down.contains("reconnecting"),
        "the page's status while the server was down: {down:?}"
    );
    let sockets: Vec<&str> = r["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(sockets.len() >= 2, "no reconnection: {r}");
    assert!(
        sockets[0].contains(&format!("token={TOKEN}")) && sockets[0].contains("quality=70"),
        "the first WebSocket URL carries the page's query: {}",
        sockets[0]
    );
    let last = sockets[sockets.len() - 1];
    for param in [
        format!("token={TOKEN}"),
        "max_width=320".to_string(),
        "max_height=240".to_string(),
        "quality=40".to_string(),
    ] {
        assert!(
            last.contains(&param),
            "the reconnection URL {last} lacks {param}"
        );
    }
    assert_eq!(restart["connections"], 2, "{r}");
    for c in restart["sizes"]
        .as_array()
        .expect("sizes after the restart")
    {
        assert_eq!((u(c, "width"), u(c, "height")), (320, 240), "{c}");
    }

    for key in ["consoleErrors", "pageErrors"] {
        assert_eq!(r[key].as_array().map(Vec::len), Some(0), "{key}: {r}");
    }
    let viewer = &r["viewer"];
    assert_eq!(
        viewer["serverErrors"].as_array().map(Vec::len),
        Some(0),
        "{r}"
    );
    assert_eq!(viewer["invalidMessages"], 0, "{r}");
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// Fails (never skips) when what the browser test needs is not installed.
fn require_browser(browser_dir: &Path) {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/chromium").exists() {
        missing.push("/usr/bin/chromium (Debian package chromium)".to_string());
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let major: u32 = version
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major < 20 {
                missing.push(format!("Node.js 20 or later (found {version})"));
            }
        }
        _ => missing.push("Node.js 20 or later (`node`)".to_string()),
    }
    if !browser_dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/browser/node_modules (npm ci in tests/browser)".to_string());
    }
    assert!(
        missing.is_empty(),
        "the browser viewer test needs {}: run scripts/setup.sh",
        missing.join(", ")
    );
}

/// A running `camring bridge ws --token TOKEN`, its stderr read on a thread (so that its
/// pipe never fills up).
struct BridgeRun {
    proc: Proc,
    url: String,
    stderr: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl BridgeRun {
    /// Starts it and waits for its `listening on http://127.0.0.1:PORT/` line.
    fn start(ring: &str, listen: &str) -> BridgeRun {
        let mut proc = Proc::spawn(&[
            "bridge", "ws", "--ring", ring, "--listen", listen, "--token", TOKEN,
        ]);
        let stderr = proc.child.stderr.take().expect("bridge stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!(
                    "the bridge printed no `listening on http://127.0.0.1:PORT/` line:\n{}",
                    seen.join("\n")
                );
            };
            let url = line.split_once("listening on ").and_then(|(_, rest)| {
                rest.split_whitespace()
                    .next()
                    .filter(|u| u.starts_with("http://127.0.0.1:") && u.ends_with('/'))
                    .map(str::to_string)
            });
            seen.push(line);
            if let Some(url) = url {
                return BridgeRun {
                    proc,
                    url,
                    stderr: rx,
                    seen,
                };
            }
        }
    }

    /// Stops it (SIGTERM; SIGKILL if it lingers); returns everything it printed.
    fn stop(mut self) -> String {
        self.proc.signal(Signal::TERM);
        let out = self.proc.finish(T);
        self.seen.extend(self.stderr.try_iter());
        self.seen.push(format!("(exit: {})", out.status));
        self.seen.join("\n")
    }
}

/// `node viewer_check.mjs URL CAMERAS --restart`, stopped (SIGTERM, then SIGKILL) if it
/// outlives the watchdog or the test; on SIGTERM playwright closes the browser it launched.
struct NodeRun {
    child: Child,
    stdin: ChildStdin,
    stdout: mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl NodeRun {
    fn spawn(browser_dir: &Path, url: &str) -> NodeRun {
        let mut child = Command::new("node")
            .arg(browser_dir.join("viewer_check.mjs"))
            .arg(url)
            .arg(CAMERAS.to_string())
            .arg("--restart")
            .current_dir(browser_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().expect("piped");
        let out = child.stdout.take().expect("piped");
        let (tx, stdout) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped");
        let stderr = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }));
        NodeRun {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Its next line on stdout; `None` once it closed stdout, or at the deadline.
    fn next_line(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.stdout.recv_timeout(left).ok()
    }

    fn answer(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to node's stdin");
    }

    /// Waits for it to exit (stopping it at the deadline); returns its status and stderr.
    fn finish(mut self, deadline: Instant) -> (String, String) {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status.to_string();
            }
            if Instant::now() >= deadline {
                self.stop();
                break "stopped by the watchdog".to_string();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self.stderr.take().and_then(|h| h.join().ok());
        (status, stderr.unwrap_or_default())
    }

    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeRun {
    fn drop(&mut self) {
        self.stop();
    }
}
