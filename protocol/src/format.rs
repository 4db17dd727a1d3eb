//! Pixel formats of a camera's payload.

use std::fmt;
use std::str::FromStr;

/// How one camera's payload in a slot is encoded.
///
/// The numeric values are part of the ring layout (`docs/ring.md`) and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PixelFormat {
    /// 3 bytes per pixel: red, green, blue.
    Rgb8 = 1,
    /// 3 bytes per pixel: blue, green, red.
    Bgr8 = 2,
    /// 1 byte per pixel, luma only.
    Gray8 = 3,
    /// Packed 4:2:2, 2 bytes per pixel: Y0 U Y1 V for each pair of pixels.
    Yuyv = 4,
    /// Planar 4:2:0: a full-size Y plane of `height` rows, then an interleaved UV plane of
    /// `height / 2` rows, both with the same stride.
    Nv12 = 5,
    /// A complete JFIF/JPEG image; `stride` is 0 and the length is the encoded size.
    Jpeg = 6,
}

/// All formats, in layout order.
pub const ALL_FORMATS: [PixelFormat; 6] = [
    PixelFormat::Rgb8,
    PixelFormat::Bgr8,
    PixelFormat::Gray8,
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Jpeg,
];

impl PixelFormat {
    /// The format with layout code `code`, if there is one.
    pub fn from_code(code: u32) -> Option<Self> {
        ALL_FORMATS.into_iter().find(|f| *f as u32 == code)
    }

    /// The layout code stored in the ring.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb8 => "rgb8",
            PixelFormat::Bgr8 => "bgr8",
            PixelFormat::Gray8 => "gray8",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Jpeg => "jpeg",
        }
    }

    /// Whether the payload is raw pixels (as opposed to a compressed image).
    pub fn is_raw(self) -> bool {
        self != PixelFormat::Jpeg
    }

    /// Bytes per pixel in a row of the first plane, for raw formats.
    pub fn bytes_per_pixel(self) -> Option<u32> {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => Some(3),
            PixelFormat::Gray8 | PixelFormat::Nv12 => Some(1),
            PixelFormat::Yuyv => Some(2),
            PixelFormat::Jpeg => None,
        }
    }

    /// Whether `width` and `height` are legal for this format (YUYV needs an even width,
    /// NV12 an even width and height).
    pub fn dimensions_ok(self, width: u32, height: u32) -> bool {
        if width == 0 || height == 0 {
            return false;
        }
        match self {
            PixelFormat::Yuyv => width.is_multiple_of(2),
            PixelFormat::Nv12 => width.is_multiple_of(2) && height.is_multiple_of(2),
            _ => true,
        }
    }

    /// The tightly packed stride (bytes per row) of the first plane, for raw formats.
    pub fn min_stride(self, width: u32) -> Option<u64> {
        self.bytes_per_pixel()
            .map(|b| u64::from(width) * u64::from(b))
    }

    /// Number of rows of `stride` bytes a raw image occupies (all planes).
    pub fn rows(self, height: u32) -> Option<u64> {
        match self {
            PixelFormat::Nv12 => Some(u64::from(height) + u64::from(height) / 2),
            PixelFormat::Jpeg => None,
            _ => Some(u64::from(height)),
        }
    }

    /// Bytes a raw image of this size occupies with the given stride, if it fits in u64.
    pub fn raw_len(self, stride: u64, height: u32) -> Option<u64> {
        self.rows(height)?.checked_mul(stride)
    }

    /// The bytes reserved for one camera in a slot: the raw size for raw formats, and for
    /// JPEG the size of the RGB8 image plus 4 KiB of headers. A camera JPEG is far
    /// smaller at any sensible quality; one that does not fit is dropped by the producer.
    pub fn max_payload_len(self, width: u32, height: u32) -> u64 {
        match self.min_stride(width) {
            Some(stride) => self.raw_len(stride, height).unwrap_or(u64::MAX),
            None => u64::from(width) * u64::from(height) * 3 + 4096,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a pixel format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pixel format {0:?} (expected one of rgb8, bgr8, gray8, yuyv, nv12, jpeg)")]
pub struct UnknownFormat(pub String);

impl FromStr for PixelFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_FORMATS
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for f in ALL_FORMATS {
            assert_eq!(PixelFormat::from_code(f.code()), Some(f));
            assert_eq!(f.name().parse::<PixelFormat>().unwrap(), f);
        }
        assert_eq!(PixelFormat::from_code(0), None);
        assert_eq!(PixelFormat::from_code(7), None);
        assert!("rgb".parse::<PixelFormat>().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(PixelFormat::Rgb8.raw_len(30, 10), Some(300));
        assert_eq!(PixelFormat::Nv12.raw_len(10, 10), Some(150));
        assert_eq!(PixelFormat::Yuyv.min_stride(10), Some(20));
        assert!(!PixelFormat::Nv12.dimensions_ok(10, 11));
        assert!(!PixelFormat::Yuyv.dimensions_ok(11, 10));
        assert!(PixelFormat::Jpeg.max_payload_len(640, 480) > 640 * 480 * 3);
    }
}
