//! Sources: what a camera of the group is (`--source` spellings and their settings), the
//! [`Source`] trait each kind implements, and the supervisor thread that runs one source,
//! restarting it with backoff when it fails.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camring_protocol::PixelFormat;

use crate::frame::{Feed, SourceState, Stop};

/// Why a source stopped delivering images. The supervisor logs it, marks the feed down
/// and restarts the source after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An IO error (connect, read, device).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The HTTP server answered something other than an MJPEG stream, or broke the
    /// protocol.
    #[error("{0}")]
    Http(String),
    /// The camera device failed.
    #[error("{0}")]
    Camera(String),
    /// The source cannot run at all with these settings (retrying will not help).
    #[error("{0}")]
    Fatal(String),
    /// A synthetic source was told to die (tests).
    #[error("died on command")]
    Died,
}

/// A camera of the group: runs on its own thread, delivering images into its feed at its
/// own pace.
pub trait Source: Send {
    /// Opens the device or connection and delivers images into `feed` until `stop` is
    /// requested (returns `Ok`) or something fails (returns the error; the supervisor
    /// calls `run` again after a backoff).
    fn run(&mut self, feed: &Feed, stop: &Stop) -> Result<(), SourceError>;
}

/// First retry delay after a failure; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Runs `source` on a thread named after the feed until `stop`: restarts it with
/// exponential backoff when it fails (reset once a run has lasted a while), and stops
/// for good on [`SourceError::Fatal`].
pub fn spawn(mut source: Box<dyn Source>, feed: Arc<Feed>, stop: Stop) -> JoinHandle<()> {
    let name = format!("src-{}", feed.name());
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut backoff = BACKOFF_MIN;
            let mut last_error: Option<String> = None;
            while !stop.is_stopped() {
                feed.set_state(SourceState::Starting);
                let started = Instant::now();
                let result = source.run(&feed, &stop);
                if stop.is_stopped() {
                    break;
                }
                let fatal = matches!(result, Err(SourceError::Fatal(_)));
                let err = match result {
                    Ok(()) => "source ended".to_owned(),
                    Err(e) => e.to_string(),
                };
                // The first failure and any change of reason are worth a warning; the
                // same failure again on every retry is not.
                if last_error.as_deref() != Some(err.as_str()) {
                    tracing::warn!(camera = feed.name(), error = %err, "source failed; retrying with backoff");
                } else {
                    tracing::debug!(camera = feed.name(), error = %err, "source failed again");
                }
                last_error = Some(err.clone());
                feed.set_state(SourceState::Down(err));
                if fatal {
                    return;
                }
                if started.elapsed() > BACKOFF_MAX * 2 {
                    backoff = BACKOFF_MIN;
                }
                if stop.sleep(backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            feed.set_state(SourceState::Stopped);
        })
        .expect("spawning a source thread")
}

/// What one camera of the group is, as given by `--source` or a config file.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// `synthetic[:WxH[@FPS]]`: the test pattern.
    Synthetic(SyntheticSpec),
    /// `camera:INDEX_OR_NAME[:WxH[@FPS]]`: a camera through nokhwa (feature `camera`).
    Camera(CameraSpec),
    /// `http://...` or `https://...`: MJPEG over HTTP.
    Http(HttpSpec),
}

/// A synthetic camera.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Image width.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Own frame rate; `None` runs at the group's rate.
    pub fps: Option<f64>,
    /// Raw format it generates; `None` lets the rings choose (rgb8 unless a raw ring
    /// asks for another).
    pub format: Option<PixelFormat>,
    /// Random delay added to each capture, uniformly in `[0, jitter]`.
    pub jitter: Duration,
    /// Stops delivering for `.1` starting `.0` after start (the thread blocks).
    pub stall: Option<(Duration, Duration)>,
    /// Dies (the source fails) `.0` after start and comes back `.1` later.
    pub die: Option<(Duration, Duration)>,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            width: 640,
            height: 480,
            fps: None,
            format: None,
            jitter: Duration::ZERO,
            stall: None,
            die: None,
        }
    }
}

/// A camera device.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSpec {
    /// Index (`0` for /dev/video0) or a substring of the device name.
    pub device: String,
    /// Resolution to ask for; `None` takes the device's highest.
    pub size: Option<(u32, u32)>,
    /// Rate to ask for; `None` takes the group's rate.
    pub fps: Option<f64>,
    /// Format to ask the device for: `jpeg` (MJPEG, passed through undecoded), `yuyv`,
    /// `nv12`, `gray8`, `rgb8`; `None` prefers MJPEG.
    pub format: Option<PixelFormat>,
}

/// An MJPEG-over-HTTP stream.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// The stream's URL.
    pub url: String,
    /// A stall longer than this (no bytes) drops the connection and reconnects.
    pub timeout: Duration,
    /// Nominal image size, when known (needed to decode into a raw ring).
    pub size: Option<(u32, u32)>,
    /// Largest JPEG accepted, in bytes; larger parts are dropped and counted.
    pub max_len: usize,
}

/// Default [`HttpSpec::max_len`]: room for a 1600×1200 JPEG at high quality.
pub const HTTP_MAX_LEN: usize = 2 << 20;
/// Default [`HttpSpec::timeout`].
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

