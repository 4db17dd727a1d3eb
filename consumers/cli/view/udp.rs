//! `camring view udp://HOST:PORT`: a subscriber of `camring bridge udp`
//! (docs/protocol.md 10). The subscription logic is `camring_bridge::udp::client` (sans
//! IO); this drives it over a connected socket and feeds the reassembled messages and the
//! JSON datagrams to the same [`ViewSession`] as the WebSocket client: the same live line,
//! `--verify`, `--save` and summary, plus the reassembly counters (`udp` in the JSON).
//!
//! The session (parsing, verification, saving, the live line) runs on its own thread
//! behind a newest-wins hand-off: the receiving loop keeps draining the socket and
//! reassembling, and a whole message waiting for the session is replaced by a newer one
//! (counted in `udp.replaced`; the gap shows as `skipped`). Without it a client slower than
//! the stream (verification in a debug build, `--delay-ms`) would leave datagrams queued in
//! its kernel buffer, seconds of them, and lose fragments when that overflows: with it, the
//! latency is bounded by one message's processing time, as the protocol's backpressure
//! rule asks (docs/protocol.md 7).

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use camring_bridge::udp::client::{self, Client, ClientConfig, Event};
use camring_protocol::control::SettingsUpdate;
use camring_protocol::udp::{RefuseReason, MAX_TOKEN_LEN};
use camring_shm::clock::now_ns;

use super::session::{Level, Saver, ViewSession};
use super::ViewArgs;
use crate::signals::StopFlag;

/// How long the first subscription may take before giving up.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the stop flag and the deadline are looked at while nothing arrives.
const POLL: Duration = Duration::from_millis(50);
/// Datagrams handled in a row before timers are looked at.
const BATCH: usize = 256;

/// `host:port` of a `udp://HOST:PORT` URL (a trailing `/` allowed).
fn authority(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| format!("{url}: expected udp://HOST:PORT"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{url}: expected udp://HOST:PORT (settings and token are options, not part of the URL)"
        ));
    }
    let has_port = match rest.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && (!host.contains(':') || host.ends_with(']'))
                && port.parse::<u16>().is_ok()
        }
        None => false,
    };
    if !has_port {
        return Err(format!("{url}: no port (expected udp://HOST:PORT)"));
    }
    Ok(rest.to_owned())
}

fn settings_json(update: &SettingsUpdate) -> Vec<u8> {
    if *update == SettingsUpdate::default() {
        return Vec::new();
    }
    serde_json::to_vec(update).unwrap_or_default()
}

fn refusal(reason: RefuseReason) -> String {
    let what = match reason {
        RefuseReason::Unauthorized => "unauthorized — wrong or missing --token".to_owned(),
        RefuseReason::BadRequest => "bad_request — a setting (or the MTU) was refused".to_owned(),
        RefuseReason::Full => {
            "full — the server already serves its maximum number of subscribers".to_owned()
        }
        RefuseReason::UnknownSubscriber => "unknown_subscriber".to_owned(),
        RefuseReason::UnsupportedVersion => {
            "unsupported_version — the server does not read this camring's UDP version".to_owned()
        }
        RefuseReason::Other(code) => format!("reason {code}"),
    };
    format!("the server refused the subscription: {what}")
}

