//! `camring bridge udp` and `camring view udp://` against the real thing: synthetic
//! producer processes, the bridge process, view processes verifying every image, and raw
//! subscribers and hostile senders from this process; a seeded lossy relay (loss,
//! duplication, reordering, delay) between views and the bridge on loopback.
//!
//! Network namespaces with veth work on the machine this was written on, but netem does
//! not (`tc qdisc ... netem`: "Specified qdisc kind is unknown", no sch_netem), so every
//! impaired path is the relay of tests/common/relay.rs.
//!
//! No test asserts how long anything takes: timeouts only guard against hangs, and rates
//! are compared with generous margins (the machine is small and shared).

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camring_client::udp::{self as client, Client, ClientConfig, Event};
use camring_protocol::udp::{self as dgram, Keepalive, Subscribe, Unsubscribe};
use camring_protocol::wire;
use common::relay::{Impair, Relay, RelayLog};
use common::*;
use rustix::process::Signal;

/// Guard against hangs only.
const T: Duration = Duration::from_secs(90);

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

/// A synthetic producer running until dropped, and its ring (removed when dropped).
struct Producer {
    proc: Proc,
    _guard: RingGuard,
    ring: String,
}

fn producer(test: &str, cameras: u32, size: &str) -> Producer {
    let ring = ring_name(test);
    let guard = RingGuard(ring.clone());
    let proc = start_producer(&ring, cameras, size);
    Producer {
        proc,
        _guard: guard,
        ring,
    }
}

fn start_producer(ring: &str, cameras: u32, size: &str) -> Proc {
    let cameras = cameras.to_string();
    let proc = produce(
        ring,
        &[
            "--cameras",
            &cameras,
            "--size",
            size,
            "--fps",
            "30",
            "--format",
            "jpeg",
            "-q",
        ],
    );
    assert!(wait_for_frames(ring, 1, T), "producer did not start");
    proc
}

/// A `camring bridge udp` process; its stderr drained by a thread and kept.
struct UdpBridge {
    proc: Proc,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl UdpBridge {
    fn start(ring: &str, listen: &str, extra: &[&str]) -> Result<UdpBridge, String> {
        let mut args = vec!["bridge", "udp", "--ring", ring, "--listen", listen];
        args.extend_from_slice(extra);
        let find = |line: &str| {
            line.split("listening on udp://")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|a| a.parse::<SocketAddr>().ok())
        };
        let l = spawn_logged(&args, find, T)?;
        Ok(UdpBridge {
            proc: l.proc,
            addr: l.found,
            log: l.log,
        })
    }

