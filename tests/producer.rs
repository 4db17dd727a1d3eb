//! The producer across processes: the real `camring produce` with a mixed group (a
//! synthetic camera and MJPEG over HTTP from a real server on loopback), from a TOML
//! configuration writing two rings, refusing bad configurations cleanly, and its help.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camring_jpeg::{Decoder, Encoder, MAX_PATTERN_ERROR};
use camring_protocol::layout::{CAM_MISSING, CAM_SYNTHETIC};
use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;
use camring_shm::{ReadError, ReadMode, Reader};
use common::*;
use rustix::process::Signal;

const T: Duration = Duration::from_secs(60);

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

const BOUNDARY: &str = "camringtestframe";

/// An MJPEG-over-HTTP server on 127.0.0.1 (as an ESP32-CAM serves it): every connection
/// gets `multipart/x-mixed-replace` with one JPEG part per frame, each the synthetic
/// pattern of `camera` for the next frame number (increasing across connections).
/// Stopped and joined when dropped.
struct MjpegServer {
    port: u16,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl MjpegServer {
    fn start(camera: u32, width: u32, height: u32, fps: f64) -> MjpegServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let stop = stop.clone();
            let sent = sent.clone();
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((sock, _)) => {
                            let stop = stop.clone();
                            let sent = sent.clone();
                            conns.push(std::thread::spawn(move || {
                                // A client that goes away ends its connection; nothing else to do.
                                let _ = serve(sock, camera, width, height, fps, &stop, &sent);
                            }));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        MjpegServer {
            port,
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/stream", self.port)
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: reads the request head, then streams parts at `fps` until stopped or
/// the client leaves.
fn serve(
    mut sock: TcpStream,
    camera: u32,
    width: u32,
    height: u32,
    fps: f64,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte)? == 0 || head.len() > 16 << 10 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"GET /stream "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    write!(
        sock,
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )?;
    let g = Geometry::new(PixelFormat::Rgb8, width, height, width as usize * 3).expect("geometry");
    let mut rgb = vec![0u8; g.len()];
    let mut enc = Encoder::new(85).expect("encoder");
    let period = Duration::from_secs_f64(1.0 / fps);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let frame = sent.fetch_add(1, Ordering::Relaxed);
        pattern::fill(&mut rgb, &g, camera, frame);
        let jpeg = enc
            .encode(&rgb, PixelFormat::Rgb8, width, height, g.stride)
            .expect("encode");
        let mut part = format!(
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame: {frame}\r\n\r\n",
            jpeg.len()
        )
        .into_bytes();
        part.extend_from_slice(&jpeg);
        part.extend_from_slice(b"\r\n");
        sock.write_all(&part)?;
        next += period;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    Ok(())
}

/// Entries of /dev/shm whose name contains `tag`.
fn shm_leftovers(tag: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(tag))
        .collect()
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("camring-{tag}-{}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write the config file");
        TempFile(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `camring read --verify` of `ring` for `secs` seconds, as a process.
fn verify_reader(ring: &str, secs: &str) -> Proc {
    Proc::spawn(&[
        "read",
        "--ring",
        ring,
        "--verify",
        "--duration",
        secs,
        "--json",
        "-q",
    ])
}

/// Synthetic camera 0 and an MJPEG-over-HTTP camera 1 in one ring: `camring read
/// --verify` checks the synthetic one, and this test decodes camera 1's JPEGs from the
/// ring to the server's pattern (whole images, camera 1, frame numbers never going back).
#[test]
fn mixed_group_synthetic_and_mjpeg_over_http() {
    let server = MjpegServer::start(1, 320, 240, 25.0);
    let ring = ring_name("mixed");
    let _g = RingGuard(ring.clone());
    let url = server.url();
    let producer = produce(
        &ring,
        &[
            "--source",
            "synthetic:320x240",
            "--source",
            &url,
            "--fps",
            "30",
            "--slots",
            "32",
            "--duration",
            "30",
            "-q",
        ],
    );
    assert!(wait_for_frames(&ring, 1, T), "producer did not start");
    let reader_proc = verify_reader(&ring, "2");

    let mut reader = Reader::open_wait(&ring, T).expect("open the ring");
    let mut decoder = Decoder::new().expect("decoder");
    let mut frames = 0u64;
    let mut http_frames: Vec<u32> = Vec::new();
    let start = Instant::now();
    // Read for 2 s of frames, and until camera 1 showed up in a few (hang guard: T).
    while (start.elapsed() < Duration::from_secs(2) || http_frames.len() < 10)
        && start.elapsed() < T
    {
        reader.wait(Duration::from_millis(100));
        let frame = match reader.try_read(ReadMode::Next) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(ReadError::Lapped | ReadError::Torn) => continue,
            Err(e) => panic!("read: {e}"),
        };
        let cams = frame.cameras();
        assert_eq!(cams.len(), 2, "two cameras");
        let (c0, c1) = (cams[0], cams[1]);
        frames += 1;
        if c0.flags & CAM_MISSING == 0 {
            assert_ne!(c0.flags & CAM_SYNTHETIC, 0, "camera 0 is synthetic");
        }
        if c1.flags & CAM_MISSING != 0 {
            continue;
        }
        assert_eq!(
            c1.flags & CAM_SYNTHETIC,
            0,
            "the HTTP camera is not synthetic"
        );
        assert_eq!(c1.camera_id, 1);
        assert_eq!(c1.pixel_format(), Some(PixelFormat::Jpeg), "{c1:?}");
        assert_eq!((c1.width, c1.height), (320, 240));
        // Decoded in place; the result counts only if the slot was not overwritten meanwhile.
        let decoded = decoder
            .decode_rgb(&frame.payload(1).to_vec())
            .map(|(w, h, rgb)| ((w, h), pattern::read_code_rgb(rgb, w, h), rgb.to_vec()));
        if frame.validate().is_err() {
            continue;
        }
        let (size, code, rgb) = decoded.expect("camera 1's JPEG decodes");
        assert_eq!(size, (320, 240));
        let (cam, n) = code.expect("camera 1's image carries a readable pattern code");
        assert_eq!(cam, 1, "camera 1's pattern");
        // The whole image is the pattern of that frame, not just its code band.
        pattern::verify_decoded_rgb(&rgb, 320, 240, 1, u64::from(n), MAX_PATTERN_ERROR)
            .unwrap_or_else(|e| panic!("camera 1 frame {n}: {e}"));
        if let Some(&prev) = http_frames.last() {
            assert!(n >= prev, "camera 1 went back from frame {prev} to {n}");
        }
        http_frames.push(n);
    }
    drop(reader);
    assert!(
        http_frames.len() >= 10,
        "camera 1 present in {} of {frames} frames",
        http_frames.len()
    );
    let distinct = {
        let mut d = http_frames.clone();
        d.dedup();
        d.len()
    };
    assert!(
        distinct >= 5,
        "camera 1 never moved on: {http_frames:?} (server sent {})",
        server.sent.load(Ordering::Relaxed)
    );

    let out = reader_proc.finish(T);
    let s = summary(&out);
    eprintln!(
        "{frames} frames read, camera 1 in {} ({distinct} distinct images); camring read: {s}",
        http_frames.len()
    );
    assert!(out.status.success(), "reader failed: {}", stderr(&out));
    assert_eq!(u(&s, "corrupt"), 0, "{s}");
    assert!(u(&s, "verified") > 0, "{s}");

    producer.signal(Signal::INT);
    let out = producer.finish(T);
    assert!(out.status.success(), "producer: {}", stderr(&out));
    assert!(!shm_path(&ring).exists(), "the producer removed its ring");
    drop(server);
}

/// `camring produce --config FILE`: two synthetic cameras written into a JPEG ring and an
/// RGB8 ring; both verify.
#[test]
fn produce_from_a_config_file_writes_every_ring() {
    let jpeg = ring_name("cfg-jpeg");
    let raw = ring_name("cfg-raw");
    let _g = (RingGuard(jpeg.clone()), RingGuard(raw.clone()));
    let file = TempFile::new(
        "rig",
        &format!(
            r#"
fps = 30

[[camera]]
source = "synthetic:320x240"
name = "left"

[[camera]]
source = "synthetic:160x120@15"
name = "right"
jitter_ms = 3

[[ring]]
name = "{jpeg}"
format = "jpeg"
quality = 75

[[ring]]
name = "{raw}"
format = "rgb8"
slots = 4
"#
        ),
    );
    let producer = Proc::spawn(&["produce", "--config", file.arg(), "--duration", "30", "-q"]);
    for r in [&jpeg, &raw] {
        assert!(wait_for_frames(r, 1, T), "ring {r} was not created");
    }
    assert_eq!(ls_field(&jpeg, "slots").and_then(|v| v.as_u64()), Some(8));
    assert_eq!(ls_field(&raw, "slots").and_then(|v| v.as_u64()), Some(4));
    let readers = [verify_reader(&jpeg, "1.5"), verify_reader(&raw, "1.5")];
    for (name, r) in [&jpeg, &raw].into_iter().zip(readers) {
        let out = r.finish(T);
        let s = summary(&out);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(u(&s, "corrupt"), 0, "{name}: {s}");
        assert!(u(&s, "verified") >= 10, "{name}: {s}");
        assert_eq!(u(&s, "verified"), u(&s, "frames"), "{name}: {s}");
    }
    producer.signal(Signal::INT);
    let out = producer.finish(T);
    assert!(out.status.success(), "{}", stderr(&out));
    for r in [&jpeg, &raw] {
        assert!(!shm_path(r).exists(), "ring {r} removed at exit");
    }
}

/// Bad configuration files: `camring produce` exits non-zero with a message naming the
/// field, and leaves nothing in /dev/shm, even when the error is found after a first ring
/// was created.
#[test]
fn a_bad_config_names_the_field_and_leaves_nothing_behind() {
    let tag = format!("t-badcfg-{}", std::process::id());
    let ok_ring = format!(
        "[[ring]]\nname = \"{tag}-a\"\nformat = \"rgb8\"\n[[ring]]\nname = \"{tag}-b\"\nformat = \"jpeg\"\n"
    );
    let ring_d = format!("{tag}-d");
    let cases = [
        // An unknown field.
        (
            format!("[[camera]]\nsource = \"synthetic:64x48\"\ncolour = \"red\"\n{ok_ring}"),
            vec!["colour"],
        ),
        // An unknown kind of source.
        (
            format!("[[camera]]\nsource = \"synthetic:64x48\"\n[[camera]]\nsource = \"webcam:0\"\n{ok_ring}"),
            vec!["camera[1].source", "webcam:0"],
        ),
        // A source too small for the pattern: found when the group starts.
        (
            format!("[[camera]]\nsource = \"synthetic:16x4\"\n{ok_ring}"),
            vec!["camera[0]", "16x4"],
        ),
        // A field of another kind of source.
        (
            format!("[[camera]]\nsource = \"synthetic:64x48\"\ntimeout_ms = 100\n{ok_ring}"),
            vec!["camera[0].timeout_ms"],
        ),
        // The first ring is fine and gets created; the second cannot store the camera.
        (
            format!(
                "[[camera]]\nsource = \"synthetic:64x48\"\n[[ring]]\nname = \"{tag}-c\"\nformat = \"rgb8\"\n[[ring]]\nname = \"{tag}-d\"\nformat = \"yuyv\"\n"
            ),
            vec!["camera[0]", ring_d.as_str()],
        ),
    ];
    for (i, (text, wants)) in cases.iter().enumerate() {
        let _guards: Vec<RingGuard> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| RingGuard(format!("{tag}-{s}")))
            .collect();
        let file = TempFile::new(&format!("bad{i}"), text);
        let out = run(&["produce", "--config", file.arg(), "--duration", "5"], T);
        let err = stderr(&out);
        eprintln!("case {i}: {}", err.trim());
        assert!(!out.status.success(), "case {i} was accepted:\n{text}");
        for want in wants {
            assert!(
                err.contains(want),
                "case {i}: the message does not name {want:?}: {err}"
            );
        }
        assert_eq!(shm_leftovers(&tag), Vec::<String>::new(), "case {i}: {err}");
    }
}

#[test]
fn produce_help_explains_sources_and_config() {
    let out = run(&["produce", "--help"], T);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["--source", "--config", "synthetic", "http://"] {
        assert!(text.contains(want), "help lacks {want:?}:\n{text}");
    }
}
