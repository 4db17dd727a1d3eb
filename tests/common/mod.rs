//! Helpers for the cross-process tests: run the real `camring` binary, with real shared
//! memory, and clean up whatever happens.

#![allow(dead_code)]

pub mod relay;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_camring");

// Not every test file uses each of them.
#[allow(unused_imports)]
pub use camring_testkit::{median, ring_name, shm_path, RingGuard};

/// Permission bits of the ring's segment.
pub fn shm_mode(ring: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(shm_path(ring))
        .expect("ring exists")
        .permissions()
        .mode()
        & 0o777
}

/// Starts `camring produce --ring RING EXTRA...` (a synthetic producer).
pub fn produce(ring: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["produce", "--ring", ring];
    args.extend_from_slice(extra);
    Proc::spawn(&args)
}

/// Starts `camring produce --ring RING --cameras CAMERAS --size SIZE --fps FPS EXTRA...` (a
/// synthetic producer).
pub fn produce_synthetic(ring: &str, cameras: u32, size: &str, fps: u32, extra: &[&str]) -> Proc {
    let (cameras, fps) = (cameras.to_string(), fps.to_string());
    let mut args = vec!["--cameras", &cameras, "--size", size, "--fps", &fps];
    args.extend_from_slice(extra);
    produce(ring, &args)
}

/// Starts `camring read --ring RING --verify --json EXTRA...`: a reader that checks every
/// frame against the synthetic pattern and ends with a JSON summary on stdout.
pub fn verifying_read(ring: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["read", "--ring", ring, "--verify", "--json"];
    args.extend_from_slice(extra);
    Proc::spawn(&args)
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn camring");
        Proc { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).expect("pid");
        let _ = rustix::process::kill_process(pid, sig);
    }

    /// Waits for exit (SIGKILL after `timeout`, so a test never hangs) and collects output.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().expect("wait");
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines read so far and whether the stream ended, with the condition variable the
/// reader thread signals.
type Lines = Arc<(Mutex<(Vec<String>, bool)>, Condvar)>;

/// A process whose stderr is read as it comes, so that a test waits for what it says
/// instead of sleeping.
pub struct Watched {
    proc: Option<Proc>,
    lines: Lines,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Reads its stderr line by line from now on.
    pub fn watch(mut self) -> Watched {
        let stderr = self.child.stderr.take().expect("stderr piped");
        let lines: Lines = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let shared = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            let (lock, cv) = &*shared;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lock.lock().unwrap().0.push(line);
                cv.notify_all();
            }
            lock.lock().unwrap().1 = true;
            cv.notify_all();
        });
        Watched {
            proc: Some(self),
            lines,
            reader: Some(reader),
        }
    }
}

impl Watched {
    pub fn signal(&self, sig: rustix::process::Signal) {
        if let Some(p) = &self.proc {
            p.signal(sig);
        }
    }

    /// The lines so far.
    pub fn lines(&self) -> usize {
        self.lines.0.lock().unwrap().0.len()
    }

