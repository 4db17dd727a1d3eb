//! `camring view udp://HOST:PORT`: a subscriber of `camring bridge udp` (docs/protocol.md,
//! 10), `camring_client::udp`'s, which drains the socket on its own thread and hands on
//! the newest whole message. The live line adds the incomplete frames; the summary adds
//! the reassembly counters (`udp` in the JSON).

use std::net::{SocketAddr, ToSocketAddrs};

use camring_client::udp::{self, ClientConfig, UdpClient, MAX_TOKEN_LEN};

use super::{Transport, ViewArgs};

/// The transport of `udp://` URLs.
pub fn transport(args: &ViewArgs) -> anyhow::Result<UdpClient> {
    let authority = udp::authority(&args.url).map_err(anyhow::Error::msg)?;
    if args.cert_sha256.is_some() || args.ca.is_some() {
        anyhow::bail!("--cert-sha256 and --ca are for quic:// only");
    }
    let token = args.token.clone().unwrap_or_default().into_bytes();
    if token.len() > MAX_TOKEN_LEN {
        anyhow::bail!(
            "--token of {} bytes: a UDP subscribe carries at most {MAX_TOKEN_LEN}",
            token.len()
        );
    }
    let server: SocketAddr = authority
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority} has no address"))?;
    let config = ClientConfig {
        token,
        settings: udp::settings_json(&args.settings()),
        ..ClientConfig::default()
    };
    UdpClient::start(
        server,
        format!("udp://{authority}"),
        config,
        args.rcvbuf.map_or(udp::RECV_BUFFER, |b| b as usize),
    )
    .map_err(|e| anyhow::anyhow!("cannot subscribe to {server}: {e}"))
}

impl Transport for UdpClient {
    const BRIDGE: &'static str = "udp";

    fn name(&self) -> String {
        self.url().to_owned()
    }

    fn connected_note(&self, again: bool) -> String {
        match self.last_subscription() {
            Some((stream, _)) if !again => {
                format!("subscribed to {} (stream {stream:#010x})", self.url())
            }
            Some((stream, true)) => format!(
                "new stream {stream:#010x} (the server or its producer restarted); starting over"
            ),
            _ => format!("subscribed to {} again", self.url()),
        }
    }

    fn live_extra(&self) -> String {
        format!("  incomplete {}", self.stats().incomplete())
    }

    fn finish(&mut self) {
        self.stop();
    }

    fn summary_line(&self) -> Option<String> {
        let s = self.stats();
        let (c, r) = (&s.client, &s.reassembly);
        Some(format!(
            "udp: {} datagrams ({} fragments, {} JSON), {} frames reassembled, {} incomplete \
             dropped (deadline {}, superseded {}, evicted {}, inconsistent {}), duplicates {}, \
             late {}, {} replaced while the session was busy, reassembly memory high-water {} \
             bytes (limit {})",
            c.datagrams,
            c.fragments,
            c.texts,
            r.completed,
            s.incomplete(),
            r.dropped_timeout,
            r.dropped_superseded,
            r.dropped_evicted,
            r.dropped_inconsistent,
            r.duplicates,
            r.late,
            s.replaced,
            r.bytes_held_max,
            s.limits.max_bytes,
        ))
    }

    fn summary_json(&self) -> Option<(&'static str, serde_json::Value)> {
        let s = self.stats();
        let (c, r) = (&s.client, &s.reassembly);
        Some((
            "udp",
            serde_json::json!({
                "datagrams": c.datagrams,
                "bytes": c.bytes,
                "fragments": c.fragments,
                "texts": c.texts,
                "ignored": c.ignored,
                "subscriptions": c.subscriptions,
                "lost": c.lost,
                "completed": r.completed,
                "replaced": s.replaced,
                "incomplete": s.incomplete(),
                "dropped_timeout": r.dropped_timeout,
                "dropped_superseded": r.dropped_superseded,
                "dropped_evicted": r.dropped_evicted,
                "dropped_inconsistent": r.dropped_inconsistent,
                "duplicates": r.duplicates,
                "late": r.late,
                "other_stream": r.other_stream,
                "invalid": r.invalid,
                "bytes_held_max": r.bytes_held_max,
                "max_bytes": s.limits.max_bytes,
                "max_frames": s.limits.max_frames,
            }),
        ))
    }
}
