//! The byte layout of a camring shared-memory segment (see `docs/ring.md`).
//!
//! Every multi-byte integer is little-endian (the only byte order camring runs on) and
//! naturally aligned. The types here are plain `#[repr(C)]` data with no padding, so they
//! can be copied out of the segment as bytes and parsed with zerocopy: any bit pattern is
//! a valid value, and validation is explicit ([`Superblock::validate`],
//! [`validate_slot`]).
//!
//! The atomic words (sequence numbers, head, futex word, ...) are not part of these
//! structs' meaning for readers: their offsets are given as constants and the shm crate
//! accesses them atomically.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::format::PixelFormat;

/// First eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"CAMRING\0";
/// Layout version; a reader refuses any other.
pub const VERSION: u32 = 1;
/// Page size the layout is aligned to.
pub const PAGE: u64 = 4096;
/// Size of the superblock; slots start right after it.
pub const SUPERBLOCK_SIZE: u64 = PAGE;
/// Size of the header page at the start of each slot; payloads start after it.
pub const SLOT_HEADER_SIZE: u64 = PAGE;
/// Most cameras one multi-frame may carry.
pub const MAX_CAMERAS: usize = 16;
/// Size of the reader table in the superblock.
pub const MAX_READERS: usize = 64;
/// Alignment of each camera payload inside a slot.
pub const PAYLOAD_ALIGN: u64 = 64;
/// Largest slot count a reader accepts.
pub const MAX_SLOTS: u32 = 1 << 16;
/// Frame numbers stay below this, so `2n + 2` never overflows.
pub const MAX_FRAME: u64 = 1 << 62;
/// Largest segment a reader accepts (1 TiB): anything bigger is hostile.
pub const MAX_TOTAL_SIZE: u64 = 1 << 40;

// ---- Offsets of the atomic words of the superblock (bytes from the segment start). ----

/// `u64`: generation, chosen afresh by each producer start: `max(now in CLOCK_REALTIME ns,
/// previous generation + 1)`, so it is unique and grows.
pub const OFF_GENERATION: usize = 512;
/// `u64`: head: the number of multi-frames published; the newest is frame `head - 1`.
pub const OFF_HEAD: usize = 520;
/// `u64`: producer heartbeat, CLOCK_REALTIME nanoseconds, updated at every publish.
pub const OFF_HEARTBEAT: usize = 528;
/// `u32`: pid of the producer that owns the segment.
pub const OFF_PRODUCER_PID: usize = 536;
/// `u32`: segment state, one of the `STATE_*` values.
pub const OFF_STATE: usize = 540;
/// `u32`: futex word, incremented after every publish and every state change; readers
/// sleep on it.
pub const OFF_NOTIFY: usize = 544;
/// `u32`: number of readers sleeping (or about to sleep) on [`OFF_NOTIFY`].
pub const OFF_WAITERS: usize = 548;
/// `u64`: CLOCK_REALTIME nanoseconds at which the current producer started.
pub const OFF_PRODUCER_START: usize = 552;
/// Reader table: [`MAX_READERS`] entries of [`READER_ENTRY_SIZE`] bytes, each starting with
/// an atomic `u32` pid (0 = free).
pub const OFF_READERS: usize = 1024;
/// Size of one reader-table entry.
pub const READER_ENTRY_SIZE: usize = 16;

/// `u64` at the start of every slot: the seqlock sequence word.
pub const SLOT_OFF_SEQ: usize = 0;
/// Offset of the [`SlotHeader`] inside a slot.
pub const SLOT_OFF_HEADER: usize = 64;
/// Offset of the [`CameraEntry`] table inside a slot.
pub const SLOT_OFF_CAMERAS: usize = 128;

/// The segment is being set up; readers must not use it yet.
pub const STATE_INIT: u32 = 0;
/// A producer owns the segment and publishes into it.
pub const STATE_LIVE: u32 = 1;
/// The producer stopped cleanly; no more frames will come.
pub const STATE_STOPPED: u32 = 2;
/// The segment was replaced by a new one under the same name; readers must re-open.
pub const STATE_REPLACED: u32 = 3;

