//! Checking camera images against the synthetic test pattern.

use camring_jpeg::Decoder;
use camring_protocol::layout::{CameraEntry, CAM_SYNTHETIC};
use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;

/// The result of checking one camera image.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The image is exactly (raw) or nearly (JPEG) the pattern it claims to be.
    Verified,
    /// The image is not synthetic or is missing: nothing to check.
    Unchecked,
    /// The image is not the pattern it claims to be.
    Corrupt(String),
}

/// Verifies camera images; keeps a JPEG decoder to reuse.
#[derive(Debug)]
pub struct Verifier {
    decoder: Option<Decoder>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A new verifier.
    pub fn new() -> Self {
        Verifier { decoder: None }
    }

    /// The JPEG decoder, created on first use.
    pub(crate) fn decoder(&mut self) -> Result<&mut Decoder, String> {
        if self.decoder.is_none() {
            let d = Decoder::new().map_err(|e| format!("no JPEG decoder: {e}"))?;
            self.decoder = Some(d);
        }
        Ok(self.decoder.as_mut().expect("just created"))
    }

    /// Checks one camera's image: the synthetic pattern for camera `entry.camera_id` and
    /// frame `entry.sequence`.
    pub fn check(&mut self, entry: &CameraEntry, payload: &[u8]) -> Verdict {
        if entry.flags & CAM_SYNTHETIC == 0 || entry.is_missing() {
            return Verdict::Unchecked;
        }
        let Some(format) = entry.pixel_format() else {
            return Verdict::Corrupt(format!("unknown format code {}", entry.format));
        };
        if format == PixelFormat::Jpeg {
            let decoder = match self.decoder() {
                Ok(d) => d,
                Err(why) => return Verdict::Corrupt(why),
            };
            return match decoder.verify_pattern(
                payload,
                entry.width,
                entry.height,
                entry.camera_id,
                entry.sequence,
            ) {
                Ok(()) => Verdict::Verified,
                Err(e) => Verdict::Corrupt(e.to_string()),
            };
        }
        let Some(g) = Geometry::new(format, entry.width, entry.height, entry.stride as usize)
        else {
            return Verdict::Corrupt(format!(
                "{}x{} {format} stride {} cannot carry the pattern",
                entry.width, entry.height, entry.stride
            ));
        };
        match pattern::verify(payload, &g, entry.camera_id, entry.sequence) {
            Ok(()) => Verdict::Verified,
            Err(e) => Verdict::Corrupt(e.to_string()),
        }
    }

    /// Checks every camera of a multi-frame; the first corruption found, if any, else
    /// whether at least one camera was verified.
    pub fn check_all<'p>(
        &mut self,
        cameras: &[CameraEntry],
        payload: impl Fn(usize) -> &'p [u8],
    ) -> Verdict {
        let mut any = false;
        for (i, c) in cameras.iter().enumerate() {
            match self.check(c, payload(i)) {
                Verdict::Verified => any = true,
                Verdict::Unchecked => {}
                v @ Verdict::Corrupt(_) => return v,
            }
        }
        if any {
            Verdict::Verified
        } else {
            Verdict::Unchecked
        }
    }
}
