//! The MJPEG-over-HTTP source: reads a `multipart/x-mixed-replace` stream (as ESP32-CAM,
//! mjpg-streamer and IP cameras serve it) at the sender's full speed and publishes every
//! whole JPEG into the camera's [`Feed`], which keeps only the newest.
//!
//! HTTP is reqwest (HTTP/1.1, chunked or not, https through rustls) driven by a
//! single-threaded tokio runtime on the source's own thread. The part parsing is the
//! sans-IO [`crate::mjpeg::Parser`]. Every wait is cut into [`TICK`]s so the thread notices
//! [`Stop`] quickly, and a stream that sends no byte for [`HttpSpec::timeout`] is dropped:
//! `run` returns an error and the supervisor reconnects after its backoff. So does a
//! stream the server closes.
//!
//! Proxies from the environment are not used: cameras sit on the local network, and a
//! proxy that buffers would defeat "newest frame only".

use std::future::Future;
use std::time::{Duration, Instant};

use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;

use crate::frame::{Feed, Image, Stop};
use crate::mjpeg::{self, check_jpeg, Event, Parser};
use crate::source::{HttpSpec, Source, SourceError};

/// Longest a wait goes without checking for stop.
pub const TICK: Duration = Duration::from_millis(100);

/// An MJPEG-over-HTTP camera. Its image sequence numbers count the JPEGs it accepted and
/// keep increasing across reconnects.
#[derive(Debug)]
pub struct HttpSource {
    spec: HttpSpec,
    sequence: u64,
}

impl HttpSource {
    /// A source reading the stream `spec` describes (nothing happens before `run`).
    pub fn new(spec: HttpSpec) -> Self {
        HttpSource { spec, sequence: 0 }
    }

    /// The stream's settings.
    pub fn spec(&self) -> &HttpSpec {
        &self.spec
    }
}

impl Source for HttpSource {
    fn run(&mut self, feed: &Feed, stop: &Stop) -> Result<(), SourceError> {
        let url = reqwest::Url::parse(&self.spec.url)
            .map_err(|e| SourceError::Fatal(format!("bad URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SourceError::Fatal(format!(
                "bad URL {}: an MJPEG stream is http:// or https://",
                redacted(&url)
            )));
        }
        // A fresh runtime and client per connection: dropping them at the end of `run`
        // closes the connection, whatever state it was left in.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .connect_timeout(self.spec.timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(0)
            .no_proxy()
            .user_agent(concat!("camring/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SourceError::Fatal(format!("HTTP client: {}", chain(&e))))?;
        let mut stream = Stream {
            spec: &self.spec,
            url: redacted(&url),
            feed,
            sequence: &mut self.sequence,
            part_start: now_ns(),
        };
        runtime.block_on(stream.run(&client, url, stop))
    }
}

/// How a watched wait ended.
enum Waited<T> {
    Done(T),
    Stopped,
    Stalled,
}

/// Awaits `fut`, giving up when `stop` is requested (before, or while waiting) or
/// `timeout` passes.
async fn watch<F: Future>(stop: &Stop, timeout: Duration, fut: F) -> Waited<F::Output> {
    if stop.is_stopped() {
        return Waited::Stopped;
    }
    let mut fut = std::pin::pin!(fut);
    let start = Instant::now();
    loop {
        if let Ok(v) = tokio::time::timeout(TICK, &mut fut).await {
            return Waited::Done(v);
        }
        if stop.is_stopped() {
            return Waited::Stopped;
        }
        if start.elapsed() >= timeout {
            return Waited::Stalled;
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own message is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// One connection's worth of reading.
struct Stream<'a> {
    spec: &'a HttpSpec,
    /// The URL as shown in messages (no password).
    url: String,
    feed: &'a Feed,
    sequence: &'a mut u64,
    /// When the current part's first byte arrived.
    part_start: u64,
}

impl Stream<'_> {
    async fn run(
        &mut self,
        client: &reqwest::Client,
        request: reqwest::Url,
        stop: &Stop,
    ) -> Result<(), SourceError> {
        let url = &self.url.clone();
        let timeout = self.spec.timeout;
        let mut response = match watch(stop, timeout, client.get(request).send()).await {
            Waited::Done(r) => r.map_err(|e| SourceError::Http(chain(&e)))?,
            Waited::Stopped => return Ok(()),
            Waited::Stalled => return Err(stalled(url, timeout, "no answer")),
        };
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(SourceError::Http(format!(
                "{url}: HTTP {status}; expected 200 and an MJPEG stream"
            )));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let boundary = match &content_type {
            Some(ct) => mjpeg::boundary_from_content_type(ct)
                .map_err(|e| SourceError::Http(format!("{url}: {e}")))?,
            None => None,
        };
        let mut parser = Parser::new(boundary.as_deref(), self.spec.max_len);
        tracing::info!(
            camera = self.feed.name(),
            url,
            content_type = content_type.as_deref().unwrap_or(""),
            "MJPEG stream connected"
        );
        loop {
            let chunk = match watch(stop, timeout, response.chunk()).await {
                Waited::Done(c) => c,
                Waited::Stopped => return Ok(()),
                Waited::Stalled => {
                    self.finish(&mut parser);
                    return Err(stalled(url, timeout, "no data"));
                }
            };
            match chunk {
                Ok(Some(bytes)) => self.deliver(&mut parser, &bytes),
                Ok(None) => {
                    self.finish(&mut parser);
                    return Err(SourceError::Io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{url}: the server closed the stream"),
                    )));
                }
                Err(e) => {
                    self.finish(&mut parser);
                    return Err(SourceError::Http(chain(&e)));
                }
            }
        }
    }

