//! `camring bridge quic`: serve a ring over QUIC (docs/bridge.md, "QUIC").

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use camring_bridge::quic::tls::Identity;
use camring_bridge::quic::{self, Congestion, QuicBridge, QuicConfig};
use camring_protocol::control::DEFAULT_MAX_CLIENTS;
use clap::{Args, ValueEnum};

use crate::signals::StopFlag;

/// Options of `camring bridge quic`.
#[derive(Debug, Clone, Args)]
#[command(after_help = "\
Without --cert/--key, a self-signed certificate is generated at start for localhost, 127.0.0.1,
::1, the listening address and every --cert-name; its SHA-256 fingerprint is printed for clients
to pin (camring view quic://HOST:PORT --cert-sha256 HEX). Clients open one control stream and
say hello (token, settings); each multi-frame then comes on its own unidirectional stream, the
newest first, older ones reset (docs/protocol.md, 10).")]
pub struct QuicArgs {
    /// Ring name (the ring need not exist yet: the bridge waits for its producer).
    #[arg(long)]
    pub ring: String,
    /// UDP address to listen on. Localhost by default; give e.g. 0.0.0.0:4433 to serve
    /// other machines (then set --token).
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub listen: SocketAddr,
    /// Every client must present this token in its hello.
    #[arg(long)]
    pub token: Option<String>,
    /// Most clients served at once; more are refused (close code 4, full).
    #[arg(long, default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
    /// Certificate chain (PEM, end-entity first) instead of a generated one; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Another name (DNS name or IP address) for the generated certificate; repeatable.
    #[arg(long, value_name = "NAME", conflicts_with = "cert")]
    pub cert_name: Vec<String>,
    /// Write the certificate in use (PEM) into FILE, for clients to use as their --ca.
    #[arg(long, value_name = "FILE")]
    pub save_cert: Option<PathBuf>,
    /// Send each client's frames in order at one priority instead of newest first: nothing
    /// half sent is thrown away when a client cannot keep up (more frames get through to
    /// a saturated client), but the newest frame may wait for an older one's bytes.
    #[arg(long)]
    pub in_order: bool,
    /// Congestion controller: cubic (quinn's default) and newreno cut their rate at every
    /// loss and fall far behind on a lossy path with a real round trip; bbr (quinn's BBR,
    /// marked experimental by quinn) keeps 30 fps going there, but comes back slowly after
    /// a client stalled (docs/bridge.md, "On a lossy path with a real round trip").
    #[arg(long, value_enum, default_value_t = CongestionArg::Cubic)]
    pub congestion: CongestionArg,
    /// Also serve Prometheus metrics over HTTP at http://ADDR/metrics (the token applies).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
}

/// `--congestion`: [`Congestion`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CongestionArg {
    Bbr,
    Cubic,
    Newreno,
}

impl From<CongestionArg> for Congestion {
    fn from(c: CongestionArg) -> Congestion {
        match c {
            CongestionArg::Bbr => Congestion::Bbr,
            CongestionArg::Cubic => Congestion::Cubic,
            CongestionArg::Newreno => Congestion::NewReno,
        }
    }
}

/// The names a generated certificate is for.
fn cert_names(listen: IpAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    if !listen.is_unspecified() {
        names.push(listen.to_string());
    }
    names.extend(extra.iter().cloned());
    let mut unique = Vec::new();
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    unique
}

pub fn run(args: QuicArgs) -> anyhow::Result<ExitCode> {
    let stop = StopFlag::install()?;
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Identity::from_pem_files(cert, key)?,
        _ => Identity::generate(&cert_names(args.listen.ip(), &args.cert_name))?,
    };
    if let Some(path) = &args.save_cert {
        std::fs::write(path, identity.cert_pem())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let config = QuicConfig {
        ring: args.ring.clone(),
        listen: args.listen,
        token: args.token.clone(),
        max_clients: args.max_clients,
        identity,
        newest_first: !args.in_order,
        congestion: args.congestion.into(),
    };
    let runtime = super::adapter_runtime(args.listen, args.token.is_some(), "camring-quic")?;
    let generated = args.cert.is_none();
    runtime.block_on(async {
        let listen = config.listen;
        let bridge = QuicBridge::bind(config)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = bridge.local_addr()?;
        eprintln!(
            "camring bridge quic: listening on quic://{addr} (ring {:?}{}); certificate sha256 {}{}",
            args.ring,
            if args.token.is_some() {
                ", token required"
            } else {
                ""
            },
            bridge.fingerprint(),
            if generated { " (generated)" } else { "" },
        );
        let end = args
            .duration
            .map(|d| tokio::time::Instant::now() + Duration::from_secs_f64(d.max(0.0)));
        let stopped = move || {
            let stop = stop.clone();
            async move {
                while !stop.raised() && end.is_none_or(|e| tokio::time::Instant::now() < e) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let metrics_task = match args.metrics {
            Some(maddr) => {
                let listener = tokio::net::TcpListener::bind(maddr)
                    .await
                    .with_context(|| format!("cannot listen on {maddr} for --metrics"))?;
                eprintln!(
                    "camring bridge quic: metrics at http://{}/metrics",
                    listener.local_addr()?
                );
                Some(tokio::spawn(quic::serve_metrics(
                    listener,
                    bridge.metrics(),
                    bridge.counters(),
                    args.token.clone(),
                    stopped(),
                )))
            }
            None => None,
        };
        bridge.run(stopped()).await.context("serving")?;
        if let Some(t) = metrics_task {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(ExitCode::SUCCESS)
}
