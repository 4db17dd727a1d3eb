//! The MJPEG-over-HTTP source against a real HTTP server on loopback, written here, that
//! serves multipart MJPEG made of synthetic frames in every quirky form real devices
//! use. Each JPEG carries its camera and frame number in its pixels, so the tests decode
//! what arrived and know exactly which frame it is.
//!
//! Timing: tests poll with generous deadlines that only guard against hangs; no test
//! asserts how fast anything happened. No shared memory is involved.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camring_jpeg::{Decoder, Encoder};
use camring_producer::frame::{Feed, FeedStats, SourceState, Stop};
use camring_producer::http::HttpSource;
use camring_producer::source::{self, HttpSpec};
use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;

const W: u32 = 160;
const H: u32 = 120;
const CAMERA: u32 = 5;
/// Longest any test waits for something before failing (a hang guard, not a bound).
const DEADLINE: Duration = Duration::from_secs(30);

/// A JPEG of the synthetic pattern: camera [`CAMERA`]'s frame `frame`.
fn jpeg(enc: &mut Encoder, frame: u64) -> Vec<u8> {
    let g = Geometry::new(PixelFormat::Rgb8, W, H, W as usize * 3).unwrap();
    let mut rgb = vec![0; g.len()];
    pattern::fill(&mut rgb, &g, CAMERA, frame);
    enc.encode(&rgb, PixelFormat::Rgb8, W, H, W as usize * 3)
        .unwrap()
}

/// How a server writes its stream.
#[derive(Debug, Clone)]
struct Style {
    /// The Content-Type header's value; empty: no such header.
    content_type: String,
    /// The line before each part.
    delimiter: String,
    /// Parts carry Content-Length.
    content_length: bool,
    /// More part headers, each ending in CRLF.
    extra_headers: &'static str,
    /// Transfer-Encoding: chunked (else the body ends when the connection closes).
    chunked: bool,
    /// Sizes of successive writes (and chunks), cycled; empty: one write per part.
    writes: Vec<usize>,
    /// Pause between parts.
    interval: Duration,
}

impl Style {
    /// ESP32-CAM's CameraWebServer: chunked, unquoted boundary, Content-Length and a
    /// timestamp header on each part.
    fn esp32() -> Self {
        Style {
            content_type: "multipart/x-mixed-replace;boundary=123456789000000000000987654321"
                .into(),
            delimiter: "--123456789000000000000987654321".into(),
            content_length: true,
            extra_headers: "X-Timestamp: 1719.000345\r\n",
            chunked: true,
            writes: Vec::new(),
            interval: Duration::from_millis(10),
        }
    }
}

/// What the server has done, shared with the test.
#[derive(Debug, Default)]
struct Counters {
    /// Connections accepted.
    connections: AtomicUsize,
    /// One more than the newest frame number written whole.
    sent: AtomicU64,
}

/// One accepted connection, as the handlers see it.
struct Conn {
    stream: TcpStream,
    style: Style,
    /// Which connection of the server this is (0 for the first).
    index: usize,
    shutdown: Arc<AtomicBool>,
    counters: Arc<Counters>,
    enc: Encoder,
    next_write: usize,
}

fn gone() -> io::Error {
    io::Error::other("server shut down")
}

