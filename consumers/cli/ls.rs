//! `camring ls` and `camring rm`.

use camring_protocol::report::Report;
use std::process::ExitCode;

use camring_protocol::PixelFormat;
use camring_shm::admin;
use clap::Args;
use serde_json::json;

/// Options of `camring ls`.
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `camring rm`.
#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Ring names to remove.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Remove even if a live producer holds the ring.
    #[arg(long)]
    pub force: bool,
}

fn cameras_desc(info: &admin::RingInfo) -> String {
    let Some(sb) = &info.layout else {
        return "-".into();
    };
    let cams = sb.camera_layouts();
    let first = cams[0];
    let fmt = PixelFormat::from_code(first.format).map_or("?".into(), |f| f.to_string());
    if cams.iter().all(|c| *c == first) {
        format!("{}x {}x{} {}", cams.len(), first.width, first.height, fmt)
    } else {
        format!("{} mixed", cams.len())
    }
}

pub fn run_ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let names = admin::list()?;
    let infos: Vec<_> = names
        .iter()
        .filter_map(|n| match admin::inspect(n) {
            Ok(i) => Some(i),
            Err(e) => {
                eprintln!("camring ls: {n}: {}", Report(&e));
                None
            }
        })
        .collect();
    if args.json {
        let rings: Vec<_> = infos
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "state": i.state,
                    "pid": i.pid,
                    "generation": i.generation,
                    "frames": i.head,
                    "readers": i.readers,
                    "size": i.size,
                    "mode": format!("{:o}", i.mode),
                    "slots": i.layout.map(|l| l.slot_count),
                    "slot_size": i.layout.map(|l| l.slot_size),
                    "cameras": cameras_desc(i),
                    "fps": i.layout.map(|l| f64::from(l.fps_millihz) / 1000.0),
                    "heartbeat_age_ms": i.heartbeat_age_ns / 1_000_000,
                    "error": i.error,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "rings": rings }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if infos.is_empty() {
        println!("no rings");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<8} {:>7} {:>10} {:<22} {:>5} {:>9} {:>7} {:>5}  HEARTBEAT",
        "NAME", "STATE", "PID", "FRAMES", "CAMERAS", "SLOTS", "SIZE", "READERS", "MODE",
    );
    for i in &infos {
        let slots = i.layout.map_or("-".into(), |l| l.slot_count.to_string());
        let hb = if i.state == "live" {
            format!("{} ms ago", i.heartbeat_age_ns / 1_000_000)
        } else {
            "-".into()
        };
        println!(
            "{:<20} {:<8} {:>7} {:>10} {:<22} {:>5} {:>8}M {:>7} {:>5o}  {}{}",
            i.name,
            i.state,
            i.pid,
            i.head,
            cameras_desc(i),
            slots,
            i.size / (1 << 20),
            i.readers,
            i.mode,
            hb,
            i.error
                .as_ref()
                .map_or(String::new(), |e| format!("  ({e})")),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_rm(args: RmArgs) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for name in &args.names {
        match admin::remove(name, args.force) {
            Ok(()) => eprintln!("camring rm: removed {name}"),
            Err(e) => {
                eprintln!("camring rm: {}", Report(&e));
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}