pub fn run(args: &ViewArgs) -> anyhow::Result<ExitCode> {
    let authority = authority(&args.url).map_err(anyhow::Error::msg)?;
    if args.cert_sha256.is_some() || args.ca.is_some() {
        anyhow::bail!("--cert-sha256 and --ca are for quic:// only");
    }
    let token = args.token.clone().unwrap_or_default().into_bytes();
    if token.len() > MAX_TOKEN_LEN {
        anyhow::bail!(
            "--token of {} bytes: a UDP subscribe carries at most {MAX_TOKEN_LEN}",
            token.len()
        );
    }
    let settings = settings_json(&args.settings());
    let saver = match &args.save {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            Some(Saver::new(dir, args.save_max))
        }
        None => None,
    };
    let server: SocketAddr = authority
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority} has no address"))?;
    let socket = client::socket(
        server,
        args.rcvbuf.map_or(client::RECV_BUFFER, |b| b as usize),
    )
    .map_err(|e| anyhow::anyhow!("cannot open a UDP socket to {server}: {e}"))?;
    let start = Instant::now();
    let client = Client::new(
        ClientConfig {
            token,
            settings,
            ..ClientConfig::default()
        },
        start,
    )
    .map_err(|e| anyhow::anyhow!("cannot subscribe: {e}"))?;
    let stop = StopFlag::install()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handoff = Arc::new(Handoff::default());
    let session_thread = {
        let handoff = Arc::clone(&handoff);
        let session = ViewSession::new(args.verify, saver);
        let quiet = args.quiet;
        let delay = Duration::from_millis(args.delay_ms);
        std::thread::Builder::new()
            .name("session".into())
            .spawn(move || run_session(&handoff, session, quiet, delay))?
    };
    let mut viewer = UdpViewer {
        args,
        url: format!("udp://{authority}"),
        stop: &stop,
        start,
        end: args
            .duration
            .map(|d| start + Duration::from_secs_f64(d.max(0.0))),
        handoff: Arc::clone(&handoff),
        client,
        status: Status::default(),
        subscribed_once: false,
        full_reported: false,
    };
    let outcome = runtime.block_on(async {
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let outcome = viewer.run(&socket).await;
        if let Some(bye) = viewer.client.close() {
            let _ = socket.send(&bye).await;
        }
        anyhow::Ok(outcome)
    });
    handoff.finish();
    let mut session = session_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the session thread panicked"))?;
    let outcome = outcome?;
    for (level, text) in session.take_notes() {
        if level == Level::Problem || !args.quiet {
            eprintln!("camring view: {text}");
        }
    }
    let summary = session.finish(viewer.start.elapsed().as_secs_f64(), viewer.status.resyncs);
    if let Outcome::Failed(why) = &outcome {
        eprintln!("camring view: {why}");
    }
    if !args.quiet {
        eprintln!("camring view: {}", viewer.udp_line());
        if let Some(dir) = &args.save {
            eprintln!(
                "camring view: saved {} JPEG files into {}",
                session.saved_files(),
                dir.display()
            );
        }
    }
    if args.json && !matches!(outcome, Outcome::NeverConnected) {
        let mut v = serde_json::to_value(&summary)?;
        v["udp"] = viewer.udp_json();
        println!("{}", serde_json::to_string(&v)?);
    }
    Ok(if summary.corrupt > 0 {
        ExitCode::from(3)
    } else if matches!(outcome, Outcome::Done) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the receiving loop hands the session thread, in order.
#[derive(Debug)]
enum Item {
    /// A whole message and when it was complete (`now_ns`).
    Binary(Vec<u8>, u64),
    /// A JSON server message.
    Text(String),
    /// A (new) subscription: frame order starts over.
    Connected,
    /// The subscription was lost.
    Disconnected,
    /// For the live line.
    Status(Status),
}

/// What the live line shows of the subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Status {
    subscribed: bool,
    resyncs: u64,
    incomplete: u64,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    replaced: u64,
    done: bool,
}

/// The newest-wins hand-off between the receiving loop and the session thread: a message
/// still waiting when a newer one comes is replaced (never one across a control item, so
/// order is kept).
#[derive(Debug, Default)]
struct Handoff {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Handoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, item: Item) {
        let mut q = self.lock();
        if matches!(item, Item::Binary(..)) && matches!(q.items.back(), Some(Item::Binary(..))) {
            q.items.pop_back();
            q.replaced += 1;
        }
        q.items.push_back(item);
        drop(q);
        self.ready.notify_one();
    }

    fn finish(&self) {
        self.lock().done = true;
        self.ready.notify_one();
    }

    fn replaced(&self) -> u64 {
        self.lock().replaced
    }
}

