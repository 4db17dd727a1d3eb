use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::common::*;
use crate::support::*;

/// The ring's newest frame as `/healthz` reports it (`None` before the bridge saw one).
async fn healthz_frame(addr: std::net::SocketAddr) -> Option<u64> {
    let h = http_get(addr, "/healthz", &[]).await.expect("healthz");
    let v: serde_json::Value = serde_json::from_slice(&h.body).expect("JSON");
    v["frame"].as_u64()
}

/// Waits (polling `/healthz`, at most `deadline`) until the ring's newest frame is past
/// `frame`; panics with `what` otherwise.
async fn wait_for_frame_after(
    addr: std::net::SocketAddr,
    frame: Option<u64>,
    deadline: Instant,
    what: &str,
) -> u64 {
    loop {
        if let Some(f) = healthz_frame(addr)
            .await
            .filter(|&f| frame.is_none_or(|n| f > n))
        {
            return f;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks a JPEG of camera `camera`: decodes to `width` × `height` and carries the camera's
/// pattern; returns the sequence its code band names. At the ring's size the whole image is
/// checked, downscaled its code band.
fn check_jpeg(jpeg: &[u8], camera: u32, width: u32, height: u32, full: bool) -> u32 {
    let mut d = camring_jpeg::Decoder::new().expect("decoder");
    let (w, h, rgb) = d.decode_rgb(jpeg).expect("a JPEG");
    assert_eq!((w, h), (width, height), "JPEG size");
    let (cam, seq) = camring_protocol::pattern::read_code_rgb(rgb, w, h)
        .or_else(|_| camring_reader::read_code_scaled(rgb, w, h, 320, 240))
        .expect("a readable code band");
    assert_eq!(u32::from(cam), camera, "the code band names another camera");
    if full {
        d.verify_pattern(jpeg, width, height, camera, u64::from(seq))
            .expect("the whole pattern");
    }
    seq
}

/// A `multipart/x-mixed-replace` response read part by part (through chunked transfer
/// encoding when the server uses it).
struct Multipart {
    tcp: TcpStream,
    raw: Vec<u8>,
    chunked: bool,
    body: Vec<u8>,
    boundary: String,
}

impl Multipart {
    async fn open(addr: std::net::SocketAddr, target: &str) -> Result<Multipart, HttpResponse> {
        use tokio::io::AsyncWriteExt;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.expect("request");
        let (mut response, _) = read_head(&mut tcp, target).await;
        let raw = std::mem::take(&mut response.body);
        let content_type = response.header("content-type").unwrap_or("").to_owned();
        if response.status != 200 {
            return Err(response);
        }
        let boundary = content_type
            .strip_prefix("multipart/x-mixed-replace; boundary=")
            .unwrap_or_else(|| panic!("{target}: content type {content_type:?}"))
            .to_owned();
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"));
        Ok(Multipart {
            tcp,
            raw,
            chunked,
            body: Vec::new(),
            boundary,
        })
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            let Some(line) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..line]).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            if self.raw.len() < line + 2 + size + 2 {
                return;
            }
            let data = &self.raw[line + 2..line + 2 + size];
            self.body.extend_from_slice(data);
            self.raw.drain(..line + 2 + size + 2);
        }
    }

    /// The next part: its headers and its bytes.
    async fn part(&mut self) -> (HashMap<String, String>, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.dechunk();
            if let Some(end) = head_end(&self.body) {
                let head = String::from_utf8_lossy(&self.body[..end - 4]).into_owned();
                let mut lines = head.split("\r\n");
                assert_eq!(
                    lines.next(),
                    Some(format!("--{}", self.boundary).as_str()),
                    "a part starts with the boundary"
                );
                let headers: HashMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers["content-length"].parse().expect("length");
                if self.body.len() >= end + len + 2 {
                    let jpeg = self.body[end..end + len].to_vec();
                    assert_eq!(&self.body[end + len..end + len + 2], b"\r\n");
                    self.body.drain(..end + len + 2);
                    return (headers, jpeg);
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.tcp.read(&mut chunk))
                .await
                .expect("an MJPEG part in time")
                .expect("read");
            assert!(n > 0, "the MJPEG stream ended");
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }
}

#[test]
fn snapshots_and_mjpeg_carry_the_cameras_patterns() {
    let mut rig = Rig::start("wssnap", (3, "320x240", 20, "jpeg"), &[]);
    let addr = rig.addr();
    runtime().block_on(async {
        // Snapshots: the newest image of a camera, whole or downscaled.
        let mut sequences = Vec::new();
        for _ in 0..3 {
            let r = http_get(addr, "/snapshot/1.jpg", &[]).await.expect("GET");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.header("content-type"), Some("image/jpeg"));
            let seq: u64 = number(&r, "x-camring-sequence");
            assert!(r.header("x-camring-frame").is_some());
            assert!(r.header("x-camring-capture-ns").is_some());
            let found = check_jpeg(&r.body, 1, 320, 240, true);
            assert_eq!(
                u64::from(found),
                seq,
                "the sequence header names the image's"
            );
            sequences.push(seq);
            // Several ring frames later (snapshot_is_never_older_than_the_newest_frame_when_asked
            // checks against the ring's own newest frame).
            let frame: u64 = number(&r, "x-camring-frame");
            wait_for_frame_after(
                addr,
                Some(frame + 2),
                Instant::now() + PATIENCE,
                "the ring made no newer frames",
            )
            .await;
        }
        assert!(
            sequences.windows(2).all(|w| w[1] > w[0]),
            "snapshots taken apart are newer each time: {sequences:?}"
        );
        for (target, camera, size) in [
            ("/snapshot/1.jpg?max_width=160", 1, (160, 120)),
            ("/snapshot/2.jpg?max_height=60&quality=50", 2, (80, 60)),
            (
                "/snapshot/0.jpg?max_width=200&max_height=100",
                0,
                (133, 100),
            ),
        ] {
            let r = http_get(addr, target, &[]).await.expect("GET");
            assert_eq!(r.status, 200, "{target}: {}", r.text());
            let seq: u32 = number(&r, "x-camring-sequence");
            let found = check_jpeg(&r.body, camera, size.0, size.1, false);
            assert_eq!(found, seq, "{target}");
        }
        for (target, status) in [
            ("/snapshot/9.jpg", 404),
            ("/snapshot/3.jpg", 404),
            ("/snapshot/x.jpg", 404),
            ("/snapshot/1.png", 404),
            ("/snapshot/1.jpg?quality=0", 400),
            ("/snapshot/1.jpg?bogus=1", 400),
        ] {
            let r = http_get(addr, target, &[]).await.expect("GET");
            assert_eq!(r.status, status, "{target}: {}", r.text());
        }

        // MJPEG: parts that decode, verify, and come newer each time.
        for (target, size, full) in [
            ("/mjpeg/0", (320, 240), true),
            ("/mjpeg/2?max_width=160", (160, 120), false),
        ] {
            let camera: u32 = target[7..8].parse().expect("camera");
            let mut stream = Multipart::open(addr, target)
                .await
                .unwrap_or_else(|r| panic!("{target}: {}", r.status));
            let mut last: Option<(u64, u32)> = None;
            for _ in 0..8 {
                let (headers, jpeg) = stream.part().await;
                assert_eq!(headers["content-type"], "image/jpeg");
                let frame: u64 = headers["x-camring-frame"].parse().expect("frame number");
                let seq = check_jpeg(&jpeg, camera, size.0, size.1, full);
                if let Some((f, s)) = last {
                    assert!(
                        frame > f && seq > s,
                        "{target}: frame {frame} seq {seq} after {f} {s}"
                    );
                }
                last = Some((frame, seq));
            }
        }
        let m = bridge_metrics(addr, None).await;
        assert!(metric(&m, r#"camring_bridge_frames_sent_total{kind="mjpeg"}"#) >= 16.0);
        assert!(metric(&m, r#"camring_bridge_frames_sent_total{kind="snapshot"}"#) >= 6.0);
    });
    rig.assert_healthy();
}

/// docs/bridge.md: `/snapshot/{camera}.jpg` is "the newest image of a camera": never older
/// than the ring's newest frame (as `/healthz` reports it) when it was asked for, also with
/// no stream open, when the bridge copies frames out of the ring only on demand (it once
/// served any frame copied within the last second).
#[test]
fn snapshot_is_never_older_than_the_newest_frame_when_asked() {
    let rig = Rig::start("wsfresh", (2, "320x240", 30, "jpeg"), &[]);
    let addr = rig.addr();
    runtime().block_on(async {
        // Until the bridge has seen a frame (it reads the ring's head every 100 ms; on a
        // loaded machine the producer's first publish can come after the bridge is up),
        // /healthz has no `frame` yet.
        let deadline = Instant::now() + Duration::from_secs(20);
        wait_for_frame_after(addr, None, deadline, "no frame in /healthz").await;
        let mut stale = Vec::new();
        for _ in 0..5 {
            let newest = healthz_frame(addr).await.expect("the ring's newest frame");
            let r = http_get(addr, "/snapshot/0.jpg", &[])
                .await
                .expect("snapshot");
            assert_eq!(r.status, 200);
            let frame: u64 = number(&r, "x-camring-frame");
            if frame < newest {
                stale.push((newest, frame));
            }
            // The next sample at another ring frame.
            wait_for_frame_after(
                addr,
                Some(newest),
                deadline,
                "the ring made no newer frames",
            )
            .await;
        }
        assert!(
            stale.is_empty(),
            "snapshots older than the ring's newest frame when asked (newest, served): {stale:?}"
        );
    });
}

/// `/snapshot/9.jpg` of a ring without camera 9 is a 404, and so is `/mjpeg/9` (it once was
/// an endless stream without a part, holding a client's place).
#[test]
fn mjpeg_of_an_unknown_camera_is_404() {
    let rig = Rig::start("wsmj404", (2, "320x240", 30, "jpeg"), &[]);
    let addr = rig.addr();
    runtime().block_on(async {
        let r = http_get(addr, "/snapshot/9.jpg", &[]).await.expect("GET");
        assert_eq!(r.status, 404);
        let opened =
            tokio::time::timeout(Duration::from_secs(5), Multipart::open(addr, "/mjpeg/9"));
        match opened.await {
            Err(_) => panic!("/mjpeg/9: no response head"),
            Ok(Err(r)) => assert_eq!(r.status, 404, "/mjpeg/9"),
            Ok(Ok(mut stream)) => {
                let part = tokio::time::timeout(Duration::from_secs(3), stream.part()).await;
                panic!(
                    "/mjpeg/9 of a 2-camera ring: 200, then {}",
                    if part.is_ok() {
                        "a part"
                    } else {
                        "no part in 3 s"
                    }
                );
            }
        }
    });
}
