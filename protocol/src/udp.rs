//! UDP framing: the datagrams of `camring bridge udp` and the sans-IO logic around them
//! (specified for client writers in `docs/protocol.md`, section 10).
//!
//! A multi-frame travels as one [`crate::wire`] message cut into **fragments**, each one
//! datagram of at most the path MTU (by default [`DEFAULT_MTU`] bytes of UDP payload):
//!
//! ```text
//! 0                36
//! +----------------+-----------------------------------------------+
//! | fragment header| bytes offset .. offset + len of the message   |
//! +----------------+-----------------------------------------------+
//!                  offset = index · fragment_size
//! ```
//!
//! Next to fragments (server to client), small **requests** go client to server
//! ([`Subscribe`], [`Keepalive`], [`Unsubscribe`]) and small **replies** come back
//! ([`Accepted`], [`Challenge`], [`Refused`]). Every datagram starts with the same 8 bytes:
//! the magic `CAMU`, a version byte, a kind byte and two reserved bytes, so a receiver
//! refuses foreign traffic after reading 8 bytes. Every integer is little-endian.
//!
//! **No amplification.** A request is at least [`MIN_REQUEST_SIZE`] bytes (clients pad it)
//! and a reply at most [`MAX_REPLY_SIZE`], which is smaller: the parser refuses shorter
//! requests, so whatever the server answers is never larger than what caused it. Frames
//! flow only to a subscriber that proved it receives at its address (the [`Challenge`]
//! cookie) and keeps its subscription alive; that policy is the adapter's.
//!
//! Its submodules are the sans-IO state machines on either side: [`client`] (a subscriber),
//! [`policy`] (the server's request handling, with [`cookie`] and [`limit`]), and
//! [`text`] (JSON side messages in datagrams).
//!
//! This module does no IO and reads no clock:
//!
//! * [`Fragmenter`] cuts a message into [`Fragment`]s, each a stack header plus a slice
//!   of the message (send them vectored, or copy them into a buffer with
//!   [`Fragment::write_into`]); nothing is allocated per fragment.
//! * [`parse`] reads any datagram into a typed [`Datagram`], or a [`DatagramError`];
//!   hostile bytes never make it panic or allocate.
//! * [`Reassembler`] takes fragments and the current time (nanoseconds of any monotonic
//!   clock, passed in by the caller) and hands back whole messages, newest first wins:
//!   frames come out strictly increasing, an incomplete frame is dropped after a deadline
//!   or as soon as a newer one completes, and the memory held for incomplete frames is
//!   bounded.

pub mod client;
pub mod cookie;
pub mod limit;
pub mod policy;
pub mod text;

use std::fmt;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::control::{ControlError, SettingsUpdate};

/// First four bytes of every datagram: ASCII `CAMU` ("camring UDP").
pub const MAGIC: [u8; 4] = *b"CAMU";
/// Datagram format version (one byte); a parser refuses any other.
pub const VERSION: u8 = 1;
/// Size of the part every datagram starts with: magic, version, kind, reserved.
pub const COMMON_HEADER_SIZE: usize = 8;
/// Size of a fragment's header; its payload follows.
pub const FRAGMENT_HEADER_SIZE: usize = 36;

/// Largest datagram (UDP payload) a server sends unless configured otherwise: 1200 bytes,
/// which crosses nearly every path unfragmented (as QUIC assumes).
pub const DEFAULT_MTU: usize = 1200;
/// Smallest datagram size a fragmenter accepts.
pub const MIN_MTU: usize = 576;
/// Largest datagram size: the most a UDP datagram over IPv4 can carry.
pub const MAX_MTU: usize = 65_507;
/// Smallest `fragment_size` a parser accepts: what [`MIN_MTU`] leaves after the header.
pub const MIN_FRAGMENT_SIZE: usize = MIN_MTU - FRAGMENT_HEADER_SIZE;
/// Largest `fragment_size` a parser accepts: what [`MAX_MTU`] leaves after the header.
pub const MAX_FRAGMENT_SIZE: usize = MAX_MTU - FRAGMENT_HEADER_SIZE;

/// Length of the opaque cookies of [`Challenge`], [`Accepted`] and the requests.
pub const COOKIE_LEN: usize = 16;
/// Smallest request: shorter ones are padded by the client and refused by the parser, so
/// that any reply (at most [`MAX_REPLY_SIZE`]) fits in the size of its request.
pub const MIN_REQUEST_SIZE: usize = 64;
/// Longest token a [`Subscribe`] carries.
pub const MAX_TOKEN_LEN: usize = 128;
/// Longest settings JSON a [`Subscribe`] carries.
pub const MAX_SETTINGS_LEN: usize = 384;
/// Size of a [`Subscribe`] before its token and settings.
pub const SUBSCRIBE_FIXED_SIZE: usize = 32;
/// Longest request, padding included: 544 bytes, below [`MIN_MTU`].
pub const MAX_REQUEST_SIZE: usize = SUBSCRIBE_FIXED_SIZE + MAX_TOKEN_LEN + MAX_SETTINGS_LEN;
/// Size of an [`Accepted`] reply.
pub const ACCEPTED_SIZE: usize = 40;
/// Size of a [`Challenge`] reply.
pub const CHALLENGE_SIZE: usize = 24;
/// Size of a [`Refused`] reply.
pub const REFUSED_SIZE: usize = 16;
/// Largest reply.
pub const MAX_REPLY_SIZE: usize = ACCEPTED_SIZE;

/// How often a client sends a [`Keepalive`], unless the server says otherwise.
pub const DEFAULT_KEEPALIVE_MS: u32 = 1000;
/// How long a server keeps a silent subscriber, unless configured otherwise.
pub const DEFAULT_SUBSCRIPTION_TIMEOUT_MS: u32 = 5000;

/// How long an incomplete frame waits for its missing fragments, by default: 100 ms.
pub const DEFAULT_DEADLINE_NS: u64 = 100_000_000;
/// Incomplete frames a [`Reassembler`] holds at once, by default.
pub const DEFAULT_MAX_FRAMES: usize = 4;
/// Bytes of incomplete frames a [`Reassembler`] holds at once, by default: 64 MiB. Also the
/// largest message it accepts.
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

// The anti-amplification rule and the "requests never fragment" rule, checked at compile
// time.
const _: () = assert!(MAX_REPLY_SIZE <= MIN_REQUEST_SIZE);
const _: () = assert!(MAX_REQUEST_SIZE <= MIN_MTU);

/// What a datagram is: its byte 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A piece of a multi-frame message (server to client).
    Fragment = 1,
    /// Start or renew a subscription, with token and settings (client to server).
    Subscribe = 2,
    /// Keep a subscription alive (client to server).
    Keepalive = 3,
    /// End a subscription (client to server).
    Unsubscribe = 4,
    /// The subscription is live (server to client).
    Accepted = 5,
    /// Prove the address: subscribe again with this cookie (server to client).
    Challenge = 6,
    /// The request was refused, with a reason (server to client).
    Refused = 7,
}

impl Kind {
    /// The kind's code on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The kind of a code, if it is one.
    pub const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Kind::Fragment,
            2 => Kind::Subscribe,
            3 => Kind::Keepalive,
            4 => Kind::Unsubscribe,
            5 => Kind::Accepted,
            6 => Kind::Challenge,
            7 => Kind::Refused,
            _ => return None,
        })
    }

    /// Whether a client sends this kind (the server answers only these).
    pub const fn is_request(self) -> bool {
        matches!(self, Kind::Subscribe | Kind::Keepalive | Kind::Unsubscribe)
    }
}

/// An opaque value the server chooses and the client echoes (16 bytes).
pub type Cookie = [u8; COOKIE_LEN];

// --- Layouts -------------------------------------------------------------------------------

/// The 8 bytes every datagram starts with.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawCommon {
    magic: [u8; 4],
    version: u8,
    kind: u8,
    reserved: U16,
}

