//! `camring bridge udp`: serve a ring as UDP datagrams to live subscribers.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use camring_bridge::udp::{UdpBridge, UdpConfig, UdpCounters, DEFAULT_PACE};
use camring_protocol::control::DEFAULT_MAX_CLIENTS;
use camring_protocol::udp::{
    DEFAULT_DEADLINE_NS, DEFAULT_KEEPALIVE_MS, DEFAULT_MTU, DEFAULT_SUBSCRIPTION_TIMEOUT_MS,
};
use clap::Args;

use crate::signals::StopFlag;

/// Options of `camring bridge udp`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
A client (camring view udp://HOST:PORT) subscribes with a small request, answers a challenge
that proves its address, and keeps the subscription alive; the server sends to live
subscribers only, never more to an address than it was asked for, so it is safe to expose
(set --token when it is). See docs/protocol.md, section 10, and docs/bridge.md.")]
pub struct UdpArgs {
    /// Ring name (the ring need not exist yet: the bridge waits for its producer).
    #[arg(long)]
    pub ring: String,
    /// Address to listen on. Localhost by default; give e.g. 0.0.0.0:5000 to serve other
    /// machines (then set --token).
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub listen: SocketAddr,
    /// Every subscriber must present this token (at most 128 bytes).
    #[arg(long)]
    pub token: Option<String>,
    /// Most subscribers served at once; more are refused (`full`).
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
    /// Largest datagram sent, bytes of UDP payload (576 to 65507); a subscriber may ask
    /// for less. Keep it within the path MTU (1200 crosses nearly every path).
    #[arg(long, default_value_t = DEFAULT_MTU)]
    pub mtu: usize,
    /// Per-subscriber sending rate cap, bytes per second (default: no cap beyond pacing).
    #[arg(long, value_name = "BYTES_PER_S")]
    pub rate: Option<u64>,
    /// Pacing: a multi-frame's datagrams are spread over this fraction of the ring's frame
    /// period (at most 50 ms; 0 sends them back to back).
    #[arg(long, default_value_t = DEFAULT_PACE)]
    pub pace: f64,
    /// Keepalive interval told to subscribers, milliseconds.
    #[arg(long, default_value_t = DEFAULT_KEEPALIVE_MS)]
    pub keepalive_ms: u32,
    /// A subscriber not heard from for this long is dropped, milliseconds.
    #[arg(long, default_value_t = DEFAULT_SUBSCRIPTION_TIMEOUT_MS)]
    pub timeout_ms: u32,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
}

pub fn config(a: &UdpArgs) -> UdpConfig {
    UdpConfig {
        ring: a.ring.clone(),
        listen: a.listen,
        token: a.token.clone(),
        max_clients: a.max_clients,
        mtu: a.mtu,
        rate: a.rate,
        pace: a.pace,
        keepalive_ms: a.keepalive_ms,
        timeout_ms: a.timeout_ms,
        abandon_after: Duration::from_nanos(DEFAULT_DEADLINE_NS),
    }
}

pub fn run(args: UdpArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args);
    // Before anything starts: a token no subscribe can carry, an MTU out of range...
    config.check().map_err(anyhow::Error::msg)?;
    let stop = StopFlag::install()?;
    let runtime = super::adapter_runtime(config.listen, config.token.is_some(), "camring-udp")?;
    let ring = config.ring.clone();
    let token = config.token.is_some();
    let mtu = config.mtu;
    let duration = args.duration;
    let counters = runtime.block_on(async {
        let listen = config.listen;
        let bridge = UdpBridge::bind(config)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = bridge.local_addr()?;
        eprintln!(
            "camring bridge udp: listening on udp://{addr} (ring {ring:?}, mtu {mtu}{}); view it with camring view udp://{addr}{}",
            if token { ", token required" } else { "" },
            if token { " --token ..." } else { "" },
        );
        let counters = bridge.counters_handle();
        let end =
            duration.map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d.max(0.0)));
        bridge
            .run(async move {
                while !stop.raised() && end.is_none_or(|e| tokio::time::Instant::now() < e) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .context("serving")?;
        anyhow::Ok(counters.get())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    eprintln!("camring bridge udp: {}", describe(&counters));
    Ok(ExitCode::SUCCESS)
}

/// The closing line: what was sent and what was refused or ignored.
fn describe(c: &UdpCounters) -> String {
    let p = &c.policy;
    format!(
        "stopped; subscribed {} (timed out {}, unsubscribed {}), frames sent {} dropped {} \
         (abandoned {}), datagrams sent {} ({} bytes), json {}, new streams {}, send errors {}; \
         requests: challenges {}, keepalives {}, refused unauthorized {} bad_request {} full {} \
         unknown_subscriber {} version {}, ignored {}, rate-limited {}",
        p.subscribed,
        p.timed_out,
        p.unsubscribed,
        c.frames_sent,
        c.frames_dropped,
        c.frames_abandoned,
        c.datagrams_sent,
        c.bytes_sent,
        c.texts_sent,
        c.new_streams,
        c.send_errors,
        p.challenges,
        p.keepalives,
        p.refused_unauthorized,
        p.refused_bad_request,
        p.refused_full,
        p.refused_unknown,
        p.refused_version,
        p.ignored,
        p.rate_limited,
    )
}
