//! Clients of camring's network bridges (docs/protocol.md): one connection type per
//! transport, each handing on what the server sends, as the protocol defines it: whole
//! multi-frame messages (CAMF v1, parsed with `camring_protocol::wire::parse`) and the
//! JSON server messages (`state`, `stats`, `log`, `error`).
//!
//! - [`ws`]: `camring bridge ws`, over tokio-tungstenite; a message is a binary WebSocket
//!   message.
//! - [`quic`]: `camring bridge quic`, over quinn; a message is one unidirectional stream,
//!   the server's certificate pinned by its SHA-256 or checked against a CA.
//! - [`udp`]: `camring bridge udp`: the sans-IO subscriber of `camring_protocol::udp`
//!   driven over a connected socket on a thread of its own, so that it keeps draining
//!   the socket however slowly its messages are taken.
//!
//! Every connection has the same shape, [`Link`]: `recv` gives the next [`Received`] (or
//! why the connection is gone), `close` says goodbye. What to do across connections
//! (reconnecting, backoff, what to tell a user) is the caller's: `camring view` does it
//! once for the three, through [`Connect`].
//!
//! Backpressure is the protocol's: a client that takes messages slowly gets fewer of them,
//! never older ones. WebSocket and QUIC leave it to the server (messages wait in the socket
//! or in a stream window, and the server drops); QUIC and UDP also hand on only the newest
//! of several messages that are complete at once, and count the others.

use std::future::Future;

use bytes::Bytes;

pub mod quic;
pub mod udp;
mod url;
pub mod ws;

/// What a connection received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A whole binary message and when it was complete (`camring_shm::clock::now_ns`,
    /// the ring's clock, which capture times are in).
    Message {
        /// The message (docs/protocol.md, 3).
        data: Bytes,
        /// When it was received.
        received_ns: u64,
    },
    /// A JSON text message of the server's (docs/protocol.md, 4).
    Text(String),
}

/// An open connection to a bridge.
pub trait Link {
    /// The next thing received; `Err` says why the connection ended (the server closed it,
    /// it was lost, the subscription expired). Cancel-safe: a call given up (in a
    /// `select!`) loses nothing.
    fn recv(&mut self) -> impl Future<Output = Result<Received, String>>;

    /// Says goodbye to the server, waiting at most a fraction of a second for its answer.
    fn close(self) -> impl Future<Output = ()>;
}

/// Why a connection could not be opened.
pub trait ConnectFailure {
    /// Whether trying again cannot help (a wrong token, a refused setting, a certificate
    /// that is not the pinned one).
    fn permanent(&self) -> bool;
    /// Whether nothing answered (nothing listening there, unreachable, no answer in time).
    fn unreachable(&self) -> bool;
    /// What went wrong, for a user, with a hint where there is one.
    fn describe(&self) -> String;
}

/// Opens connections to one server, again after one is lost.
pub trait Connect {
    /// An open connection.
    type Link: Link;
    /// Why one could not be opened.
    type Error: ConnectFailure;
    /// Opens a connection (the caller bounds how long it may take).
    fn connect(&mut self) -> impl Future<Output = Result<Self::Link, Self::Error>>;
}
