//! Baselines: length-prefixed messages over TCP on loopback ([`Transport::Tcp`]) and over a
//! Unix stream socket ([`Transport::Unix`]), written as a user would write them: blocking
//! std sockets, one connection per consumer, the sender writing each multi-frame to every
//! consumer in turn.
//!
//! A message is a 24-byte header (payload length, frame number, capture time: three
//! little-endian u64) followed by the images, written with vectored writes straight from
//! the images (no concatenating copy on the sender). A consumer reads the whole payload
//! into one reused buffer: that copy out of the kernel is what a socket costs.
//!
//! The sender accepts its consumers after `ready` (they wait in the listener's backlog),
//! and drops a consumer whose connection fails; once none are left it only waits for
//! `stop` (consumers close their connections when their window ends, before the runner
//! stops the sender).

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::ctx::{SinkCtx, SourceCtx};
use crate::profile::Transport;

/// Bytes of a message's header: payload length, frame number, capture time.
const HEADER: usize = 24;
/// How long the sender waits for its consumers to connect.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket timeouts: how often a blocked read or write looks at the window or `stop`.
const POLL: Duration = Duration::from_millis(50);
/// The socket file of [`Transport::Unix`] in the cell's directory.
const UNIX_SOCKET: &str = "unix.sock";

/// The sender.
pub fn source(ctx: &mut SourceCtx) -> Result<()> {
    match ctx.spec().transport {
        Transport::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").context("binding TCP on loopback")?;
            let endpoint = listener.local_addr()?.to_string();
            accept_and_serve(ctx, &endpoint, &listener)
        }
        Transport::Unix => {
            let path = ctx.spec().dir.join(UNIX_SOCKET);
            let listener =
                UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
            let endpoint = path
                .to_str()
                .context("the cell's directory is not UTF-8")?
                .to_owned();
            let served = accept_and_serve(ctx, &endpoint, &listener);
            let _ = std::fs::remove_file(&path);
            served
        }
        other => bail!("{other} is not a socket transport"),
    }
}

/// What the sender needs of a TCP or Unix listener.
trait Listener {
    /// A consumer's connection.
    type Stream: Write;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
    fn accept_stream(&self) -> io::Result<Self::Stream>;
    /// Makes an accepted connection blocking, with [`POLL`] as its write timeout (and for
    /// TCP, `TCP_NODELAY`).
    fn tune(s: &Self::Stream) -> io::Result<()>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        TcpListener::set_nonblocking(self, on)
    }
    fn accept_stream(&self) -> io::Result<TcpStream> {
        self.accept().map(|(s, _)| s)
    }
    fn tune(s: &TcpStream) -> io::Result<()> {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(POLL))
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        UnixListener::set_nonblocking(self, on)
    }
    fn accept_stream(&self) -> io::Result<UnixStream> {
        self.accept().map(|(s, _)| s)
    }
    fn tune(s: &UnixStream) -> io::Result<()> {
        s.set_nonblocking(false)?;
        s.set_write_timeout(Some(POLL))
    }
}

/// Announces `endpoint`, accepts the cell's consumers and serves them until `stop`.
fn accept_and_serve<L: Listener>(ctx: &mut SourceCtx, endpoint: &str, listener: &L) -> Result<()> {
    ctx.ready(endpoint)?;
    listener.set_nonblocking(true)?;
    let Some(conns) = accept_all(ctx, || listener.accept_stream())? else {
        return Ok(());
    };
    for s in &conns {
        L::tune(s)?;
    }
    serve(ctx, conns)
}

