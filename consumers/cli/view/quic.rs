//! `camring view quic://` (being written).

use std::process::ExitCode;

use super::ViewArgs;

pub fn run(args: &ViewArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("camring view {}: quic not built yet", args.url)
}
