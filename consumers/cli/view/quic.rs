//! `camring view quic://HOST:PORT`: a client of `camring bridge quic` (docs/protocol.md,
//! 10.8). The server's certificate is checked by its pinned SHA-256 (`--cert-sha256`) or a
//! CA (`--ca`); the hello carries the token and settings. The live line and the summary add
//! the frame streams' counters (`quic` in the JSON: streams received, reset by the server,
//! stale, too long).

use camring_client::quic::tls::{self, Trust};
use camring_client::quic::{QuicClient, QuicCounts, QuicTarget};

use super::{Transport, ViewArgs};

/// How the server's certificate is checked, from the options.
fn trust(args: &ViewArgs) -> anyhow::Result<Trust> {
    match (&args.cert_sha256, &args.ca) {
        (Some(_), Some(_)) => anyhow::bail!("give either --cert-sha256 or --ca, not both"),
        (Some(hex), None) => Ok(Trust::Pinned(tls::parse_fingerprint(hex)?)),
        (None, Some(path)) => Ok(Trust::ca_file(path)?),
        (None, None) => anyhow::bail!(
            "{}: cannot check the server's certificate: pass --cert-sha256 HEX (the `certificate \
             sha256` that camring bridge quic prints) or --ca FILE (a CA certificate in PEM that \
             signed the server's)",
            args.url
        ),
    }
}

/// The transport of `quic://` URLs.
pub fn transport(args: &ViewArgs) -> anyhow::Result<QuicClient> {
    let target = QuicTarget::new(&args.url, args.token.as_deref(), &args.settings())
        .map_err(anyhow::Error::msg)?;
    Ok(QuicClient::new(target, &trust(args)?)?)
}

impl Transport for QuicClient {
    const BRIDGE: &'static str = "quic";

    fn name(&self) -> String {
        format!("quic://{}", self.target.authority)
    }

    fn live_extra(&self) -> String {
        format!("  streams reset {}", QuicCounts::get(&self.counts.reset))
    }

    fn summary_line(&self) -> Option<String> {
        let c = &self.counts;
        Some(format!(
            "{} frame streams, {} reset by the server, {} stale messages dropped",
            QuicCounts::get(&c.streams),
            QuicCounts::get(&c.reset),
            QuicCounts::get(&c.stale)
        ))
    }

    fn summary_json(&self) -> Option<(&'static str, serde_json::Value)> {
        let c = &self.counts;
        Some((
            "quic",
            serde_json::json!({
                "streams": QuicCounts::get(&c.streams),
                "reset": QuicCounts::get(&c.reset),
                "stale": QuicCounts::get(&c.stale),
                "too_long": QuicCounts::get(&c.too_long),
            }),
        ))
    }
}