/// Per-camera flag: the camera had nothing fresh and this is its previous image again.
pub const CAM_REPEATED: u32 = 1 << 0;
/// Per-camera flag: the camera has no image in this multi-frame (normally with length 0,
/// which needs no valid offset or format).
pub const CAM_MISSING: u32 = 1 << 1;
/// Per-camera flag: the payload is the synthetic test pattern (readers may verify it).
pub const CAM_SYNTHETIC: u32 = 1 << 2;

/// The nominal layout of one camera, recorded in the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CameraLayout {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// [`PixelFormat`] code.
    pub format: u32,
    /// Bytes reserved for this camera's payload in each slot.
    pub max_len: u32,
}

/// The immutable first 320 bytes of the superblock, written before the segment is made
/// visible and never changed while it is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Superblock {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// [`SUPERBLOCK_SIZE`].
    pub superblock_size: u32,
    /// Size of the whole segment in bytes.
    pub total_size: u64,
    /// Number of slots.
    pub slot_count: u32,
    /// Cameras per multi-frame.
    pub camera_count: u32,
    /// Bytes per slot, a multiple of [`PAGE`].
    pub slot_size: u64,
    /// Offset of slot 0 from the segment start, equal to [`SUPERBLOCK_SIZE`].
    pub slots_offset: u64,
    /// Nominal frame rate of the group, in millihertz (0 = unknown).
    pub fps_millihz: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Reserved, zero.
    pub reserved1: u64,
    /// Nominal layout of each camera; entries past `camera_count` are zero.
    pub cameras: [CameraLayout; MAX_CAMERAS],
}

const _: () = assert!(std::mem::size_of::<Superblock>() == 320);
const _: () = assert!(std::mem::size_of::<Superblock>() <= OFF_GENERATION);
const _: () = assert!(OFF_READERS + MAX_READERS * READER_ENTRY_SIZE <= SUPERBLOCK_SIZE as usize);

/// Copied out of every slot (after the sequence word) before anything else is read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SlotHeader {
    /// Multi-frame number `n`; slot `n % slot_count` holds it.
    pub frame: u64,
    /// Generation of the producer that wrote it.
    pub generation: u64,
    /// The group clock's tick this multi-frame belongs to, CLOCK_REALTIME nanoseconds.
    pub tick_ns: u64,
    /// When the producer published it, CLOCK_REALTIME nanoseconds.
    pub publish_ns: u64,
    /// Largest minus smallest capture time of the cameras present, nanoseconds.
    pub spread_ns: u64,
    /// Number of valid [`CameraEntry`]s.
    pub camera_count: u32,
    /// Reserved, zero.
    pub flags: u32,
    /// Bytes of payload used, from [`SLOT_HEADER_SIZE`].
    pub payload_used: u64,
    /// Reserved, zero.
    pub reserved: u64,
}

const _: () = assert!(std::mem::size_of::<SlotHeader>() == 64);

/// One camera's image in a slot.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CameraEntry {
    /// Camera id (its index in the group).
    pub camera_id: u32,
    /// [`PixelFormat`] code.
    pub format: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row of the first plane (0 for JPEG).
    pub stride: u32,
    /// `CAM_*` flags.
    pub flags: u32,
    /// Offset of the payload from the start of the slot.
    pub offset: u64,
    /// Length of the payload in bytes.
    pub length: u64,
    /// Capture time, CLOCK_REALTIME nanoseconds.
    pub capture_ns: u64,
    /// The camera's own frame counter.
    pub sequence: u64,
    /// Reserved, zero.
    pub reserved: u64,
}

const _: () = assert!(std::mem::size_of::<CameraEntry>() == 64);
const _: () =
    assert!(SLOT_OFF_CAMERAS + MAX_CAMERAS * size_of::<CameraEntry>() <= SLOT_HEADER_SIZE as usize);

