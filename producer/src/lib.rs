//! camring's producer: camera sources, each on its own thread, grouped into multi-frames
//! on one clock and written into one or more rings.
//!
//! - [`source`]: what a camera is (`--source` spellings) and the supervisor that runs and
//!   restarts it; [`synthetic`], [`http`] (MJPEG over HTTP) and, with the `camera`
//!   feature, `camera` (V4L2 through nokhwa) implement it.
//! - [`frame`]: the images they capture and each camera's mailbox, which keeps only the
//!   newest.
//! - [`sync`]: the synchroniser, taking each camera's newest image per tick: fresh,
//!   repeated or missing.
//! - [`output`]: writing a multi-frame into a ring, converting (JPEG encode or decode) in
//!   parallel straight into the slot.
//! - [`group`]: all of it running; [`config`]: the TOML file describing a rig.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "camera")]
pub mod camera;
pub mod camera_modes;
pub mod clock;
pub mod config;
pub mod frame;
pub mod group;
pub mod http;
pub mod mjpeg;
pub mod output;
pub mod source;
pub mod sync;
pub mod synthetic;
#[cfg(test)]
mod test_jpegs;

pub use clock::FrameClock;
pub use group::{Group, GroupConfig};
pub use synthetic::SyntheticSource;