impl RawCommon {
    fn new(kind: Kind) -> Self {
        RawCommon {
            magic: MAGIC,
            version: VERSION,
            kind: kind.code(),
            reserved: 0.into(),
        }
    }
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawFragment {
    common: RawCommon,
    stream: U32,
    total_len: U32,
    frame: U64,
    index: U32,
    count: U32,
    fragment_size: U32,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawSubscribe {
    common: RawCommon,
    cookie: Cookie,
    token_len: U16,
    settings_len: U16,
    mtu: U32,
}

/// A keepalive or an unsubscribe (same layout, padded to [`MIN_REQUEST_SIZE`]); also a
/// challenge (not padded).
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawCookie {
    common: RawCommon,
    cookie: Cookie,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawAccepted {
    common: RawCommon,
    cookie: Cookie,
    stream: U32,
    mtu: U32,
    keepalive_ms: U32,
    timeout_ms: U32,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
#[repr(C)]
struct RawRefused {
    common: RawCommon,
    reason: U32,
    reserved: U32,
}

const _: () = assert!(size_of::<RawCommon>() == COMMON_HEADER_SIZE);
const _: () = assert!(size_of::<RawFragment>() == FRAGMENT_HEADER_SIZE);
const _: () = assert!(size_of::<RawSubscribe>() == SUBSCRIBE_FIXED_SIZE);
const _: () = assert!(size_of::<RawCookie>() == CHALLENGE_SIZE);
const _: () = assert!(size_of::<RawAccepted>() == ACCEPTED_SIZE);
const _: () = assert!(size_of::<RawRefused>() == REFUSED_SIZE);

// --- Errors --------------------------------------------------------------------------------

/// Why a fragment header is refused (its fields disagree with each other or with the
/// datagram's length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// `fragment_size` is outside [`MIN_FRAGMENT_SIZE`]`..=`[`MAX_FRAGMENT_SIZE`].
    #[error("fragment size {0} out of range {MIN_FRAGMENT_SIZE}..={MAX_FRAGMENT_SIZE}")]
    FragmentSize(u32),
    /// `total_len` is 0: there is no empty message.
    #[error("fragment of an empty message")]
    EmptyMessage,
    /// `count` is not `total_len / fragment_size` rounded up.
    #[error("fragment count {count}, but the lengths make {expected}")]
    Count {
        /// Count found.
        count: u32,
        /// Count the total and fragment size make.
        expected: u32,
    },
    /// `index` is not below `count`.
    #[error("fragment index {index} of {count}")]
    Index {
        /// Index found.
        index: u32,
        /// Count found.
        count: u32,
    },
    /// The payload is not `fragment_size` bytes (or the rest of the message, for the last
    /// fragment): a truncated or padded datagram.
    #[error("fragment payload of {actual} bytes, expected {expected}")]
    PayloadLength {
        /// Bytes the header says.
        expected: usize,
        /// Bytes the datagram has.
        actual: usize,
    },
}

/// Why [`parse`] refused a datagram. Hostile input yields one of these, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// The datagram does not start with [`MAGIC`]: not camring traffic.
    #[error("not a camring UDP datagram (bad magic)")]
    BadMagic,
    /// The format version is not [`VERSION`].
    #[error("unsupported UDP datagram version {found} (this camring reads version {VERSION})")]
    Version {
        /// Version found.
        found: u8,
    },
    /// The kind byte is not a [`Kind`].
    #[error("unknown datagram kind {0}")]
    UnknownKind(u8),
    /// A valid datagram of another kind than the one the caller takes (for example a reply
    /// given to [`Reassembler::handle_datagram`]).
    #[error("unexpected datagram kind {0:?}")]
    UnexpectedKind(Kind),
    /// The datagram ends inside its fixed part.
    #[error("datagram truncated: {actual} bytes, its kind needs {needed}")]
    Truncated {
        /// Bytes the kind's fixed part needs.
        needed: usize,
        /// Bytes there are.
        actual: usize,
    },
    /// A fragment's header is invalid.
    #[error("invalid fragment")]
    Fragment(#[from] FragmentError),
    /// A request shorter than [`MIN_REQUEST_SIZE`] (an unpadded request, which the server
    /// must not answer).
    #[error("request of {0} bytes, below the minimum of {MIN_REQUEST_SIZE}")]
    RequestTooShort(usize),
    /// A request longer than [`MAX_REQUEST_SIZE`].
    #[error("request of {0} bytes, above the maximum of {MAX_REQUEST_SIZE}")]
    RequestTooLong(usize),
    /// A subscribe's token is longer than [`MAX_TOKEN_LEN`].
    #[error("token of {0} bytes, above the maximum of {MAX_TOKEN_LEN}")]
    TokenTooLong(usize),
    /// A subscribe's settings are longer than [`MAX_SETTINGS_LEN`].
    #[error("settings of {0} bytes, above the maximum of {MAX_SETTINGS_LEN}")]
    SettingsTooLong(usize),
    /// A subscribe's token and settings run past the end of the datagram.
    #[error("token and settings need {needed} bytes, the datagram has {actual}")]
    FieldsPastEnd {
        /// Bytes the fixed part, token and settings need.
        needed: usize,
        /// Bytes there are.
        actual: usize,
    },
    /// An MTU field outside [`MIN_MTU`]`..=`[`MAX_MTU`] (0 is allowed in a subscribe: the
    /// server's default).
    #[error("MTU {0} out of range {MIN_MTU}..={MAX_MTU}")]
    Mtu(u32),
}

/// Why an encoder refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The MTU is outside [`MIN_MTU`]`..=`[`MAX_MTU`].
    #[error("MTU {0} out of range {MIN_MTU}..={MAX_MTU}")]
    Mtu(usize),
    /// There is no empty message.
    #[error("cannot fragment an empty message")]
    EmptyMessage,
    /// The message is longer than a `u32` total length can say.
    #[error("message of {0} bytes is too large to fragment")]
    MessageTooLarge(usize),
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token of {0} bytes, above the maximum of {MAX_TOKEN_LEN}")]
    TokenTooLong(usize),
    /// The settings are longer than [`MAX_SETTINGS_LEN`].
    #[error("settings of {0} bytes, above the maximum of {MAX_SETTINGS_LEN}")]
    SettingsTooLong(usize),
    /// The output buffer is too small.
    #[error("buffer of {available} bytes, {needed} needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

fn check_buffer(buf: &[u8], needed: usize) -> Result<(), EncodeError> {
    if buf.len() < needed {
        return Err(EncodeError::BufferTooSmall {
            needed,
            available: buf.len(),
        });
    }
    Ok(())
}

// --- Fragments -----------------------------------------------------------------------------

/// The fields of a fragment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentHeader {
    /// The sender's stream: chosen at random when a server starts, so a client tells a
    /// restarted server's frames from the old ones.
    pub stream: u32,
    /// The message's sequence number in its stream, strictly increasing over the messages
    /// the sender sends (gaps allowed). A receiver delivers frames in increasing order.
    pub frame: u64,
    /// This fragment's index, `0..count`.
    pub index: u32,
    /// How many fragments the message has: `total_len / fragment_size` rounded up.
    pub count: u32,
    /// Bytes of the whole message.
    pub total_len: u32,
    /// Payload bytes of every fragment but the last, which has the rest; fragment `i`
    /// carries the message's bytes from `i · fragment_size`.
    pub fragment_size: u32,
}

impl FragmentHeader {
    /// Checks the fields against each other: `fragment_size` in range, a non-empty
    /// message, `count` consistent with the lengths and `index` below it. After that,
    /// [`Self::offset`] and [`Self::payload_len`] cannot overflow.
    pub fn check(&self) -> Result<(), FragmentError> {
        let size = self.fragment_size;
        if !(MIN_FRAGMENT_SIZE..=MAX_FRAGMENT_SIZE).contains(&(size as usize)) {
            return Err(FragmentError::FragmentSize(size));
        }
        if self.total_len == 0 {
            return Err(FragmentError::EmptyMessage);
        }
        let expected = self.total_len.div_ceil(size);
        if self.count != expected {
            return Err(FragmentError::Count {
                count: self.count,
                expected,
            });
        }
        if self.index >= self.count {
            return Err(FragmentError::Index {
                index: self.index,
                count: self.count,
            });
        }
        Ok(())
    }

    /// Where this fragment's payload goes in the message (for a checked header).
    pub fn offset(&self) -> usize {
        self.index as usize * self.fragment_size as usize
    }

    /// Bytes of payload this fragment carries (for a checked header).
    pub fn payload_len(&self) -> usize {
        let rest = (self.total_len as usize).saturating_sub(self.offset());
        rest.min(self.fragment_size as usize)
    }

    /// The encoded header.
    pub fn encode(&self) -> [u8; FRAGMENT_HEADER_SIZE] {
        let raw = RawFragment {
            common: RawCommon::new(Kind::Fragment),
            stream: self.stream.into(),
            total_len: self.total_len.into(),
            frame: self.frame.into(),
            index: self.index.into(),
            count: self.count.into(),
            fragment_size: self.fragment_size.into(),
        };
        let mut out = [0; FRAGMENT_HEADER_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// One fragment: its header and its piece of the message (borrowed from the message when
/// encoding, from the datagram when parsed).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The header's fields.
    pub header: FragmentHeader,
    /// The piece of the message, `header.payload_len()` bytes.
    pub payload: &'a [u8],
}

impl Fragment<'_> {
    /// Size of the datagram: header plus payload.
    pub fn datagram_len(&self) -> usize {
        FRAGMENT_HEADER_SIZE + self.payload.len()
    }

    /// Writes the datagram at the start of `buf` and returns its length.
    pub fn write_into(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let len = self.datagram_len();
        check_buffer(buf, len)?;
        buf[..FRAGMENT_HEADER_SIZE].copy_from_slice(&self.header.encode());
        buf[FRAGMENT_HEADER_SIZE..len].copy_from_slice(self.payload);
        Ok(len)
    }

    /// The datagram as a new vector (tests and simple senders).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.datagram_len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(self.payload);
        out
    }
}

impl fmt::Debug for Fragment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fragment")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Cuts one message into fragments of at most `mtu` bytes each: an iterator of
/// [`Fragment`]s that borrow the message, so nothing is copied or allocated until the
/// caller writes a fragment out (vectored: [`FragmentHeader::encode`] then the payload;
/// or into its own buffer: [`Fragment::write_into`]). [`Fragmenter::fragment`] gives any
/// fragment again, for a sender that paces or interleaves several subscribers.
///
/// The fragments of one message are the same for every subscriber, so a server cuts a
/// message once and sends the same datagrams to each.
#[derive(Clone)]
pub struct Fragmenter<'a> {
    message: &'a [u8],
    stream: u32,
    frame: u64,
    fragment_size: u32,
    count: u32,
    next: u32,
}

impl<'a> Fragmenter<'a> {
    /// A fragmenter for `message`, frame `frame` of stream `stream`, in datagrams of at
    /// most `mtu` bytes ([`MIN_MTU`]`..=`[`MAX_MTU`]). Every fragment but the last carries
    /// `mtu − 36` bytes of the message.
    pub fn new(
        message: &'a [u8],
        stream: u32,
        frame: u64,
        mtu: usize,
    ) -> Result<Self, EncodeError> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(EncodeError::Mtu(mtu));
        }
        if message.is_empty() {
            return Err(EncodeError::EmptyMessage);
        }
        let total = u32::try_from(message.len())
            .map_err(|_| EncodeError::MessageTooLarge(message.len()))?;
        let fragment_size = (mtu - FRAGMENT_HEADER_SIZE) as u32;
        Ok(Fragmenter {
            message,
            stream,
            frame,
            fragment_size,
            count: total.div_ceil(fragment_size),
            next: 0,
        })
    }

    /// How many fragments the message makes, in all (the iterator's `len()` is how many
    /// are left).
    pub fn fragment_count(&self) -> u32 {
        self.count
    }

    /// Payload bytes of every fragment but the last.
    pub fn fragment_size(&self) -> usize {
        self.fragment_size as usize
    }

    /// Fragment `index`, if there is one.
    pub fn fragment(&self, index: u32) -> Option<Fragment<'a>> {
        if index >= self.count {
            return None;
        }
        let header = FragmentHeader {
            stream: self.stream,
            frame: self.frame,
            index,
            count: self.count,
            total_len: self.message.len() as u32,
            fragment_size: self.fragment_size,
        };
        let at = header.offset();
        Some(Fragment {
            header,
            payload: &self.message[at..at + header.payload_len()],
        })
    }

    /// Writes the next fragment's datagram into `buf` and returns its length, or `None`
    /// when all were written. A buffer of `mtu` bytes always suffices.
    pub fn write_next(&mut self, buf: &mut [u8]) -> Option<Result<usize, EncodeError>> {
        let fragment = self.fragment(self.next)?;
        let written = fragment.write_into(buf);
        if written.is_ok() {
            self.next += 1;
        }
        Some(written)
    }
}