impl CameraEntry {
    /// The entry's pixel format, if its code is known.
    pub fn pixel_format(&self) -> Option<PixelFormat> {
        PixelFormat::from_code(self.format)
    }

    /// Whether the camera has no image in this multi-frame.
    pub fn is_missing(&self) -> bool {
        self.flags & CAM_MISSING != 0
    }
}

/// Why a superblock was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The segment does not start with [`MAGIC`].
    #[error("not a camring ring (bad magic)")]
    BadMagic,
    /// The layout version is not [`VERSION`].
    #[error("incompatible ring layout version {found} (this camring reads version {VERSION})")]
    Version {
        /// Version found in the segment.
        found: u32,
    },
    /// The segment is smaller than its superblock says, or than a superblock.
    #[error("ring is truncated: {actual} bytes, layout needs {expected}")]
    Truncated {
        /// Bytes the layout needs.
        expected: u64,
        /// Bytes the segment has.
        actual: u64,
    },
    /// A layout parameter is out of range or inconsistent.
    #[error("ring layout is invalid: {0}")]
    Invalid(&'static str),
}

impl Superblock {
    /// Builds the superblock of a new segment.
    pub fn new(
        slot_count: u32,
        slot_size: u64,
        fps_millihz: u32,
        cameras: &[CameraLayout],
    ) -> Self {
        let mut cams = [CameraLayout::new_zeroed(); MAX_CAMERAS];
        cams[..cameras.len()].copy_from_slice(cameras);
        Superblock {
            magic: MAGIC,
            version: VERSION,
            superblock_size: SUPERBLOCK_SIZE as u32,
            total_size: SUPERBLOCK_SIZE + u64::from(slot_count) * slot_size,
            slot_count,
            camera_count: cameras.len() as u32,
            slot_size,
            slots_offset: SUPERBLOCK_SIZE,
            fps_millihz,
            reserved0: 0,
            reserved1: 0,
            cameras: cams,
        }
    }

    /// Checks every field a reader relies on against the segment's real size `actual`.
    pub fn validate(&self, actual: u64) -> Result<(), LayoutError> {
        if self.magic != MAGIC {
            return Err(LayoutError::BadMagic);
        }
        if self.version != VERSION {
            return Err(LayoutError::Version {
                found: self.version,
            });
        }
        if u64::from(self.superblock_size) != SUPERBLOCK_SIZE
            || self.slots_offset != SUPERBLOCK_SIZE
        {
            return Err(LayoutError::Invalid("superblock size"));
        }
        if self.slot_count < 2 || self.slot_count > MAX_SLOTS {
            return Err(LayoutError::Invalid("slot count"));
        }
        if self.camera_count == 0 || self.camera_count as usize > MAX_CAMERAS {
            return Err(LayoutError::Invalid("camera count"));
        }
        if self.slot_size <= SLOT_HEADER_SIZE || !self.slot_size.is_multiple_of(PAGE) {
            return Err(LayoutError::Invalid("slot size"));
        }
        let expected = u64::from(self.slot_count)
            .checked_mul(self.slot_size)
            .and_then(|s| s.checked_add(SUPERBLOCK_SIZE))
            .filter(|&t| t <= MAX_TOTAL_SIZE)
            .ok_or(LayoutError::Invalid("segment size overflows"))?;
        if self.total_size != expected {
            return Err(LayoutError::Invalid("total size"));
        }
        if actual < expected {
            return Err(LayoutError::Truncated { expected, actual });
        }
        Ok(())
    }

    /// The nominal camera layouts (`camera_count` of them; call after [`Self::validate`]).
    pub fn camera_layouts(&self) -> &[CameraLayout] {
        &self.cameras[..(self.camera_count as usize).min(MAX_CAMERAS)]
    }

    /// Offset of slot `index` from the segment start.
    pub fn slot_offset(&self, index: u64) -> u64 {
        self.slots_offset + index * self.slot_size
    }

