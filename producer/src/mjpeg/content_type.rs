//! The `Content-Type` of an MJPEG stream: its media type and its boundary parameter.

use super::MAX_BOUNDARY_LEN;

/// Why a `Content-Type` is not one this parser reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentTypeError {
    /// Not a multipart type. Carries the media type that was given.
    #[error("content type {0:?} is not an MJPEG stream (expected multipart/x-mixed-replace){hint}",
        hint = if .0.to_ascii_lowercase().starts_with("image/") {
            "; a single image: is this the snapshot URL rather than the stream's?"
        } else {
            ""
        })]
    NotMultipart(String),
    /// The boundary parameter is empty, too long or has control characters.
    #[error("unusable multipart boundary {0:?}")]
    BadBoundary(String),
}

/// The boundary of a `multipart/*` `Content-Type` value, without leading dashes:
/// `Ok(None)` when the parameter is missing (the [`Parser`](super::Parser) then learns it from the first
/// delimiter line). Quoted and unquoted values are accepted.
pub fn boundary_from_content_type(value: &str) -> Result<Option<String>, ContentTypeError> {
    let (media, params) = value.split_once(';').unwrap_or((value, ""));
    let media = media.trim();
    if !media.to_ascii_lowercase().starts_with("multipart/") {
        return Err(ContentTypeError::NotMultipart(media.to_owned()));
    }
    for (name, raw) in parameters(params) {
        if name.eq_ignore_ascii_case("boundary") {
            return match normalise_boundary(&raw) {
                Some(token) => Ok(Some(token)),
                None => Err(ContentTypeError::BadBoundary(raw)),
            };
        }
    }
    Ok(None)
}

/// `name=value` parameters of a header value (after its first `;`), values unquoted.
fn parameters(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        // Name, up to '=' or ';'.
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            name.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
                // Anything between the closing quote and ';' is ignored.
                while chars.peek().is_some_and(|c| *c != ';') {
                    chars.next();
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_owned();
            }
        }
        let name = name.trim();
        if !name.is_empty() {
            out.push((name.to_owned(), value));
        }
        if chars.next().is_none() {
            return out;
        }
    }
}

/// A boundary without its leading dashes and surrounding blanks, if usable.
pub(super) fn normalise_boundary(raw: &str) -> Option<String> {
    let token = raw.trim().trim_start_matches('-').trim_end();
    let ok = !token.is_empty()
        && token.len() <= MAX_BOUNDARY_LEN
        && !token.bytes().any(|b| b < 0x20 || b == 0x7f);
    ok.then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_from_content_types() {
        for (ct, want) in [
            ("multipart/x-mixed-replace;boundary=frame", Some("frame")),
            (
                "multipart/x-mixed-replace; boundary=\"frame\"",
                Some("frame"),
            ),
            (
                "multipart/x-mixed-replace; boundary=--myboundary",
                Some("myboundary"),
            ),
            (
                "multipart/x-mixed-replace;boundary=\"--a;b\\\"c\"",
                Some("a;b\"c"),
            ),
            (
                "Multipart/X-Mixed-Replace ; charset=x ; BOUNDARY = 123 ",
                Some("123"),
            ),
            ("multipart/x-mixed-replace", None),
            ("multipart/mixed; boundary=x", Some("x")),
        ] {
            assert_eq!(
                boundary_from_content_type(ct),
                Ok(want.map(str::to_owned)),
                "{ct}"
            );
        }
        let e = boundary_from_content_type("text/html; charset=utf-8").unwrap_err();
        assert_eq!(e, ContentTypeError::NotMultipart("text/html".into()));
        assert!(e.to_string().contains("multipart/x-mixed-replace"));
        let e = boundary_from_content_type("image/jpeg").unwrap_err();
        assert!(e.to_string().contains("snapshot"), "{e}");
        for bad in ["\"\"", "--", "a\u{1}b", &"x".repeat(300)] {
            let ct = format!("multipart/x-mixed-replace;boundary={bad}");
            assert!(
                matches!(
                    boundary_from_content_type(&ct),
                    Err(ContentTypeError::BadBoundary(_))
                ),
                "{bad}"
            );
        }
    }
}