impl<'a> Iterator for Fragmenter<'a> {
    type Item = Fragment<'a>;

    fn next(&mut self) -> Option<Fragment<'a>> {
        let fragment = self.fragment(self.next)?;
        self.next += 1;
        Some(fragment)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Fragmenter<'_> {}

impl fmt::Debug for Fragmenter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fragmenter")
            .field("stream", &self.stream)
            .field("frame", &self.frame)
            .field("message_len", &self.message.len())
            .field("fragment_size", &self.fragment_size)
            .field("count", &self.count)
            .field("next", &self.next)
            .finish()
    }
}

// --- Requests and replies ------------------------------------------------------------------

/// A client's request to start (or renew, or change the settings of) its subscription.
///
/// The server answers with [`Accepted`] (frames follow), [`Challenge`] (send this again
/// with the cookie it gives), or [`Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// All zeros on a first try; the cookie of a [`Challenge`] when answering one.
    pub cookie: Cookie,
    /// The largest datagram the client wants ([`MIN_MTU`]`..=`[`MAX_MTU`]), or 0 for the
    /// server's default. The server sends `min(its own, this)`.
    pub mtu: u32,
    /// The server's token, if it has one (at most [`MAX_TOKEN_LEN`] bytes).
    pub token: &'a [u8],
    /// The settings: the JSON object of a `settings` control message without its `type`
    /// (the JSON of [`SettingsUpdate`], e.g. `{"quality":70,"fps":10}`), at most
    /// [`MAX_SETTINGS_LEN`] bytes; empty for the defaults.
    pub settings: &'a [u8],
}

impl Subscribe<'_> {
    /// Size of the encoded request, padding included.
    pub fn encoded_len(&self) -> usize {
        (SUBSCRIBE_FIXED_SIZE + self.token.len() + self.settings.len()).max(MIN_REQUEST_SIZE)
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.token.len() > MAX_TOKEN_LEN {
            return Err(EncodeError::TokenTooLong(self.token.len()));
        }
        if self.settings.len() > MAX_SETTINGS_LEN {
            return Err(EncodeError::SettingsTooLong(self.settings.len()));
        }
        if self.mtu != 0 && !(MIN_MTU..=MAX_MTU).contains(&(self.mtu as usize)) {
            return Err(EncodeError::Mtu(self.mtu as usize));
        }
        Ok(())
    }

    /// Writes the request (zero-padded to [`MIN_REQUEST_SIZE`]) at the start of `buf` and
    /// returns its length.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        let len = self.encoded_len();
        check_buffer(buf, len)?;
        let raw = RawSubscribe {
            common: RawCommon::new(Kind::Subscribe),
            cookie: self.cookie,
            token_len: (self.token.len() as u16).into(),
            settings_len: (self.settings.len() as u16).into(),
            mtu: self.mtu.into(),
        };
        let token_end = SUBSCRIBE_FIXED_SIZE + self.token.len();
        let settings_end = token_end + self.settings.len();
        buf[..SUBSCRIBE_FIXED_SIZE].copy_from_slice(raw.as_bytes());
        buf[SUBSCRIBE_FIXED_SIZE..token_end].copy_from_slice(self.token);
        buf[token_end..settings_end].copy_from_slice(self.settings);
        buf[settings_end..len].fill(0);
        Ok(len)
    }

    /// The request as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0; self.encoded_len()];
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// The settings the client asks for, parsed as a `settings` control message's body
    /// (empty: no change from the defaults).
    pub fn settings_update(&self) -> Result<SettingsUpdate, ControlError> {
        if self.settings.is_empty() {
            return Ok(SettingsUpdate::default());
        }
        serde_json::from_slice(self.settings).map_err(|e| ControlError::Json(e.to_string()))
    }
}

/// A client's "still here": sent at least every `keepalive_ms` of its [`Accepted`]. The
/// server answers with [`Accepted`] again, or [`Refused`] with
/// [`RefuseReason::UnknownSubscriber`] when it does not know the client (restarted, or
/// timed the client out): the client then subscribes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// The cookie of the client's [`Accepted`].
    pub cookie: Cookie,
}

/// A client's "stop sending": the server forgets the subscriber and does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The cookie of the client's [`Accepted`].
    pub cookie: Cookie,
}

fn encode_cookie_request(kind: Kind, cookie: &Cookie) -> [u8; MIN_REQUEST_SIZE] {
    let raw = RawCookie {
        common: RawCommon::new(kind),
        cookie: *cookie,
    };
    let mut out = [0; MIN_REQUEST_SIZE];
    out[..CHALLENGE_SIZE].copy_from_slice(raw.as_bytes());
    out
}

impl Keepalive {
    /// The request, zero-padded to [`MIN_REQUEST_SIZE`].
    pub fn encode(&self) -> [u8; MIN_REQUEST_SIZE] {
        encode_cookie_request(Kind::Keepalive, &self.cookie)
    }
}

impl Unsubscribe {
    /// The request, zero-padded to [`MIN_REQUEST_SIZE`].
    pub fn encode(&self) -> [u8; MIN_REQUEST_SIZE] {
        encode_cookie_request(Kind::Unsubscribe, &self.cookie)
    }
}

/// The server's "you are subscribed": frames of stream `stream` follow, in datagrams of at
/// most `mtu` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The subscriber's cookie, to put in [`Keepalive`] and [`Unsubscribe`].
    pub cookie: Cookie,
    /// The stream id the fragments carry (see [`Reassembler::reset`]).
    pub stream: u32,
    /// The largest datagram the server sends this subscriber.
    pub mtu: u32,
    /// Send a [`Keepalive`] at least this often, milliseconds.
    pub keepalive_ms: u32,
    /// The server drops a subscriber it has not heard from for this long, milliseconds.
    pub timeout_ms: u32,
}

