//! `camring`: run a producer, read a ring, bridge it to the network, view it remotely, list
//! cameras, list and remove rings.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "bench")]
mod bench;
// Compiled (and tested) in both builds; it is `bench` in the default one.
#[cfg_attr(feature = "bench", allow(dead_code))]
mod bench_off;
#[cfg(not(feature = "bench"))]
use bench_off as bench;
mod bridge;
mod cameras;
mod demo;
mod ls;
mod produce;
mod read;
mod signals;
mod view;

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
    /// Run a camera group (synthetic, V4L2 or MJPEG-over-HTTP sources) writing into rings.
    Produce(produce::ProduceArgs),
    /// List camera devices and their modes (needs the `camera` feature).
    Cameras(cameras::CamerasArgs),
    /// Attach to a ring and read frames, with live stats.
    Read(read::ReadArgs),
    /// List rings: layout, producer alive or dead, readers.
    Ls(ls::LsArgs),
    /// Remove a ring left behind (e.g. by a crashed producer).
    Rm(ls::RmArgs),
    /// Serve a ring to remote clients: `camring bridge ws` (WebSocket, HTTP and the viewer), `quic` (QUIC + TLS) or `udp` (fragmented datagrams).
    #[command(subcommand)]
    Bridge(bridge::BridgeCommand),
    /// Watch a bridged ring from another process or machine (ws://, quic:// or udp://HOST:PORT).
    View(view::ViewArgs),
    /// Start a synthetic 4-camera producer and the WebSocket bridge; prints the viewer's URL.
    Demo(demo::DemoArgs),
    /// Measure every transport side by side with baselines (memcpy, TCP, Unix socket,
    /// iceoryx2): latency, throughput, CPU per frame; a table, JSON and a plot (needs the
    /// `bench` feature).
    Bench(bench::BenchArgs),
    /// One side of one cell of `camring bench` (started by it).
    #[command(name = "bench-child", hide = true)]
    BenchChild(bench::ChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings from the libraries (a source failing, an image dropped) on stderr;
    // RUST_LOG overrides (e.g. RUST_LOG=camring_producer=debug).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Produce(a) => produce::run(a),
        Command::Cameras(a) => cameras::run(a),
        Command::Read(a) => read::run(a),
        Command::Ls(a) => ls::run_ls(a),
        Command::Rm(a) => ls::run_rm(a),
        Command::Bridge(a) => bridge::run(a),
        Command::View(a) => view::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchChild(a) => bench::run_child(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("camring: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn help_names_every_transport_of_bridge_and_view() {
        let help = Cli::command().render_help().to_string();
        for command in ["bridge", "view"] {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(command))
                .unwrap_or_else(|| panic!("no {command} line in:\n{help}"));
            for transport in ["ws", "quic", "udp"] {
                assert!(line.contains(transport), "{command}: {line}");
            }
        }
    }
}
