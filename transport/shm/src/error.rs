//! Errors of the ring, one enum per operation.

use std::io;

use camring_protocol::layout::{LayoutError, SlotError};

/// Why a ring could not be created (or taken over) by a producer.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The ring name is not usable.
    #[error("invalid ring name {0:?}: use 1-200 characters from A-Z a-z 0-9 . _ - (not starting with .)")]
    InvalidName(String),
    /// The requested layout is impossible.
    #[error("invalid ring layout: {0}")]
    InvalidLayout(&'static str),
    /// Another producer is alive and owns the ring.
    #[error("ring {name:?} is owned by a live producer (pid {pid}); stop it first")]
    ProducerAlive {
        /// Ring name.
        name: String,
        /// Pid recorded in the ring.
        pid: u32,
    },
    /// The caller may not open or create the segment.
    #[error("permission denied for ring {0:?} (it belongs to another user; see `camring ls`)")]
    PermissionDenied(String),
    /// /dev/shm has no room for the segment.
    #[error("not enough shared memory for ring {name:?} ({bytes} bytes): /dev/shm is full")]
    NoSpace {
        /// Ring name.
        name: String,
        /// Bytes requested.
        bytes: u64,
    },
    /// Another OS error.
    #[error("ring {name:?}")]
    Io {
        /// Ring name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why a reader could not attach to a ring.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The ring name is not usable.
    #[error("invalid ring name {0:?}")]
    InvalidName(String),
    /// There is no ring of that name.
    #[error("no such ring {0:?} (is the producer running? `camring ls` lists rings)")]
    NotFound(String),
    /// The caller may not open the segment.
    #[error("permission denied for ring {0:?} (it belongs to another user or group)")]
    PermissionDenied(String),
    /// The producer has not finished setting the ring up.
    #[error("ring {0:?} is still being initialized")]
    Initializing(String),
    /// The segment's layout is not one this reader accepts.
    #[error("ring {name:?}")]
    Layout {
        /// Ring name.
        name: String,
        /// What is wrong.
        #[source]
        source: LayoutError,
    },
    /// Another OS error.
    #[error("ring {name:?}")]
    Io {
        /// Ring name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl OpenError {
    /// Whether retrying soon may succeed (the ring does not exist yet or is being set up).
    pub fn is_transient(&self) -> bool {
        matches!(self, OpenError::NotFound(_) | OpenError::Initializing(_))
    }
}

/// Why one read of a slot failed. None of these is fatal: the reader moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A write overlapped the read; the copy is discarded.
    #[error("torn read: the producer wrote the slot while it was read")]
    Torn,
    /// The frame was overwritten by a newer one before it could be read.
    #[error("lapped: the frame was overwritten before it was read")]
    Lapped,
    /// A consistent slot header failed validation (a hostile or corrupt ring).
    #[error("corrupt slot header")]
    Corrupt(#[from] SlotError),
}

/// Why a writer could not fill or publish a slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The payloads do not fit in the slot.
    #[error("payloads need {needed} bytes but a slot holds {capacity}")]
    SlotFull {
        /// Bytes needed.
        needed: u64,
        /// Payload bytes per slot.
        capacity: u64,
    },
    /// More cameras than the ring's layout.
    #[error("{0} cameras but the ring has room for {1}")]
    TooManyCameras(usize, u32),
    /// The camera entries would not pass a reader's validation.
    #[error("camera entries are invalid")]
    Invalid(#[from] SlotError),
}
