//! `camring bridge udp` (being written).

use std::process::ExitCode;

use clap::Args;

/// Options of `camring bridge udp`.
#[derive(Debug, Clone, Args)]
pub struct UdpArgs {
    /// Ring name.
    #[arg(long)]
    pub ring: String,
}

pub fn run(args: UdpArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("camring bridge udp --ring {}: not built yet", args.ring)
}
