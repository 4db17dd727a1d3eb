//! WebSocket clients of the bridge: connecting (and being refused), and reading with every
//! message checked by a [`Checker`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::{Checker, Event, Got, PATIENCE};

pub type Ws = WebSocketStream<TcpStream>;

/// How a test client connects.
#[derive(Debug, Default, Clone)]
pub struct Dial {
    /// `SO_RCVBUF` set before connecting.
    pub rcvbuf: Option<u32>,
    /// `Authorization: Bearer` value.
    pub bearer: Option<String>,
    /// tungstenite's read buffer (what it reads from the socket at once).
    pub read_buffer: Option<usize>,
}

/// Opens a WebSocket to `ws://ADDR/PATH_AND_QUERY`.
pub async fn dial(
    addr: SocketAddr,
    path_and_query: &str,
    how: &Dial,
) -> Result<Ws, tungstenite::Error> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = how.rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let tcp = socket.connect(addr).await?;
    let mut request = format!("ws://{addr}{path_and_query}").into_client_request()?;
    if let Some(token) = &how.bearer {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    let config = how
        .read_buffer
        .map(|n| WebSocketConfig::default().read_buffer_size(n));
    let (ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::client_async_with_config(request, tcp, config),
    )
    .await
    .map_err(|_| tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(ws)
}

pub async fn connect(addr: SocketAddr, path_and_query: &str) -> Ws {
    dial(addr, path_and_query, &Dial::default())
        .await
        .unwrap_or_else(|e| panic!("connect {path_and_query}: {e}"))
}

/// The HTTP status a refused upgrade got.
pub async fn refused_status(addr: SocketAddr, path_and_query: &str, how: &Dial) -> u16 {
    match dial(addr, path_and_query, how).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{path_and_query}: expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("{path_and_query}: expected an HTTP refusal, got a WebSocket"),
    }
}

pub async fn send_json(ws: &mut Ws, json: &str) {
    ws.send(Message::text(json.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("sending {json}: {e}"));
}

/// The next message within `left`. Yields to the other tasks first: every client checks
/// every image, and on a starved machine tokio's budget (128 reads before a task yields)
/// let one client's checking hold a worker while another read nothing for over the 10 s
/// after which the bridge disconnects a client that takes no bytes.
pub async fn recv(
    ws: &mut Ws,
    left: Duration,
) -> Result<Option<Result<Message, tungstenite::Error>>, tokio::time::error::Elapsed> {
    tokio::task::yield_now().await;
    tokio::time::timeout(left, ws.next()).await
}

/// How [`event_before`] ended.
#[derive(Debug)]
pub enum Until {
    /// A message came and was checked.
    Event(Event),
    /// The deadline passed first.
    Deadline,
    /// The stream ended.
    End,
    /// Reading failed.
    Failed(tungstenite::Error),
}

/// Reads until a message that makes an event (checking it), the deadline `end`, or the end
/// of the connection.
pub async fn event_before(ws: &mut Ws, c: &mut Checker, end: Instant) -> Until {
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Until::Deadline;
        }
        match recv(ws, left).await {
            Err(_) => return Until::Deadline,
            Ok(None) => return Until::End,
            Ok(Some(Err(e))) => return Until::Failed(e),
            Ok(Some(Ok(m))) => {
                if let Some(event) = c.on(m) {
                    return Until::Event(event);
                }
            }
        }
    }
}

/// Reads and checks messages until `until`; returns whether the connection is still open.
pub async fn read_until(ws: &mut Ws, c: &mut Checker, until: Instant) -> bool {
    loop {
        match event_before(ws, c, until).await {
            Until::Deadline => return true,
            Until::End => return false,
            Until::Failed(e) => panic!("{}", c.ended(e)),
            Until::Event(Event::Closed(code)) => {
                panic!("{}: closed by the server ({code:?})", c.name)
            }
            Until::Event(_) => {}
        }
    }
}

/// Reads until an event `want` accepts (checking everything on the way); panics after
/// [`PATIENCE`].
pub async fn read_for(ws: &mut Ws, c: &mut Checker, mut want: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match event_before(ws, c, deadline).await {
            Until::Deadline => panic!("{}: nothing expected came", c.name),
            Until::End => panic!("{}", c.ended("end of stream")),
            Until::Failed(e) => panic!("{}", c.ended(e)),
            Until::Event(event) if want(&event) => return event,
            Until::Event(_) => {}
        }
    }
}