impl HttpSpec {
    /// A stream at `url` with default settings.
    pub fn new(url: impl Into<String>) -> Self {
        HttpSpec {
            url: url.into(),
            timeout: HTTP_TIMEOUT,
            size: None,
            max_len: HTTP_MAX_LEN,
        }
    }
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("bad width in {s:?}"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad height in {s:?}"))?;
    if w == 0 || h == 0 {
        return Err(format!("size {s:?} is empty"));
    }
    Ok((w, h))
}

/// Parses `WxH[@FPS]`.
fn parse_mode(s: &str) -> Result<((u32, u32), Option<f64>), String> {
    let (size, fps) = match s.split_once('@') {
        Some((size, fps)) => {
            let f: f64 = fps
                .parse()
                .map_err(|_| format!("bad frame rate {fps:?} in {s:?}"))?;
            if !(f.is_finite() && f > 0.0 && f <= 10_000.0) {
                return Err(format!("frame rate in {s:?} must be in (0, 10000]"));
            }
            (size, Some(f))
        }
        None => (s, None),
    };
    Ok((parse_size(size)?, fps))
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(SourceSpec::Http(HttpSpec::new(s)));
        }
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        match kind {
            "synthetic" => {
                let mut spec = SyntheticSpec::default();
                if let Some(mode) = rest {
                    let ((w, h), fps) = parse_mode(mode)?;
                    spec.width = w;
                    spec.height = h;
                    spec.fps = fps;
                }
                Ok(SourceSpec::Synthetic(spec))
            }
            "camera" => {
                let rest = rest.filter(|r| !r.is_empty()).ok_or_else(|| {
                    format!("{s:?}: say which camera, camera:INDEX_OR_NAME[:WxH[@FPS]]")
                })?;
                // A name may contain ':'; the mode is whatever follows the last one, if
                // it parses as WxH[@FPS].
                let (device, size, fps) = match rest.rsplit_once(':') {
                    Some((dev, mode)) if parse_mode(mode).is_ok() => {
                        let (size, fps) = parse_mode(mode)?;
                        (dev, Some(size), fps)
                    }
                    _ => (rest, None, None),
                };
                Ok(SourceSpec::Camera(CameraSpec {
                    device: device.to_owned(),
                    size,
                    fps,
                    format: None,
                }))
            }
            _ => Err(format!(
                "unknown source {s:?}: expected synthetic[:WxH[@FPS]], camera:INDEX_OR_NAME[:WxH[@FPS]], http://... or https://..."
            )),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Synthetic(s) => {
                write!(f, "synthetic:{}x{}", s.width, s.height)?;
                if let Some(fps) = s.fps {
                    write!(f, "@{fps}")?;
                }
                Ok(())
            }
            SourceSpec::Camera(c) => {
                write!(f, "camera:{}", c.device)?;
                if let Some((w, h)) = c.size {
                    write!(f, ":{w}x{h}")?;
                    if let Some(fps) = c.fps {
                        write!(f, "@{fps}")?;
                    }
                }
                Ok(())
            }
            SourceSpec::Http(h) => f.write_str(&h.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        let s: SourceSpec = "synthetic".parse().unwrap();
        assert_eq!(s, SourceSpec::Synthetic(SyntheticSpec::default()));
        let SourceSpec::Synthetic(s) = "synthetic:320x240@15".parse().unwrap() else {
            panic!()
        };
        assert_eq!((s.width, s.height, s.fps), (320, 240, Some(15.0)));
        let SourceSpec::Synthetic(s) = "synthetic:1280x720".parse().unwrap() else {
            panic!()
        };
        assert_eq!((s.width, s.height, s.fps), (1280, 720, None));
        let SourceSpec::Camera(c) = "camera:0".parse().unwrap() else {
            panic!()
        };
        assert_eq!((c.device.as_str(), c.size, c.fps), ("0", None, None));
        let SourceSpec::Camera(c) = "camera:HD Webcam: C270:1280x720@30".parse().unwrap() else {
            panic!()
        };
        assert_eq!(c.device, "HD Webcam: C270");
        assert_eq!((c.size, c.fps), (Some((1280, 720)), Some(30.0)));
        let SourceSpec::Http(h) = "http://10.0.0.7:81/stream".parse().unwrap() else {
            panic!()
        };
        assert_eq!(h.url, "http://10.0.0.7:81/stream");
        assert!(matches!(
            "https://cam/x".parse::<SourceSpec>(),
            Ok(SourceSpec::Http(_))
        ));
    }

    #[test]
    fn refuses_bad_spellings_with_a_reason() {
        for (bad, why) in [
            ("webcam:0", "unknown source"),
            ("camera", "say which camera"),
            ("camera:", "say which camera"),
            ("synthetic:640", "not WIDTHxHEIGHT"),
            ("synthetic:640x0", "empty"),
            ("synthetic:640x480@0", "(0, 10000]"),
            ("synthetic:640x480@fast", "bad frame rate"),
            ("ftp://x", "unknown source"),
        ] {
            let e = bad.parse::<SourceSpec>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "synthetic:320x240@15",
            "synthetic:640x480",
            "camera:0:1280x720@30",
            "camera:1",
            "http://127.0.0.1:8000/stream",
        ] {
            let spec: SourceSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
    }
}
