//! Checking camera images received over the network (the binary message of
//! `docs/protocol.md`) against the synthetic pattern. Unlike a ring's images, these may have
//! been re-encoded or downscaled by the adapter, so not every image can be checked byte for
//! byte: [`Verifier::check_received`] checks each as far as what happened to it allows.

use camring_protocol::control::CameraDescription;
use camring_protocol::pattern::{self, Geometry, PatternError, CODE_COLS, CODE_ROWS};
use camring_protocol::wire::{CameraInfo, CAM_DOWNSCALED, CAM_SYNTHETIC};
use camring_protocol::PixelFormat;

use crate::verify::{Verdict, Verifier};

/// Smallest code cell, in pixels of the received image, that [`read_code_scaled`] reads: a
/// JPEG's blur and a resizer's filter spread a cell's edges by about a pixel.
pub const MIN_SCALED_CELL: f64 = 3.0;

impl Verifier {
    /// Checks one camera image of a network message: the synthetic pattern of camera
    /// `info.camera_id` and frame `info.sequence`, as far as the image allows. `ring` is the
    /// camera as the server's `state` message describes it (its size and pixel format in
    /// the ring), when known.
    ///
    /// * Not synthetic, or missing: [`Verdict::Unchecked`].
    /// * A raw image: every byte ([`pattern::verify`]); downscaled, its code band only.
    /// * A JPEG at full size whose ring image is JPEG, RGB8 or BGR8 (or unknown): decoded and
    ///   checked whole ([`camring_jpeg::Decoder::verify_pattern`]: code band and closeness of
    ///   every other pixel).
    /// * A JPEG downscaled by the adapter (`CAM_DOWNSCALED`), or encoded from a GRAY8, YUYV or
    ///   NV12 ring image (whose pattern is defined on those bytes, not on RGB's): decoded; its
    ///   size must be the entry's, and when downscaled no larger than the ring's with the
    ///   same aspect ratio; its code band must name the camera and the low 32 bits of the
    ///   sequence ([`pattern::read_code_rgb`], or failing that [`read_code_scaled`]: cells
    ///   mapped from the ring's size, read by their luma). An image too small to carry a readable code
    ///   band is [`Verdict::Unchecked`].
    pub fn check_received(
        &mut self,
        info: &CameraInfo,
        payload: &[u8],
        ring: Option<&CameraDescription>,
    ) -> Verdict {
        if info.flags & CAM_SYNTHETIC == 0 || info.is_missing() {
            return Verdict::Unchecked;
        }
        let downscaled = info.flags & CAM_DOWNSCALED != 0;
        let expected = (info.camera_id as u8, info.sequence as u32);
        if info.format.is_raw() {
            let Some(g) = Geometry::new(info.format, info.width, info.height, info.stride as usize)
            else {
                return Verdict::Unchecked;
            };
            let checked = if downscaled {
                pattern::read_code(payload, &g).and_then(|found| same_code(found, expected))
            } else {
                pattern::verify(payload, &g, info.camera_id, info.sequence)
            };
            return match checked {
                Ok(()) => Verdict::Verified,
                Err(e) => Verdict::Corrupt(e.to_string()),
            };
        }
        let whole = !downscaled
            && ring.is_none_or(|r| {
                matches!(
                    r.format,
                    PixelFormat::Jpeg | PixelFormat::Rgb8 | PixelFormat::Bgr8
                )
            });
        let decoder = match self.decoder() {
            Ok(d) => d,
            Err(why) => return Verdict::Corrupt(why),
        };
        if whole {
            return match decoder.verify_pattern(
                payload,
                info.width,
                info.height,
                info.camera_id,
                info.sequence,
            ) {
                Ok(()) => Verdict::Verified,
                Err(e) => Verdict::Corrupt(e.to_string()),
            };
        }
        let (w, h, rgb) = match decoder.decode_rgb(payload) {
            Ok(d) => d,
            Err(e) => return Verdict::Corrupt(e.to_string()),
        };
        if (w, h) != (info.width, info.height) {
            return Verdict::Corrupt(format!(
                "JPEG is {w}x{h} but its entry says {}x{}",
                info.width, info.height
            ));
        }
        let ring_size = ring.map(|r| (r.width, r.height));
        if let (true, Some((rw, rh))) = (downscaled, ring_size) {
            if let Err(why) = check_downscaled_size(w, h, rw, rh) {
                return Verdict::Corrupt(why);
            }
        }
        let result = pattern::read_code_rgb(rgb, w, h)
            .and_then(|f| same_code(f, expected))
            .or_else(|direct| {
                // The cells of a downscaled image need not fall on whole pixels: read them
                // where the ring's cells went, by their luma (a YUV ring image's chroma
                // tints the cells: only their luma is the pattern's).
                let (rw, rh) = ring_size.unwrap_or((w, h));
                match read_code_scaled(rgb, w, h, rw, rh) {
                    // Cells too small to read (the direct reader's whole-pixel guess
                    // failing there proves nothing): not checked.
                    Err(PatternError::Geometry) if ring_size.is_some() => {
                        Err(PatternError::Geometry)
                    }
                    Err(PatternError::Geometry) => Err(direct),
                    other => other.and_then(|f| same_code(f, expected)),
                }
            });
        match result {
            Ok(()) => Verdict::Verified,
            Err(PatternError::Geometry) => Verdict::Unchecked,
            Err(e) => Verdict::Corrupt(format!("{w}x{h} JPEG: {e}")),
        }
    }
}

