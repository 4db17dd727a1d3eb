//! JPEG for camring through turbojpeg (libjpeg-turbo 3, built from source with SIMD):
//! encoding raw camera images, decoding, verifying synthetic JPEG frames, transcoding to a
//! client's quality and size ([`Transcoder`]) and reading a JPEG's quality
//! ([`jpeg_quality`]). All of camring's JPEG code is here.
//!
//! No IO; every function works on memory the caller owns, so the producer can encode
//! straight into a ring slot.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod markers;
mod quality;
mod transcode;

pub use quality::jpeg_quality;
pub use transcode::{TranscodeError, Transcoder};

use camring_protocol::pattern::{self, PatternError};
use camring_protocol::PixelFormat;

/// Mean absolute error a JPEG of the synthetic pattern may have and still verify. Quality
/// 50 on the pattern measures about 3.2 (mean absolute difference per byte); a frame of the wrong number is above 60.
pub const MAX_PATTERN_ERROR: f64 = 20.0;

/// A JPEG error.
#[derive(Debug, thiserror::Error)]
pub enum JpegError {
    /// turbojpeg refused the operation (corrupt data, output too small, ...).
    #[error("turbojpeg")]
    Turbo(#[from] turbojpeg::Error),
    /// The source format cannot be encoded directly.
    #[error("cannot encode {0} directly")]
    Unsupported(PixelFormat),
    /// The decoded image does not carry the expected synthetic pattern.
    #[error("synthetic pattern")]
    Pattern(#[from] PatternError),
}

fn turbo_format(format: PixelFormat) -> Option<turbojpeg::PixelFormat> {
    match format {
        PixelFormat::Rgb8 => Some(turbojpeg::PixelFormat::RGB),
        PixelFormat::Bgr8 => Some(turbojpeg::PixelFormat::BGR),
        PixelFormat::Gray8 => Some(turbojpeg::PixelFormat::GRAY),
        _ => None,
    }
}

/// A JPEG encoder with fixed quality and 4:2:0 subsampling. Keep one per thread: creating
/// a turbojpeg handle allocates.
pub struct Encoder {
    inner: turbojpeg::Compressor,
    quality: i32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("quality", &self.quality)
            .finish()
    }
}

impl Encoder {
    /// An encoder at `quality` (1..=100).
    pub fn new(quality: u8) -> Result<Self, JpegError> {
        let mut inner = turbojpeg::Compressor::new()?;
        let quality = i32::from(quality.clamp(1, 100));
        inner.set_quality(quality)?;
        inner.set_subsamp(turbojpeg::Subsamp::Sub2x2)?;
        Ok(Encoder { inner, quality })
    }

    /// Quality this encoder uses.
    pub fn quality(&self) -> u8 {
        self.quality as u8
    }

    /// The largest JPEG this encoder can produce for a `width` × `height` image.
    pub fn max_len(&self, width: u32, height: u32) -> Result<usize, JpegError> {
        Ok(self.inner.buf_len(width as usize, height as usize)?)
    }

    /// Encodes a raw RGB8, BGR8 or GRAY8 image into `out`, returning the JPEG's length.
    pub fn encode_into(
        &mut self,
        pixels: &[u8],
        format: PixelFormat,
        width: u32,
        height: u32,
        stride: usize,
        out: &mut [u8],
    ) -> Result<usize, JpegError> {
        let tf = turbo_format(format).ok_or(JpegError::Unsupported(format))?;
        if format == PixelFormat::Gray8 {
            self.inner.set_subsamp(turbojpeg::Subsamp::Gray)?;
        } else {
            self.inner.set_subsamp(turbojpeg::Subsamp::Sub2x2)?;
        }
        let image = turbojpeg::Image {
            pixels,
            width: width as usize,
            pitch: stride,
            height: height as usize,
            format: tf,
        };
        Ok(self.inner.compress_to_slice(image, out)?)
    }

