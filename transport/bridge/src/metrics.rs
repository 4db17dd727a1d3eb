//! The adapter's counters, served at `/metrics` in the Prometheus (OpenMetrics) text
//! format. Label values come from a fixed set (transport, refusal reason), never from
//! what clients send, so a client cannot grow the set of series.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels: which kind of client (`ws`, `mjpeg`, `snapshot`).
pub type Kind = Vec<(&'static str, &'static str)>;

/// Every counter of one adapter.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Connected clients, per kind.
    pub clients: Family<Kind, Gauge>,
    /// Clients accepted since start, per kind.
    pub connections: Family<Kind, Counter>,
    /// Connections refused, per reason (`token`, `parameter`, `full`).
    pub refused: Family<Kind, Counter>,
    /// Multi-frames copied out of the ring.
    pub frames_read: Counter,
    /// Frames the ring refused while reading (torn, lapped, invalid).
    pub ring_errors: Counter,
    /// 1 while a producer is live.
    pub producer_up: Gauge,
    /// Multi-frames sent, per kind.
    pub frames_sent: Family<Kind, Counter>,
    /// Multi-frames replaced before they were sent (a slow client), per kind.
    pub frames_dropped: Family<Kind, Counter>,
    /// Bytes of messages sent, per kind.
    pub bytes_sent: Family<Kind, Counter>,
    /// Camera images encoded (once per frame, camera, quality and size).
    pub encodes: Counter,
    /// Camera images forwarded as the ring holds them (JPEG at a matching setting).
    pub forwarded: Counter,
    /// Camera images that could not be made (sent missing).
    pub encode_errors: Counter,
    /// Time to make one camera image.
    pub encode_seconds: Histogram,
    /// Control messages refused (bad JSON, bad values).
    pub control_errors: Counter,
    /// Connections closed for a bad message (binary or oversized).
    pub protocol_errors: Counter,
}

/// A label set for `kind`.
pub fn kind(kind: &'static str) -> Kind {
    vec![("kind", kind)]
}

/// A label set for refusal `reason`.
pub fn reason(reason: &'static str) -> Kind {
    vec![("reason", reason)]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `camring_bridge` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("camring_bridge");
        let m = Metrics {
            registry: Registry::default(),
            clients: Family::default(),
            connections: Family::default(),
            refused: Family::default(),
            frames_read: Counter::default(),
            ring_errors: Counter::default(),
            producer_up: Gauge::default(),
            frames_sent: Family::default(),
            frames_dropped: Family::default(),
            bytes_sent: Family::default(),
            encodes: Counter::default(),
            forwarded: Counter::default(),
            encode_errors: Counter::default(),
            encode_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
            control_errors: Counter::default(),
            protocol_errors: Counter::default(),
        };
        let r = &mut registry;
        r.register("clients", "Connected clients", m.clients.clone());
        r.register("connections", "Clients accepted", m.connections.clone());
        r.register("refused", "Connections refused", m.refused.clone());
        r.register(
            "frames_read",
            "Multi-frames copied out of the ring",
            m.frames_read.clone(),
        );
        r.register(
            "ring_errors",
            "Frames the ring refused while reading",
            m.ring_errors.clone(),
        );
        r.register(
            "producer_up",
            "1 while the ring's producer is live",
            m.producer_up.clone(),
        );
        r.register("frames_sent", "Multi-frames sent", m.frames_sent.clone());
        r.register(
            "frames_dropped",
            "Multi-frames replaced by newer ones before they were sent",
            m.frames_dropped.clone(),
        );
        r.register("bytes_sent", "Bytes of frames sent", m.bytes_sent.clone());
        r.register("encodes", "Camera images encoded", m.encodes.clone());
        r.register(
            "forwarded",
            "Camera images forwarded as the ring holds them",
            m.forwarded.clone(),
        );
        r.register(
            "encode_errors",
            "Camera images that could not be made",
            m.encode_errors.clone(),
        );
        r.register(
            "encode_seconds",
            "Time to make one camera image",
            m.encode_seconds.clone(),
        );
        r.register(
            "control_errors",
            "Control messages refused",
            m.control_errors.clone(),
        );
        r.register(
            "protocol_errors",
            "Connections closed for a bad message",
            m.protocol_errors.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
