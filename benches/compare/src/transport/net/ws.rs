//! The WebSocket consumer: tokio-tungstenite on `ws://ENDPOINT/ws`, binary messages
//! handed on, text (JSON `state`, `stats`, `log`) read and ignored.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Link, CLOSE_TIMEOUT};

/// A connection to the WebSocket bridge.
pub(super) struct Ws(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Ws {
    /// Connects and waits for the bridge's first `state` (sent once the connection is
    /// registered for frames).
    pub(super) async fn connect(endpoint: &str) -> Result<Ws> {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{endpoint}/ws")).await?;
        loop {
            match ws.next().await {
                None => bail!("closed before its first state"),
                Some(Ok(Message::Text(t))) if t.contains("\"state\"") => return Ok(Ws(ws)),
                Some(Ok(Message::Close(c))) => bail!("closed: {c:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the first state"),
            }
        }
    }
}

impl Link for Ws {
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.0.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b)),
                // JSON side messages; pings are answered by tungstenite.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("receiving"),
            }
        }
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            self.0.close(None).await?;
            // Until the bridge's close comes back (or the socket ends).
            while let Some(Ok(_)) = self.0.next().await {}
            Ok::<_, tokio_tungstenite::tungstenite::Error>(())
        })
        .await;
    }
}
