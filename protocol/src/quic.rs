//! The QUIC mapping of the protocol, sans IO (docs/protocol.md, 10.8): the control
//! stream's newline-delimited JSON ([`LineReader`] splits it; the first line is a
//! [`Hello`]), the application close codes and the stream reset and stop codes.

pub use crate::control::{Hello, QUIC_VERSION};

/// Connection close codes (QUIC application error codes) and what they mean.
pub mod close {
    /// The client is leaving (or the server closes an idle connection normally).
    pub const DONE: u32 = 0;
    /// The server is stopping: reconnect later.
    pub const GOING_AWAY: u32 = 1;
    /// Wrong or missing token: do not retry with the same one.
    pub const UNAUTHORIZED: u32 = 2;
    /// The `hello` was refused (not a hello, unknown version, bad settings): do not retry.
    pub const BAD_REQUEST: u32 = 3;
    /// The server serves its maximum number of clients: retry later.
    pub const FULL: u32 = 4;
    /// A control line was longer than [`super::MAX_LINE`] bytes.
    pub const TOO_BIG: u32 = 5;
    /// No `hello` in time, or no frame delivered for the server's send timeout (10 s).
    pub const TIMEOUT: u32 = 6;
    /// The client did something the protocol does not allow (closed the control stream).
    pub const PROTOCOL: u32 = 7;

    /// The name of a close code (for messages), `None` if unknown.
    pub fn name(code: u64) -> Option<&'static str> {
        Some(match u32::try_from(code).ok()? {
            DONE => "done",
            GOING_AWAY => "going_away",
            UNAUTHORIZED => "unauthorized",
            BAD_REQUEST => "bad_request",
            FULL => "full",
            TOO_BIG => "too_big",
            TIMEOUT => "timeout",
            PROTOCOL => "protocol",
            _ => return None,
        })
    }
}

/// The reset code of a frame stream abandoned for a newer frame.
pub const RESET_SUPERSEDED: u32 = 1;
/// The reset code of frame streams abandoned because the connection is going (pause,
/// shutdown).
pub const RESET_CANCELLED: u32 = 2;
/// The code a client stops (`STOP_SENDING`) a frame stream with when it already has a
/// newer frame.
pub const STOP_STALE: u32 = 1;

/// Largest control line a client may send, without its newline (the WebSocket text
/// message limit).
pub const MAX_LINE: usize = crate::control::MAX_CLIENT_MESSAGE;
/// Largest line a client accepts from the server (a `stats` of 16 cameras is ~3 KB).
pub const MAX_SERVER_LINE: usize = 64 * 1024;

/// What reading a line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line (without its newline), lossily decoded as UTF-8 when it is not.
    Text(String),
    /// The line went past the limit without a newline.
    TooLong,
    /// The stream ended (a partial last line is dropped).
    End,
}

/// Splits a byte stream into lines of at most `limit` bytes, holding at most `limit + 1`
/// bytes of an unfinished line plus one read chunk.
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    limit: usize,
    /// Bytes of `buf` known to hold no newline.
    scanned: usize,
}

impl LineReader {
    /// A reader of lines of at most `limit` bytes.
    pub fn new(limit: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            limit,
            scanned: 0,
        }
    }

    /// The next line from what was pushed, if one is complete.
    pub fn next_line(&mut self) -> Option<Line> {
        if let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + i;
            if end > self.limit {
                return Some(Line::TooLong);
            }
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.scanned = 0;
            return Some(Line::Text(String::from_utf8(line).unwrap_or_else(|e| {
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            })));
        }
        self.scanned = self.buf.len();
        (self.buf.len() > self.limit).then_some(Line::TooLong)
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
}

/// The ALPN protocol of camring's QUIC adapter (docs/protocol.md, 10.8).
pub const ALPN: &[u8] = b"camring/1";

/// A certificate fingerprint that is not 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad SHA-256 fingerprint {0:?}: expected 64 hexadecimal digits (colons allowed)")]
pub struct BadFingerprint(pub String);

/// SHA-256 of a DER certificate: what a client pins (docs/protocol.md, 10.8).
pub fn fingerprint_bytes(cert: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(cert).into()
}

/// SHA-256 of a DER certificate, lower-case hex (64 digits), as the bridge prints it.
pub fn fingerprint(cert: &[u8]) -> String {
    use std::fmt::Write as _;
    fingerprint_bytes(cert)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses a fingerprint as printed (`ab12…`), also with colons or upper case
/// (`AB:12:…`, as `openssl x509 -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], BadFingerprint> {
    let bad = || BadFingerprint(text.to_owned());
    let digits: Vec<u8> = text
        .trim()
        .bytes()
        .filter(|&b| b != b':')
        .map(|b| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *o = pair[0] << 4 | pair[1];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_limited() {
        let mut r = LineReader::new(8);
        r.push(b"ab\ncd\r\n1234");
        assert_eq!(r.next_line(), Some(Line::Text("ab".into())));
        assert_eq!(r.next_line(), Some(Line::Text("cd".into())));
        assert_eq!(r.next_line(), None);
        r.push(b"5678\n");
        assert_eq!(r.next_line(), Some(Line::Text("12345678".into())));
        r.push(b"123456789");
        assert_eq!(r.next_line(), Some(Line::TooLong));
        let mut r = LineReader::new(8);
        r.push(b"\xff\xfe\n");
        assert!(matches!(r.next_line(), Some(Line::Text(t)) if t.contains('\u{fffd}')));
    }

    #[test]
    fn hello_is_strict_about_its_settings() {
        let h = Hello::from_json(
            r#"{"type":"hello","version":1,"token":"t","settings":{"quality":70,"cameras":[0,2]}}"#,
        )
        .unwrap();
        assert_eq!(h.token.as_deref(), Some("t"));
        assert_eq!(h.settings.unwrap().quality.unwrap().to_string(), "70");
        let minimal = Hello::from_json(r#"{"type":"hello","version":1}"#).unwrap();
        assert_eq!(minimal.to_line(), "{\"type\":\"hello\",\"version\":1}\n");
        for bad in [
            r#"{"type":"settings","fps":3}"#,
            r#"{"type":"hello","version":2}"#,
            r#"{"type":"hello"}"#,
            r#"{"type":"hello","version":1,"settings":{"qualty":3}}"#,
            r#"{"type":"hello","version":1,"settings":{"quality":300}}"#,
            "not json",
        ] {
            assert!(Hello::from_json(bad).is_err(), "{bad}");
        }
        assert_eq!(close::name(2), Some("unauthorized"));
        assert_eq!(close::name(99), None);
        assert_eq!(close::name(1 << 40), None);
    }

    #[test]
    fn fingerprints_parse_in_both_forms() {
        let hex = fingerprint(b"not really a certificate");
        assert_eq!(hex.len(), 64);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        let bytes = fingerprint_bytes(b"not really a certificate");
        assert_eq!(parse_fingerprint(&hex).unwrap(), bytes);
        assert_eq!(parse_fingerprint(&colons).unwrap(), bytes);
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&format!("{}zz", &hex[..62])).is_err());
    }
}
