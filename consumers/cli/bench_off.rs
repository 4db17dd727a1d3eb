//! `camring bench` in a build without the `bench` feature (the default: the product does
//! not link its benchmark's baselines, iceoryx2 among them): it says how to get it.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

/// Whatever was given: the options belong to the build with the feature.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// The hidden child command, likewise.
pub type ChildArgs = BenchArgs;

pub fn run(_: BenchArgs) -> Result<ExitCode> {
    bail!(
        "this camring was built without the `bench` feature; build it with \
         `cargo build --release --features bench`, or run `cargo run --release --features bench -- bench`"
    )
}

pub fn run_child(a: ChildArgs) -> Result<ExitCode> {
    run(a)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn without_the_feature_bench_takes_any_options_and_says_how_to_get_it() {
        let cli = Cli::try_parse_from(["bench", "--quick", "--json", "x.json"]).unwrap();
        let e = run(cli.args).unwrap_err().to_string();
        assert!(e.contains("--features bench"), "{e}");
    }
}
