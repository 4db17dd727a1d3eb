//! `camring bridge quic` (being written).
