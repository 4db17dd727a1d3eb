//! Real cameras through nokhwa (V4L2), behind the `camera` feature.
//!
//! A [`CameraSource`] opens a device by index or by a substring of its name, chooses a
//! mode ([`choose_mode`]: MJPEG first, the largest size at the group's rate), and captures
//! until stopped. MJPEG frames go into the feed as they come, undecoded (only cut at their
//! EOI and checked whole with [`check_jpeg`]); raw frames are copied as V4L2 packs them.
//!
//! nokhwa's capture call blocks until the next frame, with no timeout, so the device
//! lives on a capture thread of its own. The source thread only hands it buffers and
//! publishes what comes back, waking every [`POLL`] to notice a stop or a stalled camera.
//! A capture thread stuck on a silent device is left behind when its source gives up; it
//! ends at the device's next frame or error.

use std::borrow::Cow;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use camring_protocol::PixelFormat;
use camring_shm::clock::now_ns;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use nokhwa::{Camera, NokhwaError};

pub use crate::camera_modes::{choose_mode, CameraInfo, CameraMode, ModeError, ModeRates};
use crate::camera_modes::{group_modes, jpeg_len, raw_frame_len};
use crate::frame::{Buffer, Feed, Image, Stop};
use crate::mjpeg::check_jpeg;
use crate::source::{CameraSpec, Source, SourceError};

/// How often the source thread looks at the stop token while no frame arrives.
pub const POLL: Duration = Duration::from_millis(20);
/// Longest wait from opening to the first frame (some cameras take a second or two to
/// start streaming).
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest stall (no frame from a streaming camera) that counts as a failure; slower
/// modes get 20 frame periods.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Every format nokhwa knows, so opening never filters a mode out.
const ALL_FRAME_FORMATS: [FrameFormat; 6] = [
    FrameFormat::MJPEG,
    FrameFormat::YUYV,
    FrameFormat::NV12,
    FrameFormat::GRAY,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
];

/// The camring format of a nokhwa format.
pub fn pixel_format(format: FrameFormat) -> PixelFormat {
    match format {
        FrameFormat::MJPEG => PixelFormat::Jpeg,
        FrameFormat::YUYV => PixelFormat::Yuyv,
        FrameFormat::NV12 => PixelFormat::Nv12,
        FrameFormat::GRAY => PixelFormat::Gray8,
        FrameFormat::RAWRGB => PixelFormat::Rgb8,
        FrameFormat::RAWBGR => PixelFormat::Bgr8,
    }
}

/// The nokhwa format of a camring format.
pub fn frame_format(format: PixelFormat) -> FrameFormat {
    match format {
        PixelFormat::Jpeg => FrameFormat::MJPEG,
        PixelFormat::Yuyv => FrameFormat::YUYV,
        PixelFormat::Nv12 => FrameFormat::NV12,
        PixelFormat::Gray8 => FrameFormat::GRAY,
        PixelFormat::Rgb8 => FrameFormat::RAWRGB,
        PixelFormat::Bgr8 => FrameFormat::RAWBGR,
    }
}

fn mode_of(f: &CameraFormat) -> CameraMode {
    CameraMode {
        format: pixel_format(f.format()),
        width: f.width(),
        height: f.height(),
        fps: f.frame_rate(),
    }
}

fn camera_error(what: impl std::fmt::Display, e: NokhwaError) -> SourceError {
    SourceError::Camera(format!("{what}: {e}"))
}

/// The V4L2 devices (`/dev/videoN`), by index.
fn query() -> Result<Vec<(u32, String, String)>, SourceError> {
    let mut devices: Vec<_> = nokhwa::query(ApiBackend::Video4Linux)
        .map_err(|e| camera_error("listing cameras", e))?
        .into_iter()
        .filter_map(|info| {
            let index = match info.index() {
                CameraIndex::Index(i) => *i,
                CameraIndex::String(s) => s.parse().ok()?,
            };
            let path = info
                .description()
                .rsplit_once("@ ")
                .map_or_else(|| format!("/dev/video{index}"), |(_, p)| p.to_owned());
            Some((index, info.human_name(), path))
        })
        .collect();
    devices.sort_by_key(|d| d.0);
    Ok(devices)
}

