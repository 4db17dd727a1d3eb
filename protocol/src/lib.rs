//! camring's formats and pure logic: the byte layout of the shared-memory ring and the
//! validation of everything read from it, pixel formats, and the synthetic test pattern.
//!
//! This crate does no IO and contains no unsafe code, so everything in it is tested
//! deterministically. The ring itself (mapping, atomics, wake-ups) is `camring-shm`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
pub mod format;
pub mod layout;
pub mod pattern;
pub mod quic;
pub mod report;
pub mod session;
pub mod udp;
pub mod wire;

pub use format::PixelFormat;
