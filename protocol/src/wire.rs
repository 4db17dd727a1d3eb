//! The network message: one binary message per multi-frame, shared by the WebSocket, QUIC
//! and UDP adapters (specified for client writers in `docs/protocol.md`).
//!
//! A message is a 48-byte [`MessageHeader`], then one 48-byte entry ([`CameraInfo`] and
//! the payload length) per camera, then the payloads concatenated in entry order:
//!
//! ```text
//! 0        48        96                48 + 48·n
//! +--------+---------+-----+-----------+-----------+-----------+-----+
//! | header | entry 0 | ... | entry n−1 | payload 0 | payload 1 | ... |
//! +--------+---------+-----+-----------+-----------+-----------+-----+
//! ```
//!
//! Every integer is little-endian and every field is naturally aligned relative to the
//! message start (a `u64` at a multiple of 8), so a JavaScript `DataView` or a Python
//! `struct` format reads it directly, and the payloads start at a multiple of 8.
//!
//! There is one encoder and one parser. [`encode_prefix`] writes the header and entries
//! given only the payload lengths, so an adapter sends the prefix and the payloads it
//! already holds as separate slices (vectored writes, no second copy); [`Message::encode`]
//! builds a whole message. [`parse`] validates everything and borrows the payloads from
//! its input. The encoder refuses exactly what the parser would refuse, so
//! `parse(encode(m)) == m` for every message it accepts.

use std::fmt;
use std::ops::Deref;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::format::PixelFormat;

/// First four bytes of every message: ASCII `CAMF` ("camring multi-frame").
pub const MAGIC: [u8; 4] = *b"CAMF";
/// Message format version; a parser refuses any other.
pub const VERSION: u32 = 1;
/// Size of the message header.
pub const HEADER_SIZE: usize = 48;
/// Size of one camera entry.
pub const ENTRY_SIZE: usize = 48;
/// Most cameras one message may carry (as many as a ring slot).
pub const MAX_CAMERAS: usize = crate::layout::MAX_CAMERAS;
/// Largest header plus entries: 816 bytes.
pub const MAX_PREFIX_SIZE: usize = HEADER_SIZE + MAX_CAMERAS * ENTRY_SIZE;

/// Camera flag: the camera had nothing fresh; this is its previous image again (as
/// [`crate::layout::CAM_REPEATED`]).
pub const CAM_REPEATED: u32 = crate::layout::CAM_REPEATED;
/// Camera flag: the camera has no image in this multi-frame; its payload is empty (as
/// [`crate::layout::CAM_MISSING`]).
pub const CAM_MISSING: u32 = crate::layout::CAM_MISSING;
/// Camera flag: the image is the synthetic test pattern (as
/// [`crate::layout::CAM_SYNTHETIC`]).
pub const CAM_SYNTHETIC: u32 = crate::layout::CAM_SYNTHETIC;
/// Camera flag: the adapter re-encoded the image (raw to JPEG, or JPEG at another quality);
/// the payload is not the ring's bytes. A synthetic pattern is then only approximately
/// intact.
pub const CAM_REENCODED: u32 = 1 << 3;
/// Camera flag: the adapter downscaled the image; `width` and `height` are the sent size.
/// A synthetic pattern cannot be verified exactly.
pub const CAM_DOWNSCALED: u32 = 1 << 4;

/// The header as laid out on the wire.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawHeader {
    magic: [u8; 4],
    version: U32,
    camera_count: U32,
    flags: U32,
    frame: U64,
    tick_ns: U64,
    publish_ns: U64,
    send_ns: U64,
}

/// One camera entry as laid out on the wire.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawEntry {
    camera_id: U32,
    format: U32,
    width: U32,
    height: U32,
    stride: U32,
    flags: U32,
    length: U32,
    reserved: U32,
    capture_ns: U64,
    sequence: U64,
}

const _: () = assert!(size_of::<RawHeader>() == HEADER_SIZE);
const _: () = assert!(size_of::<RawEntry>() == ENTRY_SIZE);
const _: () = assert!(HEADER_SIZE.is_multiple_of(8) && ENTRY_SIZE.is_multiple_of(8));
/// Byte offset of the reserved `u32` inside an entry (written as zero, ignored when read).
const ENTRY_RESERVED_OFFSET: usize = 28;
const _: () = assert!(std::mem::offset_of!(RawEntry, reserved) == ENTRY_RESERVED_OFFSET);

/// The multi-frame's own fields. Timestamps are nanoseconds since the Unix epoch
/// (CLOCK_REALTIME of the machine that took them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageHeader {
    /// The ring's frame number (it grows by one per multi-frame the producer publishes;
    /// a client sees gaps where frames were skipped or dropped for it).
    pub frame: u64,
    /// The group clock tick this multi-frame belongs to (ring `tick_ns`).
    pub tick_ns: u64,
    /// When the producer published it into the ring (ring `publish_ns`).
    pub publish_ns: u64,
    /// When the adapter sent this message (taken just before encoding it).
    pub send_ns: u64,
    /// Message flags. None is defined in version 1: senders write 0, parsers keep
    /// whatever is there and clients ignore bits they do not know.
    pub flags: u32,
}

