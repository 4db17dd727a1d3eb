//! A subscriber of `camring bridge udp`, sans IO: what to send when, and what the received
//! datagrams mean (docs/protocol.md 10.6). `camring view udp://`, the tests and the
//! benchmark drive it over a socket (`camring_bridge::udp::client::socket` makes one).
//!
//! The caller feeds it every datagram received ([`Client::handle`]), sends whatever
//! [`Client::poll_transmit`] gives, and calls [`Client::handle_timeout`] when
//! [`Client::poll_timeout`] passes. It subscribes (answering the challenge), sends a
//! keepalive every `keepalive_ms`, reassembles fragments with
//! [`camring_protocol::udp::Reassembler`], subscribes again when the server forgets it
//! (`unknown_subscriber`) or goes silent, follows a new stream (a restarted server or
//! producer) and unsubscribes on [`Client::close`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::udp::{
    self, Cookie, Datagram, Keepalive, Outcome, Reassembler, ReassemblerConfig, ReassemblyStats,
    RefuseReason, Subscribe, Unsubscribe, COOKIE_LEN,
};

use super::text;

/// How often an unanswered `subscribe` is sent again.
pub const RETRY: Duration = Duration::from_secs(1);
/// How long to wait before subscribing again after `full`.
pub const FULL_RETRY: Duration = Duration::from_secs(2);
/// Shortest time between two keepalives sent early (on fragments of an unknown stream).
const EARLY_KEEPALIVE: Duration = Duration::from_millis(200);

/// A client's settings.
#[derive(Debug, Clone, Default)]
pub struct ClientConfig {
    /// The server's token (at most 128 bytes), or empty.
    pub token: Vec<u8>,
    /// The settings JSON (a `settings` message's body without `type`), or empty.
    pub settings: Vec<u8>,
    /// Largest datagram wanted (0: the server's default).
    pub mtu: u32,
    /// The reassembly limits.
    pub reassembly: ReassemblerConfig,
}

/// What a datagram meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message (give it to `camring_protocol::wire::parse`).
    Message(Vec<u8>),
    /// A JSON server message (`state`, `stats`, `log`).
    Text(String),
    /// The subscription is live. `new_stream`: the first one, or the server's stream
    /// changed (it or its producer restarted): frame order starts over.
    Subscribed {
        /// The stream fragments come on.
        stream: u32,
        /// Whether it is another stream than before (or the first).
        new_stream: bool,
    },
    /// The server forgot this subscriber, or was silent for its timeout: subscribing
    /// again.
    Lost(&'static str),
    /// The server is full: trying again every [`FULL_RETRY`].
    Full,
    /// The server refused for good (wrong token, bad settings, another version).
    Refused(RefuseReason),
}

/// A client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Fragments received.
    pub fragments: u64,
    /// JSON datagrams received.
    pub texts: u64,
    /// Datagrams that were neither fragments, JSON nor replies, or came at the wrong time.
    pub ignored: u64,
    /// Subscriptions accepted (the first and every new one after that).
    pub subscriptions: u64,
    /// Times the subscription was lost (forgotten or silent server).
    pub lost: u64,
    /// Requests sent.
    pub requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending `subscribe` (with this cookie: zeros, or a challenge's) until accepted.
    Subscribing { cookie: Cookie },
    /// Live with this cookie.
    Subscribed { cookie: Cookie },
    /// Refused for good, or closed.
    Done,
}

/// One subscriber.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    phase: Phase,
    reassembler: Reassembler,
    epoch: Instant,
    stream: Option<u32>,
    keepalive: Duration,
    silence: Duration,
    /// When to send the next request (subscribe or keepalive).
    next_request: Instant,
    last_early: Option<Instant>,
    last_heard: Instant,
    out: VecDeque<Vec<u8>>,
    stats: ClientStats,
}

impl Client {
    /// A client that subscribes at once (its first `subscribe` is waiting in
    /// [`poll_transmit`](Self::poll_transmit)). Fails on a token or settings too long.
    pub fn new(config: ClientConfig, now: Instant) -> Result<Client, udp::EncodeError> {
        // Checked here so that every later subscribe encodes.
        Subscribe {
            cookie: [0; COOKIE_LEN],
            mtu: config.mtu,
            token: &config.token,
            settings: &config.settings,
        }
        .to_vec()?;
        let reassembler = Reassembler::new(config.reassembly);
        let mut c = Client {
            config,
            phase: Phase::Subscribing {
                cookie: [0; COOKIE_LEN],
            },
            reassembler,
            epoch: now,
            stream: None,
            keepalive: Duration::from_millis(u64::from(udp::DEFAULT_KEEPALIVE_MS)),
            silence: Duration::from_millis(u64::from(udp::DEFAULT_SUBSCRIPTION_TIMEOUT_MS)),
            next_request: now,
            last_early: None,
            last_heard: now,
            out: VecDeque::new(),
            stats: ClientStats::default(),
        };
        c.handle_timeout(now);
        Ok(c)
    }

