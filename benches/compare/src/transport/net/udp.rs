//! The UDP consumer, as `camring view udp://` subscribes (docs/protocol.md 10.6): the
//! sans-IO subscriber of `camring_bridge::udp::client` (subscribe, challenge, keepalives,
//! reassembly) driven over a connected socket with its receive buffer. JSON datagrams are
//! ignored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use camring_bridge::udp::client::{self, Client, ClientConfig, Event};
use tokio::net::UdpSocket;

use super::Link;

/// Longest wait without looking at the subscriber's timers.
const POLL: Duration = Duration::from_millis(100);

/// A subscription to the UDP bridge.
pub(super) struct Udp {
    socket: UdpSocket,
    client: Client,
    buf: Vec<u8>,
}

impl Udp {
    /// Subscribes to `ADDR` and waits until the bridge accepts.
    pub(super) async fn connect(endpoint: &str) -> Result<Udp> {
        let server: SocketAddr = endpoint.parse().context("the bridge's address")?;
        let socket = UdpSocket::from_std(client::socket(server, client::RECV_BUFFER)?)?;
        let client = Client::new(ClientConfig::default(), Instant::now())?;
        let mut udp = Udp {
            socket,
            client,
            buf: vec![0; 65_536],
        };
        while !udp.client.subscribed() {
            // Nothing but the subscription's events comes before it is live; `full` is
            // retried (within the caller's timeout).
            if let Some(Event::Refused(reason)) = udp.next_event().await? {
                bail!("the bridge refused the subscription: {reason:?}");
            }
        }
        Ok(udp)
    }

    /// Sends what the subscriber has to send, then waits for a datagram or its next timer;
    /// returns the event, if any. Cancel-safe: a datagram is handled as soon as it is read.
    async fn next_event(&mut self) -> Result<Option<Event>> {
        while let Some(d) = self.client.poll_transmit() {
            self.socket.send(&d).await.context("sending a request")?;
        }
        let now = Instant::now();
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            return Ok(self.client.handle_timeout(now));
        }
        let wake = self
            .client
            .poll_timeout()
            .map_or(now + POLL, |t| t.min(now + POLL));
        tokio::select! {
            r = self.socket.recv(&mut self.buf) => match r {
                Ok(n) => Ok(self.client.handle(Instant::now(), &self.buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // An ICMP "port unreachable": the bridge is gone.
                    bail!("the bridge is not listening: {e}")
                }
                Err(e) => Err(e).context("receiving"),
            },
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                Ok(if self.client.poll_timeout().is_some_and(|t| t <= now) {
                    self.client.handle_timeout(now)
                } else {
                    None
                })
            }
        }
    }
}

impl Link for Udp {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.next_event().await? {
                Some(Event::Message(m)) => return Ok(Some(Bytes::from(m))),
                Some(Event::Refused(reason)) => bail!("the bridge refused: {reason:?}"),
                // Lost (it will subscribe again), full (it retries), texts, a resubscription.
                Some(_) | None => {}
            }
        }
    }

    async fn close(mut self) {
        if let Some(bye) = self.client.close() {
            let _ = self.socket.send(&bye).await;
        }
    }
}
