//! The synthetic test pattern: an image whose bytes encode the camera and frame number, so
//! that any consumer can check that a frame is whole, correct and the one it claims to be.
//!
//! The pattern is defined on the bytes of a raw image, whatever its pixel format, as if the
//! image were `rows` rows of `row_bytes` bytes (`rows` is `1.5 * height` for NV12,
//! `row_bytes` is `width * bytes_per_pixel` of the first plane):
//!
//! * The *code band*: a grid of 16 × 3 cells in the top-left corner, each `width / 16`
//!   pixels wide and `max(height / 4, 3) / 3` rows high. Cell `(col, row)` carries bit
//!   `row * 16 + col` of the 48-bit code word, LSB first: every byte of the cell is `0xFF`
//!   for a one and `0x00` for a zero. The code word is `camera (8 bits) | frame (low 32
//!   bits) << 8 | crc8(camera, frame) << 40`, CRC-8 with polynomial 0x07 over the five
//!   bytes `camera, frame[0..4]` (little-endian).
//! * Every other byte at byte column `x` of row `y` is
//!   `(x + 2 y + 97 frame + 37 camera) mod 256`.
//!
//! In the ring, a camera entry flagged `CAM_SYNTHETIC` carries the pattern of its
//! `camera_id` and its `sequence` (the camera's own frame counter, not the ring's frame
//! number, which continues across producer restarts).
//!
//! JPEG cameras encode the RGB8 pattern; a JPEG frame is verified by decoding it and
//! reading the code band (cell centres, thresholded) and by the mean absolute error of the
//! rest of the image against the RGB8 pattern ([`rgb_mean_abs_error`]). Adjacent frames
//! differ by 97 in every ramp byte, so a frame mixed from two others is far from both.

use crate::format::PixelFormat;

/// Columns of the code grid.
pub const CODE_COLS: u32 = 16;
/// Rows of the code grid.
pub const CODE_ROWS: u32 = 3;
/// Smallest width the pattern supports.
pub const MIN_WIDTH: u32 = 32;
/// Smallest height the pattern supports.
pub const MIN_HEIGHT: u32 = 8;

/// Geometry of the pattern for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per pixel of the first plane.
    pub bpp: usize,
    /// Meaningful bytes per row.
    pub row_bytes: usize,
    /// Bytes between the starts of two rows.
    pub stride: usize,
    /// Rows of `stride` bytes (all planes).
    pub rows: usize,
    /// Width of one code cell in pixels.
    pub cell_w: usize,
    /// Height of one code cell in rows.
    pub cell_h: usize,
}

impl Geometry {
    /// The geometry of a `format` image, or `None` for JPEG, unsupported sizes, or a stride
    /// that is too small.
    pub fn new(format: PixelFormat, width: u32, height: u32, stride: usize) -> Option<Self> {
        if width < MIN_WIDTH || height < MIN_HEIGHT || !format.dimensions_ok(width, height) {
            return None;
        }
        let bpp = format.bytes_per_pixel()? as usize;
        let row_bytes = width as usize * bpp;
        if stride < row_bytes {
            return None;
        }
        let band = (height / 4).max(CODE_ROWS);
        Some(Geometry {
            bpp,
            row_bytes,
            stride,
            rows: format.rows(height)? as usize,
            cell_w: (width / CODE_COLS) as usize,
            cell_h: (band / CODE_ROWS) as usize,
        })
    }

    /// Bytes the image occupies: `rows * stride`, as the ring's validation requires.
    pub fn len(&self) -> usize {
        self.rows * self.stride
    }

    /// Whether the image occupies no bytes (never, for a valid geometry).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn band_rows(&self) -> usize {
        self.cell_h * CODE_ROWS as usize
    }

    fn band_bytes(&self) -> usize {
        self.cell_w * CODE_COLS as usize * self.bpp
    }
}

