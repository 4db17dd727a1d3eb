//! A multi-frame as the ring thread copies it out: a leaf module that the ring side
//! ([`crate::ring`]) makes and the encoding side ([`crate::encode`]) reads, so neither
//! depends on the other for it.

use bytes::Bytes;
use camring_protocol::wire::CameraInfo;

/// One camera of a multi-frame copied out of the ring.
#[derive(Debug, Clone)]
pub struct SourceCamera {
    /// Its entry as sent on the wire (length aside).
    pub info: CameraInfo,
    /// The validated copy of its payload (empty when missing).
    pub payload: Bytes,
}

/// A multi-frame copied out of the ring and validated.
#[derive(Debug, Clone)]
pub struct RingFrame {
    /// The ring's frame number.
    pub frame: u64,
    /// The group clock's tick.
    pub tick_ns: u64,
    /// When the producer published it.
    pub publish_ns: u64,
    /// When the adapter copied it out.
    pub read_ns: u64,
    /// Every camera of the ring, in ring order.
    pub cameras: Vec<SourceCamera>,
}
