//! The sender of every ring-based transport (shared memory, and the adapters that read the
//! ring): a ring holding the profile's multi-frame, published by copying the images in,
//! as a producer whose capture threads hand over finished images does.

use anyhow::{bail, Result};
use camring_protocol::layout::{CameraEntry, CameraLayout};
use camring_shm::{RingConfig, SlotLoan, Writer};

use crate::ctx::Stamp;
use crate::profile::{Frames, Rate};

/// Slots of the benchmark's rings (the producer's default).
pub const SLOTS: u32 = 4;

/// A ring being written, removed when dropped.
#[derive(Debug)]
pub struct RingSource {
    writer: Writer,
    name: String,
}

impl RingSource {
    /// Creates ring `name` for `frames` (owner-only, like the producer's).
    pub fn create(name: &str, frames: &Frames) -> Result<RingSource> {
        let max_len = frames.images.iter().map(Vec::len).max().unwrap_or(0);
        let cam = CameraLayout {
            width: frames.width,
            height: frames.height,
            format: frames.format.code(),
            max_len: u32::try_from(max_len)?,
        };
        let config = RingConfig::new(SLOTS, vec![cam; frames.images.len()], Rate::FPS * 1000);
        let writer = Writer::create(name, &config)?;
        Ok(RingSource {
            writer,
            name: name.to_owned(),
        })
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes `stamp`'s multi-frame: every camera's image copied into a loaned slot,
    /// committed. The ring numbers frames from 0 as [`Stamp`] does; they must agree.
    pub fn publish(&mut self, frames: &Frames, stamp: Stamp) -> Result<()> {
        let mut loan = self.writer.loan();
        if loan.frame() != stamp.seq {
            bail!("ring frame {} for stamp {}", loan.frame(), stamp.seq);
        }
        let entry = CameraEntry {
            format: frames.format.code(),
            width: frames.width,
            height: frames.height,
            stride: frames.stride,
            ..CameraEntry::default()
        };
        push_images(&mut loan, entry, &frames.images, stamp)?;
        loan.commit(stamp.capture_ns, 0)?;
        Ok(())
    }
}

/// Copies `images` into `loan`, camera by camera, each with `entry`'s format and size,
/// numbered and captured as `stamp` says.
pub fn push_images(
    loan: &mut SlotLoan<'_>,
    entry: CameraEntry,
    images: &[Vec<u8>],
    stamp: Stamp,
) -> Result<()> {
    for (cam, image) in images.iter().enumerate() {
        let entry = CameraEntry {
            camera_id: cam as u32,
            capture_ns: stamp.capture_ns,
            sequence: stamp.seq,
            ..entry
        };
        loan.push_camera(entry, image.len())?.copy_from_slice(image);
    }
    Ok(())
}

impl Drop for RingSource {
    fn drop(&mut self) {
        // The writer removes its segment when dropped; this covers a writer that could not.
        let _ = std::fs::remove_file(camring_shm::path_of(&self.name));
    }
}