/// CRC-8, polynomial 0x07, initial value 0.
pub fn crc8(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 48-bit code word for `camera` and `frame`.
pub fn code_word(camera: u32, frame: u64) -> u64 {
    let cam = camera as u8;
    let f = (frame as u32).to_le_bytes();
    let crc = crc8(&[cam, f[0], f[1], f[2], f[3]]);
    u64::from(cam) | u64::from(frame as u32) << 8 | u64::from(crc) << 40
}

/// Splits a code word into camera and frame (low 32 bits) if its CRC is right.
pub fn decode_word(word: u64) -> Option<(u8, u32)> {
    let cam = word as u8;
    let frame = (word >> 8) as u32;
    let f = frame.to_le_bytes();
    (crc8(&[cam, f[0], f[1], f[2], f[3]]) == (word >> 40) as u8).then_some((cam, frame))
}

fn ramp_start(y: usize, camera: u32, frame: u64) -> u8 {
    (2 * y as u64)
        .wrapping_add(97u64.wrapping_mul(frame))
        .wrapping_add(37 * u64::from(camera)) as u8
}

/// 512 bytes counting 0..=255 twice, so that `RAMP[s..s + 256]` is a ramp starting at `s`.
static RAMP: [u8; 512] = {
    let mut r = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        r[i] = i as u8;
        i += 1;
    }
    r
};

/// Writes the pattern for `camera` and `frame` into `buf`, which must hold
/// [`Geometry::len`] bytes.
pub fn fill(buf: &mut [u8], g: &Geometry, camera: u32, frame: u64) {
    assert!(buf.len() >= g.len(), "pattern buffer too small");
    for y in 0..g.rows {
        let row = &mut buf[y * g.stride..y * g.stride + g.row_bytes];
        let s = ramp_start(y, camera, frame) as usize;
        for chunk in row.chunks_mut(256) {
            chunk.copy_from_slice(&RAMP[s..s + chunk.len()]);
        }
    }
    let word = code_word(camera, frame);
    let cell_bytes = g.cell_w * g.bpp;
    for y in 0..g.band_rows() {
        let row = &mut buf[y * g.stride..];
        let cell_row = y / g.cell_h;
        for col in 0..CODE_COLS as usize {
            let bit = (word >> (cell_row * CODE_COLS as usize + col)) & 1;
            row[col * cell_bytes..(col + 1) * cell_bytes].fill(if bit == 1 { 0xFF } else { 0 });
        }
    }
}

/// Why a frame does not carry the pattern it should.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatternError {
    /// The size, format or stride cannot carry the pattern.
    #[error("image geometry cannot carry the synthetic pattern")]
    Geometry,
    /// The buffer is shorter than the image.
    #[error("image is {actual} bytes, expected {expected}")]
    Short {
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// The code band does not hold a valid code word.
    #[error("code band is unreadable (bad CRC)")]
    BadCode,
    /// The code names another camera or frame than expected.
    #[error("image says camera {found_camera} frame {found_frame}, expected camera {camera} frame {frame}")]
    WrongFrame {
        /// Camera expected (low 8 bits).
        camera: u8,
        /// Frame expected (low 32 bits).
        frame: u32,
        /// Camera found.
        found_camera: u8,
        /// Frame found.
        found_frame: u32,
    },
    /// A byte differs from the pattern.
    #[error("byte at row {row}, column {column} differs from the pattern")]
    Mismatch {
        /// Row of the first differing byte.
        row: usize,
        /// Byte column of the first differing byte.
        column: usize,
    },
    /// A decoded (lossy) image is too far from the pattern.
    #[error("decoded image differs from the pattern by {0:.1} on average")]
    TooFar(f64),
}

/// Reads the code word of a raw pattern image.
pub fn read_code(buf: &[u8], g: &Geometry) -> Result<(u8, u32), PatternError> {
    if buf.len() < g.len() {
        return Err(PatternError::Short {
            expected: g.len(),
            actual: buf.len(),
        });
    }
    let mut word = 0u64;
    for bit in 0..(CODE_COLS * CODE_ROWS) as usize {
        let (row, col) = (bit / CODE_COLS as usize, bit % CODE_COLS as usize);
        let y = row * g.cell_h + g.cell_h / 2;
        let x = (col * g.cell_w + g.cell_w / 2) * g.bpp;
        if buf[y * g.stride + x] > 127 {
            word |= 1 << bit;
        }
    }
    decode_word(word).ok_or(PatternError::BadCode)
}

