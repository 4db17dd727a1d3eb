//! `camring view`: a WebSocket client of `camring bridge ws` (being written).

use std::process::ExitCode;

use clap::Args;

/// Options of `camring view`.
#[derive(Debug, Clone, Args)]
pub struct ViewArgs {
    /// Server URL, e.g. ws://127.0.0.1:8080.
    pub url: String,
}

pub fn run(args: ViewArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("camring view {}: not built yet", args.url)
}
