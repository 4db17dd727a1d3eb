//! Who gets frames: the server's answer to every request, sans IO (the caller passes the
//! time, the source address and the datagram, and sends the reply it gets back).
//!
//! * Every datagram with the magic counts against its address's rate limit
//!   ([`super::limit`]); over it, it is dropped unread.
//! * Garbage, short requests and datagrams that are not requests get no answer; malformed
//!   requests of at least 64 bytes get `refused` ([`udp::refusal_for`]).
//! * A `subscribe` with a wrong or missing token is refused (`unauthorized`), bad settings
//!   `bad_request`. Otherwise, unless it carries the address's current challenge cookie
//!   (or the cookie of its live subscription), it is answered with a `challenge`: no state
//!   is kept for an address until it echoes one, so a forged source address never becomes
//!   a subscriber. With the cookie: `full` if the server serves its maximum, else
//!   `accepted` and a new subscriber.
//! * `keepalive` with the subscription's cookie renews it (`accepted`); with another
//!   cookie, or from an address that is not subscribed, `refused` (`unknown_subscriber`).
//!   `unsubscribe` with the right cookie ends it (no answer).
//! * A subscriber not heard from for the timeout is dropped ([`Policy::sweep`]).
//!
//! Every reply is at most 40 bytes and answers a request of at least 64: the server never
//! sends an address more than it was sent, and frames only to live subscribers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::control::SettingsUpdate;
use crate::udp::{
    self, Accepted, Challenge, Cookie, Datagram, RefuseReason, Refused, MAGIC, MAX_REPLY_SIZE,
};
use subtle::ConstantTimeEq;

use super::cookie::CookieJar;
use super::limit::Limiter;

/// The rules a [`Policy`] applies.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The token a `subscribe` must carry, if any.
    pub token: Option<Vec<u8>>,
    /// Most subscribers at once.
    pub max_clients: usize,
    /// The largest datagram the server sends (a subscriber may ask for less).
    pub mtu: u32,
    /// The keepalive interval told to subscribers, ms.
    pub keepalive_ms: u32,
    /// A subscriber not heard from for this long is dropped, ms.
    pub timeout_ms: u32,
}

/// A reply to send back to the request's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The subscription is live.
    Accepted(Accepted),
    /// Echo this cookie.
    Challenge(Challenge),
    /// No.
    Refused(Refused),
}

impl Reply {
    /// The datagram (at most [`MAX_REPLY_SIZE`] bytes).
    pub fn encode(&self) -> ([u8; MAX_REPLY_SIZE], usize) {
        let mut out = [0; MAX_REPLY_SIZE];
        let len = match self {
            Reply::Accepted(a) => put(&mut out, &a.encode()),
            Reply::Challenge(c) => put(&mut out, &c.encode()),
            Reply::Refused(r) => put(&mut out, &r.encode()),
        };
        (out, len)
    }
}

fn put(out: &mut [u8], bytes: &[u8]) -> usize {
    out[..bytes.len()].copy_from_slice(bytes);
    bytes.len()
}

/// What changed among the subscribers.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new subscriber with these settings, sent datagrams of at most `mtu` bytes.
    Start {
        /// Its address.
        addr: SocketAddr,
        /// Its settings.
        settings: SettingsUpdate,
        /// Its MTU.
        mtu: u32,
    },
    /// A subscriber subscribed again: its settings (the fields given) and MTU now.
    Update {
        /// Its address.
        addr: SocketAddr,
        /// The settings change.
        settings: SettingsUpdate,
        /// Its MTU.
        mtu: u32,
    },
    /// A subscriber left (unsubscribe).
    Stop {
        /// Its address.
        addr: SocketAddr,
    },
}

/// What to do about one datagram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handled {
    /// Send this back to the source.
    pub reply: Option<Reply>,
    /// Start, change or stop a subscriber.
    pub action: Option<Action>,
}