fn check_code(found: (u8, u32), camera: u32, frame: u64) -> Result<(), PatternError> {
    if found != (camera as u8, frame as u32) {
        return Err(PatternError::WrongFrame {
            camera: camera as u8,
            frame: frame as u32,
            found_camera: found.0,
            found_frame: found.1,
        });
    }
    Ok(())
}

/// Checks that a raw image is exactly the pattern of `camera` and `frame`, every byte.
pub fn verify(buf: &[u8], g: &Geometry, camera: u32, frame: u64) -> Result<(), PatternError> {
    check_code(read_code(buf, g)?, camera, frame)?;
    let word = code_word(camera, frame);
    let cell_bytes = g.cell_w * g.bpp;
    let band_end = g.band_bytes();
    for y in 0..g.rows {
        let row = &buf[y * g.stride..y * g.stride + g.row_bytes];
        let s = ramp_start(y, camera, frame) as usize;
        // In band rows, the first `band_end` bytes are cells; the ramp continues after them
        // with the same phase as if the cells were not there.
        let first = if y < g.band_rows() {
            let cell_row = y / g.cell_h;
            for col in 0..CODE_COLS as usize {
                let bit = (word >> (cell_row * CODE_COLS as usize + col)) & 1;
                let want = if bit == 1 { 0xFF } else { 0 };
                let cell = &row[col * cell_bytes..(col + 1) * cell_bytes];
                if let Some(i) = cell.iter().position(|&b| b != want) {
                    return Err(PatternError::Mismatch {
                        row: y,
                        column: col * cell_bytes + i,
                    });
                }
            }
            band_end
        } else {
            0
        };
        let mut x = first;
        while x < g.row_bytes {
            let n = (g.row_bytes - x).min(256);
            let phase = (s + x) % 256;
            if row[x..x + n] != RAMP[phase..phase + n] {
                let i = (0..n).find(|&i| row[x + i] != RAMP[phase + i]).unwrap_or(0);
                return Err(PatternError::Mismatch {
                    row: y,
                    column: x + i,
                });
            }
            x += n;
        }
    }
    Ok(())
}

/// Reads the code word of a decoded (lossy) RGB8 image, averaging a few pixels at each
/// cell centre.
pub fn read_code_rgb(rgb: &[u8], width: u32, height: u32) -> Result<(u8, u32), PatternError> {
    let g = Geometry::new(PixelFormat::Rgb8, width, height, width as usize * 3)
        .ok_or(PatternError::Geometry)?;
    if rgb.len() < g.len() {
        return Err(PatternError::Short {
            expected: g.len(),
            actual: rgb.len(),
        });
    }
    let r = (g.cell_w.min(g.cell_h) / 4).min(2);
    let mut word = 0u64;
    for bit in 0..(CODE_COLS * CODE_ROWS) as usize {
        let (row, col) = (bit / CODE_COLS as usize, bit % CODE_COLS as usize);
        let cy = row * g.cell_h + g.cell_h / 2;
        let cx = col * g.cell_w + g.cell_w / 2;
        let (mut sum, mut n) = (0u32, 0u32);
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                let p = y * g.stride + x * 3;
                sum += u32::from(rgb[p]) + u32::from(rgb[p + 1]) + u32::from(rgb[p + 2]);
                n += 3;
            }
        }
        if sum > 128 * n {
            word |= 1 << bit;
        }
    }
    decode_word(word).ok_or(PatternError::BadCode)
}

/// Mean absolute difference between a decoded RGB8 image and the RGB8 pattern of `camera`
/// and `frame`, over the rows below the code band.
pub fn rgb_mean_abs_error(rgb: &[u8], width: u32, height: u32, camera: u32, frame: u64) -> f64 {
    let Some(g) = Geometry::new(PixelFormat::Rgb8, width, height, width as usize * 3) else {
        return f64::INFINITY;
    };
    if rgb.len() < g.len() {
        return f64::INFINITY;
    }
    let (mut total, mut n) = (0u64, 0u64);
    for y in g.band_rows()..g.rows {
        let s = ramp_start(y, camera, frame) as usize;
        let row = &rgb[y * g.stride..y * g.stride + g.row_bytes];
        for (x, &b) in row.iter().enumerate() {
            total += u64::from(b.abs_diff(((s + x) % 256) as u8));
        }
        n += g.row_bytes as u64;
    }
    total as f64 / n.max(1) as f64
}

