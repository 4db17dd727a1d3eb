//! Transcoding for the network adapters: any image of the ring (raw RGB8/BGR8/GRAY8,
//! YUYV, NV12, or JPEG) to a JPEG at a client's quality and size.

use camring_protocol::wire::CameraInfo;
use camring_protocol::PixelFormat;
use fast_image_resize as fir;

/// Why an image could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// turbojpeg refused (a corrupt JPEG from the ring, an absurd size).
    #[error("turbojpeg")]
    Jpeg(#[from] turbojpeg::Error),
    /// Resizing failed.
    #[error("resize: {0}")]
    Resize(String),
    /// The ring's format cannot be sent as JPEG.
    #[error("{0} cannot be encoded")]
    Unsupported(&'static str),
}

/// Makes the JPEG a client is sent from any image in the ring (raw or JPEG) at a quality
/// and size: turbojpeg handles and the resizer's scratch buffers, kept for reuse (keep one
/// per thread: creating turbojpeg handles allocates).
#[derive(Default)]
pub struct Transcoder {
    compressor: Option<turbojpeg::Compressor>,
    decompressor: Option<turbojpeg::Decompressor>,
    resizer: fir::Resizer,
}

/// Tightly packed pixels ready to encode.
struct Pixels {
    data: Vec<u8>,
    width: u32,
    height: u32,
    format: PixelFormat,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder").finish_non_exhaustive()
    }
}

impl Transcoder {
    /// The JPEG of image `data` (described by `info`) at `quality`, `target` pixels
    /// (at most the image's size): a JPEG is decoded at the nearest DCT scale above the
    /// target, raw pixels are taken as they are; then resized (bilinear) and encoded.
    pub fn make(
        &mut self,
        info: &CameraInfo,
        data: &[u8],
        quality: u8,
        target: (u32, u32),
    ) -> Result<Vec<u8>, TranscodeError> {
        let pixels = match info.format {
            PixelFormat::Jpeg => self.decode_scaled(data, target)?,
            PixelFormat::Rgb8 | PixelFormat::Bgr8 | PixelFormat::Gray8 => {
                let bpp = info.format.bytes_per_pixel().unwrap_or(1) as usize;
                let row = info.width as usize * bpp;
                if target == (info.width, info.height) {
                    return self.compress(
                        data,
                        info.format,
                        info.width,
                        info.height,
                        info.stride as usize,
                        quality,
                    );
                }
                Pixels {
                    data: tight(data, row, info.stride as usize, info.height as usize),
                    width: info.width,
                    height: info.height,
                    format: info.format,
                }
            }
            PixelFormat::Yuyv | PixelFormat::Nv12 => {
                let planar = to_planar(info, data)?;
                if target == (info.width, info.height) {
                    return self.compress_yuv(&planar, info, quality);
                }
                // Rare: downscaling raw YUV goes through a full-size JPEG decoded scaled.
                let full = self.compress_yuv(&planar, info, 95)?;
                self.decode_scaled(&full, target)?
            }
        };
        let pixels = self.resize(pixels, target)?;
        let stride = pixels.width as usize * pixels.format.bytes_per_pixel().unwrap_or(1) as usize;
        self.compress(
            &pixels.data,
            pixels.format,
            pixels.width,
            pixels.height,
            stride,
            quality,
        )
    }

    fn compressor(
        &mut self,
        quality: u8,
        subsamp: turbojpeg::Subsamp,
    ) -> Result<&mut turbojpeg::Compressor, TranscodeError> {
        if self.compressor.is_none() {
            self.compressor = Some(turbojpeg::Compressor::new()?);
        }
        let c = self.compressor.as_mut().expect("set above");
        c.set_quality(i32::from(quality.clamp(1, 100)))?;
        c.set_subsamp(subsamp)?;
        Ok(c)
    }

    fn compress(
        &mut self,
        data: &[u8],
        format: PixelFormat,
        width: u32,
        height: u32,
        stride: usize,
        quality: u8,
    ) -> Result<Vec<u8>, TranscodeError> {
        let (tf, subsamp) = match format {
            PixelFormat::Rgb8 => (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2),
            PixelFormat::Bgr8 => (turbojpeg::PixelFormat::BGR, turbojpeg::Subsamp::Sub2x2),
            PixelFormat::Gray8 => (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray),
            other => return Err(TranscodeError::Unsupported(other.name())),
        };
        let c = self.compressor(quality, subsamp)?;
        let image = turbojpeg::Image {
            pixels: data,
            width: width as usize,
            pitch: stride,
            height: height as usize,
            format: tf,
        };
        Ok(c.compress_to_vec(image)?)
    }