impl Accepted {
    /// The reply ([`ACCEPTED_SIZE`] bytes).
    pub fn encode(&self) -> [u8; ACCEPTED_SIZE] {
        let raw = RawAccepted {
            common: RawCommon::new(Kind::Accepted),
            cookie: self.cookie,
            stream: self.stream.into(),
            mtu: self.mtu.into(),
            keepalive_ms: self.keepalive_ms.into(),
            timeout_ms: self.timeout_ms.into(),
        };
        let mut out = [0; ACCEPTED_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// The server's "prove you receive at this address": the client sends its [`Subscribe`]
/// again with this cookie. Only then do frames flow, so a forged source address cannot
/// turn the server against a victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// The cookie to echo.
    pub cookie: Cookie,
}

impl Challenge {
    /// The reply ([`CHALLENGE_SIZE`] bytes).
    pub fn encode(&self) -> [u8; CHALLENGE_SIZE] {
        let raw = RawCookie {
            common: RawCommon::new(Kind::Challenge),
            cookie: self.cookie,
        };
        let mut out = [0; CHALLENGE_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// The server has a token and the request had none or another one (code 1).
    Unauthorized,
    /// The request was malformed: settings refused, MTU out of range, token or settings too
    /// long (code 2).
    BadRequest,
    /// The server already serves its maximum number of subscribers (code 3).
    Full,
    /// A keepalive or unsubscribe from a client the server does not know (or with a wrong
    /// cookie): subscribe again (code 4).
    UnknownSubscriber,
    /// The request's version is not one the server reads (code 5).
    UnsupportedVersion,
    /// A code this version does not know; treat it as a refusal.
    Other(u32),
}

impl RefuseReason {
    /// The reason's code on the wire.
    pub const fn code(self) -> u32 {
        match self {
            RefuseReason::Unauthorized => 1,
            RefuseReason::BadRequest => 2,
            RefuseReason::Full => 3,
            RefuseReason::UnknownSubscriber => 4,
            RefuseReason::UnsupportedVersion => 5,
            RefuseReason::Other(code) => code,
        }
    }

    /// The reason of a code.
    pub const fn from_code(code: u32) -> Self {
        match code {
            1 => RefuseReason::Unauthorized,
            2 => RefuseReason::BadRequest,
            3 => RefuseReason::Full,
            4 => RefuseReason::UnknownSubscriber,
            5 => RefuseReason::UnsupportedVersion,
            other => RefuseReason::Other(other),
        }
    }
}

/// The server's "no", with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: RefuseReason,
}

impl Refused {
    /// The reply ([`REFUSED_SIZE`] bytes).
    pub fn encode(&self) -> [u8; REFUSED_SIZE] {
        let raw = RawRefused {
            common: RawCommon::new(Kind::Refused),
            reason: self.reason.code().into(),
            reserved: 0.into(),
        };
        let mut out = [0; REFUSED_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// What the server answers to a datagram [`parse`] refused, or `None` when it must stay
/// silent. It answers only a datagram that has the magic and at least
/// [`MIN_REQUEST_SIZE`] bytes, and is a request of another version
/// ([`RefuseReason::UnsupportedVersion`]) or a malformed request of this version
/// ([`RefuseReason::BadRequest`]); garbage, short requests and anything that is not a
/// request get no answer. The answer is never larger than the datagram.
pub fn refusal_for(datagram: &[u8], error: &DatagramError) -> Option<Refused> {
    if datagram.len() < MIN_REQUEST_SIZE || datagram[..4] != MAGIC {
        return None;
    }
    let reason = match error {
        // Another version: its kinds may mean other things, so only the length matters.
        DatagramError::Version { .. } => RefuseReason::UnsupportedVersion,
        DatagramError::RequestTooLong(_)
        | DatagramError::TokenTooLong(_)
        | DatagramError::SettingsTooLong(_)
        | DatagramError::FieldsPastEnd { .. }
        | DatagramError::Mtu(_)
            if Kind::from_code(datagram[5]).is_some_and(Kind::is_request) =>
        {
            RefuseReason::BadRequest
        }
        _ => return None,
    };
    Some(Refused { reason })
}

// --- Parsing -------------------------------------------------------------------------------

/// One parsed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A piece of a message.
    Fragment(Fragment<'a>),
    /// A subscription request.
    Subscribe(Subscribe<'a>),
    /// A keepalive.
    Keepalive(Keepalive),
    /// An unsubscribe.
    Unsubscribe(Unsubscribe),
    /// The subscription is live.
    Accepted(Accepted),
    /// Subscribe again with a cookie.
    Challenge(Challenge),
    /// A refusal.
    Refused(Refused),
}

impl Datagram<'_> {
    /// The datagram's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Datagram::Fragment(_) => Kind::Fragment,
            Datagram::Subscribe(_) => Kind::Subscribe,
            Datagram::Keepalive(_) => Kind::Keepalive,
            Datagram::Unsubscribe(_) => Kind::Unsubscribe,
            Datagram::Accepted(_) => Kind::Accepted,
            Datagram::Challenge(_) => Kind::Challenge,
            Datagram::Refused(_) => Kind::Refused,
        }
    }
}

/// Reads the common header: magic (on as many of its bytes as there are), version, kind.
fn parse_common(bytes: &[u8]) -> Result<Kind, DatagramError> {
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(DatagramError::BadMagic);
    }
    let Some(&version) = bytes.get(4) else {
        return Err(DatagramError::Truncated {
            needed: COMMON_HEADER_SIZE,
            actual: bytes.len(),
        });
    };
    if version != VERSION {
        return Err(DatagramError::Version { found: version });
    }
    let Some(&kind) = bytes.get(5) else {
        return Err(DatagramError::Truncated {
            needed: COMMON_HEADER_SIZE,
            actual: bytes.len(),
        });
    };
    Kind::from_code(kind).ok_or(DatagramError::UnknownKind(kind))
}

fn fixed<T: FromBytes + KnownLayout + Immutable>(bytes: &[u8]) -> Result<&T, DatagramError> {
    T::ref_from_prefix(bytes)
        .map(|(raw, _)| raw)
        .map_err(|_| DatagramError::Truncated {
            needed: size_of::<T>(),
            actual: bytes.len(),
        })
}

fn check_request_len(bytes: &[u8]) -> Result<(), DatagramError> {
    if bytes.len() < MIN_REQUEST_SIZE {
        return Err(DatagramError::RequestTooShort(bytes.len()));
    }
    if bytes.len() > MAX_REQUEST_SIZE {
        return Err(DatagramError::RequestTooLong(bytes.len()));
    }
    Ok(())
}

fn parse_fragment_body(bytes: &[u8]) -> Result<Fragment<'_>, DatagramError> {
    let (raw, payload) =
        RawFragment::ref_from_prefix(bytes).map_err(|_| DatagramError::Truncated {
            needed: FRAGMENT_HEADER_SIZE,
            actual: bytes.len(),
        })?;
    let header = FragmentHeader {
        stream: raw.stream.get(),
        frame: raw.frame.get(),
        index: raw.index.get(),
        count: raw.count.get(),
        total_len: raw.total_len.get(),
        fragment_size: raw.fragment_size.get(),
    };
    header.check()?;
    let expected = header.payload_len();
    if payload.len() != expected {
        return Err(FragmentError::PayloadLength {
            expected,
            actual: payload.len(),
        }
        .into());
    }
    Ok(Fragment { header, payload })
}

/// Parses a datagram that must be a fragment (the receiver's fast path).
pub fn parse_fragment(bytes: &[u8]) -> Result<Fragment<'_>, DatagramError> {
    match parse_common(bytes)? {
        Kind::Fragment => parse_fragment_body(bytes),
        other => Err(DatagramError::UnexpectedKind(other)),
    }
}

/// Parses and validates any datagram, borrowing fragment payloads, tokens and settings
/// from `bytes`.
///
/// Checks, in order: the magic, the version, the kind, the kind's fixed part; then for a
/// fragment its header ([`FragmentHeader::check`]) and that the payload has exactly the
/// length the header says; for a request its length ([`MIN_REQUEST_SIZE`] to
/// [`MAX_REQUEST_SIZE`]), for a subscribe the token and settings lengths and the MTU; for
/// an accepted reply its MTU. Reserved bytes, padding and bytes after a reply's fixed part
/// are ignored; a refusal's unknown reason is kept as [`RefuseReason::Other`].
pub fn parse(bytes: &[u8]) -> Result<Datagram<'_>, DatagramError> {
    let kind = parse_common(bytes)?;
    Ok(match kind {
        Kind::Fragment => Datagram::Fragment(parse_fragment_body(bytes)?),
        Kind::Subscribe => {
            let raw: &RawSubscribe = fixed(bytes)?;
            check_request_len(bytes)?;
            let token_len = usize::from(raw.token_len.get());
            let settings_len = usize::from(raw.settings_len.get());
            if token_len > MAX_TOKEN_LEN {
                return Err(DatagramError::TokenTooLong(token_len));
            }
            if settings_len > MAX_SETTINGS_LEN {
                return Err(DatagramError::SettingsTooLong(settings_len));
            }
            let token_end = SUBSCRIBE_FIXED_SIZE + token_len;
            let settings_end = token_end + settings_len;
            if settings_end > bytes.len() {
                return Err(DatagramError::FieldsPastEnd {
                    needed: settings_end,
                    actual: bytes.len(),
                });
            }
            let mtu = raw.mtu.get();
            if mtu != 0 && !(MIN_MTU..=MAX_MTU).contains(&(mtu as usize)) {
                return Err(DatagramError::Mtu(mtu));
            }
            Datagram::Subscribe(Subscribe {
                cookie: raw.cookie,
                mtu,
                token: &bytes[SUBSCRIBE_FIXED_SIZE..token_end],
                settings: &bytes[token_end..settings_end],
            })
        }
        Kind::Keepalive | Kind::Unsubscribe => {
            let raw: &RawCookie = fixed(bytes)?;
            check_request_len(bytes)?;
            let cookie = raw.cookie;
            if kind == Kind::Keepalive {
                Datagram::Keepalive(Keepalive { cookie })
            } else {
                Datagram::Unsubscribe(Unsubscribe { cookie })
            }
        }
        Kind::Accepted => {
            let raw: &RawAccepted = fixed(bytes)?;
            let mtu = raw.mtu.get();
            if !(MIN_MTU..=MAX_MTU).contains(&(mtu as usize)) {
                return Err(DatagramError::Mtu(mtu));
            }
            Datagram::Accepted(Accepted {
                cookie: raw.cookie,
                stream: raw.stream.get(),
                mtu,
                keepalive_ms: raw.keepalive_ms.get(),
                timeout_ms: raw.timeout_ms.get(),
            })
        }
        Kind::Challenge => {
            let raw: &RawCookie = fixed(bytes)?;
            Datagram::Challenge(Challenge { cookie: raw.cookie })
        }
        Kind::Refused => {
            let raw: &RawRefused = fixed(bytes)?;
            Datagram::Refused(Refused {
                reason: RefuseReason::from_code(raw.reason.get()),
            })
        }
    })
}