    /// Waits until a line from index `from` on satisfies `pred`; returns its index. Panics
    /// (with `what` and the stderr so far) after `timeout` or when stderr ends first.
    pub fn wait_for(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.lines;
        let mut g = lock.lock().unwrap();
        loop {
            if let Some(i) = g.0.iter().skip(from).position(|l| pred(l)) {
                return from + i;
            }
            let now = Instant::now();
            if now >= deadline || g.1 {
                panic!("waited {timeout:?} for {what}; stderr:\n{}", g.0.join("\n"));
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Waits until a live line from index `from` on reports at least `frames` frames (the
    /// `frames N` of `camring view` and `camring read` live lines); returns its index.
    pub fn wait_for_frames(&self, from: usize, frames: u64, timeout: Duration) -> usize {
        self.wait_for(from, &format!("{frames} frames"), timeout, |l| {
            live_frames(l).is_some_and(|n| n >= frames)
        })
    }

    /// The newest frame count a live line reported, 0 before any.
    pub fn frames(&self) -> u64 {
        let g = self.lines.0.lock().unwrap();
        g.0.iter().rev().find_map(|l| live_frames(l)).unwrap_or(0)
    }

    /// Waits for its exit (as [`Proc::finish`]); its stderr is what was read.
    pub fn finish(mut self, timeout: Duration) -> Output {
        let mut out = self.proc.take().expect("not finished yet").finish(timeout);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        out.stderr = self.lines.0.lock().unwrap().0.join("\n").into_bytes();
        out.stderr.push(b'\n');
        out
    }
}

/// The frames a live stats line reports (`…  frames N …`).
pub fn live_frames(line: &str) -> Option<u64> {
    line.split("  frames ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
}

/// A `camring` process (a bridge, say) whose stderr a thread drains into a log (so it
/// never blocks on a full pipe), started once a line of it gave what `find` looks for.
pub struct Logged<T> {
    pub proc: Proc,
    pub log: Arc<Mutex<String>>,
    pub found: T,
}

/// Starts `camring ARGS...` and waits up to `timeout` for a stderr line from which `find`
/// gets a value (its listening address, say); the process is killed and its log returned
/// as the error when none comes.
pub fn spawn_logged<T: Send + 'static>(
    args: &[&str],
    find: impl Fn(&str) -> Option<T> + Send + 'static,
    timeout: Duration,
) -> Result<Logged<T>, String> {
    let mut proc = Proc::spawn(args);
    let stderr = proc.child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = find(&line) {
                let _ = tx.send(v);
            }
            let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
            l.push_str(&line);
            l.push('\n');
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(found) => Ok(Logged { proc, log, found }),
        Err(_) => {
            // Killed (and reaped) by the drop; its last lines are in once the pipe ends.
            drop(proc);
            let _ = reader.join();
            let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Err(format!(
                "{}: no line it was waited for:\n{log}",
                args.join(" ")
            ))
        }
    }
}

/// Held for the whole of each test of a file: they compare rates or shares of frames,
/// which two tests at once on a small machine would distort.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime of in-test network clients: 2 workers, like the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A synthetic producer (`cameras` cameras of `size` at `fps`, ring format `format`),
/// once it has published.
pub fn live_producer(ring: &str, cameras: u32, size: &str, fps: u32, format: &str) -> Proc {
    let p = produce_synthetic(ring, cameras, size, fps, &["--format", format, "-q"]);
    assert!(
        wait_for_frames(ring, 1, Duration::from_secs(60)),
        "producer of {ring} did not start"
    );
    p
}

/// Runs camring to completion (killed after `timeout`).
pub fn run(args: &[&str], timeout: Duration) -> Output {
    Proc::spawn(args).finish(timeout)
}

/// Waits until the ring's producer has published at least `frames` frames.
pub fn wait_for_frames(ring: &str, frames: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(head) = ls_field(ring, "frames").and_then(|v| v.as_u64()) {
            if head >= frames {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One field of the ring's entry in `camring ls --json`.
pub fn ls_field(ring: &str, field: &str) -> Option<serde_json::Value> {
    let out = Command::new(BIN).args(["ls", "--json"]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["rings"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == ring)
        .map(|r| r[field].clone())
}

/// Parses the JSON summary a `read --json` printed.
pub fn summary(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON summary; status {:?}\nstdout: {text}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("summary is JSON")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------
// What the network views print (tests/udp.rs, tests/quic.rs)
// ---------------------------------------------------------------------------------------

/// The per-second `latency p50` of a view's live lines, µs.
pub fn live_p50s(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| l.split("latency p50").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Latency does not grow: the median of the last third of the live lines' p50 is at most
/// twice the first third's plus 20 ms. Returns the two medians, µs.
pub fn assert_latency_steady(stderr: &str) -> (f64, f64) {
    let p50s = live_p50s(stderr);
    // The first line may cover the subscription itself.
    let p50s: Vec<f64> = p50s.into_iter().skip(1).filter(|&p| p > 0.0).collect();
    assert!(p50s.len() >= 6, "too few live lines: {stderr}");
    let third = p50s.len() / 3;
    let first = median(&p50s[..third]);
    let last = median(&p50s[p50s.len() - third..]);
    assert!(
        last <= first * 2.0 + 20_000.0,
        "latency grew: first third {first} µs, last third {last} µs: {p50s:?}"
    );
    (first, last)
}

/// Resident memory of a process, kB.
pub fn rss_kb(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------
// `camring bridge ws` (tests/bridge/): the bridge process, plain HTTP and /metrics.
// ---------------------------------------------------------------------------------------

/// A running `camring bridge ws` (killed when dropped), its address and its stderr so far.
pub struct Bridge {
    pub proc: Proc,
    pub addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Bridge {
    /// Starts `camring bridge ws --ring RING --listen 127.0.0.1:0 EXTRA...` and waits for
    /// the `listening on http://ADDR/` line (its stderr keeps being collected).
    pub fn start(ring: &str, extra: &[&str]) -> Bridge {
        let mut args = vec!["bridge", "ws", "--ring", ring, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let find = |line: &str| {
            line.split("listening on http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        };
        let l = spawn_logged(&args, find, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("the bridge never said where it listens: {e}"));
        Bridge {
            proc: l.proc,
            addr: l.found,
            log: l.log,
        }
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `ws://ADDR` followed by `path_and_query`.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{path_and_query}", self.addr)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.proc.child.try_wait(), Ok(None))
    }
}

impl Drop for Bridge {
    /// A failing test shows what the bridge said (its process is killed right after).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- bridge stderr ---\n{}---", self.log());
        }
    }
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits an HTTP/1.1 response head (up to, not including, the blank line) into status
/// and headers.
pub fn parse_http_head(head: &str) -> Option<(u16, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers))
}

/// Index just past the first `\r\n\r\n` of `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        body = &body[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// `GET target` over a new connection (`Connection: close` unless `headers` has another
/// `Connection`: then it should include `close`), with extra request headers;
/// the whole response (chunked bodies decoded). Gives up after 20 s.
pub async fn http_get(
    addr: std::net::SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n");
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("connection"))
        {
            request.push_str("Connection: close\r\n");
        }
        for (n, v) in headers {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "GET took over 20 s"))??;
    let end = head_end(&raw).ok_or_else(|| bad("no response head"))?;
    let head = String::from_utf8_lossy(&raw[..end - 4]).into_owned();
    let (status, headers) = parse_http_head(&head).ok_or_else(|| bad("bad status line"))?;
    let mut response = HttpResponse {
        status,
        headers,
        body: raw[end..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        response.body = dechunk(&response.body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(response)
}

/// The samples of a Prometheus text exposition: `name{labels}` (as written) to value.
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The bridge's `/metrics` (with `?token=` when given), parsed; panics unless 200.
pub async fn bridge_metrics(
    addr: std::net::SocketAddr,
    token: Option<&str>,
) -> std::collections::HashMap<String, f64> {
    let target = match token {
        Some(t) => format!("/metrics?token={t}"),
        None => "/metrics".to_owned(),
    };
    let r = http_get(addr, &target, &[]).await.expect("GET /metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.text());
    parse_metrics(&r.text())
}

/// One sample of `metrics` (0 when the series does not exist yet, as for a label set no
/// event created).
pub fn metric(metrics: &std::collections::HashMap<String, f64>, key: &str) -> f64 {
    metrics.get(key).copied().unwrap_or(0.0)
}
