//! `camring view` against the real thing: a synthetic producer process, a `camring bridge
//! ws` process serving its ring, and `camring view` processes receiving, verifying and
//! saving what the bridge sends, through refusals, settings and a bridge restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rustix::process::Signal;

/// Guard against hangs only: no test asserts how long anything takes.
const T: Duration = Duration::from_secs(60);

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn p50(v: &serde_json::Value) -> f64 {
    v["latency_us"]["p50"].as_f64().expect("latency_us.p50")
}

/// A synthetic producer of 3 cameras at 320x240 and 30 fps in `format`, running until
/// dropped, and its ring (removed when dropped).
struct Producer {
    _proc: Proc,
    _guard: RingGuard,
    ring: String,
}

fn producer(test: &str, format: &str) -> Producer {
    let ring = ring_name(test);
    let guard = RingGuard(ring.clone());
    let proc = live_producer(&ring, 3, "320x240", 30, format);
    Producer {
        _proc: proc,
        _guard: guard,
        ring,
    }
}

/// A `camring bridge ws` process (on any address: a restart reuses the port); its stderr is drained by a thread (so it never blocks on
/// a full pipe) and kept for messages.
struct WsBridge {
    proc: Proc,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl WsBridge {
    /// Starts the bridge on `listen` (e.g. `127.0.0.1:0`) and waits for its `listening on
    /// http://127.0.0.1:PORT/` line.
    fn start(ring: &str, listen: &str, extra: &[&str]) -> Result<WsBridge, String> {
        let mut args = vec!["bridge", "ws", "--ring", ring, "--listen", listen];
        args.extend_from_slice(extra);
        let find = |line: &str| {
            line.split_once("listening on http://127.0.0.1:")
                .and_then(|(_, rest)| rest.split('/').next())
                .and_then(|p| p.parse::<u16>().ok())
        };
        let l = spawn_logged(&args, find, T)?;
        Ok(WsBridge {
            proc: l.proc,
            port: l.found,
            log: l.log,
        })
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

fn bridge(ring: &str, extra: &[&str]) -> WsBridge {
    WsBridge::start(ring, "127.0.0.1:0", extra).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `camring view URL ARGS...` to completion.
fn view(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["view", url];
    all.extend_from_slice(args);
    run(&all, T)
}

/// Runs `camring view URL --verify --duration SECONDS --json ARGS...` to completion.
fn verifying_view(url: &str, seconds: &str, args: &[&str]) -> Output {
    view(
        url,
        &[&["--verify", "--duration", seconds, "--json"], args].concat(),
    )
}

/// The summary of a view that must have succeeded, with every frame verified.
fn verified_summary(out: &Output, bridge: &WsBridge) -> serde_json::Value {
    let s = summary(out);
    assert!(
        out.status.success(),
        "view failed: {:?}\n{}\nbridge:\n{}",
        out.status,
        stderr(out),
        bridge.log()
    );
    assert!(u(&s, "frames") > 0, "{s}");
    assert!(u(&s, "verified") > 0, "{s}");
    assert_eq!(u(&s, "corrupt"), 0, "{s}\n{}", stderr(out));
    assert_eq!(u(&s, "invalid"), 0, "{s}\n{}", stderr(out));
    assert!(p50(&s) > 0.0, "{s}");
    s
}

#[test]
fn verifies_a_jpeg_ring() {
    let p = producer("view-jpeg", "jpeg");
    let b = bridge(&p.ring, &[]);
    let out = verifying_view(&b.url(), "3", &[]);
    let s = verified_summary(&out, &b);
    // Every message carries the 3 synthetic cameras at full size: each one is checked.
    assert_eq!(u(&s, "verified"), u(&s, "frames"), "{s}");
    assert_eq!(u(&s, "resyncs"), 0, "{s}");
    let err = stderr(&out);
    assert!(err.contains("connected to ws://127.0.0.1:"), "{err}");
    assert!(err.contains(" fps  latency p50"), "no live line: {err}");
    assert!(err.contains("producer live"), "{err}");
}

#[test]
fn verifies_a_raw_ring_the_bridge_encodes() {
    let p = producer("view-rgb", "rgb8");
    let b = bridge(&p.ring, &[]);
    let out = verifying_view(&b.url(), "3", &["-q"]);
    let s = verified_summary(&out, &b);
    assert_eq!(u(&s, "verified"), u(&s, "frames"), "{s}");
    // -q: no live line, no progress.
    assert!(!stderr(&out).contains("fps"), "{}", stderr(&out));
}

#[test]
fn downscaled_images_are_still_verified() {
    let p = producer("view-small", "jpeg");
    let b = bridge(&p.ring, &[]);
    // Half size (whole-pixel code cells), and 100x75 whose cells fall between pixels.
    for width in ["160", "100"] {
        let out = verifying_view(&b.url(), "2", &["-q", "--max-width", width]);
        let s = verified_summary(&out, &b);
        assert_eq!(
            u(&s, "verified"),
            u(&s, "frames"),
            "--max-width {width}: {s}"
        );
    }
    // So small the code cells are 2.5 pixels: not checkable, so neither verified nor
    // corrupt.
    let out = verifying_view(&b.url(), "1", &["-q", "--max-width", "40"]);
    let s = summary(&out);
    assert!(out.status.success(), "{s}\n{}", stderr(&out));
    assert!(u(&s, "frames") > 0, "{s}");
    assert_eq!(u(&s, "corrupt"), 0, "{s}");
    // And from a raw ring, with a height limit and a lower quality.
    let p = producer("view-small-rgb", "rgb8");
    let b = bridge(&p.ring, &[]);
    let out = verifying_view(
        &b.url(),
        "2",
        &["-q", "--max-height", "120", "--quality", "40"],
    );
    let s = verified_summary(&out, &b);
    assert_eq!(u(&s, "verified"), u(&s, "frames"), "{s}");
}

#[test]
fn token_is_required() {
    let p = producer("view-token", "jpeg");
    let b = bridge(&p.ring, &["--token", "s3cret"]);
    for token in [None, Some("wrong")] {
        let args = match token {
            Some(t) => vec!["--token", t],
            None => vec![],
        };
        let out = verifying_view(&b.url(), "2", &args);
        assert!(!out.status.success(), "token {token:?} accepted");
        let err = stderr(&out);
        assert!(
            err.contains("camring view: the server refused the connection: 401"),
            "{err}"
        );
        assert!(err.contains("--token"), "{err}");
        assert!(out.stdout.is_empty(), "no summary without a connection");
    }
    let out = verifying_view(&b.url(), "2", &["--token", "s3cret"]);
    verified_summary(&out, &b);
    // The token is not shown in what view prints.
    assert!(!stderr(&out).contains("s3cret"), "{}", stderr(&out));
}

#[test]
fn refusals_are_reported() {
    // Nothing listening: a port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = view(&format!("ws://127.0.0.1:{port}"), &["--duration", "2"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("camring view: cannot connect to 127.0.0.1:"),
        "{err}"
    );

    let p = producer("view-refused", "jpeg");
    let b = bridge(&p.ring, &["--max-clients", "1"]);
    // A parameter the server does not know: 400, with the server's reason.
    let out = view(&format!("{}/ws?bogus=1", b.url()), &["--duration", "2"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refused the connection: 400"), "{err}");
    assert!(err.contains("bogus"), "{err}");
    // A bad value is refused before connecting, with the server's own check.
    let out = view(&b.url(), &["--fps", "5000"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--fps"), "{}", stderr(&out));
    // The server is full: 503.
    let first = Proc::spawn(&["view", &b.url(), "--duration", "60", "-q"]);
    // Wait until the first view holds the only place (a loaded machine can take a while).
    let deadline = Instant::now() + T;
    while healthz_clients(&b.url()) != Some(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = loop {
        let out = view(&b.url(), &["--duration", "1"]);
        let err = stderr(&out);
        if err.contains("503") || Instant::now() > deadline {
            break out;
        }
        // The first view may not be connected yet: then this one got the place.
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("refused the connection: 503"),
        "{err}\nbridge:\n{}",
        b.log()
    );
    drop(first);
}

#[test]
fn saves_decodable_jpegs_of_the_cameras_asked_for() {
    let p = producer("view-save", "jpeg");
    let b = bridge(&p.ring, &[]);
    let dir = SaveDir::new("save");
    let out = verifying_view(
        &b.url(),
        "2",
        &[
            "--cameras",
            "0,2",
            "--save",
            dir.0.to_str().unwrap(),
            "--save-max",
            "5",
        ],
    );
    verified_summary(&out, &b);
    let mut decoder = camring_jpeg::Decoder::new().unwrap();
    let mut saved = Vec::new();
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let (cam, frame) = name
            .strip_prefix("cam")
            .and_then(|n| n.strip_suffix(".jpg"))
            .and_then(|n| n.split_once('_'))
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        let (cam, _frame): (u32, u64) = (cam.parse().unwrap(), frame.parse().unwrap());
        assert!(cam == 0 || cam == 2, "camera {cam} was not asked for");
        let jpeg = std::fs::read(&path).unwrap();
        let (w, h, rgb) = decoder.decode_rgb(&jpeg).unwrap();
        assert_eq!((w, h), (320, 240), "{name}");
        let (found_cam, sequence) =
            camring_protocol::pattern::read_code_rgb(rgb, w, h).expect("code band");
        assert_eq!(u32::from(found_cam), cam, "{name}");
        decoder
            .verify_pattern(&jpeg, w, h, cam, u64::from(sequence))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        saved.push(name);
    }
    assert_eq!(saved.len(), 10, "5 multi-frames of 2 cameras: {saved:?}");
    assert!(
        stderr(&out).contains("saved 10 JPEG files"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn reconnects_when_the_bridge_restarts() {
    let p = producer("view-restart", "jpeg");
    let b = bridge(&p.ring, &[]);
    let port = b.port;
    // No --duration: stopped by SIGINT once the new bridge had time to serve it.
    let viewer = Proc::spawn(&["view", &b.url(), "--verify", "--json"]).watch();
    viewer.wait_for_frames(0, 30, T);
    b.proc.signal(Signal::KILL);
    drop(b);
    let lost = viewer.wait_for(0, "connection lost", T, |l| l.contains("connection lost"));
    // The same port again (retried: the old socket may take a moment to go).
    let listen = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let b2 = loop {
        match WsBridge::start(&p.ring, &listen, &[]) {
            Ok(b) => break b,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // Reconnection attempts back off to at most 2 s apart.
    let back = viewer.wait_for(lost, "reconnected", T, |l| l.contains("reconnected to"));
    viewer.wait_for_frames(back, viewer.frames() + 30, T);
    viewer.signal(Signal::INT);
    let out = viewer.finish(T);
    let s = verified_summary(&out, &b2);
    assert!(u(&s, "resyncs") >= 1, "{s}\n{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("connection lost"), "{err}");
    assert!(err.contains("reconnected to"), "{err}");
    // It kept verifying after reconnecting: more frames verified in the end than in the
    // last live line before the connection was lost.
    let before_loss = err.split("connection lost").next().unwrap();
    let verified_then = before_loss
        .lines()
        .filter_map(|l| l.split("verified ").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .next_back()
        .unwrap_or(0);
    assert!(u(&s, "verified") > verified_then, "{s}\n{err}");
}

#[test]
fn a_slow_client_gets_fewer_frames_never_older_ones() {
    let p = producer("view-slow", "jpeg");
    let b = bridge(&p.ring, &[]);
    let out = verifying_view(
        &b.url(),
        "3",
        &["-q", "--delay-ms", "100", "--rcvbuf", "4096"],
    );
    // Frames never went backwards (that would be corrupt) and every one verified; the
    // frames the client could not take were dropped by the server (gaps).
    let s = verified_summary(&out, &b);
    assert_eq!(u(&s, "verified"), u(&s, "frames"), "{s}");
    assert!(u(&s, "skipped") > 0, "{s}");
}

#[test]
fn stops_on_sigint_with_a_summary() {
    let p = producer("view-sigint", "jpeg");
    let b = bridge(&p.ring, &[]);
    let viewer = Proc::spawn(&["view", &b.url(), "--verify", "--json", "-q"]);
    std::thread::sleep(Duration::from_secs(2));
    viewer.signal(Signal::INT);
    let out = viewer.finish(T);
    verified_summary(&out, &b);
}

/// A directory under the system's temporary directory, removed when dropped.
struct SaveDir(PathBuf);

impl SaveDir {
    fn new(test: &str) -> SaveDir {
        let dir = std::env::temp_dir().join(ring_name(&format!("camring-view-{test}")));
        let _ = std::fs::remove_dir_all(&dir);
        SaveDir(dir)
    }
}

impl Drop for SaveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new(&self.0));
    }
}

/// The `clients` count of the bridge's /healthz (the bridge at `url`, ws://ADDR).
fn healthz_clients(url: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("ws://")?.trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let body = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let v: serde_json::Value = serde_json::from_slice(&raw[body..]).ok()?;
    v["clients"].as_u64()
}