    fn url(&self) -> String {
        format!("udp://{}", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn alive(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }

    /// Stops it with SIGINT and returns its log (with the closing line of counters).
    fn stop(self) -> String {
        self.proc.signal(Signal::INT);
        let out = self.proc.finish(T);
        assert!(out.status.success(), "bridge: {:?}", out.status);
        // The drain thread may still be copying the last lines.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log.lock().unwrap().contains("stopped;") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log.lock().unwrap().clone();
        log
    }
}

fn bridge(ring: &str, extra: &[&str]) -> UdpBridge {
    UdpBridge::start(ring, "127.0.0.1:0", extra).unwrap_or_else(|e| panic!("{e}"))
}

/// A counter of the bridge's closing line, e.g. `ignored 12`.
fn closing_counter(log: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("stopped;"))
        .unwrap_or_else(|| panic!("no closing line:\n{log}"));
    line.split(&format!("{name} "))
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// Starts `camring view URL ARGS...`.
fn spawn_view(url: &str, args: &[&str]) -> Proc {
    let mut all = vec!["view", url];
    all.extend_from_slice(args);
    Proc::spawn(&all)
}

fn view(url: &str, args: &[&str]) -> Output {
    spawn_view(url, args).finish(T)
}

/// The summary of a view that must have succeeded with every delivered frame correct.
fn verified_summary(out: &Output, bridge_log: &str) -> serde_json::Value {
    let s = summary(out);
    assert!(
        out.status.success(),
        "view failed: {:?}\n{}\nbridge:\n{bridge_log}",
        out.status,
        stderr(out),
    );
    assert!(u(&s, "frames") > 0, "{s}\n{}", stderr(out));
    assert!(u(&s, "verified") > 0, "{s}");
    assert_eq!(u(&s, "corrupt"), 0, "{s}\n{}", stderr(out));
    assert_eq!(u(&s, "invalid"), 0, "{s}\n{}", stderr(out));
    s
}

// ---------------------------------------------------------------------------------------
// Clients, settings, token
// ---------------------------------------------------------------------------------------

#[test]
fn several_clients_with_their_own_settings_all_verified() {
    let p = producer("udp-clients", 4, "320x240");
    let b = bridge(&p.ring, &[]);
    let url = b.url();
    let settings: [&[&str]; 5] = [
        &[],
        &[],
        &["--quality", "50"],
        &["--max-width", "160", "--cameras", "0,2"],
        &["--fps", "10", "--cameras", "3"],
    ];
    let views: Vec<Proc> = settings
        .iter()
        .map(|extra| {
            let mut args = vec!["--verify", "--duration", "6", "--json"];
            args.extend_from_slice(extra);
            spawn_view(&url, &args)
        })
        .collect();
    let outs: Vec<Output> = views.into_iter().map(|v| v.finish(T)).collect();
    let log = b.log();
    for (out, extra) in outs.iter().zip(settings) {
        let s = verified_summary(out, &log);
        let err = stderr(out);
        assert!(err.contains("subscribed to udp://127.0.0.1:"), "{err}");
        assert!(err.contains("producer live"), "{err}");
        // The server's state came (settings checked against what was sent: a camera
        // not asked for, or an image too wide, would be corrupt).
        assert!(err.contains("\"cameras\":"), "{extra:?}: {err}");
        assert_eq!(u(&s, "resyncs"), 0, "{s}");
        let udp = &s["udp"];
        assert!(u(udp, "completed") >= u(&s, "frames"), "{s}");
        assert!(u(udp, "texts") > 0, "{s}");
        if extra.contains(&"--fps") {
            // 10 fps cap over 6 s (plus the subscription's first frame).
            assert!(u(&s, "frames") <= 6 * 10 + 5, "{extra:?}: {s}");
        } else {
            assert!(u(&s, "frames") > 30, "{extra:?}: {s}\n{err}");
        }
    }
    let log = b.stop();
    assert_eq!(closing_counter(&log, "subscribed"), 5, "{log}");
    assert_eq!(closing_counter(&log, "unsubscribed"), 5, "{log}");
}

#[test]
fn token_is_required_and_refusals_are_reported() {
    let p = producer("udp-token", 2, "160x120");
    let b = bridge(&p.ring, &["--token", "s3cret"]);
    for args in [&[][..], &["--token", "wrong"][..]] {
        let mut all = vec!["--duration", "5", "--json"];
        all.extend_from_slice(args);
        let out = view(&b.url(), &all);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("refused the subscription: unauthorized"),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "no summary when never subscribed");
    }
    let out = view(
        &b.url(),
        &["--token", "s3cret", "--verify", "--duration", "2", "--json"],
    );
    verified_summary(&out, &b.log());
    // A bad setting is refused by the server (fps above 1000 is refused by the view
    // itself; a camera id above 15 by both: use the server's own check through a raw
    // subscribe).
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sub = Subscribe {
        cookie: [0; 16],
        mtu: 0,
        token: b"s3cret",
        settings: br#"{"skip":0}"#,
    }
    .to_vec()
    .unwrap();
    sock.send_to(&sub, b.addr).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(matches!(
        dgram::parse(&buf[..n]),
        Ok(dgram::Datagram::Refused(dgram::Refused {
            reason: dgram::RefuseReason::BadRequest
        }))
    ));
    // Nothing listening: said at once (ICMP) or after the subscription timeout.
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let out = view(&format!("udp://{addr}"), &["--duration", "10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is `camring bridge udp` listening there?"),
        "{}",
        stderr(&out)
    );
    // A token no subscribe can carry is refused when the bridge starts.
    let long = "x".repeat(129);
    let out = run(&["bridge", "udp", "--ring", &p.ring, "--token", &long], T);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("at most 128"), "{}", stderr(&out));
}

