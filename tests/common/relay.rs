//! The lossy relay: a UDP proxy on loopback with seeded impairments (loss, duplication,
//! reordering, delay and jitter), between a client and a server, in both directions.
//!
//! Network namespaces with veth work on the machine this was written on, but netem does
//! not (`tc qdisc ... netem`: "Specified qdisc kind is unknown", no sch_netem), so every
//! impaired path of tests/udp.rs and tests/quic.rs goes through this relay.
//!
//! Every datagram is relayed the same way whatever it holds, and counted per direction.
//! Datagrams towards the client that are fragments of the UDP transport (`CAMU`) are also
//! parsed, so that [`RelayLog`] can say which frames the server sent whole and which the
//! relay let through whole; anything else (QUIC packets) is only counted.

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camring_protocol::udp as dgram;

/// What the relay does to every datagram (both directions), each decision drawn from a
/// seeded generator: lost with probability `loss`; otherwise delayed by `delay` ± `jitter`,
/// with probability `reorder` by up to `reorder_max` more (so later ones overtake it), and
/// with probability `duplicate` sent twice.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impair {
    pub seed: u64,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub reorder_max: Duration,
    pub delay: Duration,
    pub jitter: Duration,
}

impl Impair {
    /// No loss, but a 30 ms round trip whose datagrams overtake one another (jitter ±5 ms
    /// each way, a fifth held back up to 8 ms more), one in twenty sent twice: the
    /// reordering that tests/udp.rs and tests/quic.rs both put the transports through.
    pub fn reordering_duplication_and_delay(seed: u64) -> Impair {
        Impair {
            seed,
            loss: 0.0,
            duplicate: 0.05,
            reorder: 0.2,
            reorder_max: Duration::from_millis(8),
            delay: Duration::from_millis(15),
            jitter: Duration::from_millis(5),
        }
    }
}

/// What the relay did to the datagrams of one direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Direction {
    /// Datagrams received from the sender.
    pub datagrams: u64,
    pub bytes: u64,
    /// The largest datagram.
    pub largest: usize,
    /// Of those, lost on purpose.
    pub dropped: u64,
    /// Sent twice.
    pub duplicated: u64,
    /// Held back so that later ones overtook them.
    pub reordered: u64,
}

impl Direction {
    fn add(&mut self, o: &Direction) {
        self.datagrams += o.datagrams;
        self.bytes += o.bytes;
        self.largest = self.largest.max(o.largest);
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
    }
}

/// What the relay saw: datagrams in both directions, and of the server's frames when they
/// are UDP-transport fragments (towards the client).
#[derive(Debug, Clone, Default)]
pub struct RelayLog {
    /// Frames whose every fragment the server sent.
    pub offered: u64,
    /// Of those, frames whose every fragment the relay let through.
    pub intact: u64,
    /// The mean over offered frames of (1 − loss)^K (K its fragment count).
    pub expected: f64,
    pub mean_fragments: f64,
    /// The largest message.
    pub largest: usize,
    /// Both directions together.
    pub datagrams: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Server to client.
    pub to_client: Direction,
    /// Client to server.
    pub to_server: Direction,
}

#[derive(Debug, Default)]
struct FrameSeen {
    count: u32,
    total_len: usize,
    from_server: Vec<bool>,
    let_through: Vec<bool>,
}

#[derive(Debug, Default)]
struct Tally {
    frames: HashMap<(u32, u64), FrameSeen>,
    to_client: Direction,
    to_server: Direction,
}

/// A datagram waiting for its time.
struct Due {
    at: Instant,
    seq: u64,
    to_client: bool,
    client: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    // Earliest first out of the max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A running relay: clients send to `addr`; it forwards to the server from one socket per
/// client. Stopped (threads joined) by [`Relay::stop`] or when dropped.
pub struct Relay {
    pub addr: SocketAddr,
    impair: Impair,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Shared by the relay's threads.
struct RelayCore {
    server: SocketAddr,
    impair: Impair,
    front: UdpSocket,
    /// One upstream socket per client (so the server sees one address per client).
    upstream: Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>,
    queue: Mutex<(BinaryHeap<Due>, u64)>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
}

impl RelayCore {
    /// Decides the fate of one datagram and queues its copies.
    fn pass(&self, rng: &mut fastrand::Rng, to_client: bool, client: SocketAddr, bytes: &[u8]) {
        let i = self.impair;
        let mut guard = self.tally.lock().unwrap();
        let tally = &mut *guard;
        let lost = rng.f64() < i.loss;
        if to_client {
            if let Ok(f) = dgram::parse_fragment(bytes) {
                let h = f.header;
                let seen = tally.frames.entry((h.stream, h.frame)).or_default();
                if seen.count == 0 {
                    seen.count = h.count;
                    seen.total_len = h.total_len as usize;
                    seen.from_server = vec![false; h.count as usize];
                    seen.let_through = vec![false; h.count as usize];
                }
                if h.index < seen.count {
                    seen.from_server[h.index as usize] = true;
                    if !lost {
                        seen.let_through[h.index as usize] = true;
                    }
                }
            }
        }
        let dir = if to_client {
            &mut tally.to_client
        } else {
            &mut tally.to_server
        };
        dir.datagrams += 1;
        dir.bytes += bytes.len() as u64;
        dir.largest = dir.largest.max(bytes.len());
        if lost {
            dir.dropped += 1;
            return;
        }
        let copies = if rng.f64() < i.duplicate {
            dir.duplicated += 1;
            2
        } else {
            1
        };
        let mut extra = Duration::ZERO;
        if rng.f64() < i.reorder {
            dir.reordered += 1;
            extra = i.reorder_max.mul_f64(rng.f64());
        }
        drop(guard);
        let mut q = self.queue.lock().unwrap();
        for _ in 0..copies {
            let jitter = i.jitter.mul_f64(rng.f64() * 2.0);
            let at = Instant::now() + i.delay.saturating_sub(i.jitter) + jitter + extra;
            q.1 += 1;
            let seq = q.1;
            q.0.push(Due {
                at,
                seq,
                to_client,
                client,
                bytes: bytes.to_vec(),
            });
        }
    }

