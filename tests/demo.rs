//! `camring demo`: the README's run command. It starts a synthetic producer and the
//! WebSocket bridge, serves the viewer, and on SIGINT stops both, leaving nothing in
//! /dev/shm.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use camring_jpeg::Decoder;
use common::*;

/// A GET over a fresh connection: (status, headers, body).
fn get(port: u16, path: &str) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, raw[split + 4..].to_vec()))
}

#[test]
fn demo_serves_the_viewer_and_cleans_up_on_sigint() {
    let ring = ring_name("demo");
    let _guard = RingGuard(ring.clone());
    let mut demo = Proc::spawn(&[
        "demo",
        "--ring",
        &ring,
        "--listen",
        "127.0.0.1:0",
        "--size",
        "320x240",
    ]);
    // The bridge prints its address on stderr; keep draining stderr so it never blocks.
    let stderr = demo.child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let port = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no address printed; stderr so far: {lines:?}"));
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split('/').next().unwrap();
            break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
        lines.push(line);
    };

    // The producer comes up: /healthz turns 200 (ring live).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match get(port, "/healthz") {
            Some((200, _, body)) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["producer"], "live");
                assert_eq!(v["ring"], ring.as_str());
                break;
            }
            other => {
                assert!(Instant::now() < deadline, "healthz never ok: {other:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // The viewer page and its scripts.
    let (status, head, body) = get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("viewer.js"), "the page loads viewer.js");
    for script in ["/viewer.js", "/worker.js"] {
        let (status, _, body) = get(port, script).unwrap();
        assert_eq!(status, 200, "{script}");
        assert!(!body.is_empty());
    }
    // Each of the 4 synthetic cameras: its newest frame, as a JPEG of its own pattern.
    let mut decoder = Decoder::new().unwrap();
    for camera in 0..4u32 {
        let (status, head, jpeg) = get(port, &format!("/snapshot/{camera}.jpg")).unwrap();
        assert_eq!(status, 200, "camera {camera}: {head}");
        let sequence: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("x-camring-sequence: "))
            .expect("sequence header")
            .trim()
            .parse()
            .unwrap();
        decoder
            .verify_pattern(&jpeg, 320, 240, camera, sequence)
            .unwrap_or_else(|e| panic!("camera {camera} frame {sequence}: {e}"));
    }
    assert!(
        shm_path(&ring).exists(),
        "the demo's ring exists while it runs"
    );

    demo.signal(rustix::process::Signal::INT);
    let out = demo.finish(Duration::from_secs(30));
    assert!(out.status.success(), "demo exit: {:?}", out.status);
    assert!(
        !shm_path(&ring).exists(),
        "the demo left its ring in /dev/shm"
    );
    assert!(get(port, "/healthz").is_none(), "the bridge still listens");
}