/// One camera's metadata in a message (a subset of the ring's `CameraEntry`; the payload
/// length is passed next to it when encoding and is the payload slice's length when
/// parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraInfo {
    /// The camera's id: its index in the producer's group.
    pub camera_id: u32,
    /// How the payload is encoded.
    pub format: PixelFormat,
    /// Width in pixels, as sent (after any downscaling).
    pub width: u32,
    /// Height in pixels, as sent.
    pub height: u32,
    /// Bytes per row for raw formats (every plane); 0 for JPEG.
    pub stride: u32,
    /// `CAM_*` flags. Bits other than those defined are kept and ignored.
    pub flags: u32,
    /// Capture time of the image, ns since the Unix epoch.
    pub capture_ns: u64,
    /// The camera's own frame counter (for the synthetic source, the number encoded in
    /// the pixels).
    pub sequence: u64,
}

impl CameraInfo {
    /// Whether the camera has no image in this message (its payload is empty).
    pub fn is_missing(&self) -> bool {
        self.flags & CAM_MISSING != 0
    }

    /// Checks this entry with a payload of `length` bytes, with the rules [`parse`]
    /// applies: a missing camera has no payload; a present JPEG has a non-empty payload
    /// and stride 0; a present raw image has legal dimensions, a stride of at least one
    /// packed row, and exactly `rows × stride` bytes.
    pub fn check(&self, length: u64) -> Result<(), CameraError> {
        if self.is_missing() {
            return if length == 0 {
                Ok(())
            } else {
                Err(CameraError::MissingWithPayload(length))
            };
        }
        if length == 0 {
            return Err(CameraError::EmptyPayload);
        }
        let fits = if self.format.is_raw() {
            self.format.dimensions_ok(self.width, self.height)
                && self
                    .format
                    .min_stride(self.width)
                    .is_some_and(|m| u64::from(self.stride) >= m)
                && self.format.raw_len(u64::from(self.stride), self.height) == Some(length)
        } else {
            self.stride == 0
        };
        if fits {
            Ok(())
        } else {
            Err(CameraError::Geometry {
                width: self.width,
                height: self.height,
                stride: self.stride,
                length,
            })
        }
    }
}

/// One camera of a message: its metadata and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraFrame<'a> {
    /// The metadata.
    pub info: CameraInfo,
    /// The payload (empty for a missing camera).
    pub payload: &'a [u8],
}

/// A parsed (or to be encoded) message: the header and each camera with its payload, in
/// entry order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message<'a> {
    /// The multi-frame's fields.
    pub header: MessageHeader,
    /// The cameras, at most [`MAX_CAMERAS`], each id at most once.
    pub cameras: Vec<CameraFrame<'a>>,
}

/// Why a camera entry is refused (by [`parse`] and by the encoder alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    /// The format code is not a known [`PixelFormat`].
    #[error("unknown pixel format code {0}")]
    Format(u32),
    /// A camera flagged missing carries a payload.
    #[error("missing camera carries {0} payload bytes")]
    MissingWithPayload(u64),
    /// A camera that is not missing has an empty payload.
    #[error("camera is not missing but its payload is empty")]
    EmptyPayload,
    /// A raw image's dimensions, stride and length disagree, or a JPEG has a stride.
    #[error("{width}x{height} stride {stride} does not match a {length}-byte payload")]
    Geometry {
        /// Width found.
        width: u32,
        /// Height found.
        height: u32,
        /// Stride found.
        stride: u32,
        /// Payload length found.
        length: u64,
    },
    /// Another entry of the same message has this camera id.
    #[error("camera id {0} appears twice")]
    DuplicateId(u32),
    /// The payload is longer than a `u32` length can say (encoder only).
    #[error("payload of {0} bytes is too large for one message")]
    PayloadTooLarge(u64),
}

/// Why [`parse`] refused a message. Hostile input yields one of these, never a panic or an
/// allocation larger than [`MAX_CAMERAS`] entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message does not start with [`MAGIC`]: not a camring stream.
    #[error("not a camring multi-frame message (bad magic)")]
    BadMagic,
    /// The message format version is not [`VERSION`].
    #[error("unsupported message version {found} (this camring reads version {VERSION})")]
    Version {
        /// Version found.
        found: u32,
    },
    /// The message ends inside its header or camera entries.
    #[error("message truncated: {actual} bytes, header and entries need {needed}")]
    Truncated {
        /// Bytes the header and entries need.
        needed: usize,
        /// Bytes there are.
        actual: usize,
    },
    /// More cameras than [`MAX_CAMERAS`].
    #[error("message claims {0} cameras (at most {MAX_CAMERAS})")]
    CameraCount(u32),
    /// A camera entry is invalid.
    #[error("camera entry {index}: {error}")]
    Camera {
        /// Index of the entry in the message.
        index: usize,
        /// What is wrong with it.
        error: CameraError,
    },
    /// The payload lengths do not add up to the bytes after the entries (too few: the
    /// message is truncated; too many: there are trailing bytes).
    #[error("payload lengths add up to {declared} bytes but {actual} follow the entries")]
    PayloadLength {
        /// Sum of the entries' lengths.
        declared: u64,
        /// Bytes after the entries.
        actual: usize,
    },
}

