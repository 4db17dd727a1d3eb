//! The memcpy baseline: the multi-frame's bytes copied into one buffer per consumer, in
//! the sender's process. What any transport costs at least: one copy of the payload.

use anyhow::{bail, Result};

use crate::ctx::{SinkCtx, SourceCtx};
use crate::profile::Frames;

/// The sender, which also hosts the consumers: per multi-frame, every camera's image is
/// copied into each consumer's buffer (allocated and pre-faulted once), contiguously.
pub fn source(ctx: &mut SourceCtx) -> Result<()> {
    ctx.host_consumers();
    let len = ctx.frames().len();
    // Non-zero fill: the pages are written, hence faulted in, before the window.
    let mut buffers: Vec<Vec<u8>> = (0..ctx.spec().consumers).map(|_| vec![0xa5; len]).collect();
    ctx.ready("local")?;
    while let Some(stamp) = ctx.next_stamp() {
        for (i, buffer) in buffers.iter_mut().enumerate() {
            let copied = copy_frame(ctx.frames(), buffer);
            ctx.local_frame(i, stamp, copied);
        }
    }
    Ok(())
}

/// Copies every image of `frames` into `buffer`, one after the other; returns the bytes
/// copied.
fn copy_frame(frames: &Frames, buffer: &mut [u8]) -> usize {
    let mut at = 0;
    for image in &frames.images {
        buffer[at..at + image.len()].copy_from_slice(image);
        at += image.len();
    }
    // The copy must happen although nothing reads the buffer.
    std::hint::black_box(&mut *buffer);
    at
}

/// Memcpy has no consumer processes: the runner starts none.
pub fn sink(ctx: &mut SinkCtx) -> Result<()> {
    bail!(
        "{} has no consumer process (its consumers run in the sender)",
        ctx.spec().transport
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn copies_every_image_contiguously() {
        let frames = Frames::new(Profile::Small).unwrap();
        let mut buffer = vec![0u8; frames.len()];
        assert_eq!(copy_frame(&frames, &mut buffer), frames.len());
        assert_eq!(buffer, frames.images.concat());
    }
}