/// Reads until a frame (checked) arrives.
pub async fn next_frame(ws: &mut Ws, c: &mut Checker) -> Got {
    match read_for(ws, c, |e| matches!(e, Event::Frame(_))).await {
        Event::Frame(g) => g,
        _ => unreachable!(),
    }
}

/// Reads until the server closes the connection; the close code, if any.
pub async fn read_to_close(ws: &mut Ws, c: &mut Checker) -> Option<u16> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match event_before(ws, c, deadline).await {
            Until::Deadline => panic!("{}: the server did not close the connection", c.name),
            Until::End | Until::Failed(_) => return None,
            Until::Event(Event::Closed(code)) => return code,
            Until::Event(_) => {}
        }
    }
}

/// The ring frames a run of received frames spans (first to last, inclusive).
pub fn span(frames: &[Got]) -> u64 {
    match (frames.first(), frames.last()) {
        (Some(a), Some(b)) => b.frame - a.frame + 1,
        _ => 0,
    }
}

/// A client of `/ws{query}` named after its index and query, and its checker.
pub async fn client(addr: SocketAddr, i: usize, query: &str) -> (Checker, Ws) {
    let c = Checker::new(format!("client {i} /ws{query}"));
    (c, connect(addr, &format!("/ws{query}")).await)
}

/// Sends a control message and reads until the `state` that answers it.
pub async fn send_for_state(ws: &mut Ws, c: &mut Checker, json: &str) {
    send_json(ws, json).await;
    read_for(ws, c, |e| matches!(e, Event::State)).await;
}

/// Reads (checking everything) until a frame, or `None` once `end` passed; panics when the
/// connection ends first.
pub async fn frame_before(ws: &mut Ws, c: &mut Checker, end: Instant) -> Option<Got> {
    loop {
        match event_before(ws, c, end).await {
            Until::Deadline => return None,
            Until::End => panic!("{}", c.ended("end of stream")),
            Until::Failed(e) => panic!("{}", c.ended(e)),
            Until::Event(Event::Frame(g)) => return Some(g),
            Until::Event(_) => {}
        }
    }
}

/// A task per query on `rt`: each connects as [`client`] `i` of `/ws{query}` and then runs
/// `run(i, checker, connection)`. The tasks' handles, in the order of `queries`.
pub fn spawn_clients<F, Fut>(
    rt: &tokio::runtime::Handle,
    addr: SocketAddr,
    queries: &[&'static str],
    run: F,
) -> Vec<tokio::task::JoinHandle<Fut::Output>>
where
    F: Fn(usize, Checker, Ws) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    queries
        .iter()
        .enumerate()
        .map(|(i, &query)| {
            let run = run.clone();
            rt.spawn(async move {
                let (c, ws) = client(addr, i, query).await;
                run(i, c, ws).await
            })
        })
        .collect()
}

/// A well-behaved client that reads (and checks) `/ws{query}` in the background while a
/// test mistreats the bridge with other connections.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Bystood>,
}

/// What a [`Bystander`] saw: its checker and connection, the frames it had before the
/// test began ([`Bystander::start`] waits for its first frame) and how long it read since.
pub struct Bystood {
    pub c: Checker,
    pub ws: Ws,
    pub from: usize,
    pub window: Duration,
}

impl Bystander {
    pub fn start(addr: SocketAddr, query: &'static str) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut c = Checker::new("good client");
                let mut ws = connect(addr, &format!("/ws{query}")).await;
                next_frame(&mut ws, &mut c).await;
                let (from, start) = (c.frames.len(), Instant::now());
                while !stop.load(Ordering::Relaxed) {
                    read_until(&mut ws, &mut c, Instant::now() + Duration::from_millis(100)).await;
                }
                Bystood {
                    c,
                    ws,
                    from,
                    window: start.elapsed(),
                }
            }
        });
        Bystander { stop, task }
    }

    pub async fn stop(self) -> Bystood {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("good client")
    }
}

impl Bystood {
    /// Panics unless it got at least 80 % of the frames the ring made while `meanwhile`
    /// happened to others.
    pub fn assert_kept_up(&self, meanwhile: &str) {
        let during = &self.c.frames[self.from..];
        let produced = span(during);
        let secs = self.window.as_secs_f64();
        eprintln!(
            "{meanwhile}; the good client got {} of {produced} frames in {secs:.1} s \
             ({:.1} fps), {} images verified",
            during.len(),
            during.len() as f64 / secs,
            self.c.verified
        );
        assert!(
            during.len() as u64 * 10 >= produced * 8,
            "the good client got {} of the {produced} frames while {meanwhile}",
            during.len()
        );
    }
}