/// Why the encoder refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More cameras than [`MAX_CAMERAS`].
    #[error("{0} cameras do not fit one message (at most {MAX_CAMERAS})")]
    CameraCount(usize),
    /// A camera entry would be refused by the parser.
    #[error("camera {index}: {error}")]
    Camera {
        /// Index of the camera in the message.
        index: usize,
        /// What is wrong with it.
        error: CameraError,
    },
}

/// The encoded header and camera entries of one message, on the stack (at most
/// [`MAX_PREFIX_SIZE`] bytes). Send it followed by the payloads in entry order.
#[derive(Clone)]
pub struct Prefix {
    bytes: [u8; MAX_PREFIX_SIZE],
    len: usize,
    payload_len: u64,
}

impl Prefix {
    /// The header and entries.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Total bytes of the payloads that must follow.
    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// Size of the whole message: prefix plus payloads.
    pub fn message_len(&self) -> u64 {
        self.len as u64 + self.payload_len
    }
}

impl Deref for Prefix {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Prefix {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefix")
            .field("len", &self.len)
            .field("payload_len", &self.payload_len)
            .finish_non_exhaustive()
    }
}

/// Bytes of header and entries for `camera_count` cameras.
pub const fn prefix_len(camera_count: usize) -> usize {
    HEADER_SIZE + camera_count * ENTRY_SIZE
}

/// Encodes the header and entries of a message whose cameras have the given metadata and
/// payload lengths, in order. The payloads themselves are not needed: send the returned
/// prefix, then the payloads in the same order (for example as vectored-write slices).
///
/// Refuses more than [`MAX_CAMERAS`] cameras, a repeated camera id, a length above
/// `u32::MAX`, and any entry [`CameraInfo::check`] refuses.
pub fn encode_prefix<I>(header: &MessageHeader, cameras: I) -> Result<Prefix, EncodeError>
where
    I: IntoIterator<Item = (CameraInfo, usize)>,
{
    let mut prefix = Prefix {
        bytes: [0; MAX_PREFIX_SIZE],
        len: HEADER_SIZE,
        payload_len: 0,
    };
    let mut ids = [0u32; MAX_CAMERAS];
    let mut count = 0usize;
    for (index, (info, length)) in cameras.into_iter().enumerate() {
        if index >= MAX_CAMERAS {
            return Err(EncodeError::CameraCount(index + 1));
        }
        let camera_error = |error| EncodeError::Camera { index, error };
        let length64 = length as u64;
        let wire_length = u32::try_from(length)
            .map_err(|_| camera_error(CameraError::PayloadTooLarge(length64)))?;
        info.check(length64).map_err(camera_error)?;
        if ids[..count].contains(&info.camera_id) {
            return Err(camera_error(CameraError::DuplicateId(info.camera_id)));
        }
        ids[count] = info.camera_id;
        count += 1;
        let entry = RawEntry {
            camera_id: info.camera_id.into(),
            format: info.format.code().into(),
            width: info.width.into(),
            height: info.height.into(),
            stride: info.stride.into(),
            flags: info.flags.into(),
            length: wire_length.into(),
            reserved: 0.into(),
            capture_ns: info.capture_ns.into(),
            sequence: info.sequence.into(),
        };
        let at = prefix_len(index);
        prefix.bytes[at..at + ENTRY_SIZE].copy_from_slice(entry.as_bytes());
        prefix.payload_len += length64;
    }
    let raw = RawHeader {
        magic: MAGIC,
        version: VERSION.into(),
        camera_count: (count as u32).into(),
        flags: header.flags.into(),
        frame: header.frame.into(),
        tick_ns: header.tick_ns.into(),
        publish_ns: header.publish_ns.into(),
        send_ns: header.send_ns.into(),
    };
    prefix.bytes[..HEADER_SIZE].copy_from_slice(raw.as_bytes());
    prefix.len = prefix_len(count);
    Ok(prefix)
}

impl Message<'_> {
    /// The prefix of this message (see [`encode_prefix`]).
    pub fn prefix(&self) -> Result<Prefix, EncodeError> {
        if self.cameras.len() > MAX_CAMERAS {
            return Err(EncodeError::CameraCount(self.cameras.len()));
        }
        encode_prefix(
            &self.header,
            self.cameras.iter().map(|c| (c.info, c.payload.len())),
        )
    }

    /// Appends the whole encoded message to `out` (which is left unchanged on error).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let prefix = self.prefix()?;
        out.reserve(usize::try_from(prefix.message_len()).unwrap_or(usize::MAX));
        out.extend_from_slice(&prefix);
        for c in &self.cameras {
            out.extend_from_slice(c.payload);
        }
        Ok(())
    }

    /// The whole encoded message.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