// --- Reassembly ----------------------------------------------------------------------------

/// The limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblerConfig {
    /// How long an incomplete frame waits for its missing fragments, counted from its first
    /// fragment, nanoseconds ([`DEFAULT_DEADLINE_NS`]). Keep it above the time a paced
    /// sender takes to send the largest frame.
    pub deadline_ns: u64,
    /// Most incomplete frames held at once, at least 1 ([`DEFAULT_MAX_FRAMES`]).
    pub max_frames: usize,
    /// Most bytes of incomplete frames held at once, at least 1 ([`DEFAULT_MAX_BYTES`]):
    /// the sum of their declared total lengths (buffers are allocated whole when a frame's
    /// first fragment arrives). A frame declaring more is refused. The bitmaps of received
    /// fragments add at most 1/4320 of it.
    pub max_bytes: usize,
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        ReassemblerConfig {
            deadline_ns: DEFAULT_DEADLINE_NS,
            max_frames: DEFAULT_MAX_FRAMES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// A whole message out of a [`Reassembler`].
#[derive(Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// The stream it came on.
    pub stream: u32,
    /// Its frame number (strictly above every frame delivered before in this stream).
    pub frame: u64,
    /// The message: exactly `total_len` bytes, to give to [`crate::wire::parse`].
    pub message: Vec<u8>,
}

impl fmt::Debug for Reassembled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembled")
            .field("stream", &self.stream)
            .field("frame", &self.frame)
            .field("message_len", &self.message.len())
            .finish()
    }
}

/// What a [`Reassembler`] did with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// The datagram completed a frame: here is its message.
    Complete(Reassembled),
    /// Stored; its frame still misses fragments.
    Buffered,
    /// This fragment of its frame is already held: ignored.
    Duplicate,
    /// Its frame was already delivered, superseded by a newer one, or abandoned (timed out,
    /// evicted, inconsistent): ignored.
    Late,
    /// A fragment of another stream than the one being reassembled: ignored.
    OtherStream(u32),
    /// Its frame declares more bytes than [`ReassemblerConfig::max_bytes`]: refused.
    TooLarge(u32),
    /// Its frame is older than every frame held while the limits are reached: it was
    /// abandoned, as the oldest is.
    Evicted,
    /// Its count, total length or fragment size disagree with the first fragment of its
    /// frame: the whole frame was dropped.
    Inconsistent,
    /// Not a valid fragment.
    Invalid(DatagramError),
}

/// A [`Reassembler`]'s counters. Frame counters count frames, datagram counters datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReassemblyStats {
    /// Frames delivered whole.
    pub completed: u64,
    /// Incomplete frames dropped at their deadline.
    pub dropped_timeout: u64,
    /// Incomplete frames dropped because a newer frame completed (or [`Reassembler::reset`]
    /// discarded them).
    pub dropped_superseded: u64,
    /// Incomplete frames dropped to keep within the frame and byte limits, the oldest first
    /// (a newcomer older than all held frames counts here too).
    pub dropped_evicted: u64,
    /// Frames dropped because a fragment disagreed with their first one.
    pub dropped_inconsistent: u64,
    /// Datagrams: fragments already held.
    pub duplicates: u64,
    /// Datagrams: fragments of frames delivered, superseded or abandoned.
    pub late: u64,
    /// Datagrams: fragments of another stream.
    pub other_stream: u64,
    /// Datagrams: fragments of frames above the byte limit.
    pub too_large: u64,
    /// Datagrams: not valid fragments.
    pub invalid: u64,
    /// Incomplete frames held now.
    pub frames_held: usize,
    /// Bytes of incomplete frames held now (their declared total lengths).
    pub bytes_held: usize,
    /// Highest `bytes_held` so far.
    pub bytes_held_max: usize,
}

/// One incomplete frame.
struct Partial {
    frame: u64,
    total_len: u32,
    fragment_size: u32,
    count: u32,
    received: u32,
    /// One bit per fragment index: received.
    have: Vec<u64>,
    buf: Vec<u8>,
    deadline: u64,
}

impl Partial {
    fn has(&self, index: u32) -> bool {
        self.have[index as usize / 64] & (1 << (index % 64)) != 0
    }

    fn mark(&mut self, index: u32) {
        self.have[index as usize / 64] |= 1 << (index % 64);
        self.received += 1;
    }
}

/// How many abandoned frame numbers are remembered, so that their late fragments do not
/// start them again.
const ABANDONED_MEMORY: usize = 64;

/// Why a held frame is dropped.
#[derive(Clone, Copy)]
enum DropReason {
    Timeout,
    Superseded,
    Evicted,
    Inconsistent,
}