    fn compress_yuv(
        &mut self,
        planar: &[u8],
        info: &CameraInfo,
        quality: u8,
    ) -> Result<Vec<u8>, TranscodeError> {
        let subsamp = if info.format == PixelFormat::Nv12 {
            turbojpeg::Subsamp::Sub2x2
        } else {
            turbojpeg::Subsamp::Sub2x1
        };
        let c = self.compressor(quality, subsamp)?;
        let image = turbojpeg::YuvImage {
            pixels: planar,
            width: info.width as usize,
            align: 1,
            height: info.height as usize,
            subsamp,
        };
        let mut out = vec![0; c.buf_len(info.width as usize, info.height as usize)?];
        let n = c.compress_yuv_to_slice(image, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Decodes `jpeg` as RGB8 (GRAY8 for a greyscale JPEG) at the smallest DCT scale
    /// that is still at least `target`.
    fn decode_scaled(&mut self, jpeg: &[u8], target: (u32, u32)) -> Result<Pixels, TranscodeError> {
        if self.decompressor.is_none() {
            self.decompressor = Some(turbojpeg::Decompressor::new()?);
        }
        let d = self.decompressor.as_mut().expect("set above");
        d.set_scaling_factor(turbojpeg::ScalingFactor::ONE)?;
        let header = d.read_header(jpeg)?;
        if header.width.saturating_mul(header.height) > crate::MAX_DECODE_PIXELS {
            return Err(TranscodeError::Unsupported("an image this large"));
        }
        let factor = (1..=8)
            .map(|n| turbojpeg::ScalingFactor::new(n, 8))
            .find(|f| {
                f.scale(header.width) >= target.0 as usize
                    && f.scale(header.height) >= target.1 as usize
            })
            .unwrap_or(turbojpeg::ScalingFactor::ONE);
        d.set_scaling_factor(factor)?;
        let scaled = header.scaled(factor);
        let gray = header.colorspace == turbojpeg::Colorspace::Gray;
        let (tf, format) = if gray {
            (turbojpeg::PixelFormat::GRAY, PixelFormat::Gray8)
        } else {
            (turbojpeg::PixelFormat::RGB, PixelFormat::Rgb8)
        };
        let pitch = scaled.width * tf.size();
        let mut data = vec![0; pitch * scaled.height];
        let image = turbojpeg::Image {
            pixels: &mut data[..],
            width: scaled.width,
            pitch,
            height: scaled.height,
            format: tf,
        };
        d.decompress(jpeg, image)?;
        Ok(Pixels {
            data,
            width: scaled.width as u32,
            height: scaled.height as u32,
            format,
        })
    }

    fn resize(&mut self, pixels: Pixels, target: (u32, u32)) -> Result<Pixels, TranscodeError> {
        if (pixels.width, pixels.height) == target {
            return Ok(pixels);
        }
        let kind = if pixels.format == PixelFormat::Gray8 {
            fir::PixelType::U8
        } else {
            fir::PixelType::U8x3
        };
        let src = fir::images::ImageRef::new(pixels.width, pixels.height, &pixels.data, kind)
            .map_err(|e| TranscodeError::Resize(e.to_string()))?;
        let mut dst = fir::images::Image::new(target.0, target.1, kind);
        let options = fir::ResizeOptions::new()
            .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
        self.resizer
            .resize(&src, &mut dst, &options)
            .map_err(|e| TranscodeError::Resize(e.to_string()))?;
        Ok(Pixels {
            data: dst.into_vec(),
            width: target.0,
            height: target.1,
            format: pixels.format,
        })
    }
}

/// Rows of `row` bytes out of an image with `stride`-byte rows.
fn tight(data: &[u8], row: usize, stride: usize, rows: usize) -> Vec<u8> {
    if stride == row {
        return data[..row * rows].to_vec();
    }
    let mut out = Vec::with_capacity(row * rows);
    for r in data.chunks(stride).take(rows) {
        out.extend_from_slice(&r[..row]);
    }
    out
}

/// YUYV (4:2:2 packed) or NV12 (4:2:0, interleaved chroma) as the planar Y, U, V that
/// turbojpeg compresses without a colour conversion.
fn to_planar(info: &CameraInfo, data: &[u8]) -> Result<Vec<u8>, TranscodeError> {
    let (w, h, stride) = (
        info.width as usize,
        info.height as usize,
        info.stride as usize,
    );
    if w % 2 != 0 || h % 2 != 0 {
        return Err(TranscodeError::Unsupported("odd-sized YUV"));
    }
    let mut out = Vec::with_capacity(w * h * 2);
    match info.format {
        PixelFormat::Yuyv => {
            let rows = || data.chunks(stride).take(h);
            for r in rows() {
                out.extend(r[..w * 2].iter().step_by(2));
            }
            for offset in [1, 3] {
                for r in rows() {
                    out.extend(r[..w * 2].iter().skip(offset).step_by(4));
                }
            }
        }
        _ => {
            for r in data.chunks(stride).take(h) {
                out.extend_from_slice(&r[..w]);
            }
            let chroma = || data[stride * h..].chunks(stride).take(h / 2);
            for offset in [0, 1] {
                for r in chroma() {
                    out.extend(r[..w].iter().skip(offset).step_by(2));
                }
            }
        }
    }
    Ok(out)
}
