//! What the [`Parser`](super::Parser) hands back: parts, the reasons it drops one, its
//! events and its counters.

use std::fmt;

use super::scan::header;
use super::MAX_HEADER_LEN;

/// A complete part, borrowed from the parser until the next call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    /// The raw header block (lines without the blank line ending it); may be empty.
    pub headers: &'a [u8],
    /// The body: exactly `Content-Length` bytes when the part had one; otherwise the
    /// bytes up to the next delimiter without the line break before it.
    pub body: &'a [u8],
}

impl<'a> Part<'a> {
    /// The value of header `name` (case-insensitive), trimmed; the first if repeated.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        header(self.headers, name)
    }

    /// The part's `Content-Length`, if it had a valid one.
    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }
}

impl fmt::Debug for Part<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Part")
            .field("headers", &String::from_utf8_lossy(self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why a part was dropped by the parser (each is a part the server sent that will not
/// be delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// The body is longer than the parser's `max_len`: `len` is its `Content-Length`, or
    /// the bytes seen when the limit was passed.
    #[error("part of {len} bytes is larger than the limit")]
    TooLarge {
        /// Declared or observed length.
        len: usize,
    },
    /// The header block is longer than [`MAX_HEADER_LEN`].
    #[error("part headers longer than {MAX_HEADER_LEN} bytes")]
    HeadersTooLarge,
    /// The stream ended inside the part's headers or inside a body of known length.
    #[error("stream ended inside a part")]
    Truncated,
}

/// What [`Parser::push`](super::Parser::push) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A part began: its delimiter line was read (its first byte arrives now).
    Begin,
    /// A complete part.
    Part(Part<'a>),
    /// A part was dropped.
    Dropped(Dropped),
}

/// Counters of one parser.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParserStats {
    /// Complete parts delivered.
    pub parts: u64,
    /// Parts dropped (any [`Dropped`] reason).
    pub dropped: u64,
    /// Bytes skipped outside any part (preamble and epilogue included), not counting line
    /// breaks, blanks and dashes: a sign of a lying `Content-Length` or a garbled stream.
    pub garbage: u64,
}