    /// Encodes into a new vector.
    pub fn encode(
        &mut self,
        pixels: &[u8],
        format: PixelFormat,
        width: u32,
        height: u32,
        stride: usize,
    ) -> Result<Vec<u8>, JpegError> {
        let mut out = vec![0u8; self.max_len(width, height)?];
        let n = self.encode_into(pixels, format, width, height, stride, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

/// A JPEG decoder to RGB8.
pub struct Decoder {
    inner: turbojpeg::Decompressor,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

/// Largest image the decoder accepts (a hostile header could claim 65535 × 65535).
pub const MAX_DECODE_PIXELS: usize = 8192 * 8192;

impl Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, JpegError> {
        Ok(Decoder {
            inner: turbojpeg::Decompressor::new()?,
            buf: Vec::new(),
        })
    }

    /// Decodes `jpeg` to tightly packed RGB8, returning `(width, height, pixels)`. The
    /// pixels borrow the decoder's buffer until the next call.
    pub fn decode_rgb(&mut self, jpeg: &[u8]) -> Result<(u32, u32, &[u8]), JpegError> {
        let header = self.inner.read_header(jpeg)?;
        let (w, h) = (header.width, header.height);
        if w.checked_mul(h).is_none_or(|p| p > MAX_DECODE_PIXELS) {
            return Err(JpegError::Turbo(turbojpeg::Error::TurboJpegError(format!(
                "image {w}x{h} is too large"
            ))));
        }
        self.buf.resize(w * h * 3, 0);
        let image = turbojpeg::Image {
            pixels: &mut self.buf[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: turbojpeg::PixelFormat::RGB,
        };
        self.inner.decompress(jpeg, image)?;
        Ok((w as u32, h as u32, &self.buf))
    }

    /// The width and height a JPEG's header declares.
    pub fn dimensions(&mut self, jpeg: &[u8]) -> Result<(u32, u32), JpegError> {
        let h = self.inner.read_header(jpeg)?;
        Ok((h.width as u32, h.height as u32))
    }

    /// Decodes `jpeg` into `out` as tightly packed RGB8, BGR8 or GRAY8, returning
    /// `(width, height, stride)`. Fails, touching nothing, when the image would not fit
    /// in `out` or is larger than [`MAX_DECODE_PIXELS`].
    pub fn decode_into(
        &mut self,
        jpeg: &[u8],
        format: PixelFormat,
        out: &mut [u8],
    ) -> Result<(u32, u32, usize), JpegError> {
        let tf = turbo_format(format).ok_or(JpegError::Unsupported(format))?;
        let header = self.inner.read_header(jpeg)?;
        let (w, h) = (header.width, header.height);
        let stride = w * tf.size();
        if w.checked_mul(h).is_none_or(|p| p > MAX_DECODE_PIXELS) || stride * h > out.len() {
            return Err(JpegError::Turbo(turbojpeg::Error::TurboJpegError(format!(
                "image {w}x{h} does not fit in {} bytes",
                out.len()
            ))));
        }
        let image = turbojpeg::Image {
            pixels: &mut out[..stride * h],
            width: w,
            pitch: stride,
            height: h,
            format: tf,
        };
        self.inner.decompress(jpeg, image)?;
        Ok((w as u32, h as u32, stride))
    }

    /// Decodes a JPEG of the synthetic pattern and checks that it is camera `camera`'s
    /// frame `frame` and is `width` × `height`.
    pub fn verify_pattern(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
        camera: u32,
        frame: u64,
    ) -> Result<(), JpegError> {
        let (w, h, rgb) = self.decode_rgb(jpeg)?;
        if (w, h) != (width, height) {
            return Err(JpegError::Pattern(PatternError::Geometry));
        }
        pattern::verify_decoded_rgb(rgb, w, h, camera, frame, MAX_PATTERN_ERROR)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use camring_protocol::pattern::Geometry;

    use super::*;

    fn pattern_rgb(w: u32, h: u32, cam: u32, frame: u64) -> Vec<u8> {
        let g = Geometry::new(PixelFormat::Rgb8, w, h, w as usize * 3).unwrap();
        let mut buf = vec![0; g.len()];
        pattern::fill(&mut buf, &g, cam, frame);
        buf
    }

    #[test]
    fn pattern_survives_jpeg_and_wrong_frames_do_not() {
        let (w, h) = (320, 240);
        let mut dec = Decoder::new().unwrap();
        for quality in [50, 80, 95] {
            let mut enc = Encoder::new(quality).unwrap();
            let rgb = pattern_rgb(w, h, 2, 12345);
            let jpeg = enc
                .encode(&rgb, PixelFormat::Rgb8, w, h, w as usize * 3)
                .unwrap();
            dec.verify_pattern(&jpeg, w, h, 2, 12345).unwrap();
            let (_, _, decoded) = dec.decode_rgb(&jpeg).unwrap();
            let err = pattern::rgb_mean_abs_error(decoded, w, h, 2, 12345);
            assert!(err < MAX_PATTERN_ERROR / 2.0, "q{quality}: error {err}");
            let wrong = pattern::rgb_mean_abs_error(decoded, w, h, 2, 12346);
            assert!(
                wrong > MAX_PATTERN_ERROR * 2.0,
                "q{quality}: wrong-frame error {wrong}"
            );
            assert!(dec.verify_pattern(&jpeg, w, h, 2, 12346).is_err());
        }
    }

    #[test]
    fn a_spliced_jpeg_is_refused() {
        let (w, h) = (320, 240);
        let mut enc = Encoder::new(80).unwrap();
        let a = enc.encode(
            &pattern_rgb(w, h, 0, 1),
            PixelFormat::Rgb8,
            w,
            h,
            w as usize * 3,
        );
        let b = enc.encode(
            &pattern_rgb(w, h, 0, 2),
            PixelFormat::Rgb8,
            w,
            h,
            w as usize * 3,
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut mixed = a.clone();
        let end = mixed.len().min(b.len());
        let half = end / 2;
        mixed[half..end].copy_from_slice(&b[half..end]);
        let mut dec = Decoder::new().unwrap();
        assert!(dec.verify_pattern(&mixed, w, h, 0, 1).is_err());
        assert!(dec.verify_pattern(&a[..a.len() / 2], w, h, 0, 1).is_err());
        assert!(dec.verify_pattern(b"not a jpeg", w, h, 0, 1).is_err());
    }

    #[test]
    fn decodes_into_a_caller_buffer_in_each_raw_format() {
        let (w, h) = (96, 64);
        let jpeg = Encoder::new(90)
            .unwrap()
            .encode(
                &pattern_rgb(w, h, 3, 77),
                PixelFormat::Rgb8,
                w,
                h,
                w as usize * 3,
            )
            .unwrap();
        let mut dec = Decoder::new().unwrap();
        assert_eq!(dec.dimensions(&jpeg).unwrap(), (w, h));
        for (format, bpp) in [
            (PixelFormat::Rgb8, 3),
            (PixelFormat::Bgr8, 3),
            (PixelFormat::Gray8, 1),
        ] {
            let mut out = vec![0u8; (w * h) as usize * bpp];
            let got = dec.decode_into(&jpeg, format, &mut out).unwrap();
            assert_eq!(got, (w, h, w as usize * bpp));
            if format == PixelFormat::Rgb8 {
                pattern::verify_decoded_rgb(&out, w, h, 3, 77, MAX_PATTERN_ERROR).unwrap();
            }
            // One byte short: refused, not truncated.
            let mut small = vec![0u8; out.len() - 1];
            assert!(dec.decode_into(&jpeg, format, &mut small).is_err());
        }
        assert!(matches!(
            dec.decode_into(&jpeg, PixelFormat::Yuyv, &mut [0u8; 100000]),
            Err(JpegError::Unsupported(PixelFormat::Yuyv))
        ));
    }
}