#[test]
fn max_clients_refuses_the_next_subscriber() {
    let p = producer("udp-full", 2, "160x120");
    let b = bridge(&p.ring, &["--max-clients", "1"]);
    let mut first = RawClient::subscribe(b.addr, ClientConfig::default());
    assert!(first.client.subscribed());
    let out = view(&b.url(), &["--duration", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused the subscription: full"),
        "{}",
        stderr(&out)
    );
    let second = RawClient::subscribe(b.addr, ClientConfig::default());
    assert!(second.full);
    // Once the first leaves, a view gets in.
    let bye = first.client.close().unwrap();
    first.sock.send(&bye).unwrap();
    let out = view(&b.url(), &["--verify", "--duration", "2", "--json"]);
    verified_summary(&out, &b.log());
    let log = b.stop();
    assert!(closing_counter(&log, "full") >= 2, "{log}");
}

// ---------------------------------------------------------------------------------------
// Raw subscribers: MTU, keepalive timeout, unsubscribe
// ---------------------------------------------------------------------------------------

/// A subscriber driven from the test: the library's client over a std socket.
struct RawClient {
    sock: UdpSocket,
    client: Client,
    full: bool,
    refused: Option<dgram::RefuseReason>,
    /// Sizes of the datagrams received, and the messages reassembled.
    sizes: Vec<usize>,
    /// When each fragment came: frame, index.
    arrivals: Vec<(Instant, u64, u32)>,
    messages: Vec<Vec<u8>>,
    /// Send requests (false: go silent).
    keepalives: bool,
}

impl RawClient {
    /// Subscribes (answering the challenge), or finds out it is refused.
    fn subscribe(server: SocketAddr, config: ClientConfig) -> RawClient {
        let sock = client::socket(server, 1 << 20).unwrap();
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut c = RawClient {
            sock,
            client: Client::new(config, Instant::now()).unwrap(),
            full: false,
            refused: None,
            sizes: Vec::new(),
            arrivals: Vec::new(),
            messages: Vec::new(),
            keepalives: true,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.client.subscribed() && !c.full && c.refused.is_none() {
            assert!(Instant::now() < deadline, "no subscription");
            c.pump(Duration::from_millis(50));
        }
        c
    }

    /// Sends what is due and receives for `time`.
    fn pump(&mut self, time: Duration) {
        let end = Instant::now() + time;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                if let Some(e) = self.client.handle_timeout(now) {
                    self.event(e);
                }
            }
            while let Some(d) = self.client.poll_transmit() {
                if self.keepalives {
                    let _ = self.sock.send(&d);
                }
            }
            if now >= end {
                return;
            }
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.sizes.push(n);
                if let Ok(f) = dgram::parse_fragment(&buf[..n]) {
                    self.arrivals
                        .push((Instant::now(), f.header.frame, f.header.index));
                }
                if let Some(e) = self.client.handle(Instant::now(), &buf[..n]) {
                    self.event(e);
                }
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Message(m) => self.messages.push(m),
            Event::Full => self.full = true,
            Event::Refused(r) => self.refused = Some(r),
            _ => {}
        }
    }

    /// Receives (without handling) for `time`; returns the datagrams' sizes and kinds.
    fn drain(&self, time: Duration) -> Vec<(usize, u8)> {
        let end = Instant::now() + time;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                got.push((n, buf[5]));
            }
        }
        got
    }
}

#[test]
fn a_smaller_mtu_asked_for_is_respected() {
    let p = producer("udp-mtu", 2, "320x240");
    let b = bridge(&p.ring, &[]);
    let mut c = RawClient::subscribe(
        b.addr,
        ClientConfig {
            mtu: 576,
            ..ClientConfig::default()
        },
    );
    c.pump(Duration::from_secs(3));
    assert!(c.messages.len() > 10, "{} messages", c.messages.len());
    assert!(
        c.sizes.iter().all(|&n| n <= 576),
        "{:?}",
        c.sizes.iter().max()
    );
    assert!(c.sizes.iter().filter(|&&n| n == 576).count() > 100);
    for m in &c.messages {
        let msg = wire::parse(m).expect("a whole message");
        assert_eq!(msg.cameras.len(), 2);
    }
}