    /// Parses a chunk of the body, publishing the JPEGs it completes.
    fn deliver(&mut self, parser: &mut Parser, data: &[u8]) {
        let arrived = now_ns();
        let mut rest = data;
        loop {
            let (n, event) = parser.push(rest);
            rest = &rest[n..];
            match event {
                None => break,
                Some(Event::Begin) => self.part_start = arrived,
                Some(Event::Part(part)) => self.accept(part.body),
                Some(Event::Dropped(why)) => {
                    self.feed.count_corrupt();
                    tracing::debug!(camera = self.feed.name(), %why, "MJPEG part dropped");
                }
            }
        }
    }

    /// The stream ended: a part left open is delivered (if whole) or counted.
    fn finish(&mut self, parser: &mut Parser) {
        match parser.finish() {
            Some(Event::Part(part)) => self.accept(part.body),
            Some(Event::Dropped(why)) => {
                self.feed.count_corrupt();
                tracing::debug!(camera = self.feed.name(), %why, "MJPEG part dropped");
            }
            Some(Event::Begin) | None => {}
        }
    }

    /// Publishes `body` if it is a whole JPEG; counts it as corrupt otherwise.
    fn accept(&mut self, body: &[u8]) {
        let info = match check_jpeg(body) {
            Ok(info) => info,
            Err(why) => {
                self.feed.count_corrupt();
                tracing::debug!(
                    camera = self.feed.name(),
                    %why,
                    len = body.len(),
                    "MJPEG part is not a whole JPEG"
                );
                return;
            }
        };
        let mut buf = self.feed.buffer(0);
        buf.vec().extend_from_slice(&body[..info.len]);
        let image = Image::new(
            PixelFormat::Jpeg,
            info.width,
            info.height,
            0,
            self.part_start,
            *self.sequence,
            buf,
        );
        *self.sequence += 1;
        self.feed.publish(image);
    }
}

/// `url` without its password, for messages.
fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

fn stalled(url: &str, timeout: Duration, what: &str) -> SourceError {
    SourceError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{url}: {what} for {timeout:?} (stalled)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_show_the_password() {
        let url = reqwest::Url::parse("http://admin:secret@10.0.0.7:81/stream").unwrap();
        assert_eq!(redacted(&url), "http://admin:***@10.0.0.7:81/stream");
        let url = reqwest::Url::parse("https://cam.local/mjpeg").unwrap();
        assert_eq!(redacted(&url), "https://cam.local/mjpeg");
    }
}
