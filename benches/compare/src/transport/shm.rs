//! The ring in shared memory: the sender publishes into a [`RingSource`]; a consumer
//! attaches a `camring_reader` [`Reader`], sleeps in its blocking wait until a frame is
//! published, and reads the newest one, in place (`shm-zero-copy`) or copied out
//! (`shm-copy`).

use std::time::Duration;

use anyhow::{Context, Result};
use camring_reader::{Frame, OwnedFrame, ReadMode, Reader};
use camring_shm::ReadError;

use crate::ctx::{SinkCtx, SourceCtx};
use crate::profile::{Frames, Transport};
use crate::ring::RingSource;

/// How long a consumer waits for the ring to appear.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest single wait, so that the end of the window is noticed.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// The sender: a ring named after the cell, one multi-frame published per stamp.
pub fn source(ctx: &mut SourceCtx) -> Result<()> {
    let mut ring = RingSource::create(&ctx.spec().name, ctx.frames())
        .with_context(|| format!("creating ring {}", ctx.spec().name))?;
    ctx.ready(ring.name())?;
    while let Some(stamp) = ctx.next_stamp() {
        ring.publish(ctx.frames(), stamp)?;
    }
    Ok(())
}

/// What a consumer expects of every camera: the sent image's length, first and last byte.
#[derive(Debug, Clone)]
struct Expected(Vec<(usize, u8, u8)>);

impl Expected {
    fn new(frames: &Frames) -> Expected {
        Expected(
            frames
                .images
                .iter()
                .map(|i| (i.len(), i[0], i[i.len() - 1]))
                .collect(),
        )
    }

    /// Whether `payloads` (one per camera) look like what was sent: same camera count,
    /// same lengths, same first and last bytes.
    fn matches<'a>(&self, payloads: impl ExactSizeIterator<Item = &'a [u8]>) -> bool {
        self.matches_ends(payloads.map(|p| (p.len(), p.first().copied(), p.last().copied())))
    }

    /// [`Expected::matches`] on each payload's (length, first byte, last byte).
    fn matches_ends(
        &self,
        mut ends: impl ExactSizeIterator<Item = (usize, Option<u8>, Option<u8>)>,
    ) -> bool {
        ends.len() == self.0.len()
            && self
                .0
                .iter()
                .all(|&(len, first, last)| ends.next() == Some((len, Some(first), Some(last))))
    }

    /// Bytes of one multi-frame.
    fn bytes(&self) -> usize {
        self.0.iter().map(|e| e.0).sum()
    }
}

/// What one read produced.
enum Got {
    /// A multi-frame as sent: its number and camera 0's capture time.
    Frame(u64, u64),
    /// A multi-frame not as sent.
    Corrupt,
    /// Nothing (nothing new, or overwritten while read: the consumer was lapped).
    Nothing,
}

/// A consumer: attaches to the ring the sender announced and reads the newest multi-frame
/// each time one is published, until the window is over. Survives the sender's exit.
pub fn sink(ctx: &mut SinkCtx) -> Result<()> {
    let mut reader = Reader::open_wait(ctx.endpoint(), ATTACH_TIMEOUT)
        .with_context(|| format!("attaching to ring {}", ctx.endpoint()))?;
    let expected = Expected::new(ctx.frames());
    let copy = ctx.spec().transport == Transport::ShmCopy;
    let mut owned = OwnedFrame::default();
    ctx.ready()?;
    while !ctx.done() {
        // The futex wait: returns at a publish (or a change of the producer's state).
        if !reader.has_new() && !reader.wait(ctx.remaining().min(MAX_WAIT)) {
            continue;
        }
        let got = if copy {
            read_copy(&mut reader, &mut owned, &expected)
        } else {
            read_in_place(&mut reader, &expected)
        };
        match got {
            Got::Frame(seq, capture_ns) => {
                ctx.frame(seq, capture_ns, expected.bytes());
            }
            Got::Corrupt => ctx.corrupt(),
            Got::Nothing => {}
        }
    }
    Ok(())
}

/// Reads the newest multi-frame in place: looks at every camera's view, then checks the
/// slot was not overwritten meanwhile.
fn read_in_place(reader: &mut Reader, expected: &Expected) -> Got {
    let frame = match reader.try_read(ReadMode::Latest) {
        Ok(Some(frame)) => frame,
        Ok(None) | Err(ReadError::Torn | ReadError::Lapped) => return Got::Nothing,
        Err(ReadError::Corrupt(_)) => return Got::Corrupt,
    };
    // Zero-copy: the two bytes are read in place (volatile loads), nothing else is touched.
    let ok = expected.matches_ends((0..frame.cameras().len()).map(|i| {
        let p = frame.payload(i);
        (p.len(), p.get(0), p.get(p.len().wrapping_sub(1)))
    }));
    judge(&frame, ok)
}

/// The verdict on a zero-copy read: only trusted once the slot is validated again.
fn judge(frame: &Frame<'_>, ok: bool) -> Got {
    if frame.validate().is_err() {
        return Got::Nothing;
    }
    match (ok, frame.cameras().first()) {
        (true, Some(cam)) => Got::Frame(frame.number(), cam.capture_ns),
        _ => Got::Corrupt,
    }
}

/// Copies the newest multi-frame out into `owned` (its buffers reused) and checks it.
fn read_copy(reader: &mut Reader, owned: &mut OwnedFrame, expected: &Expected) -> Got {
    match reader.read_copy(ReadMode::Latest, owned) {
        Ok(true) => {}
        Ok(false) | Err(ReadError::Torn | ReadError::Lapped) => return Got::Nothing,
        Err(ReadError::Corrupt(_)) => return Got::Corrupt,
    }
    let ok = expected.matches(owned.payloads.iter().map(Vec::as_slice));
    match (ok, owned.cameras.first()) {
        (true, Some(cam)) => Got::Frame(owned.header.frame, cam.capture_ns),
        _ => Got::Corrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn expected_rejects_wrong_payloads() {
        let frames = Frames::new(Profile::Medium).unwrap();
        let e = Expected::new(&frames);
        let sent: Vec<&[u8]> = frames.images.iter().map(Vec::as_slice).collect();
        assert!(e.matches(sent.iter().copied()));
        assert_eq!(e.bytes(), frames.len());
        // One camera fewer.
        assert!(!e.matches(sent[1..].iter().copied()));
        // A shorter image.
        let mut short = sent.clone();
        short[2] = &sent[2][..sent[2].len() - 1];
        assert!(!e.matches(short.iter().copied()));
        // Another camera's image in its place (same length would need luck; bytes differ).
        let mut last = frames.images[3].clone();
        *last.last_mut().unwrap() ^= 0xff;
        let mut changed = sent.clone();
        changed[3] = &last;
        assert!(!e.matches(changed.iter().copied()));
    }
}