/// Why a datagram got no answer and changed nothing, or what it was (counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Datagrams without the magic, too short, or of kinds a server does not take.
    pub ignored: u64,
    /// Datagrams over their address's rate limit.
    pub rate_limited: u64,
    /// Challenges sent.
    pub challenges: u64,
    /// Subscriptions started.
    pub subscribed: u64,
    /// Subscriptions renewed or changed by a `subscribe`.
    pub resubscribed: u64,
    /// Keepalives accepted.
    pub keepalives: u64,
    /// Subscribers that left by `unsubscribe`.
    pub unsubscribed: u64,
    /// Subscribers dropped after the timeout.
    pub timed_out: u64,
    /// Refusals: unauthorized, bad request, full, unknown subscriber, unsupported version.
    pub refused_unauthorized: u64,
    /// See `refused_unauthorized`.
    pub refused_bad_request: u64,
    /// See `refused_unauthorized`.
    pub refused_full: u64,
    /// See `refused_unauthorized`.
    pub refused_unknown: u64,
    /// See `refused_unauthorized`.
    pub refused_version: u64,
}

#[derive(Debug, Clone)]
struct Subscriber {
    cookie: Cookie,
    last_heard: Instant,
    mtu: u32,
}

/// The server's request handling and its subscribers.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    stream: u32,
    jar: CookieJar,
    limiter: Limiter,
    subscribers: HashMap<SocketAddr, Subscriber>,
    stats: PolicyStats,
}

