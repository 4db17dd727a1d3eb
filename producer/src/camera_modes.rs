//! The pure part of the camera source, built with or without the `camera` feature so it
//! is tested everywhere: the capture modes a device offers, choosing one for a
//! [`CameraSpec`], and finding where an MJPEG frame ends in a driver buffer.

use std::cmp::Reverse;
use std::fmt;

use camring_protocol::PixelFormat;

use crate::source::CameraSpec;

/// One capture mode of a device: a format, a size and a whole frame rate (what V4L2
/// through nokhwa reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CameraMode {
    /// Pixel format the device delivers ([`PixelFormat::Jpeg`] for MJPEG).
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

impl fmt::Display for CameraMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}x{}@{}",
            self.format, self.width, self.height, self.fps
        )
    }
}

/// The rates a device offers for one format and size, as `camring cameras` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeRates {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rates, highest first.
    pub fps: Vec<u32>,
}

/// A V4L2 device and what it offers, as `camring cameras` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// Index (`N` of /dev/videoN), usable as `camera:N`.
    pub index: u32,
    /// The device's name, usable (or any part of it) as `camera:NAME`.
    pub name: String,
    /// Device node path.
    pub path: String,
    /// Capture modes, grouped by format and size ([`group_modes`]).
    pub modes: Vec<ModeRates>,
    /// Why the modes could not be read (device busy, no permission, not a capture node).
    pub error: Option<String>,
}

/// Groups modes by format and size: formats in [`FORMAT_PREFERENCE`] order, sizes largest
/// first, rates highest first, duplicates removed.
pub fn group_modes(modes: &[CameraMode]) -> Vec<ModeRates> {
    let mut sorted = modes.to_vec();
    sorted.sort_by_key(|m| {
        (
            format_rank(m.format),
            Reverse(u64::from(m.width) * u64::from(m.height)),
            Reverse(m.width),
            Reverse(m.fps),
        )
    });
    sorted.dedup();
    let mut out: Vec<ModeRates> = Vec::new();
    for m in sorted {
        match out.last_mut() {
            Some(g) if (g.format, g.width, g.height) == (m.format, m.width, m.height) => {
                g.fps.push(m.fps);
            }
            _ => out.push(ModeRates {
                format: m.format,
                width: m.width,
                height: m.height,
                fps: vec![m.fps],
            }),
        }
    }
    out
}

/// The formats in the order a camera's mode is chosen when the spec names none: MJPEG
/// first (passed into the ring undecoded, and the only way most USB cameras reach full
/// size at full rate), then the raw formats, smallest per pixel and colour first.
pub const FORMAT_PREFERENCE: [PixelFormat; 6] = [
    PixelFormat::Jpeg,
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Rgb8,
    PixelFormat::Bgr8,
    PixelFormat::Gray8,
];

fn format_rank(format: PixelFormat) -> usize {
    FORMAT_PREFERENCE
        .iter()
        .position(|f| *f == format)
        .unwrap_or(FORMAT_PREFERENCE.len())
}

/// Why no mode of a device fits a [`CameraSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    /// The device reports no capture mode camring can take (a V4L2 metadata node, or
    /// only formats camring does not know).
    #[error(
        "the device offers no capture mode camring can use (a metadata node? try another index)"
    )]
    NoModes,
    /// The device does not offer the format asked for.
    #[error("the camera has no {wanted} mode (it offers {offered})")]
    Format {
        /// The format asked for.
        wanted: PixelFormat,
        /// The formats it offers, comma-separated.
        offered: String,
    },
    /// The device does not offer the size asked for (in the format asked for, if any).
    #[error("the camera has no {width}x{height} mode{fmt} (it offers {offered})",
        fmt = format.map(|f| format!(" in {f}")).unwrap_or_default())]
    Size {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
        /// The format asked for, if any.
        format: Option<PixelFormat>,
        /// The sizes it offers, comma-separated.
        offered: String,
    },
}

/// A rate of `fps` frames per second reaches `target` (whole rates from V4L2 against a
/// group rate like 29.97).
fn reaches(fps: u32, target: f64) -> bool {
    f64::from(fps) + 0.05 >= target
}