fn same_code(found: (u8, u32), expected: (u8, u32)) -> Result<(), PatternError> {
    if found == expected {
        Ok(())
    } else {
        Err(PatternError::WrongFrame {
            camera: expected.0,
            frame: expected.1,
            found_camera: found.0,
            found_frame: found.1,
        })
    }
}

/// Whether `width` × `height` is a plausible downscaling of a `ring_width` × `ring_height`
/// image: not empty, not larger, and the same aspect ratio to within the rounding of a
/// pixel or two.
pub fn check_downscaled_size(
    width: u32,
    height: u32,
    ring_width: u32,
    ring_height: u32,
) -> Result<(), String> {
    if width == 0 || height == 0 || width > ring_width || height > ring_height {
        return Err(format!(
            "downscaled image is {width}x{height}, from a {ring_width}x{ring_height} camera"
        ));
    }
    // |w/h − W/H| within two pixels of rounding on either side: |w·H − h·W| ≤ 2·max(W, H).
    let skew = (u64::from(width) * u64::from(ring_height))
        .abs_diff(u64::from(height) * u64::from(ring_width));
    if skew > 2 * u64::from(ring_width.max(ring_height)) {
        return Err(format!(
            "downscaled image {width}x{height} does not keep the aspect ratio of {ring_width}x{ring_height}"
        ));
    }
    Ok(())
}

