//! `camring view udp://` (being written).

use std::process::ExitCode;

use super::ViewArgs;

pub fn run(args: &ViewArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("camring view {}: udp not built yet", args.url)
}
