//! The JSON side messages over UDP: one datagram of kind [`KIND_TEXT`] (8) per server
//! message (`state`, `stats`, `log` of docs/protocol.md 6.2), the common 8-byte header then
//! the JSON text, at most the subscriber's MTU. They go only to live subscribers (like
//! fragments, never as the answer to a request), so they add nothing an attacker could
//! reflect; clients that do not know kind 8 ignore it, as 10.1 asks.

use crate::control::ServerMessage;
use crate::udp::{COMMON_HEADER_SIZE, MAGIC, VERSION};

/// The datagram kind of a JSON server message.
pub const KIND_TEXT: u8 = 8;

/// The datagram carrying `json`, if it fits in `mtu` bytes.
pub fn encode(json: &str, mtu: usize) -> Option<Vec<u8>> {
    let len = COMMON_HEADER_SIZE + json.len();
    if len > mtu {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, KIND_TEXT, 0, 0]);
    out.extend_from_slice(json.as_bytes());
    Some(out)
}

/// The datagram for `message`, shortened to fit `mtu` if needed: a `stats` without its
/// per-camera list, a `state` with only the cameras in `keep`. `None` if even that does
/// not fit.
pub fn encode_message(
    message: &ServerMessage,
    mtu: usize,
    keep: impl Fn(u32) -> bool,
) -> Option<Vec<u8>> {
    if let Some(d) = encode(&message.to_json(), mtu) {
        return Some(d);
    }
    let shorter = match message {
        ServerMessage::Stats(s) => {
            let mut s = s.clone();
            s.cameras.clear();
            ServerMessage::Stats(s)
        }
        ServerMessage::State(s) => {
            let mut s = s.clone();
            s.cameras.retain(|c| keep(c.id));
            ServerMessage::State(s)
        }
        _ => return None,
    };
    encode(&shorter.to_json(), mtu)
}

/// The JSON text of a kind-8 datagram; `None` for any other datagram or text that is not
/// UTF-8.
pub fn parse(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < COMMON_HEADER_SIZE
        || datagram[..4] != MAGIC
        || datagram[4] != VERSION
        || datagram[5] != KIND_TEXT
    {
        return None;
    }
    std::str::from_utf8(&datagram[COMMON_HEADER_SIZE..]).ok()
}

#[cfg(test)]
mod tests {
    use crate::control::{ConnectionStats, LogEntry, LogLevel, Stats};
    use crate::udp;

    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let d = encode(r#"{"type":"x"}"#, 1200).unwrap();
        assert_eq!(&d[..8], b"CAMU\x01\x08\x00\x00");
        assert_eq!(parse(&d), Some(r#"{"type":"x"}"#));
        // Other datagrams are not text; the protocol parser ignores kind 8.
        assert_eq!(parse(&d[..7]), None);
        assert_eq!(parse(b"CAMU\x02\x08\x00\x00{}"), None);
        assert!(matches!(
            udp::parse(&d),
            Err(udp::DatagramError::UnknownKind(KIND_TEXT))
        ));
        assert!(encode(&"x".repeat(1193), 1200).is_none());
        assert_eq!(encode(&"x".repeat(1192), 1200).unwrap().len(), 1200);
    }

    #[test]
    fn long_messages_are_shortened() {
        let stats = ServerMessage::Stats(Stats {
            time_ms: 1,
            connection: ConnectionStats::default(),
            cameras: vec![Default::default(); 40],
        });
        let d = encode_message(&stats, 576, |_| true).unwrap();
        assert!(d.len() <= 576);
        match ServerMessage::from_json(parse(&d).unwrap()).unwrap() {
            ServerMessage::Stats(s) => assert!(s.cameras.is_empty()),
            other => panic!("{other:?}"),
        }
        let log = ServerMessage::Log(LogEntry {
            level: LogLevel::Info,
            message: "x".repeat(2000),
        });
        assert!(encode_message(&log, 1200, |_| true).is_none());
    }
}