    /// The counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The reassembly counters.
    pub fn reassembly(&self) -> &ReassemblyStats {
        self.reassembler.stats()
    }

    /// The reassembly limits.
    pub fn reassembly_config(&self) -> &ReassemblerConfig {
        self.reassembler.config()
    }

    /// Whether the subscription is live.
    pub fn subscribed(&self) -> bool {
        matches!(self.phase, Phase::Subscribed { .. })
    }

    /// The stream of the subscription, once accepted.
    pub fn stream(&self) -> Option<u32> {
        self.stream
    }

    fn ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn subscribe(&mut self, cookie: Cookie) {
        let request = Subscribe {
            cookie,
            mtu: self.config.mtu,
            token: &self.config.token,
            settings: &self.config.settings,
        }
        .to_vec()
        .expect("checked in new");
        self.out.push_back(request);
        self.stats.requests += 1;
    }

    fn keepalive(&mut self, cookie: Cookie) {
        self.out.push_back(Keepalive { cookie }.encode().to_vec());
        self.stats.requests += 1;
    }

    fn lose(&mut self, now: Instant, why: &'static str) -> Event {
        self.stats.lost += 1;
        self.phase = Phase::Subscribing {
            cookie: [0; COOKIE_LEN],
        };
        self.subscribe([0; COOKIE_LEN]);
        self.next_request = now + RETRY;
        self.last_heard = now;
        Event::Lost(why)
    }