/// Chooses the mode to open for `spec` from what the device offers. The target rate is
/// the spec's, or else the group's (`group_fps`).
///
/// - A format or size in the spec must be offered exactly (else [`ModeError`]).
/// - Only modes that reach the target rate are considered; when none does, the modes
///   with the highest rate offered.
/// - Among those: the preferred format ([`FORMAT_PREFERENCE`]: MJPEG first), then the
///   largest size, then the lowest rate that still reaches the target (no USB bandwidth
///   spent on frames the group drops).
pub fn choose_mode(
    modes: &[CameraMode],
    spec: &CameraSpec,
    group_fps: f64,
) -> Result<CameraMode, ModeError> {
    let usable: Vec<CameraMode> = modes
        .iter()
        .copied()
        .filter(|m| m.fps > 0 && m.format.dimensions_ok(m.width, m.height))
        .collect();
    if usable.is_empty() {
        return Err(ModeError::NoModes);
    }
    let by_format: Vec<CameraMode> = match spec.format {
        Some(wanted) => {
            let v: Vec<_> = usable
                .iter()
                .copied()
                .filter(|m| m.format == wanted)
                .collect();
            if v.is_empty() {
                return Err(ModeError::Format {
                    wanted,
                    offered: list(usable.iter().map(|m| m.format.to_string())),
                });
            }
            v
        }
        None => usable,
    };
    let candidates: Vec<CameraMode> = match spec.size {
        Some((width, height)) => {
            let v: Vec<_> = by_format
                .iter()
                .copied()
                .filter(|m| (m.width, m.height) == (width, height))
                .collect();
            if v.is_empty() {
                return Err(ModeError::Size {
                    width,
                    height,
                    format: spec.format,
                    offered: list(
                        group_modes(&by_format)
                            .iter()
                            .map(|g| format!("{}x{}", g.width, g.height)),
                    ),
                });
            }
            v
        }
        None => by_format,
    };
    let target = spec.fps.unwrap_or(group_fps);
    let best_fps = candidates.iter().map(|m| m.fps).max().unwrap_or(0);
    let floor = if reaches(best_fps, target) {
        target
    } else {
        f64::from(best_fps)
    };
    candidates
        .into_iter()
        .filter(|m| reaches(m.fps, floor))
        .min_by_key(|m| {
            (
                format_rank(m.format),
                Reverse(u64::from(m.width) * u64::from(m.height)),
                Reverse(m.width),
                m.fps,
            )
        })
        .ok_or(ModeError::NoModes)
}

/// Comma-separated, duplicates removed, first-seen order.
fn list(items: impl Iterator<Item = String>) -> String {
    let mut seen: Vec<String> = Vec::new();
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen.join(", ")
}

/// The length of the JPEG at the start of `data`: from SOI through EOI, following the
/// marker segments and skipping entropy-coded data (stuffed `FF 00`, restart markers).
/// `None` when `data` does not start with SOI or ends before EOI.
///
/// V4L2 hands out whole driver buffers, which are larger than the frame and may still hold
/// the tail of an earlier, longer frame (with its own EOI): searching for the last
/// `FF D9` would pass stale bytes on, so the structure is walked instead.
pub fn jpeg_len(data: &[u8]) -> Option<usize> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut pos = 2;
    loop {
        // A marker: FF, optional fill FFs, then the code.
        if *data.get(pos)? != 0xFF {
            return None;
        }
        while *data.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        let code = data[pos + 1];
        match code {
            0xD9 => return Some(pos + 2),
            // Standalone markers: TEM, RSTn (stray), SOI (stray).
            0x01 | 0xD0..=0xD8 => pos += 2,
            0x00 => return None,
            _ => {
                let len = usize::from(u16::from_be_bytes([
                    *data.get(pos + 2)?,
                    *data.get(pos + 3)?,
                ]));
                if len < 2 {
                    return None;
                }
                pos += 2 + len;
                if code == 0xDA {
                    pos = scan_end(data, pos)?;
                }
            }
        }
    }
}

/// From the start of entropy-coded data, the position of the next marker that is not a
/// stuffed byte or restart marker.
fn scan_end(data: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        pos += data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        match *data.get(pos + 1)? {
            0x00 | 0xD0..=0xD7 => pos += 2,
            0xFF => pos += 1,
            _ => return Some(pos),
        }
    }
}