    /// Whether a producer with layout `other` can take this segment over in place.
    pub fn same_layout(&self, other: &Superblock) -> bool {
        self.slot_count == other.slot_count
            && self.slot_size == other.slot_size
            && self.camera_count == other.camera_count
            && self.camera_layouts() == other.camera_layouts()
            && self.fps_millihz == other.fps_millihz
    }
}

/// Bytes a slot needs for these cameras: the header page plus each camera's `max_len`
/// rounded up to [`PAYLOAD_ALIGN`], rounded up to [`PAGE`].
pub fn slot_size_for(cameras: &[CameraLayout]) -> u64 {
    let payload: u64 = cameras
        .iter()
        .map(|c| u64::from(c.max_len).next_multiple_of(PAYLOAD_ALIGN))
        .sum();
    (SLOT_HEADER_SIZE + payload).next_multiple_of(PAGE)
}

/// Why a slot's header was refused. A hostile or torn header yields one of these, never an
/// out-of-bounds access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The header names another frame than the one the sequence word says.
    #[error("slot header frame {found} does not match sequence frame {expected}")]
    FrameMismatch {
        /// Frame the sequence word promised.
        expected: u64,
        /// Frame the header claims.
        found: u64,
    },
    /// More cameras than the ring's layout allows.
    #[error("slot claims {0} cameras")]
    CameraCount(u32),
    /// A camera's format code is unknown.
    #[error("camera {camera}: unknown pixel format code {code}")]
    Format {
        /// Index of the entry.
        camera: usize,
        /// The code found.
        code: u32,
    },
    /// A camera's payload lies (partly) outside the slot's payload area.
    #[error("camera {camera}: payload {offset}+{length} is outside the slot")]
    OutOfBounds {
        /// Index of the entry.
        camera: usize,
        /// Offset found.
        offset: u64,
        /// Length found.
        length: u64,
    },
    /// A raw camera's geometry does not fit its payload.
    #[error("camera {camera}: {width}x{height} stride {stride} does not fit {length} bytes")]
    Geometry {
        /// Index of the entry.
        camera: usize,
        /// Width found.
        width: u32,
        /// Height found.
        height: u32,
        /// Stride found.
        stride: u32,
        /// Length found.
        length: u64,
    },
}

