//! `camring bench`: every transport side by side with baselines (the camring-bench crate,
//! benches/compare).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
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
    };
    camring_bench::run(&opts)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_child(a: ChildArgs) -> Result<ExitCode> {
    camring_bench::child_main(&a.role, &a.spec)?;
    Ok(ExitCode::SUCCESS)
}
