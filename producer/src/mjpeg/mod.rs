//! MJPEG over HTTP without IO: the `multipart/x-mixed-replace` part parser, the
//! `Content-Type` boundary, and a cheap structural JPEG check.
//!
//! [`Parser`] is fed the response body as it arrives, split anywhere, and hands back
//! complete parts. It reads a part's body by its `Content-Length` when the part has one
//! (no scanning) and otherwise scans for the next delimiter. It holds at most one part
//! (up to the `max_len` it was given) plus one header block ([`MAX_HEADER_LEN`]), whatever
//! the server sends: larger parts are skipped without being buffered, and bytes that fit
//! no part are skipped until the next delimiter.
//!
//! What real servers send and the parser accepts:
//!
//! * a delimiter before every part (`--B` after a blank line, as ESP32-CAM and
//!   mjpg-streamer write it) or only between parts, with or without the CR of CRLF;
//! * a declared boundary that already starts with `--` (`boundary=--B`) and lines written
//!   either as `--B` or as `----B`: leading dashes of the boundary are not significant;
//! * no boundary in the `Content-Type` at all: the first line starting with `--` declares
//!   it;
//! * parts with and without `Content-Length`, with any extra headers, or with no header
//!   block at all (the JPEG straight after the delimiter line);
//! * transport padding after the delimiter, and a close delimiter (`--B--`).
//!
//! A part without `Content-Length` normally ends at the next delimiter, which many servers
//! only send with the next frame. So that such a part is not held back a whole frame
//! interval, it also ends when a read ends right after a structurally complete JPEG
//! ([`check_jpeg`]): after the scan header, the bytes `FF D9` can only be the end of the
//! image.
//!
//! Calling order: [`Parser::push`] each chunk of the body, calling it again with the rest
//! while it returns an event; at the end of the stream (closed or stalled),
//! [`Parser::finish`].
//!
//! Layout: `content_type` reads the stream's `Content-Type` and its boundary; `parser` is
//! the state machine; `part` holds what it hands back (parts, events, drops, counters);
//! `scan` the byte searches they share.

mod content_type;
mod parser;
mod part;
mod scan;

pub use camring_jpeg::markers::{check_jpeg, JpegCheckError, JpegInfo};
pub use content_type::{boundary_from_content_type, ContentTypeError};
pub use parser::Parser;
pub use part::{Dropped, Event, ParserStats, Part};

/// Longest header block of one part accepted; a longer one drops the part.
pub const MAX_HEADER_LEN: usize = 8 * 1024;
/// Longest boundary accepted (RFC 2046 allows 70 characters).
pub const MAX_BOUNDARY_LEN: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_jpegs::{fake_jpeg, real_jpeg};

    #[test]
    fn jpeg_check_accepts_whole_jpegs_only() {
        let j = real_jpeg(64, 32, 1);
        let info = check_jpeg(&j).unwrap();
        assert_eq!((info.width, info.height, info.len), (64, 32, j.len()));
        let mut crlf = j.clone();
        crlf.extend(b"\r\n\r\n");
        assert_eq!(check_jpeg(&crlf), Ok(info));
        for end in 0..j.len() {
            assert!(check_jpeg(&j[..end]).is_err(), "prefix of {end} bytes");
        }
        assert_eq!(
            check_jpeg(&fake_jpeg(7, 5, 0)).map(|i| (i.width, i.height)),
            Ok((7, 5))
        );
        let corrupt = |at: usize, v: u8| {
            let mut c = j.clone();
            c[at] = v;
            check_jpeg(&c)
        };
        assert_eq!(corrupt(0, 0), Err(JpegCheckError::NoStart));
        assert_eq!(corrupt(j.len() - 1, 0), Err(JpegCheckError::NoEnd));
        assert!(matches!(corrupt(2, 0), Err(JpegCheckError::BadSegment(2))));
        // A segment length running into the image data and past the end.
        assert!(matches!(
            corrupt(4, 0xFF),
            Err(JpegCheckError::BadSegment(_))
        ));
        // Zero size.
        let mut zero = fake_jpeg(7, 5, 0);
        zero[16] = 0;
        zero[17] = 0;
        assert_eq!(check_jpeg(&zero), Err(JpegCheckError::NoFrame));
        // No frame header at all.
        let no_sof = [0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 1, 2, 0xFF, 0xD9];
        assert_eq!(check_jpeg(&no_sof), Err(JpegCheckError::NoFrame));
        for junk in [&b""[..], b"\xFF", b"\xFF\xD8", b"\xFF\xD8\xFF\xD9", b"\r\n"] {
            assert!(check_jpeg(junk).is_err());
        }
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..20_000 {
            let mut c = j.clone();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(0..c.len());
                c[i] = rng.u8(..);
            }
            c.truncate(rng.usize(0..=c.len()));
            let _ = check_jpeg(&c);
        }
    }
}