/// Validates a slot's copied-out header and camera entries for frame `frame` against a
/// slot of `slot_size` bytes with room for `max_cameras` cameras. On success every entry's
/// `offset..offset + length` lies inside `SLOT_HEADER_SIZE..slot_size`, and raw entries'
/// geometry fits their length.
pub fn validate_slot(
    header: &SlotHeader,
    cameras: &[CameraEntry; MAX_CAMERAS],
    frame: u64,
    slot_size: u64,
    max_cameras: u32,
) -> Result<(), SlotError> {
    if header.frame != frame {
        return Err(SlotError::FrameMismatch {
            expected: frame,
            found: header.frame,
        });
    }
    if header.camera_count > max_cameras || header.camera_count as usize > MAX_CAMERAS {
        return Err(SlotError::CameraCount(header.camera_count));
    }
    for (i, c) in cameras[..header.camera_count as usize].iter().enumerate() {
        if c.is_missing() && c.length == 0 {
            // No image: nothing to bound-check or decode.
            continue;
        }
        let format = c.pixel_format().ok_or(SlotError::Format {
            camera: i,
            code: c.format,
        })?;
        let end = c.offset.checked_add(c.length);
        if c.offset < SLOT_HEADER_SIZE || end.is_none_or(|e| e > slot_size) {
            return Err(SlotError::OutOfBounds {
                camera: i,
                offset: c.offset,
                length: c.length,
            });
        }
        if format.is_raw() && !c.is_missing() {
            let fits = format.dimensions_ok(c.width, c.height)
                && format
                    .min_stride(c.width)
                    .is_some_and(|m| u64::from(c.stride) >= m)
                && format
                    .raw_len(u64::from(c.stride), c.height)
                    .is_some_and(|l| l <= c.length);
            if !fits {
                return Err(SlotError::Geometry {
                    camera: i,
                    width: c.width,
                    height: c.height,
                    stride: c.stride,
                    length: c.length,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Superblock {
        let cam = CameraLayout {
            width: 64,
            height: 48,
            format: 1,
            max_len: 64 * 48 * 3,
        };
        let cams = [cam; 2];
        Superblock::new(4, slot_size_for(&cams), 30_000, &cams)
    }

    #[test]
    fn superblock_validates() {
        let sb = layout();
        sb.validate(sb.total_size).unwrap();
        assert_eq!(
            sb.validate(sb.total_size - 1),
            Err(LayoutError::Truncated {
                expected: sb.total_size,
                actual: sb.total_size - 1
            })
        );
        let mut bad = sb;
        bad.magic[0] = b'X';
        assert_eq!(bad.validate(sb.total_size), Err(LayoutError::BadMagic));
        let mut bad = sb;
        bad.version = 2;
        assert_eq!(
            bad.validate(sb.total_size),
            Err(LayoutError::Version { found: 2 })
        );
        let mut bad = sb;
        bad.slot_count = u32::MAX;
        assert!(bad.validate(u64::MAX).is_err());
        let mut bad = sb;
        bad.slot_size = u64::MAX / 2 + 1 - (u64::MAX / 2 + 1) % PAGE;
        assert!(bad.validate(u64::MAX).is_err());
        let mut bad = sb;
        bad.camera_count = 17;
        assert!(bad.validate(sb.total_size).is_err());
    }

    fn good_slot(slot_size: u64) -> (SlotHeader, [CameraEntry; MAX_CAMERAS]) {
        let h = SlotHeader {
            frame: 7,
            camera_count: 1,
            ..SlotHeader::new_zeroed()
        };
        let mut c = [CameraEntry::default(); MAX_CAMERAS];
        c[0] = CameraEntry {
            format: 1,
            width: 64,
            height: 48,
            stride: 192,
            offset: SLOT_HEADER_SIZE,
            length: 192 * 48,
            ..Default::default()
        };
        assert!(SLOT_HEADER_SIZE + 192 * 48 <= slot_size);
        (h, c)
    }

    #[test]
    fn slot_validation_rejects_hostile_entries() {
        let size = layout().slot_size;
        let (h, c) = good_slot(size);
        validate_slot(&h, &c, 7, size, 2).unwrap();
        assert!(matches!(
            validate_slot(&h, &c, 8, size, 2),
            Err(SlotError::FrameMismatch { .. })
        ));

        let mut c2 = c;
        c2[0].offset = u64::MAX - 10;
        assert!(matches!(
            validate_slot(&h, &c2, 7, size, 2),
            Err(SlotError::OutOfBounds { .. })
        ));
        let mut c2 = c;
        c2[0].offset = 0;
        assert!(matches!(
            validate_slot(&h, &c2, 7, size, 2),
            Err(SlotError::OutOfBounds { .. })
        ));
        let mut c2 = c;
        c2[0].length = size;
        assert!(matches!(
            validate_slot(&h, &c2, 7, size, 2),
            Err(SlotError::OutOfBounds { .. })
        ));
        let mut c2 = c;
        c2[0].height = u32::MAX;
        assert!(matches!(
            validate_slot(&h, &c2, 7, size, 2),
            Err(SlotError::Geometry { .. })
        ));
        let mut c2 = c;
        c2[0].stride = 10;
        assert!(matches!(
            validate_slot(&h, &c2, 7, size, 2),
            Err(SlotError::Geometry { .. })
        ));
        let mut c2 = c;
        c2[0].format = 99;
        assert!(matches!(
            validate_slot(&h, &c2, 7, size, 2),
            Err(SlotError::Format { .. })
        ));
        let mut h2 = h;
        h2.camera_count = 3;
        assert!(matches!(
            validate_slot(&h2, &c, 7, size, 2),
            Err(SlotError::CameraCount(3))
        ));
        h2.camera_count = u32::MAX;
        assert!(matches!(
            validate_slot(&h2, &c, 7, size, 99),
            Err(SlotError::CameraCount(_))
        ));
    }
}
