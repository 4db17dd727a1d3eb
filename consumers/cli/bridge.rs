//! `camring bridge`: serve a ring to remote clients (being written).

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Which adapter.
#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// WebSocket and HTTP on one port: the browser viewer, snapshots, MJPEG, metrics.
    Ws(WsArgs),
}

/// Options of `camring bridge ws`.
#[derive(Debug, Clone, Args)]
pub struct WsArgs {
    /// Ring name.
    #[arg(long)]
    pub ring: String,
}

pub fn run(cmd: BridgeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BridgeCommand::Ws(a) => anyhow::bail!("camring bridge ws --ring {}: not built yet", a.ring),
    }
}
