//! What is measured: the payload profiles, the rates, the transports, and the synthetic
//! multi-frame every transport carries.

use std::fmt;

use anyhow::{Context, Result};
use camring_protocol::pattern::{self, Geometry};
use camring_protocol::PixelFormat;
use serde::{Deserialize, Serialize};

/// JPEG quality of the JPEG profiles (the producer's default).
pub const QUALITY: u8 = 80;
/// Frame number drawn into the synthetic images (every multi-frame carries the same
/// images; transports number them themselves).
pub const PATTERN_FRAME: u64 = 7;

/// A payload profile: a camera group and its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// 1 camera, 640×480 JPEG.
    Small,
    /// 4 cameras, 1280×720 JPEG.
    Medium,
    /// 4 cameras, 1920×1080 raw RGB.
    Large,
}

impl Profile {
    /// All profiles, smallest first.
    pub const ALL: [Profile; 3] = [Profile::Small, Profile::Medium, Profile::Large];

    /// Number of cameras.
    pub fn cameras(self) -> u32 {
        match self {
            Profile::Small => 1,
            Profile::Medium | Profile::Large => 4,
        }
    }

    /// Width and height of every camera's image.
    pub fn size(self) -> (u32, u32) {
        match self {
            Profile::Small => (640, 480),
            Profile::Medium => (1280, 720),
            Profile::Large => (1920, 1080),
        }
    }

    /// The format the images travel in (through the ring, the baselines; the network
    /// adapters always send JPEG, so they encode a raw profile).
    pub fn format(self) -> PixelFormat {
        match self {
            Profile::Small | Profile::Medium => PixelFormat::Jpeg,
            Profile::Large => PixelFormat::Rgb8,
        }
    }

    /// Its name in the JSON and the table.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Small => "small",
            Profile::Medium => "medium",
            Profile::Large => "large",
        }
    }

    /// "4×1280×720 JPEG".
    pub fn describe(self) -> String {
        let (w, h) = self.size();
        let f = match self.format() {
            PixelFormat::Jpeg => "JPEG",
            _ => "RGB",
        };
        format!("{}×{w}×{h} {f}", self.cameras())
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How fast the sender offers multi-frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rate {
    /// A camera's pace: 30 multi-frames per second on a fixed clock.
    Fixed,
    /// As fast as the transport takes them: the sender stays at most
    /// [`crate::ctx::AHEAD`] multi-frames ahead of the slowest consumer.
    Max,
}

impl Rate {
    /// The fixed rate, multi-frames per second.
    pub const FPS: u32 = 30;

    /// Its name in the JSON and the table.
    pub fn name(self) -> &'static str {
        match self {
            Rate::Fixed => "30fps",
            Rate::Max => "max",
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every transport the benchmark runs, baselines included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    /// Baseline: a plain memcpy of the multi-frame's bytes into another buffer.
    #[serde(rename = "memcpy")]
    Memcpy,
    /// The ring, read in place (`Reader::read_newest`'s zero-copy view).
    #[serde(rename = "shm-zero-copy")]
    ShmZeroCopy,
    /// The ring, each multi-frame copied out (`read_copy`).
    #[serde(rename = "shm-copy")]
    ShmCopy,
    /// The WebSocket adapter (`camring bridge ws`) and a tokio-tungstenite client.
    #[serde(rename = "ws")]
    Ws,
    /// The QUIC adapter (`camring bridge quic`): one stream per multi-frame.
    #[serde(rename = "quic")]
    Quic,
    /// The UDP adapter (`camring bridge udp`): fragments and reassembly.
    #[serde(rename = "udp")]
    Udp,
    /// Baseline: length-prefixed messages over TCP on loopback.
    #[serde(rename = "tcp")]
    Tcp,
    /// Baseline: length-prefixed messages over a Unix stream socket.
    #[serde(rename = "unix")]
    Unix,
    /// Baseline: iceoryx2 publish-subscribe, the same payload loaned and sent.
    #[serde(rename = "iceoryx2")]
    Iceoryx2,
}

impl Transport {
    /// All transports, in table order.
    pub const ALL: [Transport; 9] = [
        Transport::Memcpy,
        Transport::ShmZeroCopy,
        Transport::ShmCopy,
        Transport::Ws,
        Transport::Quic,
        Transport::Udp,
        Transport::Tcp,
        Transport::Unix,
        Transport::Iceoryx2,
    ];

    /// Its name in the JSON and the table.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Memcpy => "memcpy",
            Transport::ShmZeroCopy => "shm-zero-copy",
            Transport::ShmCopy => "shm-copy",
            Transport::Ws => "ws",
            Transport::Quic => "quic",
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Iceoryx2 => "iceoryx2",
        }
    }

    /// True for the baselines camring is compared with.
    pub fn is_baseline(self) -> bool {
        matches!(
            self,
            Transport::Memcpy | Transport::Tcp | Transport::Unix | Transport::Iceoryx2
        )
    }

    /// True for the network adapters, which send JPEG whatever the ring holds.
    pub fn is_adapter(self) -> bool {
        matches!(self, Transport::Ws | Transport::Quic | Transport::Udp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The synthetic multi-frame of a profile: one image per camera, the camera's test pattern
/// (camera number and [`PATTERN_FRAME`] drawn in its pixels), JPEG-encoded at [`QUALITY`]
/// for the JPEG profiles. Made once per process; every transport sends these bytes.
#[derive(Debug, Clone)]
pub struct Frames {
    /// The profile.
    pub profile: Profile,
    /// Image width and height.
    pub width: u32,
    /// Image height.
    pub height: u32,
    /// Row stride of raw images (0 for JPEG).
    pub stride: u32,
    /// The format of `images`.
    pub format: PixelFormat,
    /// One image per camera.
    pub images: Vec<Vec<u8>>,
}

impl Frames {
    /// Makes the profile's images.
    pub fn new(profile: Profile) -> Result<Frames> {
        let (width, height) = profile.size();
        let stride = width as usize * 3;
        let g = Geometry::new(PixelFormat::Rgb8, width, height, stride).context("geometry")?;
        let mut enc = match profile.format() {
            PixelFormat::Jpeg => Some(camring_jpeg::Encoder::new(QUALITY)?),
            _ => None,
        };
        let mut images = Vec::new();
        for cam in 0..profile.cameras() {
            let mut rgb = vec![0u8; g.len()];
            pattern::fill(&mut rgb, &g, cam, PATTERN_FRAME);
            images.push(match enc.as_mut() {
                Some(enc) => enc.encode(&rgb, PixelFormat::Rgb8, width, height, stride)?,
                None => rgb,
            });
        }
        Ok(Frames {
            profile,
            width,
            height,
            stride: if enc.is_some() { 0 } else { stride as u32 },
            format: profile.format(),
            images,
        })
    }

    /// Bytes of one multi-frame's images.
    pub fn len(&self) -> usize {
        self.images.iter().map(Vec::len).sum()
    }

    /// Always false: a profile has at least one camera.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}