/// Opens device `index` in whatever mode it is in and reads the modes it offers.
fn open_any(index: u32) -> Result<(Camera, Vec<CameraMode>), SourceError> {
    let request = RequestedFormat::with_formats(RequestedFormatType::None, &ALL_FRAME_FORMATS);
    let mut camera =
        Camera::with_backend(CameraIndex::Index(index), request, ApiBackend::Video4Linux).map_err(
            |e| match e {
                // nokhwa's word for a device that lists no capture format.
                NokhwaError::GetPropertyError { property, .. } if property == "CameraFormat" => {
                    SourceError::Camera(format!(
                        "/dev/video{index} offers no capture format (a metadata node?)"
                    ))
                }
                e => camera_error(format_args!("opening /dev/video{index}"), e),
            },
        )?;
    let modes = camera
        .compatible_camera_formats()
        .map_err(|e| camera_error(format_args!("reading the modes of /dev/video{index}"), e))?
        .iter()
        .map(mode_of)
        .collect();
    Ok((camera, modes))
}

/// Every V4L2 device with the modes it offers, for `camring cameras`. A device that
/// cannot be opened (busy, a metadata node, no permission) is listed with its error.
pub fn list_cameras() -> Result<Vec<CameraInfo>, SourceError> {
    Ok(query()?
        .into_iter()
        .map(|(index, name, path)| {
            let (modes, error) = match open_any(index) {
                Ok((_camera, modes)) => (group_modes(&modes), None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            CameraInfo {
                index,
                name,
                path,
                modes,
                error,
            }
        })
        .collect())
}

/// Where the capture thread's frames come from: the nokhwa camera, or a fake in tests.
trait Grabber {
    /// Blocks until the next frame and returns the driver's buffer holding it.
    fn grab(&mut self) -> Result<Cow<'_, [u8]>, SourceError>;
}

impl Grabber for Camera {
    fn grab(&mut self) -> Result<Cow<'_, [u8]>, SourceError> {
        self.frame_raw()
            .map_err(|e| camera_error("capturing a frame", e))
    }
}

/// An open, streaming device.
struct Opened {
    grabber: Box<dyn Grabber>,
    /// The device, for logs.
    device: String,
    mode: CameraMode,
}

/// Opens the device on the capture thread.
type Opener = Box<dyn FnOnce() -> Result<Opened, SourceError> + Send>;

/// How long a camera may be silent.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    first_frame: Duration,
    stall: Duration,
}

const TIMEOUTS: Timeouts = Timeouts {
    first_frame: FIRST_FRAME_TIMEOUT,
    stall: STALL_TIMEOUT,
};

/// What the capture thread reports to the source thread.
enum Msg {
    /// The device is open and streaming in `mode`; `device` describes it for logs.
    Opened { device: String, mode: CameraMode },
    /// A whole frame, copied into a buffer from the feed.
    Frame { buf: Buffer, capture_ns: u64 },
    /// A frame that was not whole (MJPEG without SOI or EOI, malformed or of another
    /// size; raw frame too short).
    Corrupt,
    /// The capture thread ends with this error.
    Failed(SourceError),
}

/// A camera of the group, captured through nokhwa (V4L2).
#[derive(Debug)]
pub struct CameraSource {
    spec: CameraSpec,
    group_fps: f64,
    sequence: u64,
}

impl CameraSource {
    /// A source for the camera `spec`; `group_fps` is the group's rate, the target when
    /// the spec sets none.
    pub fn new(spec: CameraSpec, group_fps: f64) -> Self {
        CameraSource {
            spec,
            group_fps,
            sequence: 0,
        }
    }
}

impl Source for CameraSource {
    fn run(&mut self, feed: &Feed, stop: &Stop) -> Result<(), SourceError> {
        let spec = self.spec.clone();
        let group_fps = self.group_fps;
        let opener: Opener = Box::new(move || {
            let (camera, device, mode) = open(&spec, group_fps)?;
            Ok(Opened {
                grabber: Box::new(camera),
                device,
                mode,
            })
        });
        self.run_with(feed, stop, opener, TIMEOUTS)
    }
}

