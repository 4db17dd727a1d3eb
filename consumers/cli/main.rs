//! `camring`: run a synthetic producer, read a ring, list and remove rings.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod ls;
mod produce;
mod read;
mod signals;

/// Synchronized multi-camera frames from one producer to many consumers, over a
/// shared-memory ring.
#[derive(Debug, Parser)]
#[command(name = "camring", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a synthetic multi-camera producer writing into a ring.
    Produce(produce::ProduceArgs),
    /// Attach to a ring and read frames, with live stats.
    Read(read::ReadArgs),
    /// List rings: layout, producer alive or dead, readers.
    Ls(ls::LsArgs),
    /// Remove a ring left behind (e.g. by a crashed producer).
    Rm(ls::RmArgs),
    /// Start a synthetic 4-camera producer and a reader showing live stats.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Produce(a) => produce::run(a),
        Command::Read(a) => read::run(a),
        Command::Ls(a) => ls::run_ls(a),
        Command::Rm(a) => ls::run_rm(a),
        Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("camring: {e:#}");
            ExitCode::FAILURE
        }
    }
}
