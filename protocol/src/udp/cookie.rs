//! Cookies: the challenge a new subscriber must echo (proof that it receives at its source
//! address), and the unguessable cookie of each subscription.
//!
//! A challenge cookie is a keyed hash of the address and a time bucket, under a secret
//! random key the server makes at start (this module reads no random source: the key is
//! given): the server keeps no state for an address until it echoes the cookie, and an
//! attacker forging someone else's address never sees it. A cookie is good for the bucket
//! it was made in and the next one (so 10 to 20 s with [`BUCKET`]). A subscription's
//! cookie is the keyed hash of a counter under the same key (a PRF in counter mode), so
//! it is as unpredictable as the key and never repeats.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::udp::{Cookie, COOKIE_LEN};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a challenge bucket lasts.
pub const BUCKET: Duration = Duration::from_secs(10);

/// Makes and checks challenge cookies.
#[derive(Clone)]
pub struct CookieJar {
    key: [u8; 32],
    epoch: Instant,
    issued: u64,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar").finish_non_exhaustive()
    }
}

impl CookieJar {
    /// A jar with the secret `key` (32 random bytes); buckets count from `epoch`.
    pub fn new(key: [u8; 32], epoch: Instant) -> CookieJar {
        CookieJar {
            key,
            epoch,
            issued: 0,
        }
    }

    /// A new subscription's cookie: unpredictable without the key, never the same twice.
    pub fn subscription(&mut self) -> Cookie {
        self.issued += 1;
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(b"camring udp subscription v1");
        h.update(self.issued.to_le_bytes());
        let digest = h.finalize();
        let mut c = [0; COOKIE_LEN];
        c.copy_from_slice(&digest[..COOKIE_LEN]);
        c
    }

    fn bucket(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / BUCKET.as_nanos()) as u64
    }

    fn mac(&self, addr: &SocketAddr, bucket: u64) -> Cookie {
        let ip = match addr {
            SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
            SocketAddr::V6(a) => a.ip().octets(),
        };
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(b"camring udp challenge v1");
        h.update(bucket.to_le_bytes());
        h.update(ip);
        h.update(addr.port().to_le_bytes());
        let digest = h.finalize();
        let mut c = [0; COOKIE_LEN];
        c.copy_from_slice(&digest[..COOKIE_LEN]);
        c
    }

    /// The challenge for `addr` at `now`.
    pub fn challenge(&self, addr: &SocketAddr, now: Instant) -> Cookie {
        self.mac(addr, self.bucket(now))
    }

    /// Whether `cookie` is a challenge this jar gave `addr` in this bucket or the previous
    /// one (compared in constant time).
    pub fn check(&self, addr: &SocketAddr, cookie: &Cookie, now: Instant) -> bool {
        let b = self.bucket(now);
        let current = self.mac(addr, b).ct_eq(cookie);
        let previous = match b.checked_sub(1) {
            Some(p) => self.mac(addr, p).ct_eq(cookie),
            None => subtle::Choice::from(0),
        };
        bool::from(current | previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_per_address_and_expire() {
        let t0 = Instant::now();
        let jar = CookieJar::new([1; 32], t0);
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let c = jar.challenge(&a, t0);
        assert!(jar.check(&a, &c, t0));
        assert!(jar.check(&a, &c, t0 + BUCKET));
        assert!(!jar.check(&a, &c, t0 + BUCKET * 2));
        assert!(!jar.check(&b, &c, t0));
        assert!(!jar.check(&a, &[0; COOKIE_LEN], t0));
        // Another jar (a restarted server, another key) does not know it.
        assert!(!CookieJar::new([2; 32], t0).check(&a, &c, t0));
    }

    #[test]
    fn subscription_cookies_never_repeat_and_depend_on_the_key() {
        let t0 = Instant::now();
        let mut jar = CookieJar::new([1; 32], t0);
        let mut other = CookieJar::new([2; 32], t0);
        let mine: Vec<Cookie> = (0..100).map(|_| jar.subscription()).collect();
        let mut unique = mine.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), mine.len());
        assert!(mine.iter().all(|c| *c != other.subscription()));
        // Not the challenge of any address either: another domain.
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(!mine.contains(&jar.challenge(&a, t0)));
    }
}