impl Conn {
    /// Writes raw bytes (status line and headers included), ignoring the style.
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.shutdown.load(Ordering::Relaxed) {
            return Err(gone());
        }
        self.stream.write_all(bytes)
    }

    /// The answer's head for an MJPEG stream in this connection's style.
    fn head(&mut self) -> io::Result<()> {
        let mut h = String::from("HTTP/1.1 200 OK\r\n");
        if !self.style.content_type.is_empty() {
            h += &format!("Content-Type: {}\r\n", self.style.content_type);
        }
        if self.style.chunked {
            h += "Transfer-Encoding: chunked\r\n";
        } else {
            h += "Connection: close\r\n";
        }
        h += "Cache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\n\r\n";
        self.raw(h.as_bytes())
    }

    /// Writes body bytes: in the style's write sizes, each as a chunk if chunked.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match self.style.writes.len() {
                0 => rest.len(),
                k => {
                    self.next_write += 1;
                    self.style.writes[(self.next_write - 1) % k].min(rest.len())
                }
            };
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            if self.style.chunked {
                let mut chunk = format!("{n:x}\r\n").into_bytes();
                chunk.extend(piece);
                chunk.extend(b"\r\n");
                self.raw(&chunk)?;
            } else {
                self.raw(piece)?;
            }
        }
        Ok(())
    }

    /// Writes one part: delimiter line, headers (with Content-Length if `length`),
    /// blank line, body, CRLF.
    fn part_with(&mut self, body: &[u8], length: bool) -> io::Result<()> {
        let mut p = format!("{}\r\nContent-Type: image/jpeg\r\n", self.style.delimiter);
        if length {
            p += &format!("Content-Length: {}\r\n", body.len());
        }
        p += self.style.extra_headers;
        p += "\r\n";
        let mut p = p.into_bytes();
        p.extend(body);
        p.extend(b"\r\n");
        self.send(&p)
    }

    fn part(&mut self, body: &[u8]) -> io::Result<()> {
        self.part_with(body, self.style.content_length)
    }

    /// Writes frame `n` as a part and counts it sent.
    fn frame(&mut self, n: u64) -> io::Result<()> {
        let j = jpeg(&mut self.enc, n);
        self.part(&j)?;
        self.counters.sent.store(n + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits `d`, or fails at shutdown.
    fn pause(&self, d: Duration) -> io::Result<()> {
        let end = Instant::now() + d;
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                return Err(gone());
            }
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }

    /// Sends nothing more, keeping the connection open until shutdown: a stall.
    fn idle(&self) -> io::Result<()> {
        self.pause(DEADLINE * 10)
    }

    /// Frames `first`, `first + 1`, ... at the style's interval until the client goes.
    fn frames_from(&mut self, first: u64) -> io::Result<()> {
        for n in first.. {
            self.frame(n)?;
            self.pause(self.style.interval)?;
        }
        Ok(())
    }
}

type Handler = Arc<dyn Fn(&mut Conn) -> io::Result<()> + Send + Sync>;

/// A multi-threaded HTTP server on loopback: reads each request's head, then hands the
/// connection to the handler.
struct Server {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(
        style: Style,
        handler: impl Fn(&mut Conn) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self::start_at("127.0.0.1:0", style, Arc::new(handler))
    }

    fn start_at(addr: &str, style: Style, handler: Handler) -> Self {
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (sd, ct) = (shutdown.clone(), counters.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !sd.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let index = ct.connections.fetch_add(1, Ordering::Relaxed);
                        let mut conn = Conn {
                            stream,
                            style: style.clone(),
                            index,
                            shutdown: sd.clone(),
                            counters: ct.clone(),
                            enc: Encoder::new(80).unwrap(),
                            next_write: 0,
                        };
                        let handler = handler.clone();
                        conns.push(std::thread::spawn(move || {
                            if read_request(&mut conn.stream).is_ok() {
                                let _ = handler(&mut conn);
                            }
                            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
                        }));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            drop(listener);
            for c in conns {
                c.join().unwrap();
            }
        });
        Server {
            addr,
            shutdown,
            counters,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/stream", self.addr)
    }

    fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Closes the listener and every connection.
    fn stop(mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }
}

/// Reads a request up to its blank line.
fn read_request(stream: &mut TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 || head.len() > 64 * 1024 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"GET /stream HTTP/1.1\r\n"), "{head:?}");
    Ok(())
}

/// The source under test, running under the supervisor.
struct Running {
    feed: Arc<Feed>,
    stop: Stop,
    thread: Option<JoinHandle<()>>,
    decoder: Decoder,
}

impl Running {
    fn start(spec: HttpSpec) -> Self {
        let feed = Arc::new(Feed::new("esp32"));
        let stop = Stop::new();
        let thread = source::spawn(Box::new(HttpSource::new(spec)), feed.clone(), stop.clone());
        Running {
            feed,
            stop,
            thread: Some(thread),
            decoder: Decoder::new().unwrap(),
        }
    }

    /// The newest image as `(sequence, frame number)`, after checking it is a whole
    /// JPEG of this camera's pattern at the right size.
    fn latest(&mut self) -> Option<(u64, u64)> {
        let image = self.feed.latest()?;
        assert_eq!(image.format, PixelFormat::Jpeg);
        assert_eq!((image.width, image.height, image.stride), (W, H, 0));
        assert!(image.capture_ns > 0);
        let (w, h, rgb) = self.decoder.decode_rgb(image.data()).unwrap();
        let (camera, frame) = pattern::read_code_rgb(rgb, w, h).unwrap();
        assert_eq!(u32::from(camera), CAMERA);
        self.decoder
            .verify_pattern(image.data(), W, H, CAMERA, u64::from(frame))
            .unwrap();
        Some((image.sequence, u64::from(frame)))
    }

