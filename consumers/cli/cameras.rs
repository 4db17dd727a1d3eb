//! `camring cameras`: the cameras of this machine and the modes they offer (feature
//! `camera`).

use std::fmt::Write as _;
use std::process::ExitCode;

use camring_producer::camera_modes::CameraInfo;
use clap::Args;
use serde_json::{json, Value};

/// Options of `camring cameras`.
#[derive(Debug, Clone, Args)]
pub struct CamerasArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists the cameras (V4L2 devices) with their modes; none is not an error.
#[cfg(feature = "camera")]
pub fn run(args: CamerasArgs) -> anyhow::Result<ExitCode> {
    let cameras = camring_producer::camera::list_cameras()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&cameras))?);
    } else {
        print!("{}", table(&cameras));
    }
    Ok(ExitCode::SUCCESS)
}

/// Without the `camera` feature there is nothing to list: says how to get it.
#[cfg(not(feature = "camera"))]
pub fn run(_args: CamerasArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this camring was built without camera support: rebuild it with `--features camera` \
         (`cargo build --release --features camera`; scripts/setup.sh installs the libclang it needs)"
    )
}

/// The cameras as JSON: `{"cameras": [{index, name, path, modes: [{format, width, height,
/// fps: [..]}], error}]}`.
#[cfg_attr(not(feature = "camera"), allow(dead_code))]
fn to_json(cameras: &[CameraInfo]) -> Value {
    let cameras: Vec<Value> = cameras
        .iter()
        .map(|c| {
            let modes: Vec<Value> = c
                .modes
                .iter()
                .map(|m| {
                    json!({
                        "format": m.format.name(),
                        "width": m.width,
                        "height": m.height,
                        "fps": m.fps,
                    })
                })
                .collect();
            json!({
                "index": c.index,
                "name": c.name,
                "path": c.path,
                "modes": modes,
                "error": c.error,
            })
        })
        .collect();
    json!({ "cameras": cameras })
}

/// The cameras as a table: one line per device, then one per format and size with its
/// rates.
#[cfg_attr(not(feature = "camera"), allow(dead_code))]
fn table(cameras: &[CameraInfo]) -> String {
    let mut out = String::new();
    if cameras.is_empty() {
        out.push_str("no cameras found (no /dev/video* devices)\n");
        return out;
    }
    for c in cameras {
        let _ = writeln!(out, "{:<3} {}  {}", c.index, c.name, c.path);
        if let Some(e) = &c.error {
            let _ = writeln!(out, "      cannot read its modes: {e}");
            continue;
        }
        let size_w = c
            .modes
            .iter()
            .map(|m| format!("{}x{}", m.width, m.height).len())
            .max()
            .unwrap_or(0);
        for m in &c.modes {
            let size = format!("{}x{}", m.width, m.height);
            let fps: Vec<String> = m.fps.iter().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "      {:<5} {size:<size_w$}  {} fps",
                m.format.name(),
                fps.join(", ")
            );
        }
    }
    out.push_str("\nuse one with --source camera:INDEX_OR_NAME[:WxH[@FPS]]\n");
    out
}

#[cfg(test)]
mod tests {
    use camring_producer::camera_modes::ModeRates;
    use camring_protocol::PixelFormat;

    use super::*;

    fn cameras() -> Vec<CameraInfo> {
        vec![
            CameraInfo {
                index: 0,
                name: "HD Pro Webcam C920".into(),
                path: "/dev/video0".into(),
                modes: vec![
                    ModeRates {
                        format: PixelFormat::Jpeg,
                        width: 1920,
                        height: 1080,
                        fps: vec![30, 15],
                    },
                    ModeRates {
                        format: PixelFormat::Yuyv,
                        width: 640,
                        height: 480,
                        fps: vec![30],
                    },
                ],
                error: None,
            },
            CameraInfo {
                index: 1,
                name: "HD Pro Webcam C920".into(),
                path: "/dev/video1".into(),
                modes: vec![],
                error: Some("/dev/video1 offers no capture format".into()),
            },
        ]
    }

    #[test]
    fn table_lists_devices_and_modes() {
        assert_eq!(
            table(&cameras()),
            "0   HD Pro Webcam C920  /dev/video0\n      \
             jpeg  1920x1080  30, 15 fps\n      \
             yuyv  640x480    30 fps\n\
             1   HD Pro Webcam C920  /dev/video1\n      \
             cannot read its modes: /dev/video1 offers no capture format\n\
             \nuse one with --source camera:INDEX_OR_NAME[:WxH[@FPS]]\n"
        );
        assert!(table(&[]).starts_with("no cameras found"));
    }

    #[test]
    fn json_has_every_field() {
        let v = to_json(&cameras());
        assert_eq!(v["cameras"][0]["modes"][0]["format"], "jpeg");
        assert_eq!(v["cameras"][0]["modes"][0]["fps"], json!([30, 15]));
        assert_eq!(v["cameras"][0]["error"], Value::Null);
        assert_eq!(v["cameras"][1]["path"], "/dev/video1");
        assert_eq!(to_json(&[]), json!({ "cameras": [] }));
    }
}
