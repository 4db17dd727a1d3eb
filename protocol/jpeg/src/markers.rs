//! The marker segments of a JPEG, walked without decoding: the one parser of JPEG
//! structure in camring (the producer's MJPEG stream parser and camera reads, and the
//! quality estimate of [`crate::jpeg_quality`], use it).

/// What [`check_jpeg`] learnt about a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegInfo {
    /// Width from the start-of-frame segment.
    pub width: u32,
    /// Height from the start-of-frame segment.
    pub height: u32,
    /// Length of the JPEG itself: the data without trailing CR/LF.
    pub len: usize,
}

/// Why [`check_jpeg`] refused data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JpegCheckError {
    /// It does not start with the start-of-image marker (`FF D8`).
    #[error("no JPEG start-of-image marker")]
    NoStart,
    /// It does not end with the end-of-image marker (`FF D9`): truncated.
    #[error("no JPEG end-of-image marker at the end (truncated)")]
    NoEnd,
    /// A marker segment before the scan is malformed or runs past the end; the byte
    /// offset of its marker.
    #[error("malformed JPEG marker segment at byte {0}")]
    BadSegment(usize),
    /// The scan starts without a start-of-frame segment, or one with a zero width or
    /// height.
    #[error("no JPEG frame size before the scan")]
    NoFrame,
}

/// How far the marker segments of a JPEG have been walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// The segment at `pos` is not complete yet; `size` from a start-of-frame so far.
    Pending {
        /// Where the incomplete segment starts.
        pos: usize,
        /// The image size, once a start-of-frame segment gave it.
        size: Option<(u32, u32)>,
    },
    /// The entropy-coded data starts at `start`.
    Data {
        /// Its first byte.
        start: usize,
        /// The image size from the start-of-frame segment.
        size: (u32, u32),
    },
}

impl Walk {
    /// Nothing walked yet.
    pub const START: Walk = Walk::Pending { pos: 0, size: None };
}

/// Walks the marker segments of `d` from `pos` (0: the start of the image) to the start
/// of scan, or as far as `d` goes: resumable, so a stream parser calls it again from the
/// `Pending` position as bytes arrive.
pub fn walk(d: &[u8], pos: usize, size: Option<(u32, u32)>) -> Result<Walk, JpegCheckError> {
    walk_segments(d, pos, size, &mut |_, _| {})
}

/// [`walk`], calling `segment(marker, body)` for every whole marker segment with a length
/// (body without marker and length), in file order.
pub fn walk_segments(
    d: &[u8],
    pos: usize,
    size: Option<(u32, u32)>,
    segment: &mut dyn FnMut(u8, &[u8]),
) -> Result<Walk, JpegCheckError> {
    let (mut pos, mut size) = (pos, size);
    if pos == 0 {
        match d {
            [0xFF, 0xD8, ..] => pos = 2,
            [] | [0xFF] => return Ok(Walk::Pending { pos, size }),
            _ => return Err(JpegCheckError::NoStart),
        }
    }
    loop {
        let at = pos;
        let pending = Ok(Walk::Pending { pos: at, size });
        let Some(&first) = d.get(at) else {
            return pending;
        };
        if first != 0xFF {
            return Err(JpegCheckError::BadSegment(at));
        }
        let mut i = at;
        while d.get(i) == Some(&0xFF) {
            i += 1; // fill bytes
        }
        let Some(&marker) = d.get(i) else {
            return pending;
        };
        i += 1;
        match marker {
            0x01 | 0xD0..=0xD7 => {
                pos = i; // TEM, RSTn: no length
                continue;
            }
            0x00 | 0xD8 | 0xD9 => return Err(JpegCheckError::BadSegment(at)),
            _ => {}
        }
        let Some(len) = d.get(i..i + 2) else {
            return pending;
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(JpegCheckError::BadSegment(at));
        }
        let Some(body) = d.get(i + 2..i + len) else {
            return pending;
        };
        segment(marker, body);
        let segment = body;
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            // Start of frame: precision, height, width, components.
            if segment.len() < 6 {
                return Err(JpegCheckError::BadSegment(at));
            }
            let height = u32::from(u16::from_be_bytes([segment[1], segment[2]]));
            let width = u32::from(u16::from_be_bytes([segment[3], segment[4]]));
            size = Some((width, height));
        }
        pos = i + len;
        if marker == 0xDA {
            return match size {
                Some((w, h)) if w > 0 && h > 0 => Ok(Walk::Data {
                    start: pos,
                    size: (w, h),
                }),
                _ => Err(JpegCheckError::NoFrame),
            };
        }
    }
}

/// A cheap structural check of a JPEG (no decoding): a start-of-image marker first, an
/// end-of-image marker last (after trimming trailing CR/LF), and well-formed marker
/// segments up to the start of scan, among them a start-of-frame giving a non-zero size.
/// Catches truncated and garbled parts; damage inside the entropy-coded data passes.
pub fn check_jpeg(data: &[u8]) -> Result<JpegInfo, JpegCheckError> {
    let mut end = data.len();
    while end > 0 && matches!(data[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    let d = &data[..end];
    if !d.starts_with(&[0xFF, 0xD8]) {
        return Err(JpegCheckError::NoStart);
    }
    if d.len() < 4 || !d.ends_with(&[0xFF, 0xD9]) {
        return Err(JpegCheckError::NoEnd);
    }
    // The segments must end before the final end-of-image marker.
    match walk(&d[..end - 2], 0, None)? {
        Walk::Data {
            size: (width, height),
            ..
        } => Ok(JpegInfo {
            width,
            height,
            len: end,
        }),
        Walk::Pending { pos, .. } => Err(JpegCheckError::BadSegment(pos)),
    }
}
