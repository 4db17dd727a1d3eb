//! The producer's configuration file (TOML) for a real rig: the group's rate, its
//! cameras in order with per-camera settings, and the rings to write. See
//! `producer/camring.example.toml` for every field.

use std::path::Path;
use std::time::Duration;

use camring_protocol::PixelFormat;
use serde::Deserialize;

use crate::group::{CameraConfig, GroupConfig, DEFAULT_HOLD};
use crate::output::{RingFormat, RingSpec};
use crate::source::{parse_size, SourceSpec};

/// Default number of ring slots.
pub const DEFAULT_SLOTS: u32 = 8;
/// Default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 80;
/// Default group rate.
pub const DEFAULT_FPS: f64 = 30.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    fps: Option<f64>,
    missing_after_ms: Option<f64>,
    #[serde(default)]
    camera: Vec<FileCamera>,
    #[serde(default)]
    ring: Vec<FileRing>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCamera {
    source: String,
    name: Option<String>,
    tolerance_ms: Option<f64>,
    format: Option<String>,
    // synthetic
    jitter_ms: Option<f64>,
    stall: Option<[f64; 2]>,
    die: Option<[f64; 2]>,
    // http
    size: Option<String>,
    max_kib: Option<u32>,
    timeout_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRing {
    name: String,
    format: Option<String>,
    quality: Option<u8>,
    slots: Option<u32>,
    group_access: Option<bool>,
}

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn millis(field: &str, v: f64) -> Result<Duration, ConfigError> {
    if !(v.is_finite() && (0.0..=3_600_000.0).contains(&v)) {
        return Err(ConfigError(format!("{field}: {v} ms is out of range")));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

fn seconds_pair(field: &str, v: [f64; 2]) -> Result<(Duration, Duration), ConfigError> {
    let ok = |x: f64| x.is_finite() && (0.0..=86_400.0).contains(&x);
    if !(ok(v[0]) && ok(v[1])) {
        return Err(ConfigError(format!(
            "{field}: [start_s, duration_s] must be seconds in [0, 86400]"
        )));
    }
    Ok((Duration::from_secs_f64(v[0]), Duration::from_secs_f64(v[1])))
}

/// Reads a configuration file.
pub fn load(path: &Path) -> Result<GroupConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    parse(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

/// Parses a configuration from TOML text.
pub fn parse(text: &str) -> Result<GroupConfig, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
    let mut cameras = Vec::with_capacity(file.camera.len());
    if file.camera.is_empty() {
        return Err(ConfigError(
            "camera: no cameras; add [[camera]] tables with a source".into(),
        ));
    }
    for (i, c) in file.camera.iter().enumerate() {
        cameras.push(camera(i, c)?);
    }
    if file.ring.is_empty() {
        return Err(ConfigError(
            "ring: no rings; add a [[ring]] table with a name".into(),
        ));
    }
    let rings = file
        .ring
        .iter()
        .enumerate()
        .map(|(i, r)| ring(i, r))
        .collect::<Result<Vec<_>, _>>()?;
    let fps = file.fps.unwrap_or(DEFAULT_FPS);
    if !(fps.is_finite() && fps > 0.0 && fps <= 10_000.0) {
        return Err(ConfigError(format!("fps: {fps} is not in (0, 10000]")));
    }
    let hold = match file.missing_after_ms {
        Some(ms) => millis("missing_after_ms", ms)?,
        None => DEFAULT_HOLD,
    };
    Ok(GroupConfig {
        fps,
        hold,
        cameras,
        rings,
    })
}

fn camera(i: usize, c: &FileCamera) -> Result<CameraConfig, ConfigError> {
    let field = |f: &str| format!("camera[{i}].{f}");
    let mut source: SourceSpec = c
        .source
        .parse()
        .map_err(|e| ConfigError(format!("{}: {e}", field("source"))))?;
    // Fields that belong to one kind of source only, refused on the others.
    let synthetic_only = [
        ("jitter_ms", c.jitter_ms.is_some()),
        ("stall", c.stall.is_some()),
        ("die", c.die.is_some()),
    ];
    let http_only = [
        ("size", c.size.is_some()),
        ("max_kib", c.max_kib.is_some()),
        ("timeout_ms", c.timeout_ms.is_some()),
    ];
    let refuse = |fields: &[(&str, bool)], kind: &str| match fields.iter().find(|f| f.1) {
        Some((name, _)) => Err(ConfigError(format!(
            "{}: applies to {kind} sources only, not {}",
            field(name),
            c.source
        ))),
        None => Ok(()),
    };
    let format = c
        .format
        .as_deref()
        .map(|f| {
            f.parse::<PixelFormat>()
                .map_err(|_| ConfigError(format!("{}: unknown format {f:?}", field("format"))))
        })
        .transpose()?;
    match &mut source {
        SourceSpec::Synthetic(s) => {
            if let Some(f) = format {
                if !f.is_raw() {
                    return Err(ConfigError(format!(
                        "{}: a synthetic camera generates a raw format (a jpeg ring encodes it)",
                        field("format")
                    )));
                }
                s.format = Some(f);
            }
            if let Some(j) = c.jitter_ms {
                s.jitter = millis(&field("jitter_ms"), j)?;
            }
            if let Some(v) = c.stall {
                s.stall = Some(seconds_pair(&field("stall"), v)?);
            }
            if let Some(v) = c.die {
                s.die = Some(seconds_pair(&field("die"), v)?);
            }
            refuse(&http_only, "http")?;
        }
        SourceSpec::Camera(cam) => {
            cam.format = format;
            refuse(&synthetic_only, "synthetic")?;
            refuse(&http_only, "http")?;
        }
        SourceSpec::Http(h) => {
            if format.is_some_and(|f| f != PixelFormat::Jpeg) {
                return Err(ConfigError(format!(
                    "{}: an HTTP source delivers jpeg",
                    field("format")
                )));
            }
            refuse(&synthetic_only, "synthetic")?;
            if let Some(s) = &c.size {
                h.size = Some(
                    parse_size(s).map_err(|e| ConfigError(format!("{}: {e}", field("size"))))?,
                );
            }
            if let Some(k) = c.max_kib {
                if !(1..=1 << 20).contains(&k) {
                    return Err(ConfigError(format!(
                        "{}: must be 1..=1048576",
                        field("max_kib")
                    )));
                }
                h.max_len = k as usize * 1024;
            }
            if let Some(t) = c.timeout_ms {
                h.timeout = millis(&field("timeout_ms"), t)?.max(Duration::from_millis(100));
            }
        }
    }
    let mut cam = CameraConfig::new(i, source);
    if let Some(n) = &c.name {
        cam.name = n.clone();
    }
    if let Some(t) = c.tolerance_ms {
        cam.tolerance = Some(millis(&field("tolerance_ms"), t)?);
    }
    Ok(cam)
}

fn ring(i: usize, r: &FileRing) -> Result<RingSpec, ConfigError> {
    let field = |f: &str| format!("ring[{i}].{f}");
    if !camring_shm::valid_name(&r.name) {
        return Err(ConfigError(format!(
            "{}: {:?} is not a valid ring name (letters, digits, '-', '_', '.', at most 200)",
            field("name"),
            r.name
        )));
    }
    let format = match &r.format {
        Some(f) => f
            .parse::<RingFormat>()
            .map_err(|e| ConfigError(format!("{}: {e}", field("format"))))?,
        None => RingFormat::Native,
    };
    let quality = r.quality.unwrap_or(DEFAULT_QUALITY);
    if !(1..=100).contains(&quality) {
        return Err(ConfigError(format!(
            "{}: must be 1..=100",
            field("quality")
        )));
    }
    let slots = r.slots.unwrap_or(DEFAULT_SLOTS);
    if !(2..=65536).contains(&slots) {
        return Err(ConfigError(format!(
            "{}: must be 2..=65536",
            field("slots")
        )));
    }
    Ok(RingSpec {
        name: r.name.clone(),
        format,
        quality,
        slots,
        mode: if r.group_access.unwrap_or(false) {
            camring_shm::MODE_GROUP
        } else {
            camring_shm::MODE_OWNER
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SyntheticSpec;

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../camring.example.toml");
        let g = parse(text).unwrap();
        assert_eq!(g.fps, 30.0);
        assert!(g.cameras.len() >= 3);
        assert!(g.rings.len() >= 2);
    }

    #[test]
    fn settings_reach_the_group() {
        let g = parse(
            r#"
            fps = 15
            missing_after_ms = 500
            [[camera]]
            source = "synthetic:320x240@10"
            name = "left"
            format = "gray8"
            jitter_ms = 4
            stall = [2, 1.5]
            die = [5, 2]
            tolerance_ms = 80
            [[camera]]
            source = "http://127.0.0.1:9/stream"
            size = "800x600"
            max_kib = 512
            timeout_ms = 2000
            [[ring]]
            name = "rig-jpeg"
            format = "jpeg"
            quality = 70
            slots = 4
            group_access = true
            "#,
        )
        .unwrap();
        assert_eq!(g.fps, 15.0);
        assert_eq!(g.hold, Duration::from_millis(500));
        let SourceSpec::Synthetic(s) = &g.cameras[0].source else {
            panic!()
        };
        assert_eq!(
            *s,
            SyntheticSpec {
                width: 320,
                height: 240,
                fps: Some(10.0),
                format: Some(PixelFormat::Gray8),
                jitter: Duration::from_millis(4),
                stall: Some((Duration::from_secs(2), Duration::from_millis(1500))),
                die: Some((Duration::from_secs(5), Duration::from_secs(2))),
            }
        );
        assert_eq!(g.cameras[0].name, "left");
        assert_eq!(g.cameras[0].tolerance, Some(Duration::from_millis(80)));
        let SourceSpec::Http(h) = &g.cameras[1].source else {
            panic!()
        };
        assert_eq!(h.size, Some((800, 600)));
        assert_eq!(h.max_len, 512 * 1024);
        assert_eq!(h.timeout, Duration::from_secs(2));
        assert_eq!(g.cameras[1].name, "cam1");
        let r = &g.rings[0];
        assert_eq!(r.format, RingFormat::Fixed(PixelFormat::Jpeg));
        assert_eq!(
            (r.quality, r.slots, r.mode),
            (70, 4, camring_shm::MODE_GROUP)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let ring = "\n[[ring]]\nname = \"r\"\n";
        for (text, field) in [
            ("fps = 0\n[[camera]]\nsource = \"synthetic\"", "fps"),
            ("[[camera]]\nsource = \"webcam\"", "camera[0].source"),
            ("[[camera]]\nsource = \"synthetic\"\n[[camera]]\nsource = \"synthetic\"\nsize = \"1x1\"", "camera[1].size"),
            ("[[camera]]\nsource = \"http://x/\"\njitter_ms = 3", "camera[0].jitter_ms"),
            ("[[camera]]\nsource = \"synthetic\"\nformat = \"jpeg\"", "camera[0].format"),
            ("[[camera]]\nsource = \"synthetic\"\nformat = \"png\"", "camera[0].format"),
            ("[[camera]]\nsource = \"synthetic\"\nstall = [1, -1]", "camera[0].stall"),
            ("[[camera]]\nsource = \"synthetic\"\ncolour = 1", "colour"),
            ("[[camera]]\nsource = \"http://x/\"\nmax_kib = 0", "camera[0].max_kib"),
            ("fps = \"fast\"\n[[camera]]\nsource = \"synthetic\"", "fps"),
        ] {
            let e = parse(&format!("{text}{ring}")).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?}: {e}");
        }
        for (text, field) in [
            (
                "[[camera]]\nsource = \"synthetic\"\n[[ring]]\nname = \"a/b\"",
                "ring[0].name",
            ),
            (
                "[[camera]]\nsource = \"synthetic\"\n[[ring]]\nname = \"a\"\nformat = \"h264\"",
                "ring[0].format",
            ),
            (
                "[[camera]]\nsource = \"synthetic\"\n[[ring]]\nname = \"a\"\nslots = 1",
                "ring[0].slots",
            ),
            (
                "[[camera]]\nsource = \"synthetic\"\n[[ring]]\nname = \"a\"\nquality = 0",
                "ring[0].quality",
            ),
            ("[[camera]]\nsource = \"synthetic\"", "ring"),
            ("[[ring]]\nname = \"a\"", "camera"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text:?}: {e}");
        }
    }
}
