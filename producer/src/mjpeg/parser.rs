//! The sans-IO `multipart/x-mixed-replace` state machine (see the [module docs](super)).

use camring_jpeg::markers::{walk, JpegCheckError, Walk};

use super::content_type::normalise_boundary;
use super::part::{Dropped, Event, ParserStats, Part};
use super::scan::{find, header, header_end};
use super::{MAX_BOUNDARY_LEN, MAX_HEADER_LEN};

/// Longest delimiter line (boundary plus padding) before the parser gives up on it.
const MAX_DELIMITER_LINE: usize = MAX_BOUNDARY_LEN + 64;
/// Bytes examined at a time while looking for a delimiter.
const SEEK_WINDOW: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for a delimiter: the preamble, between parts, after a dropped part.
    Seek,
    /// Looking for the first line starting with `--`, to learn the boundary. `overlong`:
    /// skipping the rest of a line too long to be one.
    Learn { overlong: bool },
    /// In a delimiter line after the boundary, up to its end: `seen` bytes so far,
    /// `close` whether they start with `--` so far.
    Delimiter { seen: usize, close: bool },
    /// Reading a part's header block.
    Headers,
    /// Reading a body of known length.
    Fixed { len: usize },
    /// Skipping a body of known length that is too large.
    Skip { left: usize },
    /// Reading a body of unknown length, up to the next delimiter.
    Scan,
    /// Skipping a body of unknown length that is too large, up to the next delimiter.
    ScanSkip,
}

/// What one step produced, before the buffers are borrowed for the [`Event`].
#[derive(Debug, Clone, Copy)]
enum Out {
    Begin,
    Part { body_len: usize },
    Dropped(Dropped),
}

/// The sans-IO `multipart/x-mixed-replace` parser. See the [module docs](super).
#[derive(Debug)]
pub struct Parser {
    /// `--` and the boundary; empty until learnt.
    needle: Vec<u8>,
    max_len: usize,
    state: State,
    /// The current part's header block, or the line examined while learning.
    head: Vec<u8>,
    /// The current part's body, or the window searched for a delimiter.
    body: Vec<u8>,
    /// Where in `body` the next delimiter search starts.
    scan_from: usize,
    /// How far the structure of a scanned body has been walked.
    walk: Result<Walk, JpegCheckError>,
    /// The last event borrowed the buffers: clear them before going on.
    emitted: bool,
    stats: ParserStats,
}

impl Parser {
    /// A parser for parts delimited by `boundary` (leading dashes are ignored; `None`
    /// learns it from the stream), dropping parts longer than `max_len` bytes.
    pub fn new(boundary: Option<&str>, max_len: usize) -> Self {
        let needle = boundary
            .and_then(normalise_boundary)
            .map(|t| [b"--", t.as_bytes()].concat());
        Parser {
            state: match needle {
                Some(_) => State::Seek,
                None => State::Learn { overlong: false },
            },
            needle: needle.unwrap_or_default(),
            max_len,
            head: Vec::new(),
            body: Vec::new(),
            scan_from: 0,
            walk: Ok(Walk::START),
            emitted: false,
            stats: ParserStats::default(),
        }
    }

    /// The boundary in use, without dashes (`None` while it is still to be learnt).
    pub fn boundary(&self) -> Option<&str> {
        let token = self.needle.get(2..).filter(|t| !t.is_empty())?;
        std::str::from_utf8(token).ok()
    }

