//! Requests rate-limited per source address: a token bucket per address in a table of
//! bounded size, and one shared bucket for the addresses that do not fit in it. A request
//! over the limit is dropped unread (no answer, no work), so a flood from one address
//! costs the server little and gets nothing back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Requests per second an address may send, sustained.
pub const RATE: f64 = 20.0;
/// Requests an address may send at once.
pub const BURST: f64 = 40.0;
/// Addresses with a bucket of their own.
pub const TABLE: usize = 4096;
/// Requests per second the addresses beyond the table share.
pub const OVERFLOW_RATE: f64 = 200.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(now: Instant, burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + secs * rate).min(burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled (forgetting it changes nothing).
    fn idle(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * rate >= burst
    }
}

/// The per-address limiter.
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    cap: usize,
    table: HashMap<SocketAddr, Bucket>,
    overflow: Bucket,
    last_prune: Instant,
}

impl Limiter {
    /// [`RATE`], [`BURST`], [`TABLE`].
    pub fn new(now: Instant) -> Limiter {
        Limiter::with(now, RATE, BURST, TABLE)
    }

    /// Custom limits (tests).
    pub fn with(now: Instant, rate: f64, burst: f64, cap: usize) -> Limiter {
        Limiter {
            rate,
            burst,
            cap: cap.max(1),
            table: HashMap::new(),
            overflow: Bucket::full(now, OVERFLOW_RATE),
            last_prune: now,
        }
    }

    /// Whether a request from `addr` at `now` may be served.
    pub fn allow(&mut self, now: Instant, addr: SocketAddr) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if let Some(b) = self.table.get_mut(&addr) {
            return b.take(now, rate, burst);
        }
        if self.table.len() >= self.cap
            && now.saturating_duration_since(self.last_prune) >= Duration::from_secs(1)
        {
            self.last_prune = now;
            self.table.retain(|_, b| !b.idle(now, rate, burst));
        }
        if self.table.len() < self.cap {
            let mut b = Bucket::full(now, burst);
            let ok = b.take(now, rate, burst);
            self.table.insert(addr, b);
            return ok;
        }
        self.overflow.take(now, OVERFLOW_RATE, OVERFLOW_RATE)
    }

    /// Addresses with a bucket now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_flood_from_one_address_is_cut_to_the_rate() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let allowed = (0..1000).filter(|_| l.allow(t0, addr(1))).count();
        assert_eq!(allowed, BURST as usize);
        // Others are not affected.
        assert!(l.allow(t0, addr(2)));
        // One second later, RATE more.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..1000).filter(|_| l.allow(t1, addr(1))).count();
        assert_eq!(allowed, RATE as usize);
    }

    #[test]
    fn the_table_is_bounded_and_the_rest_share_a_bucket() {
        let t0 = Instant::now();
        let mut l = Limiter::with(t0, 10.0, 10.0, 100);
        let allowed = (0..10_000u16).filter(|&p| l.allow(t0, addr(p))).count();
        assert_eq!(l.tracked(), 100);
        assert_eq!(allowed, 100 + OVERFLOW_RATE as usize);
        // Once they are idle, the table is pruned and new addresses get their own bucket.
        let later = t0 + Duration::from_secs(5);
        assert!(l.allow(later, addr(20_000)));
        assert_eq!(l.tracked(), 1);
    }
}
