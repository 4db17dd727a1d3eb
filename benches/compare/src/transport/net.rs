//! The network adapters: WebSocket ([`ws`]), QUIC ([`quic`]) and UDP ([`udp`]).
//!
//! The sender is the production path end to end: a ring ([`RingSource`]) that the real
//! bridge (`camring_bridge::{WsBridge, QuicBridge, UdpBridge}`, default settings, on a
//! 2-worker tokio runtime as `camring bridge` runs it) reads in the same process, on
//! 127.0.0.1 and an ephemeral port. The JPEG profiles are forwarded as they are (default
//! quality); the raw profile is JPEG-encoded by the bridge, which is part of its cost.
//!
//! A consumer is the real client `camring view` uses (`camring_client`), on a
//! current-thread runtime: WebSocket on `/ws`, QUIC pinned to the certificate's
//! fingerprint, or a UDP subscriber with reassembly. Each whole message is parsed with
//! `camring_protocol::wire`; its header's frame number is the ring's (the stamp's
//! `seq`), camera 0's `capture_ns` the stamp's capture time.
//!
//! A consumer says `ready` only once its connection or subscription is live (the bridge
//! then copies every frame published). While it waits for `go` its runtime keeps serving
//! the connection (QUIC keep-alives, UDP keepalives) on the calling thread, and keeps any
//! message that arrives meanwhile for after `go`, so no frame goes unacknowledged.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use camring_client::quic::{tls::Trust, QuicClient, QuicTarget};
use camring_client::udp::{ClientConfig, UdpClient, RECV_BUFFER};
use camring_client::ws::{WsClient, WsTarget};
use camring_client::{Connect, ConnectFailure, Link, Received};
use camring_protocol::control::SettingsUpdate;
use camring_protocol::wire;
use camring_protocol::PixelFormat;
use tokio::runtime::Runtime;

use crate::ctx::{SinkCtx, SourceCtx};
use crate::profile::{Frames, Transport};
use crate::ring::RingSource;

/// Where the bridges listen: loopback, an ephemeral port.
const LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
/// How long a stopping bridge may take to close its clients.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a consumer may take to connect or subscribe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Separates the address from the certificate's fingerprint in a QUIC endpoint.
const FINGERPRINT: &str = "#sha256=";

/// The sender: the ring, and the bridge reading it.
pub fn source(ctx: &mut SourceCtx) -> Result<()> {
    let mut ring = RingSource::create(&ctx.spec().name, ctx.frames())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-bridge")
        .enable_all()
        .build()
        .context("starting the bridge's runtime")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let name = ring.name().to_owned();
    let (endpoint, task) = match ctx.spec().transport {
        Transport::Ws => {
            let mut config = camring_bridge::WsConfig::new(name);
            config.listen = LISTEN;
            let bridge = rt.block_on(camring_bridge::WsBridge::bind(config))?;
            let endpoint = bridge.local_addr()?.to_string();
            (endpoint, rt.spawn(bridge.run(stopped)))
        }
        Transport::Quic => {
            use camring_bridge::quic::{tls::Identity, QuicBridge, QuicConfig};
            let identity = Identity::generate(&["localhost".into(), "127.0.0.1".into()])?;
            let mut config = QuicConfig::new(name, identity);
            config.listen = LISTEN;
            let bridge = rt.block_on(QuicBridge::bind(config))?;
            let endpoint = format!(
                "{}{FINGERPRINT}{}",
                bridge.local_addr()?,
                bridge.fingerprint()
            );
            (endpoint, rt.spawn(bridge.run(stopped)))
        }
        Transport::Udp => {
            use camring_bridge::udp::{UdpBridge, UdpConfig};
            let mut config = UdpConfig::new(name);
            config.listen = LISTEN;
            config.check().map_err(anyhow::Error::msg)?;
            let bridge = rt.block_on(UdpBridge::bind(config))?;
            let endpoint = bridge.local_addr()?.to_string();
            (endpoint, rt.spawn(bridge.run(stopped)))
        }
        other => bail!("{other} is not a network adapter"),
    };
    let sent = (|| {
        ctx.ready(&endpoint)?;
        while let Some(stamp) = ctx.next_stamp() {
            ring.publish(ctx.frames(), stamp)?;
        }
        anyhow::Ok(())
    })();
    let _ = stop.send(());
    let ended = rt.block_on(async { tokio::time::timeout(STOP_TIMEOUT, task).await });
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(ring);
    sent?;
    match ended {
        Err(_) => bail!("the bridge did not stop within {STOP_TIMEOUT:?}"),
        Ok(Err(e)) => Err(anyhow!("the bridge task failed: {e}")),
        Ok(Ok(r)) => r.context("the bridge"),
    }
}