#[test]
fn fragments_are_paced_over_the_frame_period() {
    // 2 × 320×240 JPEG: ~20 fragments a message, due over half of 33 ms.
    let p = producer("udp-pace", 2, "320x240");
    let b = bridge(&p.ring, &[]);
    let mut c = RawClient::subscribe(b.addr, ClientConfig::default());
    c.pump(Duration::from_secs(3));
    let mut spans: HashMap<u64, (Instant, Instant, u32)> = HashMap::new();
    for &(t, frame, _) in &c.arrivals {
        let e = spans.entry(frame).or_insert((t, t, 0));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
        e.2 += 1;
    }
    let ms: Vec<f64> = spans
        .values()
        .filter(|&&(_, _, n)| n > 10)
        .map(|&(first, last, _)| (last - first).as_secs_f64() * 1e3)
        .collect();
    assert!(ms.len() > 20, "{} messages", ms.len());
    // Not a burst: the median message took at least a third of its 16.7 ms window to
    // arrive (a lower bound only: a busy machine spreads it further).
    let m = median(&ms);
    assert!(m >= 5.0, "median spread {m} ms: {ms:?}");
}

#[test]
fn frames_stop_when_the_subscriber_goes_silent_or_leaves() {
    let p = producer("udp-silent", 2, "160x120");
    let b = bridge(&p.ring, &["--keepalive-ms", "300", "--timeout-ms", "1500"]);
    let mut c = RawClient::subscribe(b.addr, ClientConfig::default());
    c.pump(Duration::from_secs(2));
    let received = c.messages.len();
    assert!(received > 10, "{received} messages");
    // Silent: no more keepalives. After the timeout (and a margin), nothing comes.
    c.keepalives = false;
    c.pump(Duration::from_millis(1500 + 1500));
    let after = c.drain(Duration::from_millis(1500));
    assert!(after.is_empty(), "datagrams after the timeout: {after:?}");
    // Its keepalive is refused now (unknown subscriber), no frames follow.
    let mut k = RawClient::subscribe(b.addr, ClientConfig::default());
    k.pump(Duration::from_millis(500));
    assert!(!k.messages.is_empty());
    let bye = k.client.close().unwrap();
    k.sock.send(&bye).unwrap();
    // Datagrams already in flight may arrive; then nothing.
    let _ = k.drain(Duration::from_millis(500));
    let after = k.drain(Duration::from_millis(1500));
    assert!(after.is_empty(), "datagrams after unsubscribe: {after:?}");
    let ka = Keepalive { cookie: [7; 16] }.encode();
    k.sock.send(&ka).unwrap();
    let answer = k.drain(Duration::from_millis(1000));
    assert_eq!(answer, [(dgram::REFUSED_SIZE, 7)], "{answer:?}");
    let log = b.stop();
    assert_eq!(closing_counter(&log, "timed out"), 1, "{log}");
    assert_eq!(closing_counter(&log, "unsubscribed"), 1, "{log}");
}

// ---------------------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------------------