/// Stride and length of one raw frame of `format` and size as V4L2 delivers it (rows
/// tightly packed), or `None` for JPEG or a size that overflows.
pub fn raw_frame_len(format: PixelFormat, width: u32, height: u32) -> Option<(u32, usize)> {
    let stride = format.min_stride(width)?;
    let len = format.raw_len(stride, height)?;
    Some((u32::try_from(stride).ok()?, usize::try_from(len).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_jpegs::rgb_jpeg;

    fn m(format: PixelFormat, width: u32, height: u32, fps: u32) -> CameraMode {
        CameraMode {
            format,
            width,
            height,
            fps,
        }
    }

    fn spec(size: Option<(u32, u32)>, fps: Option<f64>, format: Option<PixelFormat>) -> CameraSpec {
        CameraSpec {
            device: "0".into(),
            size,
            fps,
            format,
        }
    }

    /// A typical UVC webcam (C920-like): MJPEG up to 1080p at 30, YUYV full size only
    /// slowly.
    fn webcam() -> Vec<CameraMode> {
        use PixelFormat::{Jpeg, Yuyv};
        vec![
            m(Yuyv, 640, 480, 30),
            m(Yuyv, 640, 480, 15),
            m(Yuyv, 1280, 720, 10),
            m(Yuyv, 1920, 1080, 5),
            m(Jpeg, 640, 480, 30),
            m(Jpeg, 640, 480, 15),
            m(Jpeg, 1280, 720, 60),
            m(Jpeg, 1280, 720, 30),
            m(Jpeg, 1920, 1080, 30),
            m(Jpeg, 1920, 1080, 15),
        ]
    }

    #[test]
    fn default_prefers_mjpeg_largest_at_group_rate() {
        let c = choose_mode(&webcam(), &spec(None, None, None), 30.0).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1920, 1080, 30));
        // 29.97 is reached by a whole 30.
        let c = choose_mode(&webcam(), &spec(None, None, None), 29.97).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1920, 1080, 30));
        // A lower group rate takes the lowest rate that reaches it.
        let c = choose_mode(&webcam(), &spec(None, None, None), 12.0).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1920, 1080, 15));
        // 60 only at 720p.
        let c = choose_mode(&webcam(), &spec(None, None, None), 60.0).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1280, 720, 60));
    }

    #[test]
    fn rate_beyond_the_device_takes_its_fastest_modes() {
        let c = choose_mode(&webcam(), &spec(None, None, None), 120.0).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1280, 720, 60));
        let c = choose_mode(&webcam(), &spec(None, None, Some(PixelFormat::Yuyv)), 120.0).unwrap();
        assert_eq!(c, m(PixelFormat::Yuyv, 640, 480, 30));
    }

    #[test]
    fn spec_format_size_and_rate_are_honoured() {
        let yuyv = Some(PixelFormat::Yuyv);
        let c = choose_mode(&webcam(), &spec(None, None, yuyv), 30.0).unwrap();
        assert_eq!(c, m(PixelFormat::Yuyv, 640, 480, 30));
        let c = choose_mode(&webcam(), &spec(None, Some(5.0), yuyv), 30.0).unwrap();
        assert_eq!(c, m(PixelFormat::Yuyv, 1920, 1080, 5));
        let c = choose_mode(&webcam(), &spec(Some((1280, 720)), None, None), 30.0).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1280, 720, 30));
        // The size exists in YUYV only slowly: the MJPEG one reaches the rate.
        let c = choose_mode(&webcam(), &spec(Some((1280, 720)), Some(10.0), None), 30.0).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1280, 720, 30));
        // The spec's rate wins over the group's.
        let c = choose_mode(&webcam(), &spec(Some((1280, 720)), Some(60.0), None), 30.0).unwrap();
        assert_eq!(c, m(PixelFormat::Jpeg, 1280, 720, 60));
        // A size only reachable in a raw format below the rate is still chosen.
        let modes = [
            m(PixelFormat::Yuyv, 1920, 1080, 5),
            m(PixelFormat::Jpeg, 640, 480, 30),
        ];
        let c = choose_mode(&modes, &spec(Some((1920, 1080)), None, None), 30.0).unwrap();
        assert_eq!(c, m(PixelFormat::Yuyv, 1920, 1080, 5));
    }

    #[test]
    fn raw_only_camera_prefers_yuyv_then_size() {
        use PixelFormat::{Gray8, Nv12, Rgb8, Yuyv};
        let modes = [
            m(Gray8, 1280, 800, 30),
            m(Rgb8, 640, 480, 30),
            m(Nv12, 1280, 720, 30),
            m(Yuyv, 640, 480, 30),
        ];
        let c = choose_mode(&modes, &spec(None, None, None), 30.0).unwrap();
        assert_eq!(c, m(Yuyv, 640, 480, 30));
        let c = choose_mode(&modes[..3], &spec(None, None, None), 30.0).unwrap();
        assert_eq!(c, m(Nv12, 1280, 720, 30));
        let c = choose_mode(&modes, &spec(None, None, Some(Gray8)), 30.0).unwrap();
        assert_eq!(c, m(Gray8, 1280, 800, 30));
    }

    #[test]
    fn impossible_requests_say_what_is_offered() {
        let e =
            choose_mode(&webcam(), &spec(None, None, Some(PixelFormat::Nv12)), 30.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the camera has no nv12 mode (it offers yuyv, jpeg)"
        );
        let e = choose_mode(
            &webcam(),
            &spec(Some((800, 600)), None, Some(PixelFormat::Yuyv)),
            30.0,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the camera has no 800x600 mode in yuyv (it offers 1920x1080, 1280x720, 640x480)"
        );
        assert_eq!(
            choose_mode(&[], &spec(None, None, None), 30.0),
            Err(ModeError::NoModes)
        );
        // Unusable modes (odd YUYV width, zero rate) count as none.
        let odd = [
            m(PixelFormat::Yuyv, 641, 480, 30),
            m(PixelFormat::Jpeg, 640, 480, 0),
        ];
        assert_eq!(
            choose_mode(&odd, &spec(None, None, None), 30.0),
            Err(ModeError::NoModes)
        );
    }

    #[test]
    fn groups_modes_for_listing() {
        let mut modes = webcam();
        modes.push(m(PixelFormat::Jpeg, 640, 480, 30)); // duplicate
        let g = group_modes(&modes);
        let flat: Vec<String> = g
            .iter()
            .map(|g| format!("{} {}x{} {:?}", g.format, g.width, g.height, g.fps))
            .collect();
        assert_eq!(
            flat,
            [
                "jpeg 1920x1080 [30, 15]",
                "jpeg 1280x720 [60, 30]",
                "jpeg 640x480 [30, 15]",
                "yuyv 1920x1080 [5]",
                "yuyv 1280x720 [10]",
                "yuyv 640x480 [30, 15]",
            ]
        );
    }

    fn encoded(width: u32, height: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width * height * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        rgb_jpeg(&pixels, width, height)
    }

    #[test]
    fn jpeg_len_finds_the_end_of_a_real_jpeg() {
        let jpeg = encoded(64, 48);
        assert_eq!(jpeg_len(&jpeg), Some(jpeg.len()));
        // In a driver buffer: zero padding, or the stale tail of a longer frame.
        let mut buf = jpeg.clone();
        buf.resize(jpeg.len() + 4096, 0);
        assert_eq!(jpeg_len(&buf), Some(jpeg.len()));
        let longer = encoded(128, 96);
        let mut buf = longer.clone();
        buf[..jpeg.len()].copy_from_slice(&jpeg);
        assert_eq!(jpeg_len(&buf), Some(jpeg.len()));
    }

    #[test]
    fn jpeg_len_refuses_broken_frames() {
        let jpeg = encoded(64, 48);
        for cut in [0, 1, 2, 3, 20, jpeg.len() / 2, jpeg.len() - 1] {
            assert_eq!(jpeg_len(&jpeg[..cut]), None, "cut at {cut}");
        }
        assert_eq!(jpeg_len(&[0u8; 1000]), None);
        let mut bad = jpeg.clone();
        bad[0] = 0;
        assert_eq!(jpeg_len(&bad), None);
        // Entropy data with stuffing and restart markers, fill bytes before a marker.
        let scan = [
            0xFF, 0xD8, 0xFF, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56,
            0xFF, 0xFF, 0xD9, 0xFF, 0xD9,
        ];
        assert_eq!(jpeg_len(&scan), Some(17));
        // A segment length that is impossible.
        assert_eq!(
            jpeg_len(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0xFF, 0xD9]),
            None
        );
    }

    #[test]
    fn raw_frame_lengths() {
        assert_eq!(
            raw_frame_len(PixelFormat::Yuyv, 640, 480),
            Some((1280, 614_400))
        );
        assert_eq!(
            raw_frame_len(PixelFormat::Nv12, 640, 480),
            Some((640, 460_800))
        );
        assert_eq!(
            raw_frame_len(PixelFormat::Gray8, 640, 480),
            Some((640, 307_200))
        );
        assert_eq!(
            raw_frame_len(PixelFormat::Rgb8, 640, 480),
            Some((1920, 921_600))
        );
        assert_eq!(raw_frame_len(PixelFormat::Jpeg, 640, 480), None);
    }
}
