//! camring's producer: sources of camera images, the group's frame clock, and writing
//! multi-frames into the ring.
//!
//! This first version has the synthetic source ([`synthetic`]): N cameras of any size,
//! rate and format whose pixels encode the camera and frame number, so any consumer can
//! check a frame is whole and correct.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "camera")]
pub mod camera;
pub mod camera_modes;
pub mod clock;
pub mod frame;
pub mod http;
pub mod mjpeg;
pub mod source;
pub mod synthetic;

pub use clock::FrameClock;
pub use synthetic::{SyntheticConfig, SyntheticProducer};