/// Checks a decoded JPEG image: its code names `camera` and `frame` and it is within
/// `max_error` mean absolute error of the pattern.
pub fn verify_decoded_rgb(
    rgb: &[u8],
    width: u32,
    height: u32,
    camera: u32,
    frame: u64,
    max_error: f64,
) -> Result<(), PatternError> {
    check_code(read_code_rgb(rgb, width, height)?, camera, frame)?;
    let err = rgb_mean_abs_error(rgb, width, height, camera, frame);
    if err > max_error {
        return Err(PatternError::TooFar(err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ALL_FORMATS;

    #[test]
    fn code_words_round_trip() {
        for (cam, frame) in [(0, 0), (3, 1), (255, u64::from(u32::MAX)), (7, 1 << 40 | 5)] {
            assert_eq!(
                decode_word(code_word(cam, frame)),
                Some((cam as u8, frame as u32))
            );
        }
        assert_eq!(decode_word(code_word(1, 2) ^ 1 << 12), None);
    }

    #[test]
    fn every_raw_format_verifies_and_detects_damage() {
        for format in ALL_FORMATS.into_iter().filter(|f| f.is_raw()) {
            let (w, h) = (64, 48);
            let stride = format.min_stride(w).unwrap() as usize + 8;
            let g = Geometry::new(format, w, h, stride).unwrap();
            let mut buf = vec![0u8; g.len()];
            fill(&mut buf, &g, 3, 1000);
            verify(&buf, &g, 3, 1000).unwrap();
            assert!(matches!(
                verify(&buf, &g, 3, 1001),
                Err(PatternError::WrongFrame { .. })
            ));
            assert!(matches!(
                verify(&buf, &g, 2, 1000),
                Err(PatternError::WrongFrame { .. })
            ));
            // Damage one byte far from the band: caught exactly there.
            let last = (g.rows - 1) * g.stride + g.row_bytes - 1;
            buf[last] ^= 0x10;
            assert_eq!(
                verify(&buf, &g, 3, 1000),
                Err(PatternError::Mismatch {
                    row: g.rows - 1,
                    column: g.row_bytes - 1
                })
            );
            // A frame torn between two frames is refused.
            let mut other = vec![0u8; g.len()];
            fill(&mut other, &g, 3, 1001);
            fill(&mut buf, &g, 3, 1000);
            let half = g.len() / 2;
            buf[half..].copy_from_slice(&other[half..]);
            assert!(verify(&buf, &g, 3, 1000).is_err());
            assert!(verify(&buf[..10], &g, 3, 1000).is_err());
        }
    }

    #[test]
    fn rgb_reader_tolerates_noise() {
        let (w, h) = (320, 240);
        let g = Geometry::new(PixelFormat::Rgb8, w, h, w as usize * 3).unwrap();
        let mut buf = vec![0u8; g.len()];
        fill(&mut buf, &g, 5, 77);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = b.saturating_add((i % 7) as u8).saturating_sub(3);
        }
        verify_decoded_rgb(&buf, w, h, 5, 77, 8.0).unwrap();
        assert!(verify_decoded_rgb(&buf, w, h, 5, 78, 8.0).is_err());
        assert!(rgb_mean_abs_error(&buf, w, h, 5, 78) > 30.0);
    }

    #[test]
    fn geometry_limits() {
        assert!(Geometry::new(PixelFormat::Rgb8, 16, 48, 48).is_none());
        assert!(Geometry::new(PixelFormat::Rgb8, 64, 48, 10).is_none());
        assert!(Geometry::new(PixelFormat::Jpeg, 64, 48, 0).is_none());
    }
}
