//! SIGINT and SIGTERM set a flag; the main loops poll it and stop cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag raised by SIGINT or SIGTERM.
#[derive(Debug, Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Installs the handlers.
    pub fn install() -> anyhow::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        Ok(StopFlag(flag))
    }

    /// Whether a signal arrived.
    pub fn raised(&self) -> bool {
        // SYNC POINT: Relaxed: the flag carries no data, only the request to stop.
        self.0.load(Ordering::Relaxed)
    }
}