/// Reads the code word of a decoded RGB8 image that is the pattern of a
/// `ring_width` × `ring_height` image scaled to `width` × `height`: the ring image's cell
/// centres are mapped into the scaled image, and the luma of a few pixels around each is
/// averaged (a cell is a one above half the full luma). Luma rather than the mean of R, G
/// and B, because the pattern of a YUYV or NV12 image sets only the luma of its cells to 0
/// or 255: their chroma is whatever pattern bytes the chroma samples hold.
/// [`PatternError::Geometry`] when the ring size cannot carry the pattern or the scaled
/// cells are smaller than [`MIN_SCALED_CELL`] pixels.
pub fn read_code_scaled(
    rgb: &[u8],
    width: u32,
    height: u32,
    ring_width: u32,
    ring_height: u32,
) -> Result<(u8, u32), PatternError> {
    let g = Geometry::new(
        PixelFormat::Rgb8,
        ring_width,
        ring_height,
        ring_width as usize * 3,
    )
    .ok_or(PatternError::Geometry)?;
    if width == 0 || height == 0 {
        return Err(PatternError::Geometry);
    }
    let (sx, sy) = (
        f64::from(width) / f64::from(ring_width),
        f64::from(height) / f64::from(ring_height),
    );
    let (cell_w, cell_h) = (g.cell_w as f64 * sx, g.cell_h as f64 * sy);
    if cell_w < MIN_SCALED_CELL || cell_h < MIN_SCALED_CELL {
        return Err(PatternError::Geometry);
    }
    let (w, h) = (width as usize, height as usize);
    if rgb.len() < w * h * 3 {
        return Err(PatternError::Short {
            expected: w * h * 3,
            actual: rgb.len(),
        });
    }
    let r = ((cell_w.min(cell_h) / 4.0) as usize).min(2);
    let mut word = 0u64;
    for bit in 0..(CODE_COLS * CODE_ROWS) as usize {
        let (row, col) = (bit / CODE_COLS as usize, bit % CODE_COLS as usize);
        // The ring cell's centre, in continuous coordinates, mapped to the scaled image.
        let cx = ((col as f64 + 0.5) * g.cell_w as f64 * sx) as usize;
        let cy = ((row as f64 + 0.5) * g.cell_h as f64 * sy) as usize;
        let (cx, cy) = (cx.clamp(r, w - 1 - r), cy.clamp(r, h - 1 - r));
        let (mut sum, mut n) = (0u32, 0u32);
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                let p = (y * w + x) * 3;
                // BT.601 luma, scaled by 256.
                sum += 77 * u32::from(rgb[p])
                    + 150 * u32::from(rgb[p + 1])
                    + 29 * u32::from(rgb[p + 2]);
                n += 1;
            }
        }
        if sum > 128 * 256 * n {
            word |= 1 << bit;
        }
    }
    pattern::decode_word(word).ok_or(PatternError::BadCode)
}

#[cfg(test)]
mod tests {
    use camring_jpeg::Encoder;
    use camring_protocol::wire::{CAM_MISSING, CAM_REENCODED};

    use super::*;

    fn pattern_of(format: PixelFormat, w: u32, h: u32, cam: u32, seq: u64) -> (Vec<u8>, usize) {
        let stride = format.min_stride(w).unwrap() as usize;
        let g = Geometry::new(format, w, h, stride).unwrap();
        let mut buf = vec![0; g.len()];
        pattern::fill(&mut buf, &g, cam, seq);
        (buf, stride)
    }

    /// An area-averaging downscale of tightly packed RGB8 (what a resizer roughly does).
    fn downscale(rgb: &[u8], w: u32, h: u32, nw: u32, nh: u32) -> Vec<u8> {
        let mut out = vec![0u8; (nw * nh * 3) as usize];
        let (fx, fy) = (f64::from(w) / f64::from(nw), f64::from(h) / f64::from(nh));
        for y in 0..nh as usize {
            let (y0, y1) = (
                (y as f64 * fy) as usize,
                (((y + 1) as f64 * fy).ceil() as usize),
            );
            for x in 0..nw as usize {
                let (x0, x1) = (
                    (x as f64 * fx) as usize,
                    (((x + 1) as f64 * fx).ceil() as usize),
                );
                for c in 0..3 {
                    let (mut s, mut n) = (0u32, 0u32);
                    for yy in y0..y1.min(h as usize) {
                        for xx in x0..x1.min(w as usize) {
                            s += u32::from(rgb[(yy * w as usize + xx) * 3 + c]);
                            n += 1;
                        }
                    }
                    out[(y * nw as usize + x) * 3 + c] = (s / n.max(1)) as u8;
                }
            }
        }
        out
    }

    fn jpeg(rgb: &[u8], w: u32, h: u32, quality: u8) -> Vec<u8> {
        Encoder::new(quality)
            .unwrap()
            .encode(rgb, PixelFormat::Rgb8, w, h, w as usize * 3)
            .unwrap()
    }

    fn info(format: PixelFormat, w: u32, h: u32, stride: u32, flags: u32, seq: u64) -> CameraInfo {
        CameraInfo {
            camera_id: 2,
            format,
            width: w,
            height: h,
            stride,
            flags,
            capture_ns: 1,
            sequence: seq,
        }
    }

    fn ring(format: PixelFormat) -> CameraDescription {
        CameraDescription {
            id: 2,
            width: 320,
            height: 240,
            format,
        }
    }

