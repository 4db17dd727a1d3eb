//! The camring shared-memory ring: one producer writes multi-frames into fixed-size slots
//! of a POSIX shared-memory segment; any number of readers, in any process, read the newest
//! (or the next) frame zero-copy, never slowing the producer down.
//!
//! * [`Writer`] creates (or takes over) a ring and publishes frames through
//!   [`SlotLoan`]s that are filled in place.
//! * [`Reader`] attaches, reads [`Frame`] views (validated header, zero-copy payloads as
//!   racy [`SharedBytes`] views, [`Frame::validate`] or [`Frame::read_with`] after use) or
//!   copies ([`Reader::read_copy`]), and waits on a futex without spinning
//!   ([`Reader::wait`], [`Reader::wait_async`]).
//! * [`admin`] lists and removes rings.
//!
//! The byte layout and the protocol are specified in `docs/ring.md`. This is the only
//! crate of camring with unsafe code: every access to a mapping is in `segment.rs`, and the
//! volatile view of bytes that others may be writing in `racy.rs`.

#![warn(missing_docs)]

#[cfg(not(loom))]
pub mod admin;
#[cfg(not(loom))]
pub mod clock;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod notify;
#[cfg(not(loom))]
mod racy;
#[cfg(not(loom))]
mod reader;
#[cfg(not(loom))]
mod segment;
pub mod seqlock;
mod sync;
#[cfg(all(test, not(loom)))]
mod tests;
#[cfg(not(loom))]
mod writer;

#[cfg(not(loom))]
pub use error::{CreateError, OpenError, ReadError, WriteError};
#[cfg(not(loom))]
pub use racy::SharedBytes;
#[cfg(not(loom))]
pub use reader::{Follow, Frame, OwnedFrame, ProducerState, ReadMode, Reader, ReaderStats};
#[cfg(not(loom))]
pub use segment::{path_of, valid_name, PREFIX, SHM_DIR};
#[cfg(not(loom))]
pub use writer::{Origin, RingConfig, SlotLoan, Writer, MODE_GROUP, MODE_OWNER};