    /// Polls `cond` until it holds; fails the test at [`DEADLINE`].
    fn wait(&mut self, what: &str, mut cond: impl FnMut(&mut Self) -> bool) {
        let end = Instant::now() + DEADLINE;
        while !cond(self) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {:?}, {:?}",
                self.feed.stats(),
                self.feed.state()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for a frame numbered at least `frame`; returns the newest `(sequence, frame)`.
    fn wait_frame(&mut self, frame: u64) -> (u64, u64) {
        let mut got = (0, 0);
        self.wait(&format!("frame {frame}"), |r| match r.latest() {
            Some(l) if l.1 >= frame => {
                got = l;
                true
            }
            _ => false,
        });
        got
    }

    /// Waits until the source is down; the error it reports.
    fn wait_down(&mut self) -> String {
        let mut error = String::new();
        self.wait("the source to fail", |r| match r.feed.state() {
            SourceState::Down(e) => {
                error = e;
                true
            }
            _ => false,
        });
        error
    }

    /// Stops the source and waits for its thread.
    fn stop(mut self) {
        self.stop.stop();
        let t = self.thread.take().unwrap();
        let end = Instant::now() + DEADLINE;
        while !t.is_finished() {
            assert!(Instant::now() < end, "the source thread did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        t.join().unwrap();
        assert_eq!(self.feed.state(), SourceState::Stopped);
    }
}

/// Serves frames 0, 1, ... in `style` and checks that they arrive whole and in order.
fn frames_arrive_whole(style: Style, frames: u64) {
    let server = Server::start(style, |c| {
        c.head()?;
        c.frames_from(0)
    });
    let mut src = Running::start(HttpSpec::new(server.url()));
    let (mut last_seq, mut last_frame) = (None, 0);
    src.wait(&format!("{frames} frames"), |r| {
        if let Some((seq, frame)) = r.latest() {
            if let Some(prev) = last_seq {
                assert!(seq >= prev && frame >= last_frame, "went back");
            }
            (last_seq, last_frame) = (Some(seq), frame);
        }
        last_frame >= frames
    });
    let stats = src.feed.stats();
    assert_eq!((stats.corrupt, stats.failures), (0, 0), "{stats:?}");
    assert_eq!(server.connections(), 1);
    src.stop();
    server.stop();
}

#[test]
fn esp32_chunked_unquoted_boundary_with_length() {
    frames_arrive_whole(Style::esp32(), 20);
}

#[test]
fn mjpg_streamer_close_delimited_with_length() {
    frames_arrive_whole(
        Style {
            content_type: "multipart/x-mixed-replace;boundary=boundarydonotcross".into(),
            delimiter: "--boundarydonotcross".into(),
            chunked: false,
            ..Style::esp32()
        },
        20,
    );
}

#[test]
fn quoted_boundary_without_length() {
    frames_arrive_whole(
        Style {
            content_type: "multipart/x-mixed-replace; boundary=\"frame\"".into(),
            delimiter: "--frame".into(),
            content_length: false,
            extra_headers: "",
            ..Style::esp32()
        },
        20,
    );
}

#[test]
fn boundary_declared_with_dashes() {
    for (delimiter, content_length) in [("--myboundary", true), ("----myboundary", false)] {
        frames_arrive_whole(
            Style {
                content_type: "multipart/x-mixed-replace;boundary=--myboundary".into(),
                delimiter: delimiter.into(),
                content_length,
                ..Style::esp32()
            },
            10,
        );
    }
}

#[test]
fn no_boundary_in_the_content_type_and_extra_headers() {
    frames_arrive_whole(
        Style {
            content_type: "multipart/x-mixed-replace".into(),
            delimiter: "--learnt".into(),
            extra_headers: "X-Frame-Source: test\r\ncontent-disposition: inline; filename=f.jpg\r\nX-Empty:\r\n",
            ..Style::esp32()
        },
        10,
    );
}

#[test]
fn boundaries_split_byte_by_byte() {
    for (chunked, content_length) in [(false, true), (false, false), (true, true)] {
        frames_arrive_whole(
            Style {
                chunked,
                content_length,
                writes: vec![1],
                interval: Duration::ZERO,
                ..Style::esp32()
            },
            4,
        );
    }
}

#[test]
fn odd_write_and_chunk_sizes() {
    for content_length in [true, false] {
        frames_arrive_whole(
            Style {
                content_length,
                writes: vec![1, 7, 3, 250, 13, 4096, 2, 31, 1000],
                ..Style::esp32()
            },
            20,
        );
    }
}

#[test]
fn a_fast_server_is_read_at_full_speed_and_only_the_newest_frame_kept() {
    let server = Server::start(
        Style {
            interval: Duration::ZERO,
            ..Style::esp32()
        },
        |c| {
            c.head()?;
            c.frames_from(0)
        },
    );
    let mut src = Running::start(HttpSpec::new(server.url()));
    src.wait("200 frames", |r| r.feed.stats().captured >= 200);
    // Whatever the server has sent by now, the feed's newest frame catches up with it:
    // nothing is queued behind.
    for _ in 0..3 {
        let sent = server.sent();
        let (_, frame) = src.wait_frame(sent);
        assert!(frame >= sent);
    }
    let stats = src.feed.stats();
    assert!(stats.replaced > 0, "{stats:?}");
    assert_eq!((stats.corrupt, stats.failures), (0, 0), "{stats:?}");
    src.stop();
    server.stop();
}

#[test]
fn corrupt_and_truncated_parts_are_dropped_and_counted() {
    let max_len = 64 * 1024;
    let server = Server::start(
        Style {
            delimiter: "--camring-test-boundary".into(),
            content_type: "multipart/x-mixed-replace; boundary=camring-test-boundary".into(),
            ..Style::esp32()
        },
        move |c| {
            if c.index > 0 {
                return c.idle();
            }
            c.head()?;
            let j = jpeg(&mut c.enc, 1000);
            let half = &j[..j.len() / 2];
            let mut bad_sof = j.clone();
            let sof = bad_sof.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
            bad_sof[sof + 2] = 0xFF; // segment length past the end
            let bad: [(&[u8], bool); 7] = [
                (b"this is not a JPEG", true),
                (half, true),  // truncated, honest length
                (half, false), // truncated, ended by the next delimiter
                (&j[2..], true),
                (&bad_sof, true),
                (&vec![0x55; max_len + 1], true),  // too large
                (&vec![0x55; max_len * 2], false), // too large, no length
            ];
            for (n, (body, length)) in bad.into_iter().enumerate() {
                c.frame(n as u64)?;
                c.part_with(body, length)?;
            }
            c.frame(7)?;
            c.idle()
        },
    );
    let spec = HttpSpec {
        max_len,
        timeout: DEADLINE * 10, // the server idles at the end: no reconnect
        ..HttpSpec::new(server.url())
    };
    let mut src = Running::start(spec);
    src.wait("7 corrupt parts", |r| r.feed.stats().corrupt >= 7);
    assert_eq!(src.wait_frame(7), (7, 7));
    let stats = src.feed.stats();
    assert_eq!((stats.captured, stats.corrupt, stats.failures), (8, 7, 0));
    src.stop();
    server.stop();
}

/// A server whose first connection sends frames 0 to 2 and then ends as `then` makes it
/// end, and whose later connections stream frames from 100 on, read through
/// `spec(url)` until frame 100 came: the newest `(sequence, frame)`, the source's stats and
/// how many connections the server took. Panics unless a connection failed on the way.
fn reconnected_after(
    then: impl Fn(&mut Conn) -> io::Result<()> + Send + Sync + 'static,
    spec: impl FnOnce(String) -> HttpSpec,
) -> ((u64, u64), FeedStats, usize) {
    let server = Server::start(Style::esp32(), move |c| {
        c.head()?;
        if c.index > 0 {
            return c.frames_from(100);
        }
        for n in 0..3 {
            c.frame(n)?;
        }
        then(c)
    });
    let mut src = Running::start(spec(server.url()));
    let newest = src.wait_frame(100);
    let stats = src.feed.stats();
    assert!(stats.failures >= 1, "{stats:?}");
    let connections = server.connections();
    src.stop();
    server.stop();
    (newest, stats, connections)
}

#[test]
fn a_stalled_server_is_dropped_and_reconnected() {
    let half_a_part_then_silence = |c: &mut Conn| {
        let j = jpeg(&mut c.enc, 3);
        let mut p = format!(
            "{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            c.style.delimiter,
            j.len()
        )
        .into_bytes();
        p.extend(&j[..j.len() / 2]);
        c.send(&p)?;
        c.idle()
    };
    let ((seq, frame), stats, connections) =
        reconnected_after(half_a_part_then_silence, |url| HttpSpec {
            timeout: Duration::from_millis(500),
            ..HttpSpec::new(url)
        });
    assert!(frame >= 100);
    assert!(seq >= 3, "sequence numbers continue across reconnects");
    assert!(stats.corrupt >= 1, "the part cut by the stall: {stats:?}");
    assert!(connections >= 2);
}

#[test]
fn a_closed_stream_is_reconnected() {
    // The end of a chunked body.
    let close = |c: &mut Conn| c.send(b"0\r\n\r\n");
    let ((seq, _), _, _) = reconnected_after(close, HttpSpec::new);
    assert!(seq >= 3);
}

#[test]
fn a_server_restart_on_the_same_port_is_survived() {
    let serve_from = |first: u64| -> Handler {
        Arc::new(move |c: &mut Conn| {
            c.head()?;
            c.frames_from(first)
        })
    };
    let server = Server::start_at("127.0.0.1:0", Style::esp32(), serve_from(0));
    let addr = server.addr;
    let mut src = Running::start(HttpSpec::new(server.url()));
    let (seq, _) = src.wait_frame(5);
    server.stop();
    src.wait("the source to notice", |r| {
        matches!(r.feed.state(), SourceState::Down(_) | SourceState::Starting)
    });
    std::thread::sleep(Duration::from_millis(300)); // a few refused reconnects
    let server = Server::start_at(&addr.to_string(), Style::esp32(), serve_from(1000));
    let (seq2, frame) = src.wait_frame(1000);
    assert!(frame >= 1000);
    assert!(seq2 > seq, "sequence numbers continue: {seq} then {seq2}");
    assert_eq!(src.feed.state(), SourceState::Live);
    src.stop();
    server.stop();
}

/// Serves `answer` to every request and returns the error the source reports.
fn refused_with(answer: &'static str) -> String {
    let server = Server::start(Style::esp32(), move |c| c.raw(answer.as_bytes()));
    let mut src = Running::start(HttpSpec::new(server.url()));
    let error = src.wait_down();
    assert_eq!(src.feed.stats().captured, 0);
    src.stop();
    server.stop();
    assert!(error.contains("127.0.0.1"), "names the URL: {error}");
    error
}

#[test]
fn not_found_is_a_clear_error() {
    let e = refused_with(
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found",
    );
    assert!(e.contains("404"), "{e}");
}

#[test]
fn a_page_that_is_not_a_stream_is_a_clear_error() {
    let e = refused_with(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 6\r\n\r\n<html>",
    );
    assert!(
        e.contains("text/html") && e.contains("multipart/x-mixed-replace"),
        "{e}"
    );
    let e =
        refused_with("HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 2\r\n\r\nab");
    assert!(e.contains("snapshot"), "{e}");
}

#[test]
fn https_goes_through_rustls() {
    // No certificate to serve https with here: a plain-HTTP server answering the TLS
    // handshake shows that the https path is built in (rustls refuses the answer).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/stream", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut hello = [0u8; 512];
        let _ = s.read(&mut hello);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        hello
    });
    let mut src = Running::start(HttpSpec::new(url));
    let error = src.wait_down();
    src.stop();
    let hello = server.join().unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake record arrived");
    assert!(error.contains("https://127.0.0.1"), "{error}");
}

#[test]
fn a_bad_url_is_fatal() {
    for url in ["http://", "http://exa mple/", "ftp://127.0.0.1/stream"] {
        let feed = Arc::new(Feed::new("cam"));
        let thread = source::spawn(
            Box::new(HttpSource::new(HttpSpec::new(url))),
            feed.clone(),
            Stop::new(),
        );
        // Fatal: the supervisor gives up without being stopped.
        let end = Instant::now() + DEADLINE;
        while !thread.is_finished() {
            assert!(Instant::now() < end, "{url}: retried");
            std::thread::sleep(Duration::from_millis(5));
        }
        let SourceState::Down(e) = feed.state() else {
            panic!("{url}: {:?}", feed.state())
        };
        assert!(e.contains("bad URL"), "{url}: {e}");
    }
}
