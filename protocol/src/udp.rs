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

mod fragment;
mod messages;
mod parse;
mod reassembly;

pub use fragment::*;
pub use messages::*;
pub use parse::*;
pub use reassembly::*;

#[cfg(test)]
mod tests;