    /// Handles one datagram from the server received at `now`.
    pub fn handle(&mut self, now: Instant, datagram: &[u8]) -> Option<Event> {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        if self.phase == Phase::Done {
            self.stats.ignored += 1;
            return None;
        }
        if let Some(json) = text::parse(datagram) {
            self.stats.texts += 1;
            if !self.subscribed() {
                return None;
            }
            self.last_heard = now;
            return Some(Event::Text(json.to_owned()));
        }
        let Ok(parsed) = udp::parse(datagram) else {
            self.stats.ignored += 1;
            return None;
        };
        match (parsed, self.phase) {
            (Datagram::Fragment(f), Phase::Subscribed { cookie }) => {
                self.stats.fragments += 1;
                self.last_heard = now;
                let t = self.ns(now);
                match self.reassembler.handle_fragment(t, &f) {
                    Outcome::Complete(r) => return Some(Event::Message(r.message)),
                    // The server may have changed streams and its `accepted` been lost:
                    // ask (a keepalive is answered with the current one).
                    Outcome::OtherStream(_)
                        if self.last_early.is_none_or(|t| {
                            now.saturating_duration_since(t) >= EARLY_KEEPALIVE
                        }) =>
                    {
                        self.last_early = Some(now);
                        self.keepalive(cookie);
                    }
                    _ => {}
                }
                None
            }
            (Datagram::Fragment(_), _) => {
                self.stats.fragments += 1;
                self.stats.ignored += 1;
                None
            }
            (Datagram::Accepted(a), _) => {
                self.last_heard = now;
                self.keepalive = Duration::from_millis(u64::from(a.keepalive_ms.max(100)));
                self.silence = Duration::from_millis(u64::from(a.timeout_ms.max(1000)))
                    .max(self.keepalive * 3);
                let was = self.phase;
                self.phase = Phase::Subscribed { cookie: a.cookie };
                let new_stream = self.stream != Some(a.stream);
                if new_stream {
                    self.stream = Some(a.stream);
                    self.reassembler.reset(Some(a.stream));
                }
                if matches!(was, Phase::Subscribing { .. }) {
                    self.next_request = now + self.keepalive;
                    self.stats.subscriptions += 1;
                    return Some(Event::Subscribed {
                        stream: a.stream,
                        new_stream,
                    });
                }
                new_stream.then_some(Event::Subscribed {
                    stream: a.stream,
                    new_stream,
                })
            }
            (Datagram::Challenge(c), Phase::Subscribing { .. }) => {
                self.last_heard = now;
                self.phase = Phase::Subscribing { cookie: c.cookie };
                self.subscribe(c.cookie);
                self.next_request = now + RETRY;
                None
            }
            (Datagram::Refused(r), phase) => {
                self.last_heard = now;
                match r.reason {
                    RefuseReason::UnknownSubscriber => match phase {
                        Phase::Subscribed { .. } => {
                            Some(self.lose(now, "the server does not know this subscriber"))
                        }
                        _ => None,
                    },
                    RefuseReason::Full => {
                        self.phase = Phase::Subscribing {
                            cookie: [0; COOKIE_LEN],
                        };
                        self.next_request = now + FULL_RETRY;
                        Some(Event::Full)
                    }
                    reason => {
                        self.phase = Phase::Done;
                        Some(Event::Refused(reason))
                    }
                }
            }
            _ => {
                self.stats.ignored += 1;
                None
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let mut t = self.next_request;
        if self.subscribed() {
            t = t.min(self.last_heard + self.silence);
        }
        if let Some(ns) = self.reassembler.poll_timeout() {
            t = t.min(self.epoch + Duration::from_nanos(ns));
        }
        Some(t)
    }

    /// Sends what is due at `now`: a subscribe again, a keepalive; drops incomplete frames
    /// past their deadline. Returns [`Event::Lost`] when the server was silent too long.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Event> {
        let t = self.ns(now);
        self.reassembler.handle_timeout(t);
        match self.phase {
            Phase::Done => None,
            Phase::Subscribed { cookie } => {
                if now >= self.last_heard + self.silence {
                    return Some(self.lose(now, "the server was silent"));
                }
                if now >= self.next_request {
                    self.keepalive(cookie);
                    self.next_request = now + self.keepalive;
                }
                None
            }
            Phase::Subscribing { cookie } => {
                if now >= self.next_request {
                    // A challenge cookie stays good for 10 s at least; after a few tries
                    // start from scratch in case it went stale.
                    self.subscribe(cookie);
                    self.next_request = now + RETRY;
                }
                None
            }
        }
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Ends the subscription: the `unsubscribe` to send, if subscribed.
    pub fn close(&mut self) -> Option<Vec<u8>> {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        self.out.clear();
        match phase {
            Phase::Subscribed { cookie } => Some(Unsubscribe { cookie }.encode().to_vec()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use crate::udp::{Accepted, Challenge, Fragmenter, Refused};

    use super::*;
    use crate::udp::policy::{Action, Policy, PolicyConfig, Reply};

    fn policy(token: Option<&str>, max_clients: usize) -> Policy {
        Policy::new(
            PolicyConfig {
                token: token.map(|t| t.as_bytes().to_vec()),
                max_clients,
                mtu: 1200,
                keepalive_ms: 1000,
                timeout_ms: 5000,
            },
            77,
            Instant::now(),
            [7; 32],
        )
    }

    /// Runs requests of `client` through `policy` until nothing is left to send; returns
    /// the events and the last action.
    fn exchange(
        client: &mut Client,
        policy: &mut Policy,
        from: SocketAddr,
        now: Instant,
    ) -> (Vec<Event>, Option<Action>) {
        let mut events = Vec::new();
        let mut action = None;
        while let Some(req) = client.poll_transmit() {
            let h = policy.handle(now, from, &req);
            if let Some(reply) = h.reply {
                let (bytes, n) = reply.encode();
                assert!(
                    n <= req.len(),
                    "reply {n} bytes to a {}-byte request",
                    req.len()
                );
                events.extend(client.handle(now, &bytes[..n]));
            }
            if h.action.is_some() {
                action = h.action;
            }
        }
        (events, action)
    }

    #[test]
    fn subscribes_through_the_challenge_and_keeps_alive() {
        let t0 = Instant::now();
        let mut p = policy(Some("secret"), 4);
        let from: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut c = Client::new(
            ClientConfig {
                token: b"secret".to_vec(),
                settings: br#"{"quality":70}"#.to_vec(),
                ..ClientConfig::default()
            },
            t0,
        )
        .unwrap();
        let (events, action) = exchange(&mut c, &mut p, from, t0);
        assert_eq!(
            events,
            [Event::Subscribed {
                stream: 77,
                new_stream: true
            }]
        );
        match action {
            Some(Action::Start {
                addr,
                settings,
                mtu,
            }) => {
                assert_eq!((addr, mtu), (from, 1200));
                assert_eq!(settings.quality, Some(crate::control::Quality::Fixed(70)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.stats().challenges, 1);
        assert!(c.subscribed());
        // Keepalives every second keep it.
        for s in 1..=10 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(c.handle_timeout(now), None);
            let (events, action) = exchange(&mut c, &mut p, from, now);
            assert!(events.is_empty() && action.is_none(), "{events:?}");
            assert!(p.sweep(now).is_empty());
        }
        assert_eq!(p.stats().keepalives, 10);
        // Fragments of its stream are reassembled.
        let msg = vec![7u8; 5000];
        let mut got = None;
        for f in Fragmenter::new(&msg, 77, 1, 1200).unwrap() {
            if let Some(e) = c.handle(t0, &f.to_vec()) {
                got = Some(e);
            }
        }
        assert_eq!(got, Some(Event::Message(msg)));
        // Unsubscribing ends it on the server.
        let bye = c.close().unwrap();
        let h = p.handle(t0 + Duration::from_secs(11), from, &bye);
        assert_eq!(h.reply, None);
        assert_eq!(h.action, Some(Action::Stop { addr: from }));
        assert!(p.is_empty());
    }

    #[test]
    fn refusals() {
        let t0 = Instant::now();
        let from: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        // Wrong token.
        let mut p = policy(Some("secret"), 4);
        let mut c = Client::new(ClientConfig::default(), t0).unwrap();
        let (events, _) = exchange(&mut c, &mut p, from, t0);
        assert_eq!(events, [Event::Refused(RefuseReason::Unauthorized)]);
        assert_eq!(c.poll_timeout(), None);
        // Bad settings.
        let mut c = Client::new(
            ClientConfig {
                settings: br#"{"qualty":70}"#.to_vec(),
                ..ClientConfig::default()
            },
            t0,
        )
        .unwrap();
        let (events, _) = exchange(&mut c, &mut policy(None, 4), from, t0);
        assert_eq!(events, [Event::Refused(RefuseReason::BadRequest)]);
        // Full: retried later.
        let mut p = policy(None, 1);
        let mut a = Client::new(ClientConfig::default(), t0).unwrap();
        exchange(&mut a, &mut p, from, t0);
        let other: SocketAddr = "127.0.0.1:9002".parse().unwrap();
        let mut b = Client::new(ClientConfig::default(), t0).unwrap();
        let (events, _) = exchange(&mut b, &mut p, other, t0);
        assert_eq!(events, [Event::Full]);
        assert_eq!(b.poll_timeout(), Some(t0 + FULL_RETRY));
        // When the first leaves, the second gets in.
        let bye = a.close().unwrap();
        let _ = p.handle(t0, from, &bye);
        let later = t0 + FULL_RETRY;
        b.handle_timeout(later);
        let (events, _) = exchange(&mut b, &mut p, other, later);
        assert!(
            matches!(events[..], [Event::Subscribed { .. }]),
            "{events:?}"
        );
    }

    #[test]
    fn forgotten_and_silent_servers_and_new_streams() {
        let t0 = Instant::now();
        let from: SocketAddr = "127.0.0.1:9003".parse().unwrap();
        let mut p = policy(None, 4);
        let mut c = Client::new(ClientConfig::default(), t0).unwrap();
        exchange(&mut c, &mut p, from, t0);
        // The server restarts: it does not know the keepalive's cookie.
        let mut p = policy(None, 4);
        let t1 = t0 + Duration::from_secs(1);
        c.handle_timeout(t1);
        let (events, _) = exchange(&mut c, &mut p, from, t1);
        assert_eq!(
            events,
            [
                Event::Lost("the server does not know this subscriber"),
                Event::Subscribed {
                    stream: 77,
                    new_stream: false
                }
            ]
        );
        // A new stream announced by an unsolicited accepted.
        let accepted = p.set_stream(78);
        assert_eq!(accepted.len(), 1);
        assert_eq!(
            c.handle(t1, &accepted[0].1.encode()),
            Some(Event::Subscribed {
                stream: 78,
                new_stream: true
            })
        );
        // Fragments of another stream make it ask at once (at most every 200 ms).
        let msg = vec![1u8; 3000];
        for f in Fragmenter::new(&msg, 99, 1, 1200).unwrap() {
            assert_eq!(c.handle(t1, &f.to_vec()), None);
        }
        assert_eq!(c.poll_transmit().map(|d| d[5]), Some(3));
        assert_eq!(c.poll_transmit(), None);
        // Silence: after the timeout it subscribes again from scratch.
        let quiet = t1 + Duration::from_secs(5);
        assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(1)));
        c.handle_timeout(t1 + Duration::from_secs(1));
        c.poll_transmit();
        assert_eq!(
            c.handle_timeout(quiet),
            Some(Event::Lost("the server was silent"))
        );
        assert!(!c.subscribed());
        let sub = c.poll_transmit().unwrap();
        assert_eq!(sub[5], 2);
        assert_eq!(&sub[8..24], &[0; 16]);
        // Replies of a past phase and foreign datagrams are ignored.
        assert_eq!(
            c.handle(
                quiet,
                &Refused {
                    reason: RefuseReason::UnknownSubscriber
                }
                .encode()
            ),
            None
        );
        assert_eq!(c.handle(quiet, b"hello"), None);
        let challenge = Challenge { cookie: [5; 16] }.encode();
        assert_eq!(c.handle(quiet, &challenge), None);
        assert_eq!(&c.poll_transmit().unwrap()[8..24], &[5; 16]);
        let _ = Accepted {
            cookie: [0; 16],
            stream: 0,
            mtu: 1200,
            keepalive_ms: 1000,
            timeout_ms: 5000,
        };
        let _ = Reply::Refused(Refused {
            reason: RefuseReason::Full,
        });
    }
}
