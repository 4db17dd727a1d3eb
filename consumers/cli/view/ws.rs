//! `camring view ws://HOST:PORT`: a client of `camring bridge ws`; the token and settings
//! travel in the URL's query (docs/protocol.md, 2.2).

use camring_client::ws::{WsClient, WsTarget};

use super::{Transport, ViewArgs};

/// The transport of `ws://` (and `http://`) URLs.
pub fn transport(args: &ViewArgs) -> anyhow::Result<WsClient> {
    let target = WsTarget::new(&args.url, args.token.as_deref(), &args.settings())
        .map_err(anyhow::Error::msg)?;
    Ok(WsClient {
        target,
        rcvbuf: args.rcvbuf,
    })
}

impl Transport for WsClient {
    const BRIDGE: &'static str = "ws";

    fn name(&self) -> String {
        self.target.to_string()
    }
}