/// Puts fragments back together into messages, sans IO: the caller feeds it every fragment
/// datagram it receives with the current time, and gets whole messages back.
///
/// Time is nanoseconds on any monotonic clock the caller picks (e.g. the nanoseconds since
/// its start); a time earlier than one already seen counts as that one.
///
/// Calling order, as in quinn-proto: for each datagram received,
/// [`handle_datagram`](Self::handle_datagram) (or, after the caller's own [`parse`],
/// [`handle_fragment`](Self::handle_fragment)); whenever [`poll_timeout`](Self::poll_timeout)
/// passes, [`handle_timeout`](Self::handle_timeout), which only frees memory (nothing is
/// delivered from a timeout). After a new [`Accepted`], [`reset`](Self::reset) to its stream.
///
/// Rules:
///
/// * Frames come out strictly increasing: a fragment of a frame at or below the last one
///   delivered is [`Outcome::Late`]. When a frame completes, every older incomplete frame is
///   dropped (superseded): fewer frames, never older ones.
/// * An incomplete frame is dropped at its deadline (its first fragment's time plus
///   [`ReassemblerConfig::deadline_ns`]); the reassembler never waits longer.
/// * Duplicates are ignored; fragments of a frame may come in any order.
/// * At most [`ReassemblerConfig::max_frames`] incomplete frames and
///   [`ReassemblerConfig::max_bytes`] declared bytes are held; to admit a new frame, the
///   oldest are evicted first (the newcomer itself, if it is the oldest). A frame declaring
///   more than `max_bytes` is refused.
/// * A fragment whose count, total length or fragment size disagree with the first one of
///   its frame drops that frame.
/// * Dropped frames are remembered (the last 64), so their late fragments do not start them
///   again.
/// * The stream is the one given to [`reset`](Self::reset), or else the first one seen;
///   fragments of other streams are ignored.
pub struct Reassembler {
    config: ReassemblerConfig,
    stream: Option<u32>,
    last_delivered: Option<u64>,
    partials: Vec<Partial>,
    abandoned: [u64; ABANDONED_MEMORY],
    abandoned_len: usize,
    abandoned_next: usize,
    now: u64,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// An empty reassembler that adopts the stream of the first fragment it gets. Limits of
    /// 0 are taken as 1.
    pub fn new(config: ReassemblerConfig) -> Self {
        let config = ReassemblerConfig {
            max_frames: config.max_frames.max(1),
            max_bytes: config.max_bytes.max(1),
            ..config
        };
        Reassembler {
            config,
            stream: None,
            last_delivered: None,
            partials: Vec::with_capacity(config.max_frames.min(64)),
            abandoned: [0; ABANDONED_MEMORY],
            abandoned_len: 0,
            abandoned_next: 0,
            now: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ReassemblerConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// The stream being reassembled, once known.
    pub fn stream(&self) -> Option<u32> {
        self.stream
    }

    /// The last frame delivered in this stream.
    pub fn last_delivered(&self) -> Option<u64> {
        self.last_delivered
    }

    /// Drops every incomplete frame (counted as superseded), forgets the frames delivered
    /// and abandoned, and from now on takes only `stream` (or, with `None`, the first
    /// stream seen). Call it with the stream of each new [`Accepted`]; a restarted server
    /// has a new stream whose frames may start again from 0.
    pub fn reset(&mut self, stream: Option<u32>) {
        self.stats.dropped_superseded += self.partials.len() as u64;
        self.partials.clear();
        self.update_held();
        self.stream = stream;
        self.last_delivered = None;
        self.abandoned_len = 0;
        self.abandoned_next = 0;
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next: the earliest
    /// deadline of an incomplete frame.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.partials.iter().map(|p| p.deadline).min()
    }

    /// Drops the incomplete frames whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        let expired = |p: &Partial| p.deadline <= now;
        if self.partials.iter().any(expired) {
            self.drop_where(DropReason::Timeout, expired);
        }
    }

    /// Parses `datagram` as a fragment and handles it (see
    /// [`handle_fragment`](Self::handle_fragment)); anything else is
    /// [`Outcome::Invalid`].
    pub fn handle_datagram(&mut self, now: u64, datagram: &[u8]) -> Outcome {
        self.handle_timeout(now);
        match parse_fragment(datagram) {
            Ok(fragment) => self.handle_fragment(now, &fragment),
            Err(error) => {
                self.stats.invalid += 1;
                Outcome::Invalid(error)
            }
        }
    }

    /// Handles one fragment received at `now` (a fragment from [`parse`], whose header is
    /// checked; a header built by hand is checked here too).
    pub fn handle_fragment(&mut self, now: u64, fragment: &Fragment<'_>) -> Outcome {
        self.handle_timeout(now);
        let h = &fragment.header;
        let valid = h.check().map_err(DatagramError::from).and_then(|()| {
            if fragment.payload.len() == h.payload_len() {
                Ok(())
            } else {
                Err(FragmentError::PayloadLength {
                    expected: h.payload_len(),
                    actual: fragment.payload.len(),
                }
                .into())
            }
        });
        if let Err(error) = valid {
            self.stats.invalid += 1;
            return Outcome::Invalid(error);
        }
        match self.stream {
            Some(stream) if stream != h.stream => {
                self.stats.other_stream += 1;
                return Outcome::OtherStream(h.stream);
            }
            Some(_) => {}
            None => self.stream = Some(h.stream),
        }
        if self.last_delivered.is_some_and(|last| h.frame <= last) || self.is_abandoned(h.frame) {
            self.stats.late += 1;
            return Outcome::Late;
        }
        if h.total_len as usize > self.config.max_bytes {
            self.stats.too_large += 1;
            return Outcome::TooLarge(h.total_len);
        }

        let at = match self.partials.iter().position(|p| p.frame == h.frame) {
            Some(at) => {
                let p = &self.partials[at];
                if (p.total_len, p.fragment_size, p.count)
                    != (h.total_len, h.fragment_size, h.count)
                {
                    let frame = h.frame;
                    self.drop_where(DropReason::Inconsistent, |p| p.frame == frame);
                    return Outcome::Inconsistent;
                }
                if p.has(h.index) {
                    self.stats.duplicates += 1;
                    return Outcome::Duplicate;
                }
                at
            }
            // A one-fragment frame is complete at once and never held.
            None if h.count == 1 => {
                return self.deliver(h.frame, fragment.payload.to_vec());
            }
            None => match self.admit(h) {
                Some(at) => at,
                None => return Outcome::Evicted,
            },
        };

        let p = &mut self.partials[at];
        let offset = h.offset();
        p.buf[offset..offset + fragment.payload.len()].copy_from_slice(fragment.payload);
        p.mark(h.index);
        if p.received < p.count {
            return Outcome::Buffered;
        }
        let done = self.partials.swap_remove(at);
        self.update_held();
        self.deliver(done.frame, done.buf)
    }

    /// Makes room for a new frame and holds it; `None` if the newcomer is the one evicted.
    fn admit(&mut self, h: &FragmentHeader) -> Option<usize> {
        let needed = h.total_len as usize;
        loop {
            let fits = self.partials.len() < self.config.max_frames
                && self.stats.bytes_held + needed <= self.config.max_bytes;
            if fits {
                break;
            }
            // Not empty: an empty set holds 0 bytes and fewer than max_frames (≥ 1) frames,
            // and the newcomer is at most max_bytes.
            let oldest = self.partials.iter().map(|p| p.frame).min()?;
            if oldest > h.frame {
                self.stats.dropped_evicted += 1;
                self.remember_abandoned(h.frame);
                return None;
            }
            self.drop_where(DropReason::Evicted, |p| p.frame == oldest);
        }
        self.partials.push(Partial {
            frame: h.frame,
            total_len: h.total_len,
            fragment_size: h.fragment_size,
            count: h.count,
            received: 0,
            have: vec![0; (h.count as usize).div_ceil(64)],
            buf: vec![0; needed],
            deadline: self.now.saturating_add(self.config.deadline_ns),
        });
        self.update_held();
        Some(self.partials.len() - 1)
    }

    /// Delivers a whole frame: older incomplete frames are superseded.
    fn deliver(&mut self, frame: u64, message: Vec<u8>) -> Outcome {
        self.last_delivered = Some(frame);
        self.stats.completed += 1;
        if self.partials.iter().any(|p| p.frame < frame) {
            self.drop_where(DropReason::Superseded, |p| p.frame < frame);
        }
        Outcome::Complete(Reassembled {
            stream: self.stream.unwrap_or_default(),
            frame,
            message,
        })
    }

    /// Drops the held frames `which` selects, counting them under `why`.
    fn drop_where(&mut self, why: DropReason, which: impl Fn(&Partial) -> bool) {
        let mut dropped = Vec::new();
        self.partials.retain(|p| {
            let drop = which(p);
            if drop {
                dropped.push(p.frame);
            }
            !drop
        });
        let counter = match why {
            DropReason::Timeout => &mut self.stats.dropped_timeout,
            DropReason::Superseded => &mut self.stats.dropped_superseded,
            DropReason::Evicted => &mut self.stats.dropped_evicted,
            DropReason::Inconsistent => &mut self.stats.dropped_inconsistent,
        };
        *counter += dropped.len() as u64;
        if !matches!(why, DropReason::Superseded) {
            // Superseded frames are below the last delivered one: already refused as late.
            for frame in dropped {
                self.remember_abandoned(frame);
            }
        }
        self.update_held();
    }

    fn remember_abandoned(&mut self, frame: u64) {
        self.abandoned[self.abandoned_next] = frame;
        self.abandoned_next = (self.abandoned_next + 1) % ABANDONED_MEMORY;
        self.abandoned_len = (self.abandoned_len + 1).min(ABANDONED_MEMORY);
    }

    fn is_abandoned(&self, frame: u64) -> bool {
        self.abandoned[..self.abandoned_len].contains(&frame)
    }

    fn update_held(&mut self) {
        let held: usize = self.partials.iter().map(|p| p.buf.len()).sum();
        self.stats.frames_held = self.partials.len();
        self.stats.bytes_held = held;
        self.stats.bytes_held_max = self.stats.bytes_held_max.max(held);
    }
}

impl fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembler")
            .field("config", &self.config)
            .field("stream", &self.stream)
            .field("last_delivered", &self.last_delivered)
            .field("frames_held", &self.partials.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fragment of the worked example in `docs/protocol.md`, 10: fragment 1 of 3 of a
    /// 3000-byte message at the default MTU.
    fn example_header() -> FragmentHeader {
        FragmentHeader {
            stream: 0x1A2B_3C4D,
            frame: 1234,
            index: 1,
            count: 3,
            total_len: 3000,
            fragment_size: (DEFAULT_MTU - FRAGMENT_HEADER_SIZE) as u32,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The example header as the document lists it: one field per line.
    fn annotated(h: &FragmentHeader, bytes: &[u8]) -> String {
        let mut out = String::from("```text\noffset  bytes                    field\n");
        let mut at = 0;
        let mut line = |len: usize, what: String| {
            out += &format!("{at:>6}  {:<23}  {what}\n", hex(&bytes[at..at + len]));
            at += len;
        };
        line(4, "magic \"CAMU\"".into());
        line(1, format!("version {VERSION}"));
        line(1, format!("kind {} (fragment)", Kind::Fragment.code()));
        line(2, "reserved".into());
        line(4, format!("stream 0x{:08x}", h.stream));
        line(4, format!("total_len {}", h.total_len));
        line(8, format!("frame {}", h.frame));
        line(4, format!("index {}", h.index));
        line(4, format!("count {}", h.count));
        line(4, format!("fragment_size {}", h.fragment_size));
        assert_eq!(at, FRAGMENT_HEADER_SIZE);
        out + "```\n"
    }

    #[test]
    fn doc_example_matches_the_encoder() {
        let doc = include_str!("../../docs/protocol.md");
        let h = example_header();
        let bytes = h.encode();
        assert_eq!(h.offset(), 1164);
        assert_eq!(h.payload_len(), 1164);
        let block = annotated(&h, &bytes);
        assert!(
            doc.contains(&block),
            "docs/protocol.md lacks this block (paste it in):\n{block}"
        );
        let dump = format!("```text\n{}\n```\n", hex(&bytes));
        assert!(
            doc.contains(&dump),
            "docs/protocol.md lacks this block (paste it in):\n{dump}"
        );
    }

    #[test]
    fn layout_offsets() {
        let message: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let fragmenter = Fragmenter::new(&message, 0x1A2B_3C4D, 1234, DEFAULT_MTU).unwrap();
        let bytes = fragmenter.fragment(1).unwrap().to_vec();
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        assert_eq!(&bytes[0..4], b"CAMU");
        assert_eq!(bytes[4], 1);
        assert_eq!(bytes[5], 1);
        assert_eq!(&bytes[6..8], &[0, 0]);
        assert_eq!(u32_at(8), 0x1A2B_3C4D);
        assert_eq!(u32_at(12), 3000);
        assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().unwrap()), 1234);
        assert_eq!(u32_at(24), 1);
        assert_eq!(u32_at(28), 3);
        assert_eq!(u32_at(32), 1164);
        assert_eq!(bytes.len(), DEFAULT_MTU);
        assert_eq!(&bytes[36..], &message[1164..2328]);
        assert_eq!(bytes[..36], example_header().encode());

        let sub = Subscribe {
            cookie: [7; COOKIE_LEN],
            mtu: 1400,
            token: b"tok",
            settings: br#"{"fps":10}"#,
        }
        .to_vec()
        .unwrap();
        assert_eq!(sub.len(), MIN_REQUEST_SIZE);
        assert_eq!(&sub[..8], b"CAMU\x01\x02\x00\x00");
        assert_eq!(&sub[8..24], &[7; 16]);
        assert_eq!(&sub[24..28], &[3, 0, 10, 0]);
        assert_eq!(u32::from_le_bytes(sub[28..32].try_into().unwrap()), 1400);
        assert_eq!(&sub[32..35], b"tok");
        assert_eq!(&sub[35..45], br#"{"fps":10}"#);
        assert!(sub[45..].iter().all(|&b| b == 0));

        let ka = Keepalive { cookie: [9; 16] }.encode();
        assert_eq!(&ka[..8], b"CAMU\x01\x03\x00\x00");
        assert_eq!(&ka[8..24], &[9; 16]);
        assert!(ka[24..].iter().all(|&b| b == 0));
        assert_eq!(Unsubscribe { cookie: [9; 16] }.encode()[5], 4);

        let acc = Accepted {
            cookie: [1; 16],
            stream: 5,
            mtu: 1200,
            keepalive_ms: 1000,
            timeout_ms: 5000,
        }
        .encode();
        assert_eq!(&acc[..8], b"CAMU\x01\x05\x00\x00");
        let a32 = |o: usize| u32::from_le_bytes(acc[o..o + 4].try_into().unwrap());
        assert_eq!((a32(24), a32(28), a32(32), a32(36)), (5, 1200, 1000, 5000));
        let ch = Challenge { cookie: [2; 16] }.encode();
        assert_eq!(&ch[..8], b"CAMU\x01\x06\x00\x00");
        let re = Refused {
            reason: RefuseReason::Full,
        }
        .encode();
        assert_eq!(re, *b"CAMU\x01\x07\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00");
    }

    #[test]
    fn every_request_and_reply_round_trips() {
        let cookie = *b"0123456789abcdef";
        let sub = Subscribe {
            cookie,
            mtu: 0,
            token: b"secret",
            settings: br#"{"quality":"auto","cameras":[0,2]}"#,
        };
        let bytes = sub.to_vec().unwrap();
        assert_eq!(parse(&bytes), Ok(Datagram::Subscribe(sub)));
        let update = sub.settings_update().unwrap();
        assert_eq!(update.cameras.map(|c| c.contains(2)), Some(true));
        let empty = Subscribe {
            settings: b"",
            ..sub
        };
        assert_eq!(empty.settings_update(), Ok(SettingsUpdate::default()));
        let bad = Subscribe {
            settings: br#"{"fps":-1}"#,
            ..sub
        };
        assert!(matches!(bad.settings_update(), Err(ControlError::Json(_))));
        let longest = Subscribe {
            cookie,
            mtu: MAX_MTU as u32,
            token: &[b't'; MAX_TOKEN_LEN],
            settings: &[b' '; MAX_SETTINGS_LEN],
        };
        let bytes = longest.to_vec().unwrap();
        assert_eq!(bytes.len(), MAX_REQUEST_SIZE);
        assert_eq!(parse(&bytes), Ok(Datagram::Subscribe(longest)));

        let ka = Keepalive { cookie };
        assert_eq!(parse(&ka.encode()), Ok(Datagram::Keepalive(ka)));
        let un = Unsubscribe { cookie };
        assert_eq!(parse(&un.encode()), Ok(Datagram::Unsubscribe(un)));
        let acc = Accepted {
            cookie,
            stream: u32::MAX,
            mtu: MIN_MTU as u32,
            keepalive_ms: DEFAULT_KEEPALIVE_MS,
            timeout_ms: DEFAULT_SUBSCRIPTION_TIMEOUT_MS,
        };
        assert_eq!(parse(&acc.encode()), Ok(Datagram::Accepted(acc)));
        let ch = Challenge { cookie };
        assert_eq!(parse(&ch.encode()), Ok(Datagram::Challenge(ch)));
        for code in 0..8 {
            let re = Refused {
                reason: RefuseReason::from_code(code),
            };
            assert_eq!(re.reason.code(), code);
            assert_eq!(parse(&re.encode()), Ok(Datagram::Refused(re)));
        }
        // Replies may grow later fields: bytes after the fixed part are ignored.
        let mut longer = acc.encode().to_vec();
        longer.extend_from_slice(&[0xEE; 8]);
        assert_eq!(parse(&longer), Ok(Datagram::Accepted(acc)));
        for kind in 1..=7 {
            assert_eq!(Kind::from_code(kind).unwrap().code(), kind);
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(8), None);
    }

    #[test]
    fn every_encode_error() {
        let m = [1u8; 10];
        assert_eq!(
            Fragmenter::new(&m, 0, 0, 575).unwrap_err(),
            EncodeError::Mtu(575)
        );
        assert_eq!(
            Fragmenter::new(&m, 0, 0, 65_508).unwrap_err(),
            EncodeError::Mtu(65_508)
        );
        assert_eq!(
            Fragmenter::new(&[], 0, 0, 1200).unwrap_err(),
            EncodeError::EmptyMessage
        );
        let mut f = Fragmenter::new(&m, 0, 0, 1200).unwrap();
        let mut small = [0u8; 45];
        assert_eq!(
            f.write_next(&mut small),
            Some(Err(EncodeError::BufferTooSmall {
                needed: 46,
                available: 45
            }))
        );
        let mut buf = [0u8; 1200];
        assert_eq!(f.write_next(&mut buf), Some(Ok(46)));
        assert_eq!(f.write_next(&mut buf), None);
        let sub = Subscribe {
            cookie: [0; 16],
            mtu: 0,
            token: &[0; MAX_TOKEN_LEN + 1],
            settings: b"",
        };
        assert_eq!(sub.to_vec(), Err(EncodeError::TokenTooLong(129)));
        let sub = Subscribe {
            token: b"",
            settings: &[0; MAX_SETTINGS_LEN + 1],
            ..sub
        };
        assert_eq!(sub.to_vec(), Err(EncodeError::SettingsTooLong(385)));
        let sub = Subscribe {
            settings: b"",
            mtu: 100,
            ..sub
        };
        assert_eq!(sub.to_vec(), Err(EncodeError::Mtu(100)));
        let sub = Subscribe { mtu: 0, ..sub };
        assert_eq!(
            sub.encode_into(&mut [0; 63]),
            Err(EncodeError::BufferTooSmall {
                needed: 64,
                available: 63
            })
        );
    }

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn every_parse_error() {
        let message = [0xAB; 3000];
        let good = Fragmenter::new(&message, 1, 2, DEFAULT_MTU)
            .unwrap()
            .fragment(2)
            .unwrap()
            .to_vec();
        assert_eq!(good.len(), 36 + 3000 - 2 * 1164);
        assert!(parse(&good).is_ok());
        let truncated = |needed, actual| DatagramError::Truncated { needed, actual };
        assert_eq!(parse(b""), Err(truncated(8, 0)));
        assert_eq!(parse(b"CAM"), Err(truncated(8, 3)));
        assert_eq!(parse(b"CAMU"), Err(truncated(8, 4)));
        assert_eq!(parse(b"CAMU\x01"), Err(truncated(8, 5)));
        assert_eq!(parse(b"CAMF\x01\x00\x00\x00"), Err(DatagramError::BadMagic));
        assert_eq!(parse(b"X"), Err(DatagramError::BadMagic));
        assert_eq!(parse(b"CAMU\x02"), Err(DatagramError::Version { found: 2 }));
        assert_eq!(parse(b"CAMU\x01\x00"), Err(DatagramError::UnknownKind(0)));
        assert_eq!(parse(b"CAMU\x01\x08"), Err(DatagramError::UnknownKind(8)));
        assert_eq!(parse(&good[..35]), Err(truncated(36, 35)));

        let frag = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            edit(&mut b);
            parse(&b).map(|_| ())
        };
        let ferr = |e: FragmentError| Err::<(), _>(DatagramError::Fragment(e));
        assert_eq!(
            frag(&|b| put32(b, 32, 539)),
            ferr(FragmentError::FragmentSize(539))
        );
        assert_eq!(
            frag(&|b| put32(b, 32, 65_472)),
            ferr(FragmentError::FragmentSize(65_472))
        );
        assert_eq!(
            frag(&|b| put32(b, 12, 0)),
            ferr(FragmentError::EmptyMessage)
        );
        assert_eq!(
            frag(&|b| put32(b, 28, 4)),
            ferr(FragmentError::Count {
                count: 4,
                expected: 3
            })
        );
        assert_eq!(
            frag(&|b| put32(b, 12, u32::MAX)),
            ferr(FragmentError::Count {
                count: 3,
                expected: u32::MAX.div_ceil(1164)
            })
        );
        assert_eq!(
            frag(&|b| put32(b, 24, 3)),
            ferr(FragmentError::Index { index: 3, count: 3 })
        );
        assert_eq!(
            frag(&|b| b.push(0)),
            ferr(FragmentError::PayloadLength {
                expected: 672,
                actual: 673
            })
        );
        assert_eq!(
            frag(&|b| {
                b.pop();
            }),
            ferr(FragmentError::PayloadLength {
                expected: 672,
                actual: 671
            })
        );
        // Claiming to be fragment 1 makes it a full-size fragment that is too short.
        assert_eq!(
            frag(&|b| put32(b, 24, 1)),
            ferr(FragmentError::PayloadLength {
                expected: 1164,
                actual: 672
            })
        );
        // The reserved bytes are ignored.
        assert!(frag(&|b| b[6] = 0xFF).is_ok());

        let sub = Subscribe {
            cookie: [0; 16],
            mtu: 0,
            token: b"t",
            settings: b"{}",
        }
        .to_vec()
        .unwrap();
        assert_eq!(parse(&sub[..63]), Err(DatagramError::RequestTooShort(63)));
        assert_eq!(parse(&sub[..31]), Err(truncated(32, 31)));
        let mut long = sub.clone();
        long.resize(MAX_REQUEST_SIZE + 1, 0);
        assert_eq!(parse(&long), Err(DatagramError::RequestTooLong(545)));
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = sub.clone();
            edit(&mut b);
            parse(&b).map(|_| ())
        };
        assert_eq!(
            with(&|b| b[24..26].copy_from_slice(&129u16.to_le_bytes())),
            Err(DatagramError::TokenTooLong(129))
        );
        assert_eq!(
            with(&|b| b[26..28].copy_from_slice(&385u16.to_le_bytes())),
            Err(DatagramError::SettingsTooLong(385))
        );
        assert_eq!(
            with(&|b| b[26..28].copy_from_slice(&32u16.to_le_bytes())),
            Err(DatagramError::FieldsPastEnd {
                needed: 65,
                actual: 64
            })
        );
        assert_eq!(with(&|b| put32(b, 28, 575)), Err(DatagramError::Mtu(575)));
        assert_eq!(
            with(&|b| put32(b, 28, 65_508)),
            Err(DatagramError::Mtu(65_508))
        );
        let ka = Keepalive { cookie: [0; 16] }.encode();
        assert_eq!(parse(&ka[..63]), Err(DatagramError::RequestTooShort(63)));
        assert_eq!(parse(&ka[..23]), Err(truncated(24, 23)));
        let acc = Accepted {
            cookie: [0; 16],
            stream: 0,
            mtu: 1200,
            keepalive_ms: 0,
            timeout_ms: 0,
        }
        .encode();
        assert_eq!(parse(&acc[..39]), Err(truncated(40, 39)));
        let mut bad = acc;
        put32(&mut bad, 28, 0);
        assert_eq!(parse(&bad), Err(DatagramError::Mtu(0)));
        assert_eq!(
            parse(
                &Refused {
                    reason: RefuseReason::Full
                }
                .encode()[..15]
            ),
            Err(truncated(16, 15))
        );

        assert_eq!(
            parse_fragment(&ka),
            Err(DatagramError::UnexpectedKind(Kind::Keepalive))
        );
    }

