//! What the ring's benches (publish, wake, readers) share beyond camring-testkit's
//! measuring kit: a group of raw cameras publishing pre-made images.

// Each bench compiles this module on its own, and not every bench uses every method.
#![allow(dead_code)]

use anyhow::Result;

/// A group of identical cameras with pre-generated source images (the synthetic pattern,
/// made once), published into a ring by copying: what a capture thread handing over a
/// finished image does.
#[derive(Debug)]
pub struct Group {
    pub format: camring_protocol::PixelFormat,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub sources: Vec<Vec<u8>>,
}

impl Group {
    pub fn new(
        cameras: u32,
        format: camring_protocol::PixelFormat,
        width: u32,
        height: u32,
    ) -> Group {
        use camring_protocol::pattern::{self, Geometry};
        let stride = format.min_stride(width).expect("raw format") as usize;
        let g = Geometry::new(format, width, height, stride).expect("pattern geometry");
        let sources = (0..cameras)
            .map(|cam| {
                let mut buf = vec![0u8; g.len()];
                pattern::fill(&mut buf, &g, cam, 0);
                buf
            })
            .collect();
        Group {
            format,
            width,
            height,
            stride,
            sources,
        }
    }

    /// Bytes of one camera image.
    pub fn image_len(&self) -> usize {
        self.sources[0].len()
    }

    /// Bytes of one multi-frame.
    pub fn frame_len(&self) -> usize {
        self.image_len() * self.sources.len()
    }

    /// A ring layout for this group with `slots` slots.
    pub fn ring_config(&self, slots: u32) -> camring_shm::RingConfig {
        let cam = camring_protocol::layout::CameraLayout {
            width: self.width,
            height: self.height,
            format: self.format.code(),
            max_len: u32::try_from(self.image_len()).expect("image under 4 GiB"),
        };
        camring_shm::RingConfig::new(slots, vec![cam; self.sources.len()], 30_000)
    }

    /// The entry of camera `cam` (the loan sets offset and length).
    pub fn entry(
        &self,
        cam: usize,
        capture_ns: u64,
        sequence: u64,
    ) -> camring_protocol::layout::CameraEntry {
        camring_protocol::layout::CameraEntry {
            camera_id: cam as u32,
            format: self.format.code(),
            width: self.width,
            height: self.height,
            stride: self.stride as u32,
            capture_ns,
            sequence,
            ..Default::default()
        }
    }

    /// Publishes one multi-frame: loan, for each camera `push_camera` + copy of the source
    /// image, commit. Returns the frame number.
    pub fn publish(&self, writer: &mut camring_shm::Writer) -> Result<u64> {
        let now = camring_shm::clock::now_ns();
        let mut loan = writer.loan();
        self.fill(&mut loan, now)?;
        Ok(loan.commit(now, 0)?)
    }

    /// Copies every camera's source image into the loan (captured at `now`).
    pub fn fill(&self, loan: &mut camring_shm::SlotLoan<'_>, now: u64) -> Result<()> {
        let seq = loan.frame();
        for (cam, src) in self.sources.iter().enumerate() {
            loan.push_camera(self.entry(cam, now, seq), src.len())?
                .copy_from_slice(src);
        }
        Ok(())
    }
}