    #[test]
    fn full_size_jpeg_is_checked_whole() {
        let mut v = Verifier::new();
        let (rgb, _) = pattern_of(PixelFormat::Rgb8, 320, 240, 2, 700);
        let j = jpeg(&rgb, 320, 240, 80);
        let i = info(PixelFormat::Jpeg, 320, 240, 0, CAM_SYNTHETIC, 700);
        for r in [
            None,
            Some(ring(PixelFormat::Jpeg)),
            Some(ring(PixelFormat::Rgb8)),
        ] {
            assert_eq!(v.check_received(&i, &j, r.as_ref()), Verdict::Verified);
        }
        let wrong = CameraInfo { sequence: 701, ..i };
        assert!(matches!(
            v.check_received(&wrong, &j, None),
            Verdict::Corrupt(_)
        ));
        let other_camera = CameraInfo { camera_id: 1, ..i };
        assert!(matches!(
            v.check_received(&other_camera, &j, None),
            Verdict::Corrupt(_)
        ));
        // Declared at another size than the JPEG's.
        let bigger = CameraInfo { width: 640, ..i };
        assert!(matches!(
            v.check_received(&bigger, &j, None),
            Verdict::Corrupt(_)
        ));
        // Not a JPEG at all.
        assert!(matches!(
            v.check_received(&i, b"\xFF\xD8\xFF\xD9", None),
            Verdict::Corrupt(_)
        ));
        // Not synthetic, or missing: nothing to check.
        let real = CameraInfo { flags: 0, ..i };
        assert_eq!(v.check_received(&real, b"x", None), Verdict::Unchecked);
        let missing = CameraInfo {
            flags: CAM_SYNTHETIC | CAM_MISSING,
            ..i
        };
        assert_eq!(v.check_received(&missing, &[], None), Verdict::Unchecked);
    }

    #[test]
    fn a_spliced_full_size_jpeg_is_refused() {
        let mut v = Verifier::new();
        let (a, _) = pattern_of(PixelFormat::Rgb8, 320, 240, 2, 10);
        let (b, _) = pattern_of(PixelFormat::Rgb8, 320, 240, 2, 11);
        let mut mixed = a.clone();
        let half = mixed.len() / 2;
        mixed[half..].copy_from_slice(&b[half..]);
        let j = jpeg(&mixed, 320, 240, 90);
        let i = info(PixelFormat::Jpeg, 320, 240, 0, CAM_SYNTHETIC, 10);
        assert!(matches!(
            v.check_received(&i, &j, Some(&ring(PixelFormat::Jpeg))),
            Verdict::Corrupt(_)
        ));
    }