    /// The counters so far.
    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Feeds `input`, returning how many of its bytes were consumed and the next event.
    /// When the event is `None`, all of `input` was consumed; otherwise handle the event
    /// and push the rest (even if empty) until it is. An event borrows the parser until
    /// the next call.
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Event<'_>>) {
        self.release();
        let mut pos = 0;
        let out = loop {
            let (n, out) = self.step(&input[pos..]);
            pos += n;
            if out.is_some() {
                break out;
            }
            if pos == input.len() {
                break self.at_end_of_input();
            }
        };
        (pos, out.map(|o| self.event(o)))
    }

    /// Ends the stream (closed, or given up on): a body of unknown length still open is
    /// returned as a part, since the end of the stream delimits it (check it before use);
    /// a part cut short in its headers or its known-length body is
    /// [`Dropped::Truncated`]. The parser then looks for a delimiter again.
    pub fn finish(&mut self) -> Option<Event<'_>> {
        self.release();
        let state = self.state;
        self.state = match state {
            State::Learn { .. } => State::Learn { overlong: false },
            _ => State::Seek,
        };
        let out = match state {
            State::Scan if !self.body.is_empty() => Some(self.scan_part(self.body.len())),
            State::Headers if !self.head.is_empty() => Some(self.drop_part(Dropped::Truncated)),
            State::Fixed { .. } => Some(self.drop_part(Dropped::Truncated)),
            _ => None,
        };
        if out.is_none() {
            self.clear();
        }
        out.map(|o| self.event(o))
    }

    fn release(&mut self) {
        if self.emitted {
            self.emitted = false;
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.head.clear();
        self.body.clear();
        self.scan_from = 0;
    }

    fn event(&mut self, out: Out) -> Event<'_> {
        match out {
            Out::Begin => Event::Begin,
            Out::Dropped(d) => Event::Dropped(d),
            Out::Part { body_len } => {
                self.emitted = true;
                Event::Part(Part {
                    headers: &self.head,
                    body: &self.body[..body_len],
                })
            }
        }
    }

    fn drop_part(&mut self, why: Dropped) -> Out {
        self.stats.dropped += 1;
        self.clear();
        Out::Dropped(why)
    }

    /// A scanned body ending at `end` (where its delimiter starts), without the line
    /// break before the delimiter (nor the extra dashes of a `----B` line).
    fn scan_part(&mut self, end: usize) -> Out {
        let b = &self.body[..end];
        let dashes = b.iter().rev().take_while(|&&c| c == b'-').count();
        let mut end = end;
        if dashes > 0 && (dashes == end || b[end - dashes - 1] == b'\n') {
            end -= dashes;
        }
        while end > 0 && matches!(b[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        if end > self.max_len {
            return self.drop_part(Dropped::TooLarge { len: end });
        }
        self.stats.parts += 1;
        Out::Part { body_len: end }
    }

    /// All input consumed: a scanned body that is a complete JPEG ends here.
    fn at_end_of_input(&mut self) -> Option<Out> {
        if self.state != State::Scan {
            return None;
        }
        if let Ok(Walk::Pending { pos, size }) = self.walk {
            self.walk = walk(&self.body, pos, size);
        }
        let Ok(Walk::Data { start, .. }) = self.walk else {
            return None;
        };
        let b = &self.body;
        let mut end = b.len();
        for _ in 0..2 {
            if end > 0 && matches!(b[end - 1], b'\r' | b'\n') {
                end -= 1;
            }
        }
        if end >= start + 2 && b[end - 2..end] == [0xFF, 0xD9] {
            self.state = State::Seek;
            return Some(self.scan_part(b.len()));
        }
        None
    }

    /// One step over `input` (possibly empty): bytes consumed and maybe an event.
    fn step(&mut self, input: &[u8]) -> (usize, Option<Out>) {
        match self.state {
            State::Seek | State::ScanSkip => self.seek(input),
            State::Learn { overlong } => self.learn(input, overlong),
            State::Delimiter { seen, close } => self.delimiter(input, seen, close),
            State::Headers => self.headers(input),
            State::Fixed { len } => {
                let n = (len - self.body.len()).min(input.len());
                self.body.extend_from_slice(&input[..n]);
                if self.body.len() < len {
                    return (n, None);
                }
                self.state = State::Seek;
                self.stats.parts += 1;
                (n, Some(Out::Part { body_len: len }))
            }
            State::Skip { left } => {
                let n = left.min(input.len());
                self.state = match left - n {
                    0 => State::Seek,
                    left => State::Skip { left },
                };
                (n, None)
            }
            State::Scan => self.scan(input),
        }
    }

    /// Appends up to `room` bytes of `input` to `body` and searches it for the delimiter
    /// from `scan_from`: `(bytes appended, where the delimiter starts)`. When not found,
    /// `scan_from` moves to where one could still start.
    fn append_and_find(&mut self, input: &[u8], room: usize) -> (usize, Option<usize>) {
        let n = room.min(input.len());
        self.body.extend_from_slice(&input[..n]);
        let found = find(&self.body[self.scan_from..], &self.needle).map(|i| i + self.scan_from);
        if found.is_none() {
            self.scan_from = self.body.len().saturating_sub(self.needle.len() - 1);
        }
        (n, found)
    }

    fn seek(&mut self, input: &[u8]) -> (usize, Option<Out>) {
        if input.is_empty() {
            return (0, None);
        }
        let old = self.body.len();
        let (n, found) = self.append_and_find(input, SEEK_WINDOW);
        let skipped = found.unwrap_or(self.scan_from);
        if self.state == State::Seek {
            let garbage = self.body[..skipped]
                .iter()
                .filter(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t' | b'-'))
                .count();
            self.stats.garbage += garbage as u64;
        }
        match found {
            Some(at) => {
                self.clear();
                self.state = State::Delimiter {
                    seen: 0,
                    close: false,
                };
                (at + self.needle.len() - old, None)
            }
            None => {
                // Keep only what could be the start of a delimiter.
                self.body.drain(..skipped);
                self.scan_from = 0;
                (n, None)
            }
        }
    }

    fn learn(&mut self, input: &[u8], overlong: bool) -> (usize, Option<Out>) {
        let Some(nl) = input.iter().position(|&b| b == b'\n') else {
            if !overlong {
                self.head.extend_from_slice(input);
                if self.head.len() > MAX_DELIMITER_LINE {
                    self.head.clear();
                    self.state = State::Learn { overlong: true };
                }
            }
            return (input.len(), None);
        };
        if overlong {
            self.state = State::Learn { overlong: false };
            return (nl + 1, None);
        }
        self.head.extend_from_slice(&input[..nl]);
        let line = std::mem::take(&mut self.head);
        let token = std::str::from_utf8(&line)
            .ok()
            .filter(|l| l.starts_with("--"))
            .and_then(normalise_boundary)
            .filter(|t| !t.ends_with("--") && t.len() <= MAX_BOUNDARY_LEN);
        match token {
            Some(token) => {
                self.needle = [b"--", token.as_bytes()].concat();
                self.state = State::Headers;
                (nl + 1, Some(Out::Begin))
            }
            None => (nl + 1, None),
        }
    }

    fn delimiter(&mut self, input: &[u8], seen: usize, close: bool) -> (usize, Option<Out>) {
        let line = match input.iter().position(|&b| b == b'\n') {
            Some(nl) => &input[..nl],
            None => input,
        };
        let close = if seen >= 2 {
            close
        } else {
            (seen == 0 || close) && line.iter().take(2 - seen).all(|&b| b == b'-')
        };
        let seen = seen + line.len();
        if line.len() == input.len() {
            // No end of line yet.
            self.state = if seen > MAX_DELIMITER_LINE {
                State::Seek // not a delimiter line after all
            } else {
                State::Delimiter { seen, close }
            };
            return (input.len(), None);
        }
        if close && seen >= 2 {
            // `--B--`: the stream says it has ended; skip the epilogue.
            self.state = State::Seek;
            return (line.len() + 1, None);
        }
        self.state = State::Headers;
        (line.len() + 1, Some(Out::Begin))
    }

    fn headers(&mut self, input: &[u8]) -> (usize, Option<Out>) {
        if input.is_empty() {
            return (0, None);
        }
        if self.head.is_empty() && input[0] == 0xFF {
            // No header block: the JPEG follows the delimiter line.
            self.start_scan();
            return (0, None);
        }
        let old = self.head.len();
        let n = (MAX_HEADER_LEN + 2 - old).min(input.len());
        self.head.extend_from_slice(&input[..n]);
        let Some((block_end, end)) = header_end(&self.head, old.saturating_sub(2)) else {
            if self.head.len() > MAX_HEADER_LEN {
                self.state = State::Seek;
                return (n, Some(self.drop_part(Dropped::HeadersTooLarge)));
            }
            return (n, None);
        };
        self.head.truncate(block_end);
        if self.head.last() == Some(&b'\r') {
            self.head.pop();
        }
        // A delimiter line among the headers: what came before it was an empty part.
        // Keep the lines after the last one.
        let mut cut = 0;
        let mut at = 0;
        for line in self.head.split_inclusive(|&b| b == b'\n') {
            at += line.len();
            if line.trim_ascii_start().starts_with(&self.needle) {
                cut = at;
            }
        }
        self.head.drain(..cut);
        let consumed = end - old;
        match header(&self.head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
            Some(len) if len > self.max_len => {
                self.state = State::Skip { left: len };
                (consumed, Some(self.drop_part(Dropped::TooLarge { len })))
            }
            Some(0) => {
                self.state = State::Seek;
                self.stats.parts += 1;
                (consumed, Some(Out::Part { body_len: 0 }))
            }
            Some(len) => {
                self.state = State::Fixed { len };
                (consumed, None)
            }
            None => {
                self.start_scan();
                (consumed, None)
            }
        }
    }

    fn start_scan(&mut self) {
        self.state = State::Scan;
        self.body.clear();
        self.scan_from = 0;
        self.walk = Ok(Walk::START);
    }

    fn scan(&mut self, input: &[u8]) -> (usize, Option<Out>) {
        if input.is_empty() {
            return (0, None);
        }
        let old = self.body.len();
        // Room for the largest body, the line break and the delimiter after it.
        let cap = self.max_len + 2 + self.needle.len();
        let (n, found) = self.append_and_find(input, cap - old);
        if let Some(at) = found {
            self.state = State::Delimiter {
                seen: 0,
                close: false,
            };
            self.body.truncate(at);
            return (at + self.needle.len() - old, Some(self.scan_part(at)));
        }
        if self.body.len() < cap {
            return (n, None);
        }
        // Too large: skip to the next delimiter, keeping what may be its start.
        let len = self.body.len();
        let tail = self.body.split_off(self.scan_from);
        let out = self.drop_part(Dropped::TooLarge { len });
        self.body = tail;
        self.state = State::ScanSkip;
        (n, Some(out))
    }

    /// Bytes held in buffers (tests check that this stays bounded).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::check_jpeg;
    use super::*;
    use crate::test_jpegs::{fake_jpeg, real_jpeg};

    /// What a parser reported, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Begin,
        Part { headers: Vec<u8>, body: Vec<u8> },
        Dropped(Dropped),
    }

    fn own(ev: Event<'_>) -> Ev {
        match ev {
            Event::Begin => Ev::Begin,
            Event::Part(p) => Ev::Part {
                headers: p.headers.to_vec(),
                body: p.body.to_vec(),
            },
            Event::Dropped(d) => Ev::Dropped(d),
        }
    }

    /// Pushes `data` in one call, collecting events; checks the buffers stay bounded.
    fn push_all(p: &mut Parser, data: &[u8], out: &mut Vec<Ev>) {
        let bound = p.max_len + MAX_HEADER_LEN + SEEK_WINDOW + 2 * MAX_DELIMITER_LINE;
        let mut rest = data;
        for _ in 0..=2 * data.len() + 2 {
            let (n, ev) = p.push(rest);
            assert!(n <= rest.len());
            rest = &rest[n..];
            let Some(ev) = ev else {
                assert!(rest.is_empty(), "no event but input left");
                assert!(p.buffered() <= bound, "{} bytes buffered", p.buffered());
                return;
            };
            out.push(own(ev));
        }
        panic!("parser made no progress");
    }

    /// Feeds `chunks` then finishes.
    fn parse<'a>(
        boundary: Option<&str>,
        max_len: usize,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Ev>, ParserStats) {
        let mut p = Parser::new(boundary, max_len);
        let mut out = Vec::new();
        for c in chunks {
            push_all(&mut p, c, &mut out);
        }
        if let Some(ev) = p.finish() {
            out.push(own(ev));
        }
        (out, p.stats())
    }

    fn jpegs() -> [Vec<u8>; 3] {
        [
            fake_jpeg(64, 48, 1),
            fake_jpeg(32, 16, 2),
            fake_jpeg(640, 480, 3),
        ]
    }

    /// The bodies of the parts, as JPEGs.
    fn bodies(events: &[Ev]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                Ev::Part { body, .. } => {
                    let info = check_jpeg(body).ok()?;
                    Some(body[..info.len].to_vec())
                }
                _ => None,
            })
            .collect()
    }

    /// A stream as a server writes it: `--B` before each part, each part's headers made
    /// by `headers(jpeg)`, `eol` ending lines.
    fn stream(delim: &str, eol: &str, headers: impl Fn(&[u8]) -> String) -> Vec<u8> {
        let mut s = Vec::new();
        for j in jpegs() {
            s.extend(format!("{eol}{delim}{eol}{}{eol}", headers(&j)).bytes());
            s.extend(&j);
        }
        s.extend(eol.bytes());
        s
    }

    /// Every way real servers write a stream: (boundary declared, the stream).
    fn quirky_streams() -> Vec<(&'static str, Option<&'static str>, Vec<u8>)> {
        let len = |j: &[u8]| j.len();
        let mut v = vec![
            (
                "esp32-cam",
                Some("123456789000000000000987654321"),
                stream("--123456789000000000000987654321", "\r\n", |j| {
                    format!(
                        "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: 12.000345\r\n",
                        len(j)
                    )
                }),
            ),
            (
                "no content-length",
                Some("frame"),
                stream("--frame", "\r\n", |_| "Content-Type: image/jpeg\r\n".into()),
            ),
            (
                "bare LF line ends",
                Some("frame"),
                stream("--frame", "\n", |j| format!("Content-Length: {}\n", len(j))),
            ),
            (
                "boundary declared with dashes, lines with two",
                Some("--myboundary"),
                stream("--myboundary", "\r\n", |j| {
                    format!("Content-Type: image/jpeg\r\nContent-Length: {}\r\n", len(j))
                }),
            ),
            (
                "boundary declared with dashes, lines with four",
                Some("--myboundary"),
                stream("----myboundary", "\r\n", |_| {
                    "Content-Type: image/jpeg\r\n".into()
                }),
            ),
            (
                "odd header spelling, extra headers, padding",
                Some("b"),
                stream("--b  \t", "\r\n", |j| {
                    format!(
                        "content-type:image/jpeg\r\nX-Frame: 1\r\nCONTENT-LENGTH:{}  \r\nCache-Control: no-cache\r\nX-Empty:\r\n",
                        len(j)
                    )
                }),
            ),
            (
                "no header block",
                Some("b"),
                stream("--b", "\r\n", |_| String::new())
                    .into_iter()
                    .collect(),
            ),
            (
                "boundary learnt from the stream",
                None,
                stream("--learnt", "\r\n", |_| {
                    "Content-Type: image/jpeg\r\n".into()
                }),
            ),
        ];
        // A headerless stream has no blank line after the delimiter.
        let mut bare = b"preamble to ignore\r\n".to_vec();
        for j in jpegs() {
            bare.extend(b"--b\r\n");
            bare.extend(&j);
            bare.extend(b"\r\n");
        }
        bare.extend(b"--b--\r\nepilogue");
        v.push(("delimiters between parts, close delimiter", Some("b"), bare));
        // Extra dashes and a part headers block holding another delimiter line.
        let mut odd = Vec::new();
        for j in jpegs() {
            odd.extend(b"--b\r\n--b\r\nContent-Type: image/jpeg\r\n\r\n");
            odd.extend(&j);
            odd.extend(b"\n");
        }
        v.push(("empty parts before each", Some("b"), odd));
        v
    }

    #[test]
    fn every_quirk_gives_the_three_jpegs() {
        let want = jpegs().to_vec();
        for (name, boundary, s) in quirky_streams() {
            let (events, stats) = parse(boundary, 1 << 20, [&s[..]]);
            assert_eq!(bodies(&events), want, "{name}: {events:?}");
            let begins = events.iter().filter(|e| **e == Ev::Begin).count();
            assert!(begins >= 3, "{name}: {begins} begins");
            if !name.contains("close delimiter") {
                assert_eq!(stats.garbage, 0, "{name}"); // that one has a preamble
            }
            assert_eq!(stats.dropped, 0, "{name}");
        }
    }

    #[test]
    fn every_split_point_gives_the_same_parts() {
        for (name, boundary, s) in quirky_streams() {
            let (whole, _) = parse(boundary, 1 << 20, [&s[..]]);
            for i in 0..=s.len() {
                let (split, _) = parse(boundary, 1 << 20, [&s[..i], &s[i..]]);
                assert_eq!(bodies(&split), bodies(&whole), "{name}: split at {i}");
            }
            let (bytes, _) = parse(boundary, 1 << 20, s.chunks(1));
            assert_eq!(bodies(&bytes), bodies(&whole), "{name}: byte by byte");
            // Random chunkings, three cuts each.
            let mut rng = fastrand::Rng::with_seed(7);
            for _ in 0..200 {
                let mut cuts: Vec<usize> = (0..3).map(|_| rng.usize(0..=s.len())).collect();
                cuts.sort_unstable();
                let chunks = [
                    &s[..cuts[0]],
                    &s[cuts[0]..cuts[1]],
                    &s[cuts[1]..cuts[2]],
                    &s[cuts[2]..],
                ];
                let (r, _) = parse(boundary, 1 << 20, chunks);
                assert_eq!(bodies(&r), bodies(&whole), "{name}: cuts {cuts:?}");
            }
        }
    }

    #[test]
    fn parts_carry_their_headers() {
        let j = fake_jpeg(8, 8, 0);
        let mut s = b"--b\r\nContent-Type: image/jpeg\r\nX-Timestamp: 1.5\r\n".to_vec();
        s.extend(format!("Content-Length: {}\r\n\r\n", j.len()).bytes());
        s.extend(&j);
        let mut p = Parser::new(Some("b"), 1000);
        let (n, ev) = p.push(&s);
        assert_eq!((n, ev), (5, Some(Event::Begin)));
        let (n, ev) = p.push(&s[5..]);
        assert_eq!(n, s.len() - 5);
        let Some(Event::Part(part)) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(part.body, &j[..]);
        assert_eq!(part.header("x-timestamp"), Some("1.5"));
        assert_eq!(part.header("Content-Type"), Some("image/jpeg"));
        assert_eq!(part.content_length(), Some(j.len()));
        assert_eq!(part.header("missing"), None);
        assert_eq!(p.push(&[]), (0, None));
        assert_eq!(p.boundary(), Some("b"));
    }

    #[test]
    fn a_part_without_length_ends_with_its_jpeg_not_the_next_delimiter() {
        // Servers that write the delimiter before each part only send the next one with
        // the next frame: the part must not wait for it.
        let j = fake_jpeg(8, 8, 0);
        let mut p = Parser::new(Some("frame"), 1000);
        let mut out = Vec::new();
        push_all(
            &mut p,
            b"--frame\r\nContent-Type: image/jpeg\r\n\r\n",
            &mut out,
        );
        push_all(&mut p, &j[..j.len() - 1], &mut out);
        assert_eq!(out, [Ev::Begin]);
        push_all(&mut p, &j[j.len() - 1..], &mut out);
        assert_eq!(bodies(&out), [&j[..]]);
        // An EXIF thumbnail's end marker inside an APP1 segment does not end the part.
        let mut with_thumb = vec![0xFF, 0xD8, 0xFF, 0xE1, 0, 6, 0xFF, 0xD8, 0xFF, 0xD9];
        let mut p = Parser::new(Some("frame"), 1000);
        let mut out = Vec::new();
        push_all(&mut p, b"--frame\r\n\r\n", &mut out);
        push_all(&mut p, &with_thumb, &mut out);
        assert_eq!(out, [Ev::Begin]);
        with_thumb.extend(&j[2..]);
        push_all(&mut p, &j[2..], &mut out);
        assert_eq!(bodies(&out), [with_thumb]);
    }

    #[test]
    fn too_large_parts_are_dropped_and_the_next_ones_kept() {
        let j = fake_jpeg(1, 1, 0);
        let mut big = j[..j.len() - 2].to_vec();
        big.extend([0x55; 1000]); // a 1 kB scan, never held
        big.extend([0xFF, 0xD9]);
        let small = fake_jpeg(2, 2, 9);
        let max = 100;
        for with_len in [true, false] {
            let mut s = Vec::new();
            for j in [&big, &small, &big, &small] {
                s.extend(b"\r\n--b\r\nContent-Type: image/jpeg\r\n");
                if with_len {
                    s.extend(format!("Content-Length: {}\r\n", j.len()).bytes());
                }
                s.extend(b"\r\n");
                s.extend(j);
            }
            s.extend(b"\r\n--b\r\n");
            for chunk in [s.len(), 7, 1] {
                let (events, stats) = parse(Some("b"), max, s.chunks(chunk));
                assert_eq!(bodies(&events), [small.clone(), small.clone()], "{chunk}");
                let dropped: Vec<_> = events
                    .iter()
                    .filter(|e| matches!(e, Ev::Dropped(Dropped::TooLarge { .. })))
                    .collect();
                assert_eq!(dropped.len(), 2, "len {with_len} chunk {chunk}: {events:?}");
                assert_eq!((stats.parts, stats.dropped), (2, 2));
            }
        }
    }

    #[test]
    fn oversized_headers_are_dropped_and_the_stream_resyncs() {
        let j = fake_jpeg(4, 4, 1);
        let mut s = b"--b\r\n".to_vec();
        for i in 0..2000 {
            s.extend(format!("X-Junk-{i}: yes\r\n").bytes());
        }
        s.extend(b"\r\n");
        s.extend(&j);
        s.extend(b"\r\n--b\r\n\r\n");
        s.extend(&j);
        for chunk in [s.len(), 100, 1] {
            let (events, _) = parse(Some("b"), 1000, s.chunks(chunk));
            assert!(events.contains(&Ev::Dropped(Dropped::HeadersTooLarge)));
            assert_eq!(bodies(&events), [&j[..]], "{chunk}");
        }
    }

    #[test]
    fn garbage_and_lying_lengths_resynchronise() {
        let j = fake_jpeg(4, 4, 1);
        let part = |len: usize| {
            let mut p = format!("\r\n--b\r\nContent-Length: {len}\r\n\r\n").into_bytes();
            p.extend(&j);
            p
        };
        let mut s = b"HTTP junk before the first part\r\n".to_vec();
        s.extend(part(j.len()));
        s.extend(b"garbage between parts");
        s.extend(part(j.len() - 5)); // too short: its tail is garbage
        s.extend(part(j.len()));
        s.extend(part(j.len() + 30)); // too long: swallows the next delimiter
        s.extend(part(j.len()));
        s.extend(part(j.len()));
        s.extend(b"\r\n");
        let (events, stats) = parse(Some("b"), 1000, [&s[..]]);
        // The good parts: 1st, 3rd and the last (the 5th is swallowed by the 4th).
        assert_eq!(bodies(&events), [j.clone(), j.clone(), j.clone()]);
        let parts = events
            .iter()
            .filter(|e| matches!(e, Ev::Part { .. }))
            .count();
        assert_eq!(parts, 5, "the two liars are delivered, and fail the check");
        assert!(stats.garbage >= "garbage between parts".len() as u64);
    }

    #[test]
    fn the_end_of_the_stream_truncates_or_delimits() {
        let j = fake_jpeg(4, 4, 1);
        let mut s = format!("--b\r\nContent-Length: {}\r\n\r\n", j.len()).into_bytes();
        s.extend(&j[..10]);
        let (events, _) = parse(Some("b"), 1000, [&s[..]]);
        assert_eq!(events, [Ev::Begin, Ev::Dropped(Dropped::Truncated)]);
        let (events, _) = parse(Some("b"), 1000, [&b"--b\r\nContent-Le"[..]]);
        assert_eq!(events, [Ev::Begin, Ev::Dropped(Dropped::Truncated)]);
        // Without a length the end delimits the part: whole or not, the check decides.
        let mut s = b"--b\r\n\r\n".to_vec();
        s.extend(&j[..10]);
        let (events, _) = parse(Some("b"), 1000, [&s[..]]);
        let [Ev::Begin, Ev::Part { body, .. }] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(check_jpeg(body), Err(JpegCheckError::NoEnd));
        let (events, _) = parse(Some("b"), 1000, [&b"--b\r\n"[..]]);
        assert_eq!(events, [Ev::Begin]);
    }

    #[test]
    fn a_real_jpeg_through_every_split_of_its_stream() {
        let j = real_jpeg(64, 32, 5);
        let mut s = b"--b\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        s.extend(&j);
        s.extend(b"\r\n--b\r\n");
        for i in 0..=s.len() {
            let (events, _) = parse(Some("b"), 1 << 16, [&s[..i], &s[i..]]);
            assert_eq!(bodies(&events), [&j[..]], "split at {i}");
        }
    }

    #[test]
    fn hostile_input_never_panics_and_stays_bounded() {
        let mut rng = fastrand::Rng::with_seed(42);
        let (_, _, good) = quirky_streams().swap_remove(0);
        let alphabet = b"-\r\n\xFF\xD8\xD9\xDA\xC0:bB0123456789 Content-Length";
        for round in 0..3000 {
            let mut s = good.clone();
            match round % 3 {
                0 => {
                    // Random bytes from an alphabet full of syntax.
                    s = (0..rng.usize(0..2000))
                        .map(|_| alphabet[rng.usize(0..alphabet.len())])
                        .collect();
                }
                1 => {
                    for _ in 0..rng.usize(1..20) {
                        let i = rng.usize(0..s.len());
                        s[i] = rng.u8(..);
                    }
                }
                _ => {
                    let a = rng.usize(0..s.len());
                    let b = rng.usize(a..s.len());
                    s.drain(a..b);
                }
            }
            let boundary = ["123456789000000000000987654321", "b", "--b"][round % 3];
            let boundary = (round % 7 != 0).then_some(boundary);
            let chunk = rng.usize(1..64);
            let _ = parse(boundary, 500, s.chunks(chunk));
        }
        // A server that sends nothing but an endless header or body stays bounded.
        let mut p = Parser::new(Some("b"), 1000);
        let mut out = Vec::new();
        push_all(&mut p, b"--b\r\n", &mut out);
        for _ in 0..100 {
            push_all(&mut p, &[b'x'; 1000], &mut out);
        }
        push_all(&mut p, b"\r\n\r\n", &mut out);
        for _ in 0..100 {
            push_all(&mut p, &[0xAB; 1000], &mut out);
        }
        assert!(out.contains(&Ev::Dropped(Dropped::HeadersTooLarge)));
        let mut p = Parser::new(None, 1000);
        for _ in 0..100 {
            push_all(&mut p, &[b'-'; 1000], &mut out);
        }
        assert!(p.buffered() <= MAX_DELIMITER_LINE + 1);
        assert_eq!(p.boundary(), None);
    }
}