    fn send(&self, d: &Due) {
        if d.to_client {
            let _ = self.front.send_to(&d.bytes, d.client);
        } else if let Some(up) = self.upstream.lock().unwrap().get(&d.client) {
            let _ = up.send(&d.bytes);
        }
    }
}

impl Relay {
    /// A relay on 127.0.0.1 (an ephemeral port) to `server`.
    pub fn start(server: SocketAddr, impair: Impair) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let core = Arc::new(RelayCore {
            server,
            impair,
            front,
            upstream: Mutex::new(HashMap::new()),
            queue: Mutex::new((BinaryHeap::new(), 0)),
            tally: Arc::clone(&tally),
            stop: Arc::clone(&stop),
        });
        let mut threads = Vec::new();
        // Clients to server.
        {
            let core = Arc::clone(&core);
            threads.push(std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(core.impair.seed);
                let mut buf = vec![0u8; 65_536];
                let mut down = Vec::new();
                // SYNC POINT: Relaxed: a stop flag; nothing is published through it.
                while !core.stop.load(Ordering::Relaxed) {
                    let Ok((n, client)) = core.front.recv_from(&mut buf) else {
                        continue;
                    };
                    let known = core.upstream.lock().unwrap().contains_key(&client);
                    if !known {
                        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
                        up.connect(core.server).unwrap();
                        up.set_read_timeout(Some(Duration::from_millis(20)))
                            .unwrap();
                        let up = Arc::new(up);
                        core.upstream
                            .lock()
                            .unwrap()
                            .insert(client, Arc::clone(&up));
                        // Server to this client.
                        let core = Arc::clone(&core);
                        let seed = core.impair.seed ^ ((down.len() as u64 + 1) * 0x9E37);
                        down.push(std::thread::spawn(move || {
                            let mut rng = fastrand::Rng::with_seed(seed);
                            let mut buf = vec![0u8; 65_536];
                            while !core.stop.load(Ordering::Relaxed) {
                                if let Ok(n) = up.recv(&mut buf) {
                                    core.pass(&mut rng, true, client, &buf[..n]);
                                }
                            }
                        }));
                    }
                    core.pass(&mut rng, false, client, &buf[..n]);
                }
                for t in down {
                    let _ = t.join();
                }
            }));
        }
        // The clock: sends each copy at its time.
        {
            let core = Arc::clone(&core);
            threads.push(std::thread::spawn(move || {
                while !core.stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    let mut due = Vec::new();
                    {
                        let mut q = core.queue.lock().unwrap();
                        while q.0.peek().is_some_and(|d| d.at <= now) {
                            due.push(q.0.pop().unwrap());
                        }
                    }
                    for d in &due {
                        core.send(d);
                    }
                    if due.is_empty() {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }));
        }
        Relay {
            addr,
            impair,
            stop,
            tally,
            threads,
        }
    }

    /// What it saw so far (the frame accounting is left to [`Relay::stop`]).
    pub fn counts(&self) -> (Direction, Direction) {
        let t = self.tally.lock().unwrap();
        (t.to_client, t.to_server)
    }

    fn halt(&mut self) {
        // SYNC POINT: Relaxed, see the threads' loops.
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Stops the relay and sums up what it saw.
    pub fn stop(mut self) -> RelayLog {
        self.halt();
        let tally = self.tally.lock().unwrap();
        let mut both = tally.to_client;
        both.add(&tally.to_server);
        let mut log = RelayLog {
            datagrams: both.datagrams,
            dropped: both.dropped,
            duplicated: both.duplicated,
            reordered: both.reordered,
            to_client: tally.to_client,
            to_server: tally.to_server,
            ..RelayLog::default()
        };
        let mut expected = 0.0;
        let mut fragments = 0u64;
        for seen in tally.frames.values() {
            log.largest = log.largest.max(seen.total_len);
            if !seen.from_server.iter().all(|&s| s) {
                continue; // abandoned by the server, or cut by the end of the run
            }
            log.offered += 1;
            fragments += u64::from(seen.count);
            expected += (1.0 - self.impair.loss).powi(seen.count as i32);
            if seen.let_through.iter().all(|&s| s) {
                log.intact += 1;
            }
        }
        if log.offered > 0 {
            log.expected = expected / log.offered as f64;
            log.mean_fragments = fragments as f64 / log.offered as f64;
        }
        log
    }
}

impl Drop for Relay {
    /// A test that panics before [`Relay::stop`] leaves no thread behind.
    fn drop(&mut self) {
        self.halt();
    }
}