#[test]
fn follows_a_bridge_restart_and_a_producer_restart() {
    let mut p = producer("udp-restart", 2, "160x120");
    let b = bridge(&p.ring, &[]);
    let addr = b.addr;
    let viewer = spawn_view(&b.url(), &["--verify", "--json"]).watch();
    viewer.wait_for_frames(0, 30, T);
    // The bridge dies and comes back on the same port: it does not know the view's
    // keepalives (refused unknown_subscriber), the view subscribes again on a new stream.
    b.proc.signal(Signal::KILL);
    drop(b);
    let listen = addr.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = viewer.lines();
    let b2 = loop {
        match UdpBridge::start(&p.ring, &listen, &[]) {
            Ok(b) => break b,
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            // The port may take a moment to be free again.
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let new_stream = |l: &str| l.contains("new stream");
    let back = viewer.wait_for(gone, "a new stream", T, new_stream);
    viewer.wait_for_frames(back, viewer.frames() + 30, T);
    // The producer dies, its ring is removed and another producer makes it again: frame
    // numbers start again from 0, the bridge starts a new stream, the view starts its
    // frame order over (a frame number going back would be counted corrupt). (A producer
    // taking over a dead one's ring goes on with its frame numbers.)
    p.proc.signal(Signal::KILL);
    let _ = p.proc.child.wait();
    let _ = std::fs::remove_file(shm_path(&p.ring));
    let gone = viewer.lines();
    p.proc = start_producer(&p.ring, 2, "160x120");
    let back = viewer.wait_for(gone, "a second new stream", T, new_stream);
    viewer.wait_for_frames(back, viewer.frames() + 30, T);
    viewer.signal(Signal::INT);
    let out = viewer.finish(T);
    let s = verified_summary(&out, &b2.log());
    let err = stderr(&out);
    assert!(u(&s, "resyncs") >= 2, "{s}\n{err}");
    assert!(err.contains("new stream"), "{err}");
    let log = b2.stop();
    assert!(closing_counter(&log, "new streams") >= 1, "{log}");
    // It kept verifying after both restarts: frames verified in the last second.
    let last = err.lines().rev().find(|l| l.contains(" fps ")).unwrap();
    let fps: f64 = last.split_whitespace().next().unwrap().parse().unwrap();
    assert!(fps > 0.0, "{err}");
}

// ---------------------------------------------------------------------------------------
// Loss, duplication, reordering, delay: through the relay
// ---------------------------------------------------------------------------------------

/// A view through a relay with `impair` for `secs`; checks correctness, the delivery
/// ratio against what the relay let through, steady latency and bounded memory. Returns
/// the view's summary and the relay's log.
fn through_relay(test: &str, impair: Impair, secs: u32) -> (serde_json::Value, RelayLog) {
    let p = producer(test, 2, "160x120");
    let b = bridge(&p.ring, &[]);
    let relay = Relay::start(b.addr, impair);
    let duration = secs.to_string();
    let viewer = spawn_view(
        &format!("udp://{}", relay.addr),
        &["--verify", "--duration", &duration, "--json"],
    );
    // Resident memory a third of the way and near the end.
    let pid = viewer.pid();
    std::thread::sleep(Duration::from_secs(u64::from(secs) / 3));
    let rss_early = rss_kb(pid).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(u64::from(secs) / 2));
    let rss_late = rss_kb(pid).unwrap_or(0);
    let out = viewer.finish(T);
    let log = relay.stop();
    let s = verified_summary(&out, &b.log());
    let err = stderr(&out);
    let udp = &s["udp"];
    // Delivery: every frame the relay let through whole is reassembled (a few may be
    // lost in the receiver's own buffers), none it broke.
    let completed = u(udp, "completed");
    assert!(
        completed as f64 >= 0.9 * log.intact as f64 - 3.0,
        "reassembled {completed} of {} let through whole: {s}\n{log:?}",
        log.intact
    );
    assert!(
        completed <= log.intact + 1,
        "{completed} > {}: {log:?}",
        log.intact
    );
    // The relay's own loss is what independent loss predicts for the fragment counts.
    if impair.loss > 0.0 {
        let sigma = (log.expected * (1.0 - log.expected) / log.offered as f64).sqrt();
        let ratio = log.intact as f64 / log.offered as f64;
        assert!(
            ratio >= log.expected - 4.0 * sigma - 0.02,
            "intact {ratio} vs (1-p)^K {} ± {sigma}: {log:?}",
            log.expected
        );
        let delivered = completed as f64 / log.offered as f64;
        println!(
            "{test}: loss {}: {} datagrams, {} frames sent, K {:.1} on average, delivered {delivered:.3}, \
             (1-p)^K {:.3} ± {sigma:.3}",
            impair.loss, log.datagrams, log.offered, log.mean_fragments, log.expected
        );
        assert!(
            delivered >= 0.9 * (log.expected - 4.0 * sigma) - 0.03,
            "delivered {delivered} vs (1-p)^K {} ± {sigma}: {s}\n{log:?}",
            log.expected
        );
    }
    assert_latency_steady(&err);
    // Memory: the reassembly held at most its frame limit of the largest message, and
    // the process did not grow.
    let held = u(udp, "bytes_held_max");
    assert!(
        held <= u(udp, "max_frames") * log.largest as u64,
        "held {held} bytes: {s}"
    );
    assert!(
        rss_late <= rss_early + rss_early / 2 + 30_000,
        "RSS {rss_early} kB then {rss_late} kB"
    );
    (s, log)
}

#[test]
fn one_percent_loss() {
    let (s, log) = through_relay(
        "udp-loss1",
        Impair {
            seed: 0x1055_0001,
            loss: 0.01,
            ..Impair::default()
        },
        12,
    );
    assert!(log.dropped > 0, "{log:?}");
    assert!(u(&s["udp"], "incomplete") > 0, "{s}");
}

#[test]
fn five_percent_loss() {
    let (s, log) = through_relay(
        "udp-loss5",
        Impair {
            seed: 0x1055_0005,
            loss: 0.05,
            ..Impair::default()
        },
        12,
    );
    assert!(log.dropped > 0, "{log:?}");
    assert!(u(&s["udp"], "incomplete") > 0, "{s}");
}

#[test]
fn reordering_duplication_and_delay() {
    let (s, log) = through_relay(
        "udp-reorder",
        Impair::reordering_duplication_and_delay(0x5EED_0003),
        12,
    );
    assert!(log.duplicated > 0 && log.reordered > 0, "{log:?}");
    assert!(u(&s["udp"], "duplicates") > 0, "{s}");
    // Nothing was lost: (nearly) every frame sent is delivered.
    assert!(
        u(&s["udp"], "completed") as f64 >= 0.9 * log.offered as f64 - 3.0,
        "{s}\n{log:?}"
    );
}

#[test]
fn a_slow_client_gets_fewer_frames_never_older_ones() {
    let p = producer("udp-slow", 2, "320x240");
    let b = bridge(&p.ring, &[]);
    let out = view(
        &b.url(),
        &[
            "--verify",
            "--duration",
            "10",
            "--json",
            "--delay-ms",
            "100",
        ],
    );
    let s = verified_summary(&out, &b.log());
    assert_eq!(u(&s, "verified"), u(&s, "frames"), "{s}");
    // Whole messages the session could not take were replaced by newer ones.
    assert!(u(&s["udp"], "replaced") > 0, "{s}");
    assert!(u(&s, "skipped") > 0, "{s}");
    assert_latency_steady(&stderr(&out));
}

// ---------------------------------------------------------------------------------------
// Hostile senders
// ---------------------------------------------------------------------------------------

/// What a hostile socket sent and got back.
#[derive(Debug, Default)]
struct Exchange {
    sent: usize,
    sent_bytes: usize,
    largest_sent: usize,
    received: Vec<(usize, u8)>,
}

/// Sends `datagrams` from a fresh socket to `server` (each answer read right after, and
/// for a while at the end).
fn hostile(server: SocketAddr, datagrams: impl IntoIterator<Item = Vec<u8>>) -> Exchange {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut x = Exchange::default();
    let mut buf = vec![0u8; 65_536];
    let mut read = |x: &mut Exchange| {
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            x.received.push((n, if n > 5 { buf[5] } else { 0 }));
        }
    };
    for d in datagrams {
        let _ = sock.send_to(&d, server);
        x.sent += 1;
        x.sent_bytes += d.len();
        x.largest_sent = x.largest_sent.max(d.len());
        if x.sent % 64 == 0 {
            read(&mut x);
        }
    }
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    read(&mut x);
    x
}