impl Policy {
    /// A policy with no subscriber, sending stream `stream`; `key` is the secret (32
    /// random bytes) its cookies are made with.
    pub fn new(config: PolicyConfig, stream: u32, now: Instant, key: [u8; 32]) -> Policy {
        Policy {
            config,
            stream,
            jar: CookieJar::new(key, now),
            limiter: Limiter::new(now),
            subscribers: HashMap::new(),
            stats: PolicyStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &PolicyStats {
        &self.stats
    }

    /// The stream fragments are sent on now.
    pub fn stream(&self) -> u32 {
        self.stream
    }

    /// Live subscribers.
    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Whether there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Whether `addr` is a live subscriber.
    pub fn is_subscribed(&self, addr: &SocketAddr) -> bool {
        self.subscribers.contains_key(addr)
    }

    /// A new stream (the ring's producer changed): the `accepted` every subscriber should
    /// be told, so that it resets its reassembly to the new stream.
    pub fn set_stream(&mut self, stream: u32) -> Vec<(SocketAddr, Accepted)> {
        self.stream = stream;
        self.subscribers
            .iter()
            .map(|(a, s)| (*a, self.accepted(s.cookie, s.mtu)))
            .collect()
    }

    fn accepted(&self, cookie: Cookie, mtu: u32) -> Accepted {
        Accepted {
            cookie,
            stream: self.stream,
            mtu,
            keepalive_ms: self.config.keepalive_ms,
            timeout_ms: self.config.timeout_ms,
        }
    }

    fn refuse(&mut self, reason: RefuseReason) -> Handled {
        let counter = match reason {
            RefuseReason::Unauthorized => &mut self.stats.refused_unauthorized,
            RefuseReason::BadRequest => &mut self.stats.refused_bad_request,
            RefuseReason::Full => &mut self.stats.refused_full,
            RefuseReason::UnknownSubscriber => &mut self.stats.refused_unknown,
            RefuseReason::UnsupportedVersion | RefuseReason::Other(_) => {
                &mut self.stats.refused_version
            }
        };
        *counter += 1;
        Handled {
            reply: Some(Reply::Refused(Refused { reason })),
            action: None,
        }
    }

    fn ignore(&mut self) -> Handled {
        self.stats.ignored += 1;
        Handled::default()
    }

    /// Handles one datagram from `from` received at `now`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Handled {
        if datagram.len() < 8 || datagram[..4] != MAGIC {
            return self.ignore();
        }
        if !self.limiter.allow(now, from) {
            self.stats.rate_limited += 1;
            return Handled::default();
        }
        let parsed = match udp::parse(datagram) {
            Ok(d) => d,
            Err(e) => {
                return match udp::refusal_for(datagram, &e) {
                    Some(r) => self.refuse(r.reason),
                    None => self.ignore(),
                }
            }
        };
        match parsed {
            Datagram::Subscribe(s) => {
                // An object (serde would also take a struct's fields as an array).
                let object = s.settings.iter().find(|b| !b.is_ascii_whitespace());
                let settings = match s.settings_update() {
                    Ok(u) if object.is_none_or(|&b| b == b'{') => u,
                    _ => return self.refuse(RefuseReason::BadRequest),
                };
                if let Some(token) = &self.config.token {
                    if !bool::from(s.token.ct_eq(token)) {
                        return self.refuse(RefuseReason::Unauthorized);
                    }
                }
                let mtu = match s.mtu {
                    0 => self.config.mtu,
                    m => m.min(self.config.mtu),
                };
                let live = self
                    .subscribers
                    .get(&from)
                    .is_some_and(|sub| bool::from(sub.cookie.ct_eq(&s.cookie)));
                if !live && !self.jar.check(&from, &s.cookie, now) {
                    self.stats.challenges += 1;
                    return Handled {
                        reply: Some(Reply::Challenge(Challenge {
                            cookie: self.jar.challenge(&from, now),
                        })),
                        action: None,
                    };
                }
                if let Some(sub) = self.subscribers.get_mut(&from) {
                    // Renewed, with new settings, or again after a lost `accepted`.
                    sub.last_heard = now;
                    sub.mtu = mtu;
                    let cookie = sub.cookie;
                    self.stats.resubscribed += 1;
                    return Handled {
                        reply: Some(Reply::Accepted(self.accepted(cookie, mtu))),
                        action: Some(Action::Update {
                            addr: from,
                            settings,
                            mtu,
                        }),
                    };
                }
                if self.subscribers.len() >= self.config.max_clients {
                    return self.refuse(RefuseReason::Full);
                }
                let cookie = self.jar.subscription();
                self.subscribers.insert(
                    from,
                    Subscriber {
                        cookie,
                        last_heard: now,
                        mtu,
                    },
                );
                self.stats.subscribed += 1;
                Handled {
                    reply: Some(Reply::Accepted(self.accepted(cookie, mtu))),
                    action: Some(Action::Start {
                        addr: from,
                        settings,
                        mtu,
                    }),
                }
            }
            Datagram::Keepalive(k) => match self.subscribers.get_mut(&from) {
                Some(sub) if bool::from(sub.cookie.ct_eq(&k.cookie)) => {
                    sub.last_heard = now;
                    let (cookie, mtu) = (sub.cookie, sub.mtu);
                    self.stats.keepalives += 1;
                    Handled {
                        reply: Some(Reply::Accepted(self.accepted(cookie, mtu))),
                        action: None,
                    }
                }
                _ => self.refuse(RefuseReason::UnknownSubscriber),
            },
            Datagram::Unsubscribe(u) => match self.subscribers.get(&from) {
                Some(sub) if bool::from(sub.cookie.ct_eq(&u.cookie)) => {
                    self.subscribers.remove(&from);
                    self.stats.unsubscribed += 1;
                    Handled {
                        reply: None,
                        action: Some(Action::Stop { addr: from }),
                    }
                }
                _ => self.ignore(),
            },
            // Fragments and replies are the server's own kinds: not requests.
            _ => self.ignore(),
        }
    }

    /// Drops the subscribers not heard from for the timeout; returns their addresses.
    pub fn sweep(&mut self, now: Instant) -> Vec<SocketAddr> {
        let timeout = Duration::from_millis(u64::from(self.config.timeout_ms));
        let mut gone = Vec::new();
        self.subscribers.retain(|addr, s| {
            let alive = now.saturating_duration_since(s.last_heard) < timeout;
            if !alive {
                gone.push(*addr);
            }
            alive
        });
        self.stats.timed_out += gone.len() as u64;
        gone
    }
}

#[cfg(test)]
mod tests {
    use crate::udp::{Keepalive, Subscribe, Unsubscribe, COOKIE_LEN};

    use super::*;

