//! The matrix of cells, run interleaved; results as a table, JSON and a plot.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// What `camring bench` was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// A short run (seconds), for CI.
    pub quick: bool,
    /// Where to write the JSON results.
    pub json: Option<PathBuf>,
    /// Where to write the plot (`.svg` or `.png`).
    pub plot: Option<PathBuf>,
    /// The command that starts a child: the `camring` binary and [`crate::CHILD_SUBCOMMAND`].
    pub child: Vec<String>,
}

/// Runs the benchmark.
pub fn run(_opts: &Options) -> Result<()> {
    bail!("not built yet")
}