/// A consumer: connects, then receives until the window is over.
pub fn sink(ctx: &mut SinkCtx) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the consumer's runtime")?;
    let endpoint = ctx.endpoint().to_owned();
    let connect = |what: &str| format!("connecting to the {what} bridge at {endpoint}");
    let none = SettingsUpdate::default();
    match ctx.spec().transport {
        Transport::Ws => {
            let target = WsTarget::new(&format!("ws://{endpoint}"), None, &none)
                .map_err(anyhow::Error::msg)?;
            let mut client = WsClient {
                target,
                rcvbuf: None,
            };
            let link = rt
                .block_on(timed(async {
                    let mut link = open(&mut client).await?;
                    first_state(&mut link).await?;
                    Ok(link)
                }))
                .with_context(|| connect("WebSocket"))?;
            drive(ctx, &rt, link)
        }
        Transport::Quic => {
            let (addr, pin) = endpoint
                .split_once(FINGERPRINT)
                .ok_or_else(|| anyhow!("no {FINGERPRINT} in {endpoint:?}"))?;
            let target = QuicTarget::new(&format!("quic://{addr}"), None, &none)
                .map_err(anyhow::Error::msg)?;
            let pin = camring_client::quic::tls::parse_fingerprint(pin)?;
            let mut client = QuicClient::new(target, &Trust::Pinned(pin))?;
            let link = rt
                .block_on(timed(async {
                    let mut link = open(&mut client).await?;
                    first_state(&mut link).await?;
                    Ok(link)
                }))
                .with_context(|| connect("QUIC"))?;
            drive(ctx, &rt, link)
        }
        Transport::Udp => {
            let server: SocketAddr = endpoint.parse().context("the bridge's address")?;
            let url = format!("udp://{endpoint}");
            let mut client = UdpClient::start(server, url, ClientConfig::default(), RECV_BUFFER)?;
            let link = rt
                .block_on(timed(async {
                    // `full` is retried (within the timeout); nothing else comes first.
                    loop {
                        match client.connect().await {
                            Ok(link) => return Ok(link),
                            Err(e) if e.permanent() || e.unreachable() => {
                                bail!("{}", e.describe())
                            }
                            Err(_) => {}
                        }
                    }
                }))
                .with_context(|| connect("UDP"))?;
            // (`client` lives on to the end: its thread is the subscription.)
            drive(ctx, &rt, link)
        }
        other => bail!("{other} is not a network adapter"),
    }
}

/// `f` within [`CONNECT_TIMEOUT`].
async fn timed<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, f)
        .await
        .map_err(|_| anyhow!("no connection within {CONNECT_TIMEOUT:?}"))?
}

/// One connection of `client`.
async fn open<C: Connect>(client: &mut C) -> Result<C::Link> {
    client
        .connect()
        .await
        .map_err(|e| anyhow!("{}", e.describe()))
}

/// Waits for the bridge's first `state`: it is sent once the connection is registered for
/// frames.
async fn first_state(link: &mut impl Link) -> Result<()> {
    loop {
        match link.recv().await.map_err(anyhow::Error::msg)? {
            Received::Text(t) if t.contains("\"state\"") => return Ok(()),
            Received::Text(_) | Received::Message { .. } => {}
        }
    }
}

