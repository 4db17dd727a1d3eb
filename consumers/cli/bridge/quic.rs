//! `camring bridge quic` (being written).

use std::process::ExitCode;

use clap::Args;

/// Options of `camring bridge quic`.
#[derive(Debug, Clone, Args)]
pub struct QuicArgs {
    /// Ring name.
    #[arg(long)]
    pub ring: String,
}

pub fn run(args: QuicArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("camring bridge quic --ring {}: not built yet", args.ring)
}