    #[test]
    fn downscaled_jpegs_are_checked_by_their_code_band() {
        let mut v = Verifier::new();
        let (rgb, _) = pattern_of(PixelFormat::Rgb8, 320, 240, 2, 0x1_2345_6789);
        let flags = CAM_SYNTHETIC | CAM_REENCODED | CAM_DOWNSCALED;
        let r = ring(PixelFormat::Jpeg);
        // Exact halves, and sizes whose cells fall between pixels.
        for (w, h) in [(160, 120), (100, 75), (213, 160), (77, 58), (64, 48)] {
            let small = downscale(&rgb, 320, 240, w, h);
            for quality in [30, 80] {
                let j = jpeg(&small, w, h, quality);
                let i = info(PixelFormat::Jpeg, w, h, 0, flags, 0x1_2345_6789);
                assert_eq!(
                    v.check_received(&i, &j, Some(&r)),
                    Verdict::Verified,
                    "{w}x{h} q{quality}"
                );
                let wrong = CameraInfo {
                    sequence: 0x1_2345_678A,
                    ..i
                };
                assert!(
                    matches!(v.check_received(&wrong, &j, Some(&r)), Verdict::Corrupt(_)),
                    "{w}x{h} q{quality}: a wrong sequence passed"
                );
            }
        }
        // Without the ring's size, an exact half still reads directly.
        let small = downscale(&rgb, 320, 240, 160, 120);
        let j = jpeg(&small, 160, 120, 80);
        let i = info(PixelFormat::Jpeg, 160, 120, 0, flags, 0x1_2345_6789);
        assert_eq!(v.check_received(&i, &j, None), Verdict::Verified);
        // A size that does not keep the aspect ratio, or is larger than the ring's.
        let squashed = downscale(&rgb, 320, 240, 160, 60);
        let j = jpeg(&squashed, 160, 60, 80);
        let i = info(PixelFormat::Jpeg, 160, 60, 0, flags, 0x1_2345_6789);
        assert!(matches!(
            v.check_received(&i, &j, Some(&r)),
            Verdict::Corrupt(_)
        ));
        let small_ring = CameraDescription {
            width: 80,
            height: 60,
            ..r
        };
        let j = jpeg(&small, 160, 120, 80);
        let i = info(PixelFormat::Jpeg, 160, 120, 0, flags, 0x1_2345_6789);
        assert!(matches!(
            v.check_received(&i, &j, Some(&small_ring)),
            Verdict::Corrupt(_)
        ));
        // Cells of 2.5 pixels, which the direct reader misreads: not checked.
        let small = downscale(&rgb, 320, 240, 40, 30);
        assert!(pattern::read_code_rgb(&small, 40, 30).is_err());
        let j = jpeg(&small, 40, 30, 80);
        let i = info(PixelFormat::Jpeg, 40, 30, 0, flags, 0x1_2345_6789);
        assert_eq!(v.check_received(&i, &j, Some(&r)), Verdict::Unchecked);
        // Too small to carry a readable band: not checked.
        let tiny = downscale(&rgb, 320, 240, 24, 18);
        let j = jpeg(&tiny, 24, 18, 80);
        let i = info(PixelFormat::Jpeg, 24, 18, 0, flags, 0x1_2345_6789);
        assert_eq!(v.check_received(&i, &j, Some(&r)), Verdict::Unchecked);
    }

    #[test]
    fn jpegs_from_other_raw_formats_are_checked_by_their_code_band() {
        let mut v = Verifier::new();
        // A GRAY8 ring image encoded as a gray JPEG: its bytes are not the RGB pattern's.
        let (gray, stride) = pattern_of(PixelFormat::Gray8, 320, 240, 2, 99);
        let j = Encoder::new(80)
            .unwrap()
            .encode(&gray, PixelFormat::Gray8, 320, 240, stride)
            .unwrap();
        let i = info(
            PixelFormat::Jpeg,
            320,
            240,
            0,
            CAM_SYNTHETIC | CAM_REENCODED,
            99,
        );
        assert!(matches!(
            v.check_received(&i, &j, None),
            Verdict::Corrupt(_)
        ));
        assert_eq!(
            v.check_received(&i, &j, Some(&ring(PixelFormat::Gray8))),
            Verdict::Verified
        );
        let wrong = CameraInfo { sequence: 98, ..i };
        assert!(matches!(
            v.check_received(&wrong, &j, Some(&ring(PixelFormat::Gray8))),
            Verdict::Corrupt(_)
        ));
    }

