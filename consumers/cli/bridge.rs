//! `camring bridge`: serve a ring to remote clients.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use camring_bridge::{WsBridge, WsConfig};
use camring_protocol::control::DEFAULT_MAX_CLIENTS;
use clap::{Args, Subcommand};

use crate::signals::StopFlag;

mod quic;
mod udp;

/// Which adapter.
#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// WebSocket and HTTP on one port: the browser viewer at `/`, the stream at `/ws`,
    /// `/snapshot/{camera}.jpg`, `/mjpeg/{camera}`, `/metrics` and `/healthz`.
    Ws(WsArgs),
    /// QUIC with TLS: each multi-frame on its own stream, an old one reset when a newer
    /// frame is ready; JSON control and stats on a bidirectional stream.
    Quic(quic::QuicArgs),
    /// UDP: multi-frames fragmented into datagrams for live subscribers only.
    Udp(udp::UdpArgs),
}

/// Options of `camring bridge ws`.
#[derive(Debug, Clone, Args)]
pub struct WsArgs {
    /// Ring name (the ring need not exist yet: the bridge waits for its producer).
    #[arg(long)]
    pub ring: String,
    /// Address to listen on. Localhost by default; give e.g. 0.0.0.0:8080 to serve
    /// other machines (then set --token).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Every client must present this token (`?token=` or `Authorization: Bearer`).
    #[arg(long)]
    pub token: Option<String>,
    /// Most clients (WebSocket and MJPEG) served at once; more are refused (503).
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
}

pub fn run(cmd: BridgeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BridgeCommand::Ws(a) => {
            let stop = StopFlag::install()?;
            let config = ws_config(&a);
            serve_ws(config, &stop, a.duration)?;
            Ok(ExitCode::SUCCESS)
        }
        BridgeCommand::Quic(a) => quic::run(a),
        BridgeCommand::Udp(a) => udp::run(a),
    }
}

pub fn ws_config(a: &WsArgs) -> WsConfig {
    WsConfig {
        ring: a.ring.clone(),
        listen: a.listen,
        token: a.token.clone(),
        max_clients: a.max_clients,
    }
}

/// The runtime an adapter serves on (2 workers, as the machine has), once it warned
/// when the adapter listens beyond loopback without a token.
fn adapter_runtime(
    listen: SocketAddr,
    token: bool,
    thread_name: &str,
) -> anyhow::Result<tokio::runtime::Runtime> {
    if !listen.ip().is_loopback() && !token {
        tracing::warn!(
            "listening on {listen} without --token: anyone who can reach it sees the cameras"
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(thread_name)
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Serves `config` until `stop` is raised or `duration` seconds pass. Prints the address
/// (`listening on http://ADDR/`) on stderr once bound.
pub fn serve_ws(config: WsConfig, stop: &StopFlag, duration: Option<f64>) -> anyhow::Result<()> {
    let runtime = adapter_runtime(config.listen, config.token.is_some(), "camring-ws")?;
    let ring = config.ring.clone();
    let token = config.token.is_some();
    runtime.block_on(async {
        let listen = config.listen;
        let bridge = WsBridge::bind(config)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = bridge.local_addr()?;
        eprintln!(
            "camring bridge ws: listening on http://{addr}/ (ring {ring:?}{}); viewer http://{addr}/{}, stream ws://{addr}/ws",
            if token { ", token required" } else { "" },
            if token { "?token=..." } else { "" },
        );
        let stop = stop.clone();
        let end = duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d.max(0.0)));
        bridge
            .run(async move {
                while !stop.raised() && end.is_none_or(|e| tokio::time::Instant::now() < e) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .context("serving")
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
