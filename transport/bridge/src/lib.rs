//! camring's network adapters. An adapter is a process that attaches to a ring as an
//! ordinary reader ([`ring`]) and serves its frames to many remote clients, each with its
//! own settings and state (a sans-IO `camring_protocol::session::Session`, driven by
//! [`driver`]), sharing the images made for them ([`encode`]). Each transport ([`ws`],
//! [`quic`], [`udp`]) is a thin pump over [`driver`].
//!
//! [`ws`] serves WebSocket (the binary messages of `camring_protocol::wire` and the JSON
//! of `camring_protocol::control`, see docs/protocol.md), the browser viewer, snapshots,
//! MJPEG, Prometheus metrics and a health check on one HTTP port.
//!
//! Backpressure is the same for every kind of client: a client has at most one frame
//! being written and one pending; a newer frame replaces the pending one, which is
//! counted dropped. The pending frame is only a reference: its images are made when the
//! writer takes it, so a slow client costs no encoding for frames it never gets, and what
//! it gets is the newest frame at the time it can take one.

pub mod driver;
pub mod encode;
pub mod frame;
pub mod metrics;
pub mod quic;
pub mod ring;
pub mod udp;
pub mod ws;

pub use ws::{WsBridge, WsConfig};