    /// A YUV pattern image as RGB8, through BT.601 full-range conversion with clipping (a
    /// harsher path than the adapter's, which hands the planes to the JPEG encoder as
    /// they are).
    fn yuv_to_rgb(format: PixelFormat, buf: &[u8], w: usize, h: usize) -> Vec<u8> {
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let (luma, u, v) = match format {
                    PixelFormat::Nv12 => {
                        let uv = (h + y / 2) * w + (x / 2) * 2;
                        (buf[y * w + x], buf[uv], buf[uv + 1])
                    }
                    _ => {
                        let pair = y * w * 2 + (x / 2) * 4;
                        (buf[pair + (x % 2) * 2], buf[pair + 1], buf[pair + 3])
                    }
                };
                let (l, u, v) = (f64::from(luma), f64::from(u) - 128.0, f64::from(v) - 128.0);
                let px = [l + 1.402 * v, l - 0.344 * u - 0.714 * v, l + 1.772 * u];
                for (c, value) in px.into_iter().enumerate() {
                    rgb[(y * w + x) * 3 + c] = value.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        rgb
    }

    #[test]
    fn jpegs_from_yuv_rings_are_read_by_luma() {
        let mut v = Verifier::new();
        let flags = CAM_SYNTHETIC | CAM_REENCODED;
        for format in [PixelFormat::Nv12, PixelFormat::Yuyv] {
            let r = ring(format);
            let mut mean_misread = 0;
            for seq in 0..40u64 {
                let (buf, _) = pattern_of(format, 320, 240, 2, seq);
                let rgb = yuv_to_rgb(format, &buf, 320, 240);
                if pattern::read_code_rgb(&rgb, 320, 240) != Ok((2, seq as u32)) {
                    mean_misread += 1;
                }
                let j = jpeg(&rgb, 320, 240, 80);
                let i = info(PixelFormat::Jpeg, 320, 240, 0, flags, seq);
                assert_eq!(
                    v.check_received(&i, &j, Some(&r)),
                    Verdict::Verified,
                    "{format} {seq}"
                );
                let small = downscale(&rgb, 320, 240, 100, 75);
                let j = jpeg(&small, 100, 75, 80);
                let i = info(PixelFormat::Jpeg, 100, 75, 0, flags | CAM_DOWNSCALED, seq);
                assert_eq!(
                    v.check_received(&i, &j, Some(&r)),
                    Verdict::Verified,
                    "{format} {seq} downscaled"
                );
                let wrong = CameraInfo {
                    sequence: seq + 1,
                    ..i
                };
                assert!(matches!(
                    v.check_received(&wrong, &j, Some(&r)),
                    Verdict::Corrupt(_)
                ));
            }
            if format == PixelFormat::Nv12 {
                // Why luma: the chroma under NV12 cells tints them past the RGB mean.
                assert!(mean_misread > 0, "{format}");
            }
        }
    }

    #[test]
    fn raw_images_are_checked_exactly() {
        let mut v = Verifier::new();
        for format in [PixelFormat::Rgb8, PixelFormat::Gray8, PixelFormat::Nv12] {
            let (mut buf, stride) = pattern_of(format, 64, 48, 2, 5);
            let i = info(format, 64, 48, stride as u32, CAM_SYNTHETIC, 5);
            assert_eq!(v.check_received(&i, &buf, None), Verdict::Verified);
            let last = buf.len() - 1;
            buf[last] ^= 1;
            assert!(matches!(
                v.check_received(&i, &buf, None),
                Verdict::Corrupt(_)
            ));
        }
    }

    #[test]
    fn cells_between_pixels_need_the_scaled_reader() {
        let (rgb, _) = pattern_of(PixelFormat::Rgb8, 320, 240, 2, 0x1_2345_6789);
        for (w, h) in [(100, 75), (213, 160), (77, 58)] {
            let small = downscale(&rgb, 320, 240, w, h);
            let scaled = read_code_scaled(&small, w, h, 320, 240);
            assert_eq!(scaled, Ok((2, 0x2345_6789)), "{w}x{h}");
        }
        // The whole-pixel cells read_code_rgb assumes miss at 100x75 (6.25 pixels a cell).
        let small = downscale(&rgb, 320, 240, 100, 75);
        assert!(pattern::read_code_rgb(&small, 100, 75).is_err());
    }

    #[test]
    fn scaled_code_reader_limits() {
        let (rgb, _) = pattern_of(PixelFormat::Rgb8, 320, 240, 1, 3);
        assert_eq!(read_code_scaled(&rgb, 320, 240, 320, 240), Ok((1, 3)));
        assert_eq!(
            read_code_scaled(&rgb, 320, 240, 16, 240),
            Err(PatternError::Geometry)
        );
        assert_eq!(
            read_code_scaled(&rgb, 0, 240, 320, 240),
            Err(PatternError::Geometry)
        );
        assert!(matches!(
            read_code_scaled(&rgb[..10], 320, 240, 320, 240),
            Err(PatternError::Short { .. })
        ));
        assert!(check_downscaled_size(160, 120, 320, 240).is_ok());
        assert!(check_downscaled_size(101, 76, 320, 240).is_ok());
        assert!(check_downscaled_size(0, 0, 320, 240).is_err());
        assert!(check_downscaled_size(321, 240, 320, 240).is_err());
        assert!(check_downscaled_size(160, 100, 320, 240).is_err());
    }
}