/// The next binary message of `link` (the JSON side messages are read and ignored).
/// Cancel-safe, as [`Link::recv`].
async fn next_message(link: &mut impl Link) -> Result<Bytes> {
    loop {
        if let Received::Message { data, .. } = link.recv().await.map_err(anyhow::Error::msg)? {
            return Ok(data);
        }
    }
}

/// Says `ready`, waits for `go` while serving the connection, then receives until the
/// window is over.
fn drive(ctx: &mut SinkCtx, rt: &Runtime, mut link: impl Link) -> Result<()> {
    let mut early = Vec::new();
    let mut lost = None;
    std::thread::scope(|s| {
        let (go, mut went) = tokio::sync::oneshot::channel::<()>();
        let ready = s.spawn(|| {
            let r = ctx.ready();
            let _ = go.send(());
            r
        });
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = &mut went => break,
                    m = next_message(&mut link) => match m {
                        Ok(m) => early.push(m),
                        Err(e) => {
                            lost = Some(e);
                            let _ = (&mut went).await;
                            break;
                        }
                    },
                }
            }
        });
        ready
            .join()
            .map_err(|_| anyhow!("the thread waiting for go panicked"))?
    })?;
    if let Some(e) = lost {
        return Err(e.context("before the window"));
    }
    let mut check = Check::new(ctx.frames());
    for m in early {
        if !check.message(ctx, &m) {
            rt.block_on(link.close());
            return Ok(());
        }
    }
    let result = rt.block_on(async {
        loop {
            let left = ctx.remaining();
            if left.is_zero() {
                return Ok(());
            }
            match tokio::time::timeout(left, next_message(&mut link)).await {
                Err(_) => return Ok(()),
                Ok(Ok(m)) => {
                    if !check.message(ctx, &m) {
                        return Ok(());
                    }
                }
                Ok(Err(_)) if ctx.done() => return Ok(()),
                Ok(Err(e)) => return Err(e.context("inside the window")),
            }
        }
    });
    rt.block_on(link.close());
    result
}

/// Checks what arrives against what was sent.
#[derive(Debug)]
struct Check {
    /// Every camera's image length when the bridge forwards them as they are (JPEG),
    /// `None` when it encodes them (raw).
    lengths: Option<Vec<usize>>,
    width: u32,
    height: u32,
    /// The newest frame number handed on.
    last: Option<u64>,
}

impl Check {
    fn new(frames: &Frames) -> Check {
        Check {
            lengths: (frames.format == PixelFormat::Jpeg)
                .then(|| frames.images.iter().map(Vec::len).collect()),
            width: frames.width,
            height: frames.height,
            last: None,
        }
    }

    /// Hands one message on (or counts it corrupt); false once the window is over.
    fn message(&mut self, ctx: &mut SinkCtx, bytes: &[u8]) -> bool {
        let Ok(m) = wire::parse(bytes) else {
            ctx.corrupt();
            return !ctx.done();
        };
        let cameras = ctx.frames().images.len();
        let whole = m.cameras.len() == cameras
            && m.cameras.iter().enumerate().all(|(i, c)| {
                c.info.camera_id == i as u32
                    && !c.info.is_missing()
                    && c.info.format == PixelFormat::Jpeg
                    && c.info.width == self.width
                    && c.info.height == self.height
                    && c.info.sequence == m.header.frame
                    && match &self.lengths {
                        Some(l) => c.payload.len() == l[i],
                        None => c.payload.starts_with(&[0xFF, 0xD8]),
                    }
            });
        if !whole {
            ctx.corrupt();
            return !ctx.done();
        }
        let frame = m.header.frame;
        // Newest wins: an older message overtaken by a newer one (QUIC streams) is what a
        // real client drops; it is neither a frame nor damage.
        if self.last.is_some_and(|l| frame <= l) {
            return !ctx.done();
        }
        self.last = Some(frame);
        let payload = m.cameras.iter().map(|c| c.payload.len()).sum();
        ctx.frame(frame, m.cameras[0].info.capture_ns, payload)
    }
}
