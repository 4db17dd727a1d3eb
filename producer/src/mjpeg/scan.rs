//! Byte searches of the parser: a header's value in a header block, the end of a header
//! block, a delimiter in a body.

/// The value of header `name` (case-insensitive) in the header block `block`, trimmed; the
/// first if repeated.
pub(super) fn header<'a>(block: &'a [u8], name: &str) -> Option<&'a str> {
    block.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (n, v) = (&line[..colon], &line[colon + 1..]);
        if !n.trim_ascii().eq_ignore_ascii_case(name.as_bytes()) {
            return None;
        }
        std::str::from_utf8(v.trim_ascii()).ok()
    })
}

/// The end of a header block in `head`, searching for line ends from `from`:
/// `(end of the last header line, end of the blank line)`.
pub(super) fn header_end(head: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(k) = head[i..].iter().position(|&b| b == b'\n') {
        let nl = i + k;
        let blank_from = match nl {
            0 => Some(0),
            1 if head[0] == b'\r' => Some(0),
            _ if head[nl - 1] == b'\n' => Some(nl - 1),
            _ if nl >= 2 && head[nl - 1] == b'\r' && head[nl - 2] == b'\n' => Some(nl - 2),
            _ => None,
        };
        if let Some(block_end) = blank_from {
            return Some((block_end, nl + 1));
        }
        i = nl + 1;
    }
    None
}

/// The first occurrence of `needle` (which starts with `-`) in `hay`.
pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let n = needle.len();
    let mut i = 0;
    while i + n <= hay.len() {
        i += hay[i..=hay.len() - n]
            .iter()
            .position(|&b| b == needle[0])?;
        if hay[i..i + n] == *needle {
            return Some(i);
        }
        i += 1;
    }
    None
}
