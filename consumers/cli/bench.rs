//! `camring bench`: every transport side by side with baselines (the camring-bench crate,
//! benches/compare).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use camring_bench::{Profile, Transport};
use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A short run (seconds, figures rough): what CI runs to keep the benchmark working.
    #[arg(long)]
    quick: bool,
    /// Also write the raw figures as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also draw latency percentiles and throughput per transport to FILE (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Rounds over the whole matrix (default 2; 1 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Each cell's measuring window in seconds (default 2; 0.5 with --quick).
    #[arg(long, value_name = "SECONDS")]
    window: Option<f64>,
    /// Only these transports, comma-separated: memcpy, shm-zero-copy, shm-copy, ws, quic,
    /// udp, tcp, unix, iceoryx2.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_transport)]
    transports: Option<Vec<Transport>>,
    /// Only these profiles, comma-separated: small, medium, large.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_profile)]
    profiles: Option<Vec<Profile>>,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    Transport::ALL
        .into_iter()
        .find(|t| t.name() == s)
        .ok_or_else(|| format!("unknown transport {s:?}"))
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::ALL
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| format!("unknown profile {s:?}"))
}

/// `camring bench-child ROLE SPEC`: one side of one measured cell (started by `bench`).
#[derive(Debug, Args)]
pub struct ChildArgs {
    role: String,
    spec: String,
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the camring binary")?;
    let opts = camring_bench::Options {
        quick: a.quick,
        json: a.json,
        plot: a.plot,
        child: vec![
            exe.to_string_lossy().into_owned(),
            camring_bench::CHILD_SUBCOMMAND.to_owned(),
        ],
        rounds: a.rounds,
        window: a.window,
        transports: a.transports,
        profiles: a.profiles,
        command: command_line(),
    };
    camring_bench::run(&opts)?;
    Ok(ExitCode::SUCCESS)
}

/// `camring ARGS…` as run (arguments with spaces quoted).
fn command_line() -> String {
    let mut words = vec!["camring".to_owned()];
    for arg in std::env::args().skip(1) {
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            words.push(format!("'{arg}'"));
        } else {
            words.push(arg);
        }
    }
    words.join(" ")
}

pub fn run_child(a: ChildArgs) -> Result<ExitCode> {
    camring_bench::child_main(&a.role, &a.spec)?;
    Ok(ExitCode::SUCCESS)
}