impl CameraSource {
    /// [`Source::run`] with the device opened by `opener`.
    fn run_with(
        &mut self,
        feed: &Feed,
        stop: &Stop,
        opener: Opener,
        timeouts: Timeouts,
    ) -> Result<(), SourceError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let (buf_tx, buf_rx) = mpsc::channel();
        // Two buffers ahead: one being filled while the last one is published.
        for _ in 0..2 {
            let _ = buf_tx.send(feed.buffer(0));
        }
        let (done_tx, done_rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name(format!("cap-{}", feed.name()))
            .spawn(move || {
                // Dropped last, after the camera: tells the source thread the device is
                // closed.
                let _done = done_tx;
                if let Err(e) = capture(opener, &tx, &buf_rx) {
                    let _ = tx.send(Msg::Failed(e));
                }
            })
            .map_err(SourceError::Io)?;

        let started = Instant::now();
        let mut mode: Option<CameraMode> = None;
        let mut last_frame: Option<Instant> = None;
        let result = loop {
            if stop.is_stopped() {
                break Ok(());
            }
            match rx.recv_timeout(POLL) {
                Ok(Msg::Opened { device, mode: m }) => {
                    tracing::info!(camera = feed.name(), %device, mode = %m, "camera streaming");
                    let target = self.spec.fps.unwrap_or(self.group_fps);
                    if f64::from(m.fps) + 0.05 < target {
                        tracing::warn!(
                            camera = feed.name(),
                            fps = m.fps,
                            target,
                            "the camera cannot reach the rate asked for"
                        );
                    }
                    mode = Some(m);
                }
                Ok(Msg::Frame { buf, capture_ns }) => {
                    let Some(m) = mode else { continue };
                    let stride = raw_frame_len(m.format, m.width, m.height).map_or(0, |r| r.0);
                    feed.publish(Image::new(
                        m.format,
                        m.width,
                        m.height,
                        stride,
                        capture_ns,
                        self.sequence,
                        buf,
                    ));
                    self.sequence += 1;
                    last_frame = Some(Instant::now());
                    let _ = buf_tx.send(feed.buffer(0));
                }
                Ok(Msg::Corrupt) => {
                    feed.count_corrupt();
                    last_frame = Some(Instant::now());
                }
                Ok(Msg::Failed(e)) => break Err(e),
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(SourceError::Camera("the capture thread panicked".into()))
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(e) = stalled(timeouts, mode, started, last_frame) {
                        break Err(e);
                    }
                }
            }
        };
        // Closing the channels ends the capture thread at its next frame; give it a
        // couple of frame periods to close the device before returning.
        drop(rx);
        drop(buf_tx);
        let grace = mode.map_or(Duration::from_millis(100), |m| {
            Duration::from_secs_f64(2.0 / f64::from(m.fps.max(1)))
        });
        let _ =
            done_rx.recv_timeout(grace.clamp(Duration::from_millis(100), Duration::from_secs(1)));
        result
    }
}

/// The failure to report when the camera has been silent too long, if it has.
fn stalled(
    timeouts: Timeouts,
    mode: Option<CameraMode>,
    started: Instant,
    last_frame: Option<Instant>,
) -> Option<SourceError> {
    match (mode, last_frame) {
        (Some(m), Some(last)) => {
            let limit = timeouts
                .stall
                .max(Duration::from_secs_f64(20.0 / f64::from(m.fps.max(1))));
            (last.elapsed() > limit).then(|| {
                SourceError::Camera(format!(
                    "no frame for {:.1} s",
                    last.elapsed().as_secs_f64()
                ))
            })
        }
        _ => (started.elapsed() > timeouts.first_frame).then(|| {
            SourceError::Camera(format!(
                "no frame {:.1} s after opening",
                timeouts.first_frame.as_secs_f64()
            ))
        }),
    }
}

/// The capture thread: opens the camera and copies each frame into a buffer from
/// `buffers`, until the source thread hangs up (`Ok`) or the device fails.
fn capture(
    opener: Opener,
    tx: &SyncSender<Msg>,
    buffers: &Receiver<Buffer>,
) -> Result<(), SourceError> {
    let Opened {
        mut grabber,
        device,
        mode,
    } = opener()?;
    if tx.send(Msg::Opened { device, mode }).is_err() {
        return Ok(());
    }
    let raw_len = raw_frame_len(mode.format, mode.width, mode.height).map(|r| r.1);
    loop {
        let data = grabber.grab()?;
        let capture_ns = now_ns();
        // The driver hands out its whole buffer: cut it to the frame. An MJPEG frame must
        // be whole and of the mode's size.
        let len = match raw_len {
            Some(len) => (data.len() >= len).then_some(len),
            None => jpeg_len(&data).filter(|&len| {
                check_jpeg(&data[..len])
                    .is_ok_and(|info| (info.width, info.height) == (mode.width, mode.height))
            }),
        };
        let msg = match len {
            Some(len) => {
                let Ok(mut buf) = buffers.recv() else {
                    return Ok(());
                };
                let v = buf.vec();
                v.clear();
                v.extend_from_slice(&data[..len]);
                Msg::Frame { buf, capture_ns }
            }
            None => Msg::Corrupt,
        };
        if tx.send(msg).is_err() {
            return Ok(());
        }
    }
}