/// The session thread: every item in order, notes and the live line about once a second,
/// until the hand-off is finished and empty. Returns the session for the summary.
fn run_session(
    handoff: &Handoff,
    mut session: ViewSession,
    quiet: bool,
    delay: Duration,
) -> ViewSession {
    let mut status = Status::default();
    let mut last_line = Instant::now();
    loop {
        let (item, done) = {
            let mut q = handoff.lock();
            if q.items.is_empty() && !q.done {
                q = handoff
                    .ready
                    .wait_timeout(q, POLL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let item = q.items.pop_front();
            let done = q.done && q.items.is_empty();
            (item, done)
        };
        match item {
            Some(Item::Binary(bytes, received_ns)) => {
                session.on_binary(&bytes, received_ns);
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
            }
            Some(Item::Text(json)) => session.on_text(&json),
            Some(Item::Connected) => session.connected(),
            Some(Item::Disconnected) => session.disconnected(),
            Some(Item::Status(s)) => status = s,
            None => {}
        }
        if done {
            return session;
        }
        for (level, text) in session.take_notes() {
            if level == Level::Problem || !quiet {
                eprintln!("camring view: {text}");
            }
        }
        let elapsed = last_line.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let mut line =
                session.live_line(elapsed.as_secs_f64(), status.subscribed, status.resyncs);
            line.push_str(&format!("  incomplete {}", status.incomplete));
            if !quiet {
                eprintln!("{line}");
            }
            last_line = Instant::now();
        }
    }
}

/// How a run ended.
enum Outcome {
    /// The duration ended or a signal came.
    Done,
    /// The first subscription failed (the reason was printed).
    NeverConnected,
    /// The server refused for good after a while.
    Failed(String),
}

/// The receiving side of one run of `camring view udp://`.
struct UdpViewer<'a> {
    args: &'a ViewArgs,
    url: String,
    stop: &'a StopFlag,
    start: Instant,
    end: Option<Instant>,
    handoff: Arc<Handoff>,
    client: Client,
    /// As last handed to the session thread.
    status: Status,
    subscribed_once: bool,
    full_reported: bool,
}