/// Parses and validates one message, borrowing the payloads from `bytes`.
///
/// Checks, in order: the magic (on as many of its bytes as there are), the version, the
/// header's length, the camera count (at most [`MAX_CAMERAS`]), the entries' length, each
/// entry (known format, [`CameraInfo::check`], no repeated camera id), and that the
/// payload lengths add up exactly to the bytes after the entries.
pub fn parse(bytes: &[u8]) -> Result<Message<'_>, WireError> {
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(WireError::BadMagic);
    }
    let truncated = |needed| WireError::Truncated {
        needed,
        actual: bytes.len(),
    };
    if let Some(version) = bytes.get(4..8) {
        let found = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
        if found != VERSION {
            return Err(WireError::Version { found });
        }
    }
    let (raw, rest) = RawHeader::ref_from_prefix(bytes).map_err(|_| truncated(HEADER_SIZE))?;
    let count = raw.camera_count.get();
    if count as usize > MAX_CAMERAS {
        return Err(WireError::CameraCount(count));
    }
    let count = count as usize;
    let (entries, mut payloads) = <[RawEntry]>::ref_from_prefix_with_elems(rest, count)
        .map_err(|_| truncated(prefix_len(count)))?;

    let mut cameras = Vec::with_capacity(count);
    let mut declared = 0u64;
    for (index, e) in entries.iter().enumerate() {
        let camera_error = |error| WireError::Camera { index, error };
        let code = e.format.get();
        let format =
            PixelFormat::from_code(code).ok_or_else(|| camera_error(CameraError::Format(code)))?;
        let info = CameraInfo {
            camera_id: e.camera_id.get(),
            format,
            width: e.width.get(),
            height: e.height.get(),
            stride: e.stride.get(),
            flags: e.flags.get(),
            capture_ns: e.capture_ns.get(),
            sequence: e.sequence.get(),
        };
        let length = u64::from(e.length.get());
        info.check(length).map_err(camera_error)?;
        if entries[..index]
            .iter()
            .any(|other| other.camera_id == e.camera_id)
        {
            return Err(camera_error(CameraError::DuplicateId(info.camera_id)));
        }
        // At most 16 lengths below 2^32 each: the sum cannot overflow a u64.
        declared += length;
        cameras.push(info);
    }
    if declared != payloads.len() as u64 {
        return Err(WireError::PayloadLength {
            declared,
            actual: payloads.len(),
        });
    }
    let cameras = cameras
        .into_iter()
        .zip(entries)
        .map(|(info, e)| {
            let (payload, tail) = payloads.split_at(e.length.get() as usize);
            payloads = tail;
            CameraFrame { info, payload }
        })
        .collect();
    Ok(Message {
        header: MessageHeader {
            frame: raw.frame.get(),
            tick_ns: raw.tick_ns.get(),
            publish_ns: raw.publish_ns.get(),
            send_ns: raw.send_ns.get(),
            flags: raw.flags.get(),
        },
        cameras,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 1_700_000_000_000_000_000;
    const JPEG: [u8; 4] = [0xFF, 0xD8, 0xFF, 0xD9];
    const GRAY: [u8; 8] = [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80];

    /// The worked example of `docs/protocol.md`: cameras 0 and 2 of a group, one a
    /// (shortened) JPEG the adapter re-encoded and downscaled, one a repeated 4×2 GRAY8
    /// synthetic image.
    fn example() -> Message<'static> {
        Message {
            header: MessageHeader {
                frame: 1234,
                tick_ns: TICK,
                publish_ns: TICK + 1_500_000,
                send_ns: TICK + 4_000_000,
                flags: 0,
            },
            cameras: vec![
                CameraFrame {
                    info: CameraInfo {
                        camera_id: 0,
                        format: PixelFormat::Jpeg,
                        width: 640,
                        height: 360,
                        stride: 0,
                        flags: CAM_REENCODED | CAM_DOWNSCALED,
                        capture_ns: TICK - 2_000_000,
                        sequence: 1230,
                    },
                    payload: &JPEG,
                },
                CameraFrame {
                    info: CameraInfo {
                        camera_id: 2,
                        format: PixelFormat::Gray8,
                        width: 4,
                        height: 2,
                        stride: 4,
                        flags: CAM_REPEATED | CAM_SYNTHETIC,
                        capture_ns: TICK - 35_000_000,
                        sequence: 1199,
                    },
                    payload: &GRAY,
                },
            ],
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The example as the document lists it: one field per line.
    fn annotated(m: &Message<'_>, bytes: &[u8]) -> String {
        let mut out = String::from("```text\noffset  bytes                    field\n");
        let mut at = 0;
        let mut line = |len: usize, what: String| {
            out += &format!("{at:>6}  {:<23}  {what}\n", hex(&bytes[at..at + len]));
            at += len;
        };
        let h = &m.header;
        line(4, "magic \"CAMF\"".into());
        line(4, format!("version {VERSION}"));
        line(4, format!("camera_count {}", m.cameras.len()));
        line(4, format!("flags {}", h.flags));
        line(8, format!("frame {}", h.frame));
        line(8, format!("tick_ns {}", h.tick_ns));
        line(8, format!("publish_ns {}", h.publish_ns));
        line(8, format!("send_ns {}", h.send_ns));
        for (i, c) in m.cameras.iter().enumerate() {
            let c = &c.info;
            line(4, format!("entry {i}: camera_id {}", c.camera_id));
            line(4, format!("  format {} ({})", c.format.code(), c.format));
            line(4, format!("  width {}", c.width));
            line(4, format!("  height {}", c.height));
            line(4, format!("  stride {}", c.stride));
            line(4, format!("  flags 0x{:x}", c.flags));
            line(4, format!("  length {}", m.cameras[i].payload.len()));
            line(4, "  reserved".into());
            line(8, format!("  capture_ns {}", c.capture_ns));
            line(8, format!("  sequence {}", c.sequence));
        }
        for (i, c) in m.cameras.iter().enumerate() {
            line(c.payload.len(), format!("payload {i}"));
        }
        assert_eq!(at, bytes.len());
        out + "```\n"
    }

    /// The example as the document dumps it: 16 bytes per line, no offsets.
    fn dump(bytes: &[u8]) -> String {
        let lines: Vec<String> = bytes.chunks(16).map(hex).collect();
        format!("```text\n{}\n```\n", lines.join("\n"))
    }

    #[test]
    fn doc_example_matches_the_encoder() {
        let doc = include_str!("../../docs/protocol.md");
        let m = example();
        let bytes = m.encode().unwrap();
        assert_eq!(bytes.len(), 48 + 2 * 48 + 12);
        assert_eq!(parse(&bytes).unwrap(), m);
        for block in [annotated(&m, &bytes), dump(&bytes)] {
            assert!(
                doc.contains(&block),
                "docs/protocol.md lacks this block (paste it in):\n{block}"
            );
        }
    }

    #[test]
    fn layout_offsets() {
        let bytes = example().encode().unwrap();
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        assert_eq!(&bytes[0..4], b"CAMF");
        assert_eq!(u32_at(4), 1);
        assert_eq!(u32_at(8), 2);
        assert_eq!(u32_at(12), 0);
        assert_eq!(u64_at(16), 1234);
        assert_eq!(u64_at(24), TICK);
        assert_eq!(u64_at(32), TICK + 1_500_000);
        assert_eq!(u64_at(40), TICK + 4_000_000);
        let e1 = 48 + 48;
        assert_eq!(u32_at(e1), 2);
        assert_eq!(u32_at(e1 + 4), PixelFormat::Gray8.code());
        assert_eq!(u32_at(e1 + 8), 4);
        assert_eq!(u32_at(e1 + 12), 2);
        assert_eq!(u32_at(e1 + 16), 4);
        assert_eq!(u32_at(e1 + 20), CAM_REPEATED | CAM_SYNTHETIC);
        assert_eq!(u32_at(e1 + 24), 8);
        assert_eq!(u32_at(e1 + 28), 0);
        assert_eq!(u64_at(e1 + 32), TICK - 35_000_000);
        assert_eq!(u64_at(e1 + 40), 1199);
        assert_eq!(&bytes[144..148], &JPEG);
        assert_eq!(&bytes[148..], &GRAY);
    }

    #[test]
    fn prefix_plus_payloads_is_the_message() {
        let m = example();
        let prefix = encode_prefix(
            &m.header,
            m.cameras.iter().map(|c| (c.info, c.payload.len())),
        )
        .unwrap();
        assert_eq!(prefix.len(), prefix_len(2));
        assert_eq!(prefix.payload_len(), 12);
        assert_eq!(prefix.message_len(), 156);
        let mut joined = prefix.to_vec();
        joined.extend_from_slice(&JPEG);
        joined.extend_from_slice(&GRAY);
        assert_eq!(joined, m.encode().unwrap());
        let mut appended = vec![9, 9];
        m.encode_into(&mut appended).unwrap();
        assert_eq!(appended[2..], joined[..]);
    }

    #[test]
    fn empty_and_full_messages_round_trip() {
        let empty = Message::default();
        let bytes = empty.encode().unwrap();
        assert_eq!(bytes.len(), HEADER_SIZE);
        assert_eq!(parse(&bytes).unwrap(), empty);

        let payloads: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let full = Message {
            header: MessageHeader {
                frame: u64::MAX,
                tick_ns: u64::MAX,
                publish_ns: 0,
                send_ns: 1,
                flags: u32::MAX,
            },
            cameras: payloads
                .iter()
                .enumerate()
                .map(|(i, p)| CameraFrame {
                    info: CameraInfo {
                        camera_id: u32::MAX - i as u32,
                        format: PixelFormat::Jpeg,
                        width: u32::MAX,
                        height: 0,
                        stride: 0,
                        flags: !CAM_MISSING,
                        capture_ns: u64::MAX,
                        sequence: i as u64,
                    },
                    payload: p,
                })
                .collect(),
        };
        let bytes = full.encode().unwrap();
        assert_eq!(bytes.len(), MAX_PREFIX_SIZE + (1..=16).sum::<usize>());
        assert_eq!(parse(&bytes).unwrap(), full);
    }

    #[test]
    fn missing_camera_has_no_payload() {
        let mut m = example();
        m.cameras[1].info.flags = CAM_MISSING;
        m.cameras[1].payload = &[];
        let bytes = m.encode().unwrap();
        assert_eq!(parse(&bytes).unwrap(), m);
        // Geometry is not checked for a missing camera.
        m.cameras[1].info.stride = 1;
        assert_eq!(parse(&m.encode().unwrap()).unwrap(), m);
    }

    /// The example encoded, after `edit` changed the 48 bytes of its entry 1.
    fn with_entry(edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut bytes = example().encode().unwrap();
        edit(&mut bytes[HEADER_SIZE + ENTRY_SIZE..HEADER_SIZE + 2 * ENTRY_SIZE]);
        bytes
    }

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn camera_err(bytes: &[u8]) -> CameraError {
        match parse(bytes) {
            Err(WireError::Camera { index: 1, error }) => error,
            other => panic!("expected an error in entry 1, got {other:?}"),
        }
    }

    #[test]
    fn every_header_error() {
        let good = example().encode().unwrap();
        assert_eq!(
            parse(b""),
            Err(WireError::Truncated {
                needed: 48,
                actual: 0
            })
        );
        assert_eq!(
            parse(b"CA"),
            Err(WireError::Truncated {
                needed: 48,
                actual: 2
            })
        );
        assert_eq!(parse(b"CX"), Err(WireError::BadMagic));
        assert_eq!(parse(b"{\"type\":\"stats\"}"), Err(WireError::BadMagic));
        let mut bad = good.clone();
        bad[3] = b'G';
        assert_eq!(parse(&bad), Err(WireError::BadMagic));
        let mut bad = good.clone();
        put32(&mut bad, 4, 2);
        assert_eq!(parse(&bad), Err(WireError::Version { found: 2 }));
        // A version is reported as soon as its four bytes are there.
        assert_eq!(parse(&bad[..8]), Err(WireError::Version { found: 2 }));
        put32(&mut bad, 4, 0x0100_0000);
        assert_eq!(parse(&bad), Err(WireError::Version { found: 0x0100_0000 }));
        let mut bad = good.clone();
        put32(&mut bad, 8, 17);
        assert_eq!(parse(&bad), Err(WireError::CameraCount(17)));
        put32(&mut bad, 8, u32::MAX);
        assert_eq!(parse(&bad), Err(WireError::CameraCount(u32::MAX)));
        let mut bad = good.clone();
        put32(&mut bad, 8, 16);
        assert_eq!(
            parse(&bad),
            Err(WireError::Truncated {
                needed: MAX_PREFIX_SIZE,
                actual: good.len()
            })
        );
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(
            parse(&bad),
            Err(WireError::PayloadLength {
                declared: 12,
                actual: 13
            })
        );
        assert_eq!(
            parse(&good[..good.len() - 1]),
            Err(WireError::PayloadLength {
                declared: 12,
                actual: 11
            })
        );
        // One camera declared instead of two: the second entry reads as payload.
        let mut bad = good.clone();
        put32(&mut bad, 8, 1);
        assert_eq!(
            parse(&bad),
            Err(WireError::PayloadLength {
                declared: 4,
                actual: 48 + 12
            })
        );
    }

    #[test]
    fn every_entry_error() {
        for code in [0, 7, u32::MAX] {
            let bad = with_entry(|e| put32(e, 4, code));
            assert_eq!(camera_err(&bad), CameraError::Format(code));
        }
        let bad = with_entry(|e| put32(e, 20, CAM_MISSING));
        assert_eq!(camera_err(&bad), CameraError::MissingWithPayload(8));
        let bad = with_entry(|e| put32(e, 24, 0));
        assert_eq!(camera_err(&bad), CameraError::EmptyPayload);
        let geometry = |width, height, stride, length| CameraError::Geometry {
            width,
            height,
            stride,
            length,
        };
        // GRAY8 4x2 stride 4 needs exactly 8 bytes.
        let bad = with_entry(|e| put32(e, 24, 9));
        assert_eq!(camera_err(&bad), geometry(4, 2, 4, 9));
        let bad = with_entry(|e| put32(e, 16, 3));
        assert_eq!(camera_err(&bad), geometry(4, 2, 3, 8));
        let bad = with_entry(|e| put32(e, 8, 0));
        assert_eq!(camera_err(&bad), geometry(0, 2, 4, 8));
        let bad = with_entry(|e| {
            put32(e, 12, u32::MAX);
            put32(e, 16, u32::MAX);
        });
        assert_eq!(camera_err(&bad), geometry(4, u32::MAX, u32::MAX, 8));
        // YUYV needs an even width: 3x2 at stride 4 would be 8 bytes.
        let bad = with_entry(|e| {
            put32(e, 4, PixelFormat::Yuyv.code());
            put32(e, 8, 3);
            put32(e, 16, 6);
            put32(e, 24, 12);
        });
        assert!(matches!(camera_err(&bad), CameraError::Geometry { .. }));
        // A JPEG has no stride.
        let bad = with_entry(|e| put32(e, 4, PixelFormat::Jpeg.code()));
        assert_eq!(camera_err(&bad), geometry(4, 2, 4, 8));
        let bad = with_entry(|e| put32(e, 0, 0));
        assert_eq!(camera_err(&bad), CameraError::DuplicateId(0));
        // The reserved word is ignored.
        let odd = with_entry(|e| put32(e, ENTRY_RESERVED_OFFSET, 0xDEAD_BEEF));
        assert_eq!(parse(&odd).unwrap(), example());
    }

    #[test]
    fn every_encode_error() {
        let m = example();
        let info = m.cameras[0].info;
        let header = MessageHeader::default();
        let too_many = (0..17).map(|i| {
            (
                CameraInfo {
                    camera_id: i,
                    ..info
                },
                1,
            )
        });
        assert_eq!(
            encode_prefix(&header, too_many).unwrap_err(),
            EncodeError::CameraCount(17)
        );
        let mut big = m.clone();
        big.cameras = (0..17).map(|_| m.cameras[0]).collect();
        assert_eq!(big.encode(), Err(EncodeError::CameraCount(17)));
        assert_eq!(
            encode_prefix(&header, [(info, 1usize << 32)]).unwrap_err(),
            EncodeError::Camera {
                index: 0,
                error: CameraError::PayloadTooLarge(1 << 32)
            }
        );
        assert_eq!(
            encode_prefix(&header, [(info, 1), (info, 1)]).unwrap_err(),
            EncodeError::Camera {
                index: 1,
                error: CameraError::DuplicateId(0)
            }
        );
        let mut bad = m.clone();
        bad.cameras[1].payload = &GRAY[..7];
        let mut out = vec![1];
        assert!(matches!(
            bad.encode_into(&mut out),
            Err(EncodeError::Camera {
                index: 1,
                error: CameraError::Geometry { .. }
            })
        ));
        assert_eq!(out, [1], "nothing appended on error");
        bad.cameras[1].info.flags |= CAM_MISSING;
        assert_eq!(
            bad.encode(),
            Err(EncodeError::Camera {
                index: 1,
                error: CameraError::MissingWithPayload(7)
            })
        );
        bad.cameras[1].info.flags = 0;
        bad.cameras[1].payload = &[];
        assert_eq!(
            bad.encode(),
            Err(EncodeError::Camera {
                index: 1,
                error: CameraError::EmptyPayload
            })
        );
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let good = example().encode().unwrap();
        for len in 0..good.len() {
            assert!(parse(&good[..len]).is_err(), "prefix of {len} bytes parsed");
        }
        for extra in 1..64 {
            let mut longer = good.clone();
            longer.resize(good.len() + extra, 0);
            assert!(parse(&longer).is_err(), "{extra} trailing bytes parsed");
        }
    }

    #[test]
    fn hostile_lengths_and_counts() {
        // 16 JPEG entries each claiming u32::MAX bytes, with no payload at all.
        let mut bytes = vec![0u8; MAX_PREFIX_SIZE];
        bytes[..4].copy_from_slice(&MAGIC);
        put32(&mut bytes, 4, VERSION);
        put32(&mut bytes, 8, 16);
        for i in 0..16 {
            let e = prefix_len(i);
            put32(&mut bytes, e, i as u32);
            put32(&mut bytes, e + 4, PixelFormat::Jpeg.code());
            put32(&mut bytes, e + 24, u32::MAX);
        }
        assert_eq!(
            parse(&bytes),
            Err(WireError::PayloadLength {
                declared: 16 * u64::from(u32::MAX),
                actual: 0
            })
        );
        // Raw geometry whose size overflows.
        put32(&mut bytes, 8, 1);
        put32(&mut bytes, 4 + HEADER_SIZE, PixelFormat::Nv12.code());
        put32(&mut bytes, 8 + HEADER_SIZE, u32::MAX - 1);
        put32(&mut bytes, 12 + HEADER_SIZE, u32::MAX - 1);
        put32(&mut bytes, 16 + HEADER_SIZE, u32::MAX);
        assert!(matches!(
            parse(&bytes),
            Err(WireError::Camera {
                index: 0,
                error: CameraError::Geometry { .. }
            })
        ));
        // All ones after a valid magic and version.
        let mut ones = vec![0xFF; 4096];
        ones[..4].copy_from_slice(&MAGIC);
        put32(&mut ones, 4, VERSION);
        assert_eq!(parse(&ones), Err(WireError::CameraCount(u32::MAX)));
    }

    /// A random valid camera with its payload.
    fn random_camera(rng: &mut fastrand::Rng, camera_id: u32) -> (CameraInfo, Vec<u8>) {
        let format = crate::format::ALL_FORMATS[rng.usize(..6)];
        let mut info = CameraInfo {
            camera_id,
            format,
            width: rng.u32(..),
            height: rng.u32(..),
            stride: rng.u32(..),
            flags: rng.u32(..) & !CAM_MISSING,
            capture_ns: rng.u64(..),
            sequence: rng.u64(..),
        };
        if rng.u8(..8) == 0 {
            info.flags |= CAM_MISSING;
            return (info, Vec::new());
        }
        let len = if format.is_raw() {
            info.width = rng.u32(1..12) * 2;
            info.height = rng.u32(1..8) * 2;
            let min = format.min_stride(info.width).unwrap();
            info.stride = (min + rng.u64(..4)) as u32;
            format.raw_len(u64::from(info.stride), info.height).unwrap() as usize
        } else {
            info.stride = 0;
            rng.usize(1..64)
        };
        let payload = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
        (info, payload)
    }

    /// A random valid message as its header and owned cameras.
    fn random_message(rng: &mut fastrand::Rng) -> (MessageHeader, Vec<(CameraInfo, Vec<u8>)>) {
        let header = MessageHeader {
            frame: rng.u64(..),
            tick_ns: rng.u64(..),
            publish_ns: rng.u64(..),
            send_ns: rng.u64(..),
            flags: if rng.bool() { 0 } else { rng.u32(..) },
        };
        let count = rng.usize(..=MAX_CAMERAS);
        let mut ids: Vec<u32> = (0..64).collect();
        rng.shuffle(&mut ids);
        let cameras = ids[..count]
            .iter()
            .map(|&id| random_camera(rng, id))
            .collect();
        (header, cameras)
    }

    fn borrow(header: MessageHeader, cameras: &[(CameraInfo, Vec<u8>)]) -> Message<'_> {
        Message {
            header,
            cameras: cameras
                .iter()
                .map(|(info, p)| CameraFrame {
                    info: *info,
                    payload: p,
                })
                .collect(),
        }
    }

    /// What a parsed message must satisfy: it re-encodes to its input (reserved words
    /// zeroed) and parses back to itself.
    fn check_round_trip(input: &[u8], m: &Message<'_>) {
        let again = m
            .encode()
            .expect("the encoder accepts what the parser accepts");
        let mut canonical = input.to_vec();
        for i in 0..m.cameras.len() {
            let at = prefix_len(i) + ENTRY_RESERVED_OFFSET;
            canonical[at..at + 4].fill(0);
        }
        assert_eq!(again, canonical);
        assert_eq!(&parse(&again).unwrap(), m);
    }

    fn mutate(rng: &mut fastrand::Rng, bytes: &mut Vec<u8>) {
        for _ in 0..rng.usize(1..4) {
            let len = bytes.len();
            match rng.u8(..6) {
                0 if len > 0 => bytes[rng.usize(..len)] = rng.u8(..),
                1 if len > 0 => bytes[rng.usize(..len)] ^= 1 << rng.u8(..8),
                2 => bytes.truncate(rng.usize(..=len)),
                3 => bytes.insert(rng.usize(..=len), rng.u8(..)),
                4 if len > 0 => {
                    bytes.remove(rng.usize(..len));
                }
                _ if len >= 4 => {
                    // A boundary value into an aligned u32 word.
                    let at = rng.usize(..len / 4) * 4;
                    let v = [0, 1, 2, 15, 16, 17, 0x7FFF_FFFF, u32::MAX][rng.usize(..8)];
                    bytes[at..at + 4].copy_from_slice(&u32::to_le_bytes(v));
                }
                _ => {}
            }
        }
    }

    /// The property test: random valid messages round-trip; random mutations of them and
    /// random bytes never make the parser panic, and whatever parses round-trips.
    #[test]
    fn property_round_trip_and_no_panic() {
        let mut rng = fastrand::Rng::with_seed(0xCA3F_2024);
        let (mut parsed, mut refused) = (0u32, 0u32);
        for _ in 0..4000 {
            let (header, cameras) = random_message(&mut rng);
            let m = borrow(header, &cameras);
            let bytes = m.encode().unwrap();
            assert_eq!(bytes.len() as u64, m.prefix().unwrap().message_len());
            assert_eq!(parse(&bytes).unwrap(), m);

            for _ in 0..8 {
                let mut mutated = bytes.clone();
                mutate(&mut rng, &mut mutated);
                match parse(&mutated) {
                    Ok(p) => {
                        check_round_trip(&mutated, &p);
                        parsed += 1;
                    }
                    Err(_) => refused += 1,
                }
            }

            let noise_len = rng.usize(..300);
            let mut noise: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
                .take(noise_len)
                .collect();
            if noise.len() >= 12 && rng.bool() {
                noise[..4].copy_from_slice(&MAGIC);
                put32(&mut noise, 4, VERSION);
                put32(&mut noise, 8, rng.u32(..=2));
            }
            if let Ok(p) = parse(&noise) {
                check_round_trip(&noise, &p);
            }
        }
        // The mutations exercise both outcomes.
        assert!(
            parsed > 1000 && refused > 1000,
            "{parsed} parsed, {refused} refused"
        );
    }
}