/// The mode [`CameraSource`] would capture `spec` in, read from the device without
/// streaming: for laying out a ring before the camera starts. Errors as the source's.
///
/// Pinning the spec to the result (its size, rate and format) makes the source choose
/// exactly this mode later.
pub fn probe(spec: &CameraSpec, group_fps: f64) -> Result<CameraMode, SourceError> {
    with_device(spec, |index| {
        let (_camera, modes) = open_any(index)?;
        Ok(choose_mode(&modes, spec, group_fps)?)
    })
    .map(|(mode, _)| mode)
}

/// Finds the device for `spec`, opens it in the chosen mode and starts streaming.
/// Returns the camera, a description of the device and the mode.
fn open(spec: &CameraSpec, group_fps: f64) -> Result<(Camera, String, CameraMode), SourceError> {
    with_device(spec, |index| open_index(index, spec, group_fps))
        .map(|((camera, mode), device)| (camera, device, mode))
}

/// Runs `f` on the device `spec` names, by index or by name; with several devices
/// matching the name, on each in turn until it succeeds. Returns its result and the
/// device's description.
fn with_device<T>(
    spec: &CameraSpec,
    f: impl Fn(u32) -> Result<T, OpenError>,
) -> Result<(T, String), SourceError> {
    let candidates: Vec<(u32, String)> = match spec.device.parse::<u32>() {
        Ok(index) => vec![(index, format!("/dev/video{index}"))],
        Err(_) => {
            let all = query()?;
            let wanted = spec.device.to_lowercase();
            let found: Vec<_> = all
                .iter()
                .filter(|(_, name, _)| name.to_lowercase().contains(&wanted))
                .map(|(i, name, path)| (*i, format!("{path} \"{name}\"")))
                .collect();
            if found.is_empty() {
                let known = if all.is_empty() {
                    "there are no cameras".to_owned()
                } else {
                    let names: Vec<_> = all
                        .iter()
                        .map(|(i, name, _)| format!("{i} \"{name}\""))
                        .collect();
                    format!("cameras: {}", names.join(", "))
                };
                return Err(SourceError::Camera(format!(
                    "no camera named like {:?} ({known})",
                    spec.device
                )));
            }
            found
        }
    };
    // A name often matches several nodes (a UVC camera has a metadata node beside its
    // capture node, a rig has identical cameras): take the first that opens and streams.
    let mut errors = Vec::new();
    let mut all_mode_errors = true;
    for (index, device) in candidates {
        match f(index) {
            Ok(t) => return Ok((t, device)),
            Err(e) => {
                all_mode_errors &= matches!(
                    e,
                    OpenError::Mode(ModeError::Format { .. } | ModeError::Size { .. })
                );
                errors.push(match e {
                    OpenError::Device(e) => e.to_string(),
                    OpenError::Mode(e) => format!("{device}: {e}"),
                });
            }
        }
    }
    let message = errors.join("; ");
    Err(if all_mode_errors {
        // The camera is there and cannot do what the spec asks: retrying will not help.
        SourceError::Fatal(message)
    } else {
        SourceError::Camera(message)
    })
}

/// Why one device could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Device(#[from] SourceError),
    #[error(transparent)]
    Mode(#[from] ModeError),
}