#[test]
fn hostile_datagrams_leave_the_server_and_other_clients_unharmed() {
    let p = producer("udp-hostile", 2, "160x120");
    let mut b = bridge(&p.ring, &[]);
    let addr = b.addr;
    let viewer = spawn_view(&b.url(), &["--verify", "--duration", "10", "--json"]);
    std::thread::sleep(Duration::from_secs(2));
    let bridge_rss = rss_kb(b.proc.pid()).unwrap_or(0);
    let mut rng = fastrand::Rng::with_seed(0xBAD_5EED);
    let mut exchanges = Vec::new();
    // Random bytes of every size, with and without the magic.
    let garbage: Vec<Vec<u8>> = (0..5000)
        .map(|i| {
            let mut d: Vec<u8> = (0..rng.usize(0..1500)).map(|_| rng.u8(..)).collect();
            if i % 2 == 0 && d.len() >= 8 {
                d[..4].copy_from_slice(b"CAMU");
                d[4] = 1;
                d[5] = rng.u8(0..10);
            }
            d
        })
        .collect();
    exchanges.push(("garbage", hostile(addr, garbage)));
    // Forged fragments (a server takes none), huge declared lengths.
    let forged: Vec<Vec<u8>> = (0..2000)
        .map(|i| {
            let msg = vec![rng.u8(..); rng.usize(1..5000)];
            let f = dgram::Fragmenter::new(&msg, rng.u32(..), i, 1200).unwrap();
            f.fragment(0).unwrap().to_vec()
        })
        .collect();
    exchanges.push(("forged fragments", hostile(addr, forged)));
    // A flood of subscribes from one address, without and with made-up cookies.
    let flood: Vec<Vec<u8>> = (0..20_000)
        .map(|i| {
            let mut cookie = [0u8; 16];
            if i % 2 == 1 {
                rng.fill(&mut cookie);
            }
            Subscribe {
                cookie,
                mtu: 0,
                token: b"",
                settings: b"",
            }
            .to_vec()
            .unwrap()
        })
        .collect();
    exchanges.push(("subscribe flood", hostile(addr, flood)));
    // Keepalives and unsubscribes with made-up cookies, from many sockets: the view's
    // subscription must survive them.
    for _ in 0..20 {
        let reqs: Vec<Vec<u8>> = (0..200)
            .map(|i| {
                let mut cookie = [0u8; 16];
                rng.fill(&mut cookie);
                if i % 2 == 0 {
                    Keepalive { cookie }.encode().to_vec()
                } else {
                    Unsubscribe { cookie }.encode().to_vec()
                }
            })
            .collect();
        exchanges.push(("made-up cookies", hostile(addr, reqs)));
    }
    // Short requests (unpadded) and another version.
    let short: Vec<Vec<u8>> = (0..500)
        .map(|i| {
            let mut d = Keepalive { cookie: [1; 16] }.encode().to_vec();
            if i % 2 == 0 {
                d.truncate(rng.usize(8..64));
            } else {
                d[4] = 2;
            }
            d
        })
        .collect();
    exchanges.push(("short and other version", hostile(addr, short)));
    // The spoof-like case: a challenge obtained by one socket, echoed from another (a
    // forger that got a challenge for its own address tries to subscribe a victim).
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let victim = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    victim
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let zero = Subscribe {
        cookie: [0; 16],
        mtu: 0,
        token: b"",
        settings: b"",
    };
    a.send_to(&zero.to_vec().unwrap(), addr).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = a.recv_from(&mut buf).unwrap();
    let Ok(dgram::Datagram::Challenge(c)) = dgram::parse(&buf[..n]) else {
        panic!("expected a challenge, got {:?}", &buf[..n]);
    };
    let echoed = Subscribe {
        cookie: c.cookie,
        ..zero
    };
    victim.send_to(&echoed.to_vec().unwrap(), addr).unwrap();
    let mut victim_got = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok((n, _)) = victim.recv_from(&mut buf) {
            victim_got.push((n, buf[5]));
        }
    }
    // It got a challenge of its own (24 bytes for a 64-byte request), no fragment.
    assert!(
        victim_got.iter().all(|&(n, kind)| kind == 6 && n == 24),
        "{victim_got:?}"
    );

    for (what, x) in &exchanges {
        // Never a fragment or JSON, never more than was sent, never a reply larger than
        // the request (at most 40 bytes, and only to requests of at least 64).
        assert!(
            x.received
                .iter()
                .all(|&(n, kind)| n <= 40 && (5..=7).contains(&kind)),
            "{what}: {:?}",
            &x.received[..x.received.len().min(20)]
        );
        let back: usize = x.received.iter().map(|&(n, _)| n).sum();
        assert!(
            back <= x.sent_bytes,
            "{what}: {back} bytes back for {}",
            x.sent_bytes
        );
        assert!(x.received.len() <= x.sent, "{what}");
    }
    // The flood was cut by the rate limit: far fewer answers than requests.
    let flood = &exchanges[2].1;
    assert!(flood.received.len() < flood.sent / 10, "{flood:?}");
    assert!(b.alive(), "the bridge died:\n{}", b.log());
    // Its memory did not grow with what it was sent.
    let after = rss_kb(b.proc.pid()).unwrap_or(0);
    assert!(
        after <= bridge_rss + bridge_rss / 2 + 30_000,
        "bridge RSS {bridge_rss} kB, then {after} kB"
    );
    let out = viewer.finish(T);
    let s = verified_summary(&out, &b.log());
    // The legitimate client was never dropped nor refused.
    assert_eq!(u(&s, "resyncs"), 0, "{s}\n{}", stderr(&out));
    assert_eq!(u(&s["udp"], "lost"), 0, "{s}");
    assert!(u(&s, "frames") > 30, "{s}");
    let log = b.stop();
    assert!(closing_counter(&log, "rate-limited") > 1000, "{log}");
    assert!(closing_counter(&log, "ignored") > 1000, "{log}");
    assert_eq!(closing_counter(&log, "subscribed"), 1, "{log}");
}