/// Accepts the cell's consumers from a non-blocking listener; `None` if the runner said
/// `stop` first.
fn accept_all<S>(
    ctx: &SourceCtx,
    mut accept: impl FnMut() -> io::Result<S>,
) -> Result<Option<Vec<S>>> {
    let want = ctx.spec().consumers as usize;
    let deadline = Instant::now() + ACCEPT_TIMEOUT;
    let mut conns = Vec::with_capacity(want);
    while conns.len() < want {
        match accept() {
            Ok(s) => conns.push(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if ctx.stopped() {
                    return Ok(None);
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{} of {want} consumers connected within {ACCEPT_TIMEOUT:?}",
                        conns.len()
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("accepting a consumer"),
        }
    }
    Ok(Some(conns))
}

/// Why a write gave up.
enum WriteEnd {
    /// The runner said `stop`.
    Stopped,
    /// The connection failed (the consumer went away).
    Failed,
}

/// Sends every stamped multi-frame to every connected consumer until `stop`.
fn serve<S: Write>(ctx: &mut SourceCtx, mut conns: Vec<S>) -> Result<()> {
    let len = ctx.frames().len() as u64;
    while let Some(stamp) = ctx.next_stamp() {
        if conns.is_empty() {
            // Every consumer is gone (their windows are over): wait for `stop`.
            continue;
        }
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(&len.to_le_bytes());
        header[8..16].copy_from_slice(&stamp.seq.to_le_bytes());
        header[16..].copy_from_slice(&stamp.capture_ns.to_le_bytes());
        let mut i = 0;
        while i < conns.len() {
            let mut bufs: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&header))
                .chain(ctx.frames().images.iter().map(|im| IoSlice::new(im)))
                .collect();
            match write_all_vectored(&mut conns[i], &mut bufs, ctx) {
                Ok(()) => i += 1,
                Err(WriteEnd::Stopped) => return Ok(()),
                Err(WriteEnd::Failed) => {
                    conns.swap_remove(i);
                }
            }
        }
    }
    Ok(())
}

/// Writes all of `bufs` (std's `write_all_vectored` is unstable), retrying the write
/// timeouts until the runner says `stop`.
fn write_all_vectored<S: Write>(
    s: &mut S,
    mut bufs: &mut [IoSlice<'_>],
    ctx: &SourceCtx,
) -> Result<(), WriteEnd> {
    while !bufs.is_empty() {
        match s.write_vectored(bufs) {
            Ok(0) => return Err(WriteEnd::Failed),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    if ctx.stopped() {
                        return Err(WriteEnd::Stopped);
                    }
                }
                _ => return Err(WriteEnd::Failed),
            },
        }
    }
    Ok(())
}

/// A consumer.
pub fn sink(ctx: &mut SinkCtx) -> Result<()> {
    let endpoint = ctx.endpoint().to_owned();
    match ctx.spec().transport {
        Transport::Tcp => {
            let s = TcpStream::connect(&endpoint)
                .with_context(|| format!("connecting to {endpoint}"))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(POLL))?;
            ctx.ready()?;
            receive(ctx, s)
        }
        Transport::Unix => {
            let s = UnixStream::connect(&endpoint)
                .with_context(|| format!("connecting to {endpoint}"))?;
            s.set_read_timeout(Some(POLL))?;
            ctx.ready()?;
            receive(ctx, s)
        }
        other => bail!("{other} is not a socket transport"),
    }
}

/// Reads messages until the window is over or the sender goes away.
fn receive<S: Read>(ctx: &mut SinkCtx, mut s: S) -> Result<()> {
    let want = ctx.frames().len();
    let mut payload = vec![0u8; want];
    let mut header = [0u8; HEADER];
    loop {
        if !read_full(&mut s, &mut header, ctx)? {
            return Ok(());
        }
        let field = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
        let (len, seq, capture_ns) = (field(0), field(8), field(16));
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len != want {
            // The stream cannot be followed past a length it does not trust.
            ctx.corrupt();
            if len > 2 * want {
                bail!("a message of {len} bytes, expected {want}");
            }
        }
        payload.resize(len, 0);
        if !read_full(&mut s, &mut payload, ctx)? {
            return Ok(());
        }
        if len == want && !ctx.frame(seq, capture_ns, len) {
            return Ok(());
        }
    }
}

/// Fills `buf` from `s`; false if the window ended or the sender closed the connection
/// first.
fn read_full<S: Read>(s: &mut S, buf: &mut [u8], ctx: &SinkCtx) -> Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            Ok(0) => return Ok(false),
            Ok(n) => at += n,
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    if ctx.done() {
                        return Ok(false);
                    }
                }
                io::ErrorKind::ConnectionReset => return Ok(false),
                _ => return Err(e).context("reading from the sender"),
            },
        }
    }
    Ok(true)
}
