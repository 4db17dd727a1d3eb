//! One module per transport. Each has `source(&mut SourceCtx)`: set up, announce the
//! endpoint with [`SourceCtx::ready`], then send every multi-frame [`SourceCtx::next_stamp`]
//! stamps until it says stop; and `sink(&mut SinkCtx)`: connect to
//! [`SinkCtx::endpoint`], call [`SinkCtx::ready`], then receive, calling
//! [`SinkCtx::frame`] for each multi-frame received whole, until the window is over.

use anyhow::Result;

use crate::ctx::{SinkCtx, SourceCtx};
use crate::profile::Transport;

pub mod iceoryx2;
pub mod memcpy;
pub mod net;
pub mod shm;
pub mod sockets;

/// Runs the sender of `ctx`'s transport.
pub fn source(ctx: &mut SourceCtx) -> Result<()> {
    match ctx.spec().transport {
        Transport::Memcpy => memcpy::source(ctx),
        Transport::ShmZeroCopy | Transport::ShmCopy => shm::source(ctx),
        Transport::Ws | Transport::Quic | Transport::Udp => net::source(ctx),
        Transport::Tcp | Transport::Unix => sockets::source(ctx),
        Transport::Iceoryx2 => iceoryx2::source(ctx),
    }
}

/// Runs a consumer of `ctx`'s transport.
pub fn sink(ctx: &mut SinkCtx) -> Result<()> {
    match ctx.spec().transport {
        Transport::Memcpy => memcpy::sink(ctx),
        Transport::ShmZeroCopy | Transport::ShmCopy => shm::sink(ctx),
        Transport::Ws | Transport::Quic | Transport::Udp => net::sink(ctx),
        Transport::Tcp | Transport::Unix => sockets::sink(ctx),
        Transport::Iceoryx2 => iceoryx2::sink(ctx),
    }
}
