//! Arbitrary bytes into the network message parser. Whatever parses must re-encode to the
//! same bytes (except the reserved word of each entry, which the encoder writes as zero)
//! and parse back to the same message; nothing may panic.

#![no_main]

use camring_protocol::wire::{self, ENTRY_SIZE, HEADER_SIZE};
use libfuzzer_sys::fuzz_target;

/// Offset of the reserved `u32` inside an entry (docs/protocol.md, 3.4).
const RESERVED: usize = 28;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = wire::parse(data) else {
        return;
    };
    let again = message
        .encode()
        .expect("the encoder accepts every message the parser accepts");
    assert_eq!(again.len(), data.len());
    for (at, (&a, &b)) in again.iter().zip(data).enumerate() {
        let in_entries = at >= HEADER_SIZE && at < wire::prefix_len(message.cameras.len());
        let reserved =
            in_entries && (RESERVED..RESERVED + 4).contains(&((at - HEADER_SIZE) % ENTRY_SIZE));
        if reserved {
            assert_eq!(a, 0, "reserved byte {at} not zero");
        } else {
            assert_eq!(a, b, "byte {at} differs after re-encoding");
        }
    }
    assert_eq!(wire::parse(&again).as_ref(), Ok(&message));
    let prefix = message.prefix().expect("same checks as encode");
    assert_eq!(prefix.message_len(), data.len() as u64);
    assert_eq!(&again[..prefix.len()], prefix.as_bytes());
});
