//! Cookies: the challenge a new subscriber must echo (proof that it receives at its source
//! address), and the random cookie of each subscription.
//!
//! A challenge cookie is a keyed hash of the address and a time bucket, under a random key
//! made at start: the server keeps no state for an address until it echoes the cookie, and
//! an attacker forging someone else's address never sees it. A cookie is good for the
//! bucket it was made in and the next one (so 10 to 20 s with [`BUCKET`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use camring_protocol::udp::{Cookie, COOKIE_LEN};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a challenge bucket lasts.
pub const BUCKET: Duration = Duration::from_secs(10);

/// Fills `buf` from the operating system's random source (ring's `SystemRandom`, through
/// rustls); should that ever fail, from the standard library's randomly keyed hasher mixed
/// with the time (still unpredictable to a remote attacker, if weaker).
pub fn random_bytes(buf: &mut [u8]) {
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(buf).is_ok() {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A random cookie.
pub fn random_cookie() -> Cookie {
    let mut c = [0; COOKIE_LEN];
    random_bytes(&mut c);
    c
}

/// A random `u32` (stream ids).
pub fn random_u32() -> u32 {
    let mut b = [0; 4];
    random_bytes(&mut b);
    u32::from_le_bytes(b)
}

/// Makes and checks challenge cookies.
#[derive(Clone)]
pub struct CookieJar {
    key: [u8; 32],
    epoch: Instant,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar").finish_non_exhaustive()
    }
}

impl CookieJar {
    /// A jar with a fresh random key; buckets count from `epoch`.
    pub fn new(epoch: Instant) -> CookieJar {
        let mut key = [0; 32];
        random_bytes(&mut key);
        CookieJar { key, epoch }
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
        let jar = CookieJar::new(t0);
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:4001".parse().unwrap();
        let c = jar.challenge(&a, t0);
        assert!(jar.check(&a, &c, t0));
        assert!(jar.check(&a, &c, t0 + BUCKET));
        assert!(!jar.check(&a, &c, t0 + BUCKET * 2));
        assert!(!jar.check(&b, &c, t0));
        assert!(!jar.check(&a, &[0; COOKIE_LEN], t0));
        // Another jar (a restarted server) does not know it.
        assert!(!CookieJar::new(t0).check(&a, &c, t0));
        assert_ne!(random_cookie(), random_cookie());
    }
}
