//! Cross-process tests of `camring bridge ws`: a real producer and a real bridge process,
//! WebSocket and HTTP clients in this process. Every binary message is parsed with
//! `wire::parse`, its frame numbers must grow per connection, its cameras must be exactly
//! those asked for, at most the size asked for, and every synthetic image is checked
//! against its pattern. Nothing here asserts a maximum time: counts, orders, contents and
//! ratios with wide margins.
//!
//! One test binary, a module per concern; [`support`] holds what they share.

#[path = "../common/mod.rs"]
mod common;
mod support;

/// The token and the client limit.
mod access;
/// Encodes grow with distinct settings, not with clients; JPEG forwarded as is.
mod encodes;
/// Garbage from clients: bad control messages, URLs, requests and half handshakes.
mod garbage;
/// Snapshots and MJPEG.
mod images;
/// The producer dies and comes back under the clients' feet.
mod producer_restart;
/// Many clients with their own settings, changed mid-stream, paused and resumed.
mod settings;
/// A slow client gets fewer frames, never older ones, and slows nobody.
mod slow_client;
/// Clients that vanish mid-frame.
mod vanishing;
