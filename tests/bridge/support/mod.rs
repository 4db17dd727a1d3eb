//! What the bridge tests share: a bridge over a live producer ([`Rig`]), WebSocket clients
//! that check every message ([`ws`], [`checker`]) and hand-written HTTP and WebSocket over
//! raw TCP ([`raw`]).

pub mod checker;
pub mod raw;
pub mod ws;

use std::net::SocketAddr;
use std::sync::MutexGuard;
use std::time::Duration;

pub use checker::*;
pub use raw::*;
pub use ws::*;

use crate::common::{live_producer, one_at_a_time, ring_name, Bridge, Proc, RingGuard};

/// Limit for anything that should happen "soon" (a producer starting, a reply): only there
/// so that a broken bridge fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `camring bridge ws` over the ring of a live synthetic producer, one test at a time.
/// Dropped in field order: the bridge, the producer, the ring, then the turn.
pub struct Rig {
    pub bridge: Bridge,
    _producer: Proc,
    _ring: RingGuard,
    _serial: MutexGuard<'static, ()>,
}

impl Rig {
    /// A producer of `cameras` cameras of `size` at `fps` in `format` on a ring named after
    /// `name`, and a bridge started with `bridge_args`.
    pub fn start(
        name: &str,
        (cameras, size, fps, format): (u32, &str, u32, &str),
        bridge_args: &[&str],
    ) -> Rig {
        let serial = one_at_a_time();
        let ring = ring_name(name);
        let guard = RingGuard(ring.clone());
        let producer = live_producer(&ring, cameras, size, fps, format);
        let bridge = Bridge::start(&ring, bridge_args);
        Rig {
            bridge,
            _producer: producer,
            _ring: guard,
            _serial: serial,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.bridge.addr
    }

    /// Panics unless the bridge still runs and never panicked.
    pub fn assert_healthy(&mut self) {
        assert!(self.bridge.alive(), "bridge exited: {}", self.bridge.log());
        let log = self.bridge.log();
        assert!(!log.contains("panicked"), "{log}");
    }
}