    fn config() -> PolicyConfig {
        PolicyConfig {
            token: None,
            max_clients: 3,
            mtu: 1200,
            keepalive_ms: 1000,
            timeout_ms: 5000,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn subscribe(cookie: Cookie, token: &[u8], settings: &[u8], mtu: u32) -> Vec<u8> {
        Subscribe {
            cookie,
            mtu,
            token,
            settings,
        }
        .to_vec()
        .unwrap()
    }

    /// Subscribes `from` through the challenge; returns the subscriber's cookie.
    fn join(p: &mut Policy, now: Instant, from: SocketAddr) -> Cookie {
        let h = p.handle(now, from, &subscribe([0; COOKIE_LEN], b"", b"", 0));
        let Some(Reply::Challenge(c)) = h.reply else {
            panic!("{h:?}")
        };
        let h = p.handle(now, from, &subscribe(c.cookie, b"", b"", 0));
        match h.reply {
            Some(Reply::Accepted(a)) => a.cookie,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_subscriber_without_the_cookie_of_its_own_address() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(), 5, t0, [9; 32]);
        // A challenge made for one address does not work from another (a forger who
        // sees its own challenge cannot subscribe someone else).
        let h = p.handle(t0, addr(1), &subscribe([0; 16], b"", b"", 0));
        let Some(Reply::Challenge(c)) = h.reply else {
            panic!()
        };
        let h = p.handle(t0, addr(2), &subscribe(c.cookie, b"", b"", 0));
        assert!(matches!(h.reply, Some(Reply::Challenge(_))), "{h:?}");
        assert!(p.is_empty());
        // Random cookies never make a subscriber.
        let mut rng = 0x1234_5678_u64;
        for i in 0..2000u16 {
            let mut cookie = [0; 16];
            for b in &mut cookie {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (rng >> 56) as u8;
            }
            let h = p.handle(t0, addr(1000 + i), &subscribe(cookie, b"", b"", 0));
            assert!(h.action.is_none());
        }
        assert!(p.is_empty());
        // The challenge's own address is accepted, with its MTU and settings.
        let h = p.handle(t0, addr(1), &subscribe(c.cookie, b"", br#"{"fps":5}"#, 800));
        match (h.reply, h.action) {
            (Some(Reply::Accepted(a)), Some(Action::Start { mtu, settings, .. })) => {
                assert_eq!((a.stream, a.mtu, mtu), (5, 800, 800));
                assert_eq!(settings.fps, Some(5.0));
            }
            other => panic!("{other:?}"),
        }
        // A larger MTU than the server's is cut to it.
        let c = p.jar.challenge(&addr(3), t0);
        let h = p.handle(t0, addr(3), &subscribe(c, b"", b"", 9000));
        assert!(matches!(h.reply, Some(Reply::Accepted(a)) if a.mtu == 1200));
    }

    #[test]
    fn token_settings_limit_keepalive_timeout() {
        let t0 = Instant::now();
        let mut p = Policy::new(
            PolicyConfig {
                token: Some(b"s3cret".to_vec()),
                ..config()
            },
            5,
            t0,
            [9; 32],
        );
        let refused = |h: Handled| match h.reply {
            Some(Reply::Refused(r)) => r.reason,
            other => panic!("{other:?}"),
        };
        let c = p.jar.challenge(&addr(1), t0);
        assert_eq!(
            refused(p.handle(t0, addr(1), &subscribe(c, b"", b"", 0))),
            RefuseReason::Unauthorized
        );
        assert_eq!(
            refused(p.handle(t0, addr(1), &subscribe(c, b"s3cre", b"", 0))),
            RefuseReason::Unauthorized
        );
        assert_eq!(
            refused(p.handle(t0, addr(1), &subscribe(c, b"s3cret", b"{\"fps\":-1}", 0))),
            RefuseReason::BadRequest
        );
        assert_eq!(
            refused(p.handle(t0, addr(1), &subscribe(c, b"s3cret", b"[1]", 0))),
            RefuseReason::BadRequest
        );
        for port in 1..=3 {
            let c = p.jar.challenge(&addr(port), t0);
            let h = p.handle(t0, addr(port), &subscribe(c, b"s3cret", b"", 0));
            assert!(matches!(h.action, Some(Action::Start { .. })));
        }
        let c = p.jar.challenge(&addr(4), t0);
        assert_eq!(
            refused(p.handle(t0, addr(4), &subscribe(c, b"s3cret", b"", 0))),
            RefuseReason::Full
        );
        // Subscribing again (same challenge) renews, with an update, not a second slot.
        let c = p.jar.challenge(&addr(1), t0);
        let h = p.handle(
            t0,
            addr(1),
            &subscribe(c, b"s3cret", br#"{"quality":50}"#, 0),
        );
        assert!(matches!(h.action, Some(Action::Update { .. })), "{h:?}");
        assert_eq!(p.len(), 3);
        // Keepalives: the right cookie from the right address only.
        let Some(Reply::Accepted(a)) = h.reply else {
            panic!()
        };
        let ka = Keepalive { cookie: a.cookie }.encode();
        assert!(matches!(
            p.handle(t0, addr(1), &ka).reply,
            Some(Reply::Accepted(_))
        ));
        assert_eq!(
            refused(p.handle(t0, addr(2), &ka)),
            RefuseReason::UnknownSubscriber
        );
        let wrong = Keepalive { cookie: [9; 16] }.encode();
        assert_eq!(
            refused(p.handle(t0, addr(1), &wrong)),
            RefuseReason::UnknownSubscriber
        );
        // A wrong unsubscribe changes nothing and gets no answer.
        let h = p.handle(t0, addr(1), &Unsubscribe { cookie: [9; 16] }.encode());
        assert_eq!(h, Handled::default());
        // Silent subscribers are dropped after the timeout; the renewed one a bit later.
        let t4 = t0 + Duration::from_millis(4000);
        assert!(matches!(
            p.handle(t4, addr(1), &ka).reply,
            Some(Reply::Accepted(_))
        ));
        let mut gone = p.sweep(t0 + Duration::from_millis(5000));
        gone.sort();
        assert_eq!(gone, [addr(2), addr(3)]);
        assert_eq!(p.sweep(t4 + Duration::from_millis(5000)), [addr(1)]);
        assert!(p.is_empty());
        assert_eq!(p.stats().timed_out, 3);
    }

    #[test]
    fn hostile_datagrams_get_small_answers_or_none() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(), 5, t0, [9; 32]);
        let mut rng = 42u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let valid = [
            subscribe([0; 16], b"tok", br#"{"quality":70}"#, 0),
            Keepalive { cookie: [1; 16] }.encode().to_vec(),
            Unsubscribe { cookie: [1; 16] }.encode().to_vec(),
        ];
        let mut answered = 0;
        for i in 0..50_000u32 {
            let mut d = match next() % 4 {
                0 => (0..next() % 700).map(|_| next() as u8).collect::<Vec<u8>>(),
                _ => valid[(next() % 3) as usize].clone(),
            };
            // Mutate a few bytes, sometimes the length.
            for _ in 0..next() % 4 {
                if !d.is_empty() {
                    let at = (next() as usize) % d.len();
                    d[at] = next() as u8;
                }
            }
            if next() % 8 == 0 {
                d.truncate((next() % 80) as usize);
            }
            // Many sources, a time that moves on.
            let from = addr((i % 500) as u16);
            let now = t0 + Duration::from_millis(u64::from(i / 50));
            let h = p.handle(now, from, &d);
            if let Some(r) = h.reply {
                answered += 1;
                let (_, n) = r.encode();
                assert!(n <= d.len() && d.len() >= 64, "{n} bytes for {}", d.len());
            }
            assert!(!matches!(h.action, Some(Action::Start { .. })));
        }
        assert!(answered > 1000, "{answered}");
        assert!(p.is_empty());
        // Another version: refused if long enough, else ignored.
        let mut v2 = Keepalive { cookie: [0; 16] }.encode().to_vec();
        v2[4] = 2;
        assert!(matches!(
            p.handle(t0, addr(9999), &v2).reply,
            Some(Reply::Refused(Refused {
                reason: RefuseReason::UnsupportedVersion
            }))
        ));
        assert_eq!(p.handle(t0, addr(9999), &v2[..63]), Handled::default());
    }

    #[test]
    fn a_flood_from_one_address_is_answered_only_up_to_its_limit() {
        let t0 = Instant::now();
        let mut p = Policy::new(config(), 5, t0, [9; 32]);
        let req = subscribe([0; 16], b"", b"", 0);
        let answered = (0..10_000)
            .filter(|_| p.handle(t0, addr(1), &req).reply.is_some())
            .count();
        assert_eq!(answered, crate::udp::limit::BURST as usize);
        assert_eq!(p.stats().rate_limited, 10_000 - answered as u64);
        // Another address is served as usual, and can subscribe.
        let cookie = join(&mut p, t0, addr(2));
        assert_ne!(cookie, [0; 16]);
        assert!(p.is_subscribed(&addr(2)));
    }
}
