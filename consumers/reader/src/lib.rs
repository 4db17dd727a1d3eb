//! What every camring consumer needs on top of the ring's reader: checking frames against
//! the synthetic pattern ([`Verifier`]), latency statistics ([`Latency`]) and the summary
//! every consumer prints ([`Summary`]), the same for `camring read` and network clients.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod received;
mod stats;
mod verify;

pub use camring_shm::{Frame, OwnedFrame, ReadMode, Reader, ReaderStats};
pub use received::{check_downscaled_size, read_code_scaled, MIN_SCALED_CELL};
pub use stats::{Latency, LatencySummary, Summary};
pub use verify::{Verdict, Verifier};