    /// Anti-amplification: whatever the server answers to a request, including a refusal of
    /// a malformed one, is no larger than the request.
    #[test]
    fn replies_never_exceed_their_request() {
        let replies = [
            Accepted {
                cookie: [0; 16],
                stream: 0,
                mtu: 1200,
                keepalive_ms: 0,
                timeout_ms: 0,
            }
            .encode()
            .len(),
            Challenge { cookie: [0; 16] }.encode().len(),
            Refused {
                reason: RefuseReason::Full,
            }
            .encode()
            .len(),
        ];
        assert_eq!(replies.into_iter().max(), Some(MAX_REPLY_SIZE));
        let mut rng = fastrand::Rng::with_seed(0xA3F1);
        let (mut requests, mut refusals) = (0, 0);
        for _ in 0..20_000 {
            let len = rng.usize(..700);
            let mut bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            if bytes.len() >= 8 && rng.u8(..4) != 0 {
                bytes[..4].copy_from_slice(&MAGIC);
                bytes[4] = if rng.u8(..8) == 0 { 2 } else { VERSION };
                bytes[5] = rng.u8(1..5);
                if bytes.len() >= 28 && rng.bool() {
                    bytes[24] = rng.u8(..);
                    bytes[25] = 0;
                    bytes[26] = rng.u8(..);
                    bytes[27] = rng.u8(..2);
                }
            }
            match parse(&bytes) {
                Ok(d) if d.kind().is_request() => {
                    requests += 1;
                    assert!(MAX_REPLY_SIZE <= bytes.len());
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = refusal_for(&bytes, &e) {
                        refusals += 1;
                        assert!(r.encode().len() <= bytes.len(), "{e:?}");
                    }
                }
            }
        }
        assert!(requests > 100 && refusals > 100, "{requests} {refusals}");
        // Silence for garbage and for short requests.
        let short = Keepalive { cookie: [0; 16] }.encode();
        let e = parse(&short[..40]).unwrap_err();
        assert_eq!(refusal_for(&short[..40], &e), None);
        let mut v2 = short;
        v2[4] = 2;
        let e = parse(&v2).unwrap_err();
        assert_eq!(
            refusal_for(&v2, &e),
            Some(Refused {
                reason: RefuseReason::UnsupportedVersion
            })
        );
        let mut bad_mtu = Subscribe {
            cookie: [0; 16],
            mtu: 0,
            token: b"",
            settings: b"",
        }
        .to_vec()
        .unwrap();
        put32(&mut bad_mtu, 28, 1);
        let e = parse(&bad_mtu).unwrap_err();
        assert_eq!(
            refusal_for(&bad_mtu, &e),
            Some(Refused {
                reason: RefuseReason::BadRequest
            })
        );
        let noise = [0u8; 100];
        assert_eq!(refusal_for(&noise, &parse(&noise).unwrap_err()), None);
    }

    #[test]
    fn fragments_cover_the_message() {
        for (len, mtu) in [
            (1usize, 576usize),
            (540, 576),
            (541, 576),
            (1164, 1200),
            (1165, 1200),
        ] {
            let message: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let f = Fragmenter::new(&message, 0, 0, mtu).unwrap();
            let count = f.fragment_count() as usize;
            assert_eq!(count, len.div_ceil(mtu - FRAGMENT_HEADER_SIZE));
            assert_eq!(f.len(), count);
            let mut joined = Vec::new();
            let mut buf = vec![0u8; mtu];
            let mut writer = f.clone();
            for (i, frag) in f.enumerate() {
                assert!(frag.datagram_len() <= mtu);
                let n = writer.write_next(&mut buf).unwrap().unwrap();
                assert_eq!(buf[..n], frag.to_vec()[..]);
                assert_eq!(parse_fragment(&buf[..n]), Ok(frag));
                assert_eq!(frag.header.index as usize, i);
                joined.extend_from_slice(frag.payload);
            }
            assert!(writer.write_next(&mut buf).is_none());
            assert_eq!(joined, message);
        }
    }
}
