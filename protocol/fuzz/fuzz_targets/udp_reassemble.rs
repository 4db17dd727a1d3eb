//! Arbitrary programs into the UDP reassembler: each input is read as a sequence of steps
//! (time passing, genuine, mutated, raw and hostile fragments, other streams, timeouts,
//! resets) by the harness shared with `tests/udp.rs`, which checks after every step that
//! nothing panics, the frame and byte limits hold, no deadline is overdue, frames come out
//! strictly increasing, and each delivered message has a length its frame declared and is
//! byte for byte the genuine message when only genuine fragments were fed for it.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/udp_harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