fn open_index(
    index: u32,
    spec: &CameraSpec,
    group_fps: f64,
) -> Result<(Camera, CameraMode), OpenError> {
    let (mut camera, modes) = open_any(index)?;
    let mode = choose_mode(&modes, spec, group_fps)?;
    if mode_of(&camera.camera_format()) != mode {
        let fourcc = [frame_format(mode.format)];
        let exact = CameraFormat::new_from(mode.width, mode.height, fourcc[0], mode.fps);
        camera
            .set_camera_requset(RequestedFormat::with_formats(
                RequestedFormatType::Exact(exact),
                &fourcc,
            ))
            .map_err(|e| camera_error(format_args!("setting {mode}"), e))?;
    }
    camera
        .open_stream()
        .map_err(|e| camera_error("starting the stream", e))?;
    Ok((camera, mode))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::test_jpegs::rgb_jpeg;

    /// What a fake device does on each grab.
    enum Step {
        /// Delivers a driver buffer.
        Frame(Vec<u8>),
        /// Fails.
        Fail(&'static str),
        /// Blocks (as a silent camera does) for this long.
        Block(Duration),
    }

    struct Fake {
        steps: std::vec::IntoIter<Step>,
        current: Vec<u8>,
    }

    impl Grabber for Fake {
        fn grab(&mut self) -> Result<Cow<'_, [u8]>, SourceError> {
            loop {
                match self.steps.next() {
                    Some(Step::Frame(data)) => {
                        self.current = data;
                        return Ok(Cow::Borrowed(&self.current));
                    }
                    Some(Step::Fail(why)) => return Err(SourceError::Camera(why.into())),
                    Some(Step::Block(d)) => std::thread::sleep(d),
                    None => std::thread::sleep(Duration::from_secs(3600)),
                }
            }
        }
    }

    fn fake(mode: CameraMode, steps: Vec<Step>) -> Opener {
        Box::new(move || {
            Ok(Opened {
                grabber: Box::new(Fake {
                    steps: steps.into_iter(),
                    current: Vec::new(),
                }),
                device: "fake".into(),
                mode,
            })
        })
    }

    fn source() -> CameraSource {
        CameraSource::new(
            CameraSpec {
                device: "fake".into(),
                size: None,
                fps: None,
                format: None,
            },
            30.0,
        )
    }

    const QUICK: Timeouts = Timeouts {
        first_frame: Duration::from_millis(300),
        stall: Duration::from_millis(300),
    };

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        rgb_jpeg(&vec![128u8; (width * height * 3) as usize], width, height)
    }

    /// Runs `opener` on a thread until `until` holds for the feed, then stops it and
    /// returns the feed, the result and how long the stop took.
    fn run_until(
        opener: Opener,
        until: impl Fn(&Feed) -> bool,
    ) -> (Arc<Feed>, Result<(), SourceError>, Duration) {
        let feed = Arc::new(Feed::new("cam0"));
        let stop = Stop::new();
        let (f, s) = (feed.clone(), stop.clone());
        let t = std::thread::spawn(move || source().run_with(&f, &s, opener, QUICK));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !until(&feed) && !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let asked = Instant::now();
        stop.stop();
        let result = t.join().unwrap();
        (feed, result, asked.elapsed())
    }

    #[test]
    fn mjpeg_passes_through_cut_at_eoi_and_broken_frames_are_counted() {
        let mode = CameraMode {
            format: PixelFormat::Jpeg,
            width: 64,
            height: 48,
            fps: 30,
        };
        let good = jpeg(64, 48);
        // The driver buffer: the frame, then the stale tail of a longer frame.
        let mut padded = jpeg(160, 120);
        padded[..good.len()].copy_from_slice(&good);
        let steps = vec![
            Step::Frame(padded.clone()),
            Step::Frame(good[..good.len() - 10].to_vec()), // truncated
            Step::Frame(vec![0; 4096]),                    // no SOI
            Step::Frame(jpeg(32, 24)),                     // not the mode's size
            Step::Frame(padded),
            // Then silent: the stop must not wait for a frame.
        ];
        let (feed, result, took) = run_until(fake(mode, steps), |f| f.stats().captured == 2);
        result.unwrap();
        // The fake is silent for an hour after its last frame: returning at all shows the
        // stop did not wait for it (no time is asserted).
        let _ = took;
        let s = feed.stats();
        assert_eq!((s.captured, s.corrupt), (2, 3));
        let image = feed.latest().unwrap();
        assert_eq!(image.data(), &good[..]);
        assert_eq!(
            (image.format, image.width, image.height, image.stride),
            (PixelFormat::Jpeg, 64, 48, 0)
        );
        assert_eq!(image.sequence, 1);
        let now = now_ns();
        assert!(image.capture_ns <= now && now - image.capture_ns < 10_000_000_000);
    }

    #[test]
    fn raw_frames_are_cut_to_their_size() {
        let mode = CameraMode {
            format: PixelFormat::Yuyv,
            width: 8,
            height: 2,
            fps: 30,
        };
        let frame: Vec<u8> = (0..32).collect();
        let mut buffer = frame.clone();
        buffer.extend_from_slice(&[0xEE; 4064]); // a page-sized driver buffer
        let steps = vec![Step::Frame(frame[..31].to_vec()), Step::Frame(buffer)];
        let (feed, result, _) = run_until(fake(mode, steps), |f| f.stats().captured == 1);
        result.unwrap();
        assert_eq!((feed.stats().captured, feed.stats().corrupt), (1, 1));
        let image = feed.latest().unwrap();
        assert_eq!(image.data(), &frame[..]);
        assert_eq!((image.format, image.stride), (PixelFormat::Yuyv, 16));
    }

    #[test]
    fn device_errors_and_stalls_end_the_run() {
        let mode = CameraMode {
            format: PixelFormat::Gray8,
            width: 4,
            height: 4,
            fps: 30,
        };
        let steps = vec![Step::Frame(vec![1; 16]), Step::Fail("unplugged")];
        let (feed, result, _) = run_until(fake(mode, steps), |_| false);
        assert_eq!(result.unwrap_err().to_string(), "unplugged");
        assert_eq!(feed.stats().captured, 1);

        let steps = vec![
            Step::Frame(vec![1; 16]),
            Step::Block(Duration::from_secs(60)),
        ];
        let (_, result, _) = run_until(fake(mode, steps), |_| false);
        let e = result.unwrap_err().to_string();
        assert!(e.starts_with("no frame for"), "{e}");

        let (_, result, _) = run_until(fake(mode, vec![]), |_| false);
        let e = result.unwrap_err().to_string();
        assert!(e.starts_with("no frame 0.3 s after opening"), "{e}");

        let failing: Opener = Box::new(|| Err(SourceError::Camera("busy".into())));
        let (_, result, _) = run_until(failing, |_| false);
        assert_eq!(result.unwrap_err().to_string(), "busy");
    }

    #[test]
    fn sequence_continues_across_runs() {
        let mode = CameraMode {
            format: PixelFormat::Gray8,
            width: 4,
            height: 4,
            fps: 30,
        };
        let feed = Feed::new("cam0");
        let stop = Stop::new();
        let mut src = source();
        for _ in 0..2 {
            let steps = vec![Step::Frame(vec![1; 16]), Step::Fail("gone")];
            assert!(src
                .run_with(&feed, &stop, fake(mode, steps), QUICK)
                .is_err());
        }
        assert_eq!(feed.latest().unwrap().sequence, 1);
    }

    fn no_cameras_here() -> bool {
        !std::path::Path::new("/dev/video0").exists()
    }

    #[test]
    fn formats_map_both_ways() {
        for f in ALL_FRAME_FORMATS {
            assert_eq!(frame_format(pixel_format(f)), f);
        }
        for f in camring_protocol::format::ALL_FORMATS {
            assert_eq!(pixel_format(frame_format(f)), f);
        }
    }

    #[test]
    fn missing_cameras_fail_clearly_and_stop_promptly() {
        if !no_cameras_here() {
            return;
        }
        assert!(list_cameras().unwrap().is_empty());
        let spec = CameraSpec {
            device: "0".into(),
            size: None,
            fps: None,
            format: None,
        };
        assert!(matches!(probe(&spec, 30.0), Err(SourceError::Camera(_))));
        let feed = Feed::new("cam0");
        let stop = Stop::new();
        for (device, why) in [("0", "/dev/video0"), ("Webcam", "no camera named like")] {
            let spec = CameraSpec {
                device: device.into(),
                size: None,
                fps: None,
                format: None,
            };
            let e = CameraSource::new(spec, 30.0).run(&feed, &stop).unwrap_err();
            assert!(matches!(e, SourceError::Camera(_)), "{e:?}");
            assert!(e.to_string().contains(why), "{e}");
        }
        // Stopped before anything arrives: returns Ok without waiting for a frame.
        stop.stop();
        let spec = CameraSpec {
            device: "0".into(),
            size: None,
            fps: None,
            format: None,
        };
        CameraSource::new(spec, 30.0).run(&feed, &stop).unwrap();
        assert_eq!(feed.stats().captured, 0);
    }
}
