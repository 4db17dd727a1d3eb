//! The atomics the seqlock protocol uses, switched to loom's under `cfg(loom)` so that
//! `tests/loom.rs` model-checks the very functions the ring calls.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64};
