//! The QUIC consumer, as `camring view quic://` connects: quinn with the server's
//! certificate pinned by its SHA-256, a control stream opened with a `hello` (its lines
//! read and ignored after the first `state`), every frame stream read whole on its own
//! task. A stream the bridge resets (superseded by a newer frame) is not a message.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use camring_bridge::quic::control::{
    close, Hello, Line, LineReader, ReadLine, MAX_SERVER_LINE, QUIC_VERSION,
};
use camring_bridge::quic::tls::{self, Trust};
use quinn::VarInt;
use tokio::sync::mpsc;

use super::{Link, CLOSE_TIMEOUT, FINGERPRINT};

/// Largest message read (as `camring view`).
const MAX_MESSAGE: usize = camring_bridge::quic::CLIENT_MAX_MESSAGE;

/// What a stream's reader hands back.
type Read = Result<Vec<u8>, quinn::ReadToEndError>;

/// A connection to the QUIC bridge.
pub(super) struct Quic {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    /// The control stream: closing it would be a protocol error.
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
    lines: LineReader,
    control_open: bool,
    tx: mpsc::UnboundedSender<Read>,
    rx: mpsc::UnboundedReceiver<Read>,
}

impl Quic {
    /// Connects to `ADDR#sha256=HEX`, says hello and waits for the first `state`.
    pub(super) async fn connect(endpoint: &str) -> Result<Quic> {
        let (addr, pin) = endpoint
            .split_once(FINGERPRINT)
            .ok_or_else(|| anyhow!("no {FINGERPRINT} in {endpoint:?}"))?;
        let addr: SocketAddr = addr.parse().context("the bridge's address")?;
        let pin = tls::parse_fingerprint(pin)?;
        let mut config = quinn::ClientConfig::new(tls::client_crypto(&Trust::Pinned(pin))?);
        config.transport_config(Arc::new(camring_bridge::quic::client_transport()));
        let mut endpoint =
            camring_bridge::quic::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        endpoint.set_default_client_config(config);
        let conn = endpoint.connect(addr, "localhost")?.await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = Hello {
            version: QUIC_VERSION,
            token: None,
            settings: None,
        };
        send.write_all(hello.to_line().as_bytes()).await?;
        let mut lines = LineReader::new(MAX_SERVER_LINE);
        match lines.read(&mut recv).await? {
            Line::Text(t) if t.contains("\"state\"") => {}
            other => bail!("expected a state, got {other:?}"),
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Quic {
            endpoint,
            conn,
            _send: send,
            recv,
            lines,
            control_open: true,
            tx,
            rx,
        })
    }
}

impl Link for Quic {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            tokio::select! {
                stream = self.conn.accept_uni() => match stream {
                    Ok(mut s) => {
                        let tx = self.tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(s.read_to_end(MAX_MESSAGE).await);
                        });
                    }
                    Err(quinn::ConnectionError::ApplicationClosed(_)) => return Ok(None),
                    Err(e) => return Err(e).context("the connection"),
                },
                line = self.lines.read(&mut self.recv), if self.control_open => match line {
                    Ok(Line::Text(_)) => {}
                    Ok(Line::End) => self.control_open = false,
                    Ok(Line::TooLong) => bail!("a control line over {MAX_SERVER_LINE} bytes"),
                    // The connection's end shows at accept_uni.
                    Err(_) => self.control_open = false,
                },
                Some(read) = self.rx.recv() => match read {
                    Ok(data) => return Ok(Some(Bytes::from(data))),
                    // Superseded by a newer frame, or the connection is going.
                    Err(quinn::ReadToEndError::Read(_)) => {}
                    Err(quinn::ReadToEndError::TooLong) => {
                        bail!("a frame stream over {MAX_MESSAGE} bytes")
                    }
                },
            }
        }
    }

    async fn close(self) {
        self.conn.close(VarInt::from_u32(close::DONE), b"bye");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.endpoint.wait_idle()).await;
    }
}
