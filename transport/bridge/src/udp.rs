//! `camring bridge udp` (being written).