impl UdpViewer<'_> {
    fn should_stop(&self) -> bool {
        self.stop.raised() || self.end.is_some_and(|e| Instant::now() >= e)
    }

    fn info(&self, text: &str) {
        if !self.args.quiet {
            eprintln!("camring view: {text}");
        }
    }

    /// Incomplete frames the reassembly dropped.
    fn incomplete(&self) -> u64 {
        let r = self.client.reassembly();
        r.dropped_timeout + r.dropped_superseded + r.dropped_evicted + r.dropped_inconsistent
    }

    /// Tells the session thread what the live line should show, when it changed.
    fn update_status(&mut self) {
        let status = Status {
            subscribed: self.client.subscribed(),
            incomplete: self.incomplete(),
            ..self.status
        };
        if status != self.status {
            self.status = status;
            self.handoff.push(Item::Status(status));
        }
    }

    fn udp_line(&self) -> String {
        let c = self.client.stats();
        let r = self.client.reassembly();
        format!(
            "udp: {} datagrams ({} fragments, {} JSON), {} frames reassembled, {} incomplete \
             dropped (deadline {}, superseded {}, evicted {}, inconsistent {}), duplicates {}, \
             late {}, {} replaced while the session was busy, reassembly memory high-water {} \
             bytes (limit {})",
            c.datagrams,
            c.fragments,
            c.texts,
            r.completed,
            self.incomplete(),
            r.dropped_timeout,
            r.dropped_superseded,
            r.dropped_evicted,
            r.dropped_inconsistent,
            r.duplicates,
            r.late,
            self.handoff.replaced(),
            r.bytes_held_max,
            self.client.reassembly_config().max_bytes,
        )
    }

    fn udp_json(&self) -> serde_json::Value {
        let c = self.client.stats();
        let r = self.client.reassembly();
        serde_json::json!({
            "datagrams": c.datagrams,
            "bytes": c.bytes,
            "fragments": c.fragments,
            "texts": c.texts,
            "ignored": c.ignored,
            "subscriptions": c.subscriptions,
            "lost": c.lost,
            "completed": r.completed,
            "replaced": self.handoff.replaced(),
            "incomplete": self.incomplete(),
            "dropped_timeout": r.dropped_timeout,
            "dropped_superseded": r.dropped_superseded,
            "dropped_evicted": r.dropped_evicted,
            "dropped_inconsistent": r.dropped_inconsistent,
            "duplicates": r.duplicates,
            "late": r.late,
            "other_stream": r.other_stream,
            "invalid": r.invalid,
            "bytes_held_max": r.bytes_held_max,
            "max_bytes": self.client.reassembly_config().max_bytes,
            "max_frames": self.client.reassembly_config().max_frames,
        })
    }

    /// Acts on one event; `Some` ends the run.
    fn event(&mut self, event: Event) -> Option<Outcome> {
        match event {
            Event::Message(bytes) => self.handoff.push(Item::Binary(bytes, now_ns())),
            Event::Text(json) => self.handoff.push(Item::Text(json)),
            Event::Subscribed { stream, new_stream } => {
                if !self.subscribed_once {
                    self.subscribed_once = true;
                    self.info(&format!(
                        "subscribed to {} (stream {stream:#010x})",
                        self.url
                    ));
                } else {
                    self.status.resyncs += 1;
                    if new_stream {
                        self.info(&format!(
                            "new stream {stream:#010x} (the server or its producer restarted); starting over"
                        ));
                    } else {
                        self.info(&format!("subscribed to {} again", self.url));
                    }
                }
                self.full_reported = false;
                self.handoff.push(Item::Connected);
                self.handoff.push(Item::Status(self.status));
            }
            Event::Lost(why) => {
                self.handoff.push(Item::Disconnected);
                self.info(&format!("{why}; subscribing again"));
            }
            Event::Full => {
                if !self.subscribed_once {
                    eprintln!("camring view: {}", refusal(RefuseReason::Full));
                    return Some(Outcome::NeverConnected);
                }
                if !std::mem::replace(&mut self.full_reported, true) {
                    self.info(&format!("{}; retrying", refusal(RefuseReason::Full)));
                }
            }
            Event::Refused(reason) => {
                if !self.subscribed_once {
                    eprintln!("camring view: {}", refusal(reason));
                    return Some(Outcome::NeverConnected);
                }
                return Some(Outcome::Failed(refusal(reason)));
            }
        }
        None
    }

    async fn run(&mut self, socket: &tokio::net::UdpSocket) -> Outcome {
        let mut buf = vec![0u8; 65_536];
        loop {
            if self.should_stop() {
                return Outcome::Done;
            }
            while let Some(d) = self.client.poll_transmit() {
                if let Err(e) = socket.send(&d).await {
                    tracing::debug!("send: {e}");
                }
            }
            let now = Instant::now();
            if !self.subscribed_once && now >= self.start + SUBSCRIBE_TIMEOUT {
                eprintln!(
                    "camring view: no answer from {} within {} s — is `camring bridge udp` listening there?",
                    self.url,
                    SUBSCRIBE_TIMEOUT.as_secs()
                );
                return Outcome::NeverConnected;
            }
            let wake = self
                .client
                .poll_timeout()
                .map_or(now + POLL, |t| t.min(now + POLL));
            let received = tokio::select! {
                r = socket.recv(&mut buf) => Some(r),
                () = tokio::time::sleep_until(wake.into()) => None,
            };
            if let Some(first) = received {
                let mut next = Some(first);
                let mut handled = 0;
                while let Some(r) = next.take() {
                    match r {
                        Ok(n) => {
                            let event = self.client.handle(Instant::now(), &buf[..n]);
                            if let Some(end) = event.and_then(|e| self.event(e)) {
                                return end;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            // An ICMP "port unreachable" for one of our requests.
                            if !self.subscribed_once {
                                eprintln!(
                                    "camring view: cannot reach {}: {e} — is `camring bridge udp` listening there?",
                                    self.url
                                );
                                return Outcome::NeverConnected;
                            }
                        }
                        Err(e) => tracing::debug!("recv: {e}"),
                    }
                    handled += 1;
                    if handled < BATCH {
                        next = match socket.try_recv(&mut buf) {
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                            r => Some(r),
                        };
                    }
                }
            }
            let now = Instant::now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                let event = self.client.handle_timeout(now);
                if let Some(end) = event.and_then(|e| self.event(e)) {
                    return end;
                }
            }
            self.update_status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(authority("udp://127.0.0.1:5000").unwrap(), "127.0.0.1:5000");
        assert_eq!(
            authority("udp://localhost:5000/").unwrap(),
            "localhost:5000"
        );
        assert_eq!(authority("udp://[::1]:5000").unwrap(), "[::1]:5000");
        for bad in [
            "udp://",
            "udp://host",
            "udp://:5000",
            "udp://h:5000/x",
            "udp://h:5000?token=x",
            "udp://::1:5000",
            "ws://h:5000",
            "udp://h:99999",
        ] {
            assert!(authority(bad).is_err(), "{bad}");
        }
        assert!(settings_json(&SettingsUpdate::default()).is_empty());
        let u = SettingsUpdate {
            fps: Some(5.0),
            ..SettingsUpdate::default()
        };
        assert_eq!(settings_json(&u), br#"{"fps":5.0}"#);
    }
}
