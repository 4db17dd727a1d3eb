//! JPEGs for the unit tests: structurally valid little fakes, and real ones encoded from
//! the synthetic pattern or from given pixels.

use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;

/// Structurally valid little JPEGs: SOI, APP0, SOF0 (`w`×`h`), SOS, entropy-coded
/// bytes with stuffing, a restart marker and dashes, EOI.
pub(crate) fn fake_jpeg(w: u16, h: u16, n: u8) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    j.extend([0xFF, 0xE0, 0, 7, b'J', b'F', b'I', b'F', 0]);
    j.extend([0xFF, 0xC0, 0, 11, 8]);
    j.extend(h.to_be_bytes());
    j.extend(w.to_be_bytes());
    j.extend([1, 1, 0x11, 0]);
    j.extend([0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0]);
    j.extend([
        n, 0xFF, 0x00, b'-', b'-', b'\r', b'\n', n, 0xFF, 0xD0, b'-', n,
    ]);
    j.extend([0xFF, 0xD9]);
    j
}

/// Camera 1's synthetic pattern of frame `frame`, `w`×`h`, as a JPEG.
pub(crate) fn real_jpeg(w: u32, h: u32, frame: u64) -> Vec<u8> {
    let g = Geometry::new(PixelFormat::Rgb8, w, h, w as usize * 3).unwrap();
    let mut rgb = vec![0; g.len()];
    pattern::fill(&mut rgb, &g, 1, frame);
    rgb_jpeg(&rgb, w, h)
}

/// `width`×`height` RGB8 pixels as a JPEG at quality 80.
pub(crate) fn rgb_jpeg(pixels: &[u8], width: u32, height: u32) -> Vec<u8> {
    camring_jpeg::Encoder::new(80)
        .unwrap()
        .encode(pixels, PixelFormat::Rgb8, width, height, width as usize * 3)
        .unwrap()
}
