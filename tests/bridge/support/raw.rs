//! HTTP and WebSocket written and read by hand over raw TCP: for what a well-behaved client
//! library would never send or would hide (partial frames, garbage, half handshakes).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::PATIENCE;
use crate::common::{head_end, parse_http_head, HttpResponse};

/// Reads from `tcp` until a whole response head (panics, naming `what`, when it does not
/// come within [`PATIENCE`] or the connection closes first). The response has the head's
/// status and headers and, as its body, the bytes already read past the head; the head's
/// text comes with it.
pub async fn read_head(tcp: &mut TcpStream, what: &str) -> (HttpResponse, String) {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{what}: a response head in time"))
            .unwrap_or_else(|e| panic!("{what}: reading the response head: {e}"));
        assert!(n > 0, "{what}: connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
    let (status, headers) =
        parse_http_head(&head).unwrap_or_else(|| panic!("{what}: not an HTTP head: {head}"));
    let response = HttpResponse {
        status,
        headers,
        body: buf[end..].to_vec(),
    };
    (response, head)
}

/// The status of an HTTP answer read to its end, if it has a head.
pub fn answer_status(answer: &[u8]) -> Option<u16> {
    let end = head_end(answer)?;
    parse_http_head(&String::from_utf8_lossy(&answer[..end - 4])).map(|(s, _)| s)
}

/// A numeric response header (`x-camring-sequence`, `x-camring-frame`); panics when it is
/// missing or not a number.
pub fn number<T: std::str::FromStr>(r: &HttpResponse, header: &str) -> T {
    r.header(header)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{header}: {:?}", r.header(header)))
}

/// A WebSocket upgrade written by hand: the stream right after the `101` response, and the
/// bytes already read past it.
pub async fn raw_upgrade(addr: SocketAddr, path_and_query: &str) -> (TcpStream, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .expect("send upgrade");
    let (response, head) = read_head(&mut tcp, "upgrade").await;
    assert_eq!(response.status, 101, "{head}");
    // RFC 6455's example key and its accept value.
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    (tcp, response.body)
}

/// Reads from `tcp` (after `pending`, bytes already read) until `need` bytes are buffered.
pub async fn fill(tcp: &mut TcpStream, pending: &mut Vec<u8>, need: usize) {
    while pending.len() < need {
        let mut chunk = vec![0u8; (need - pending.len()).min(64 * 1024)];
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("server frames in time")
            .expect("read");
        assert!(n > 0, "the server closed the connection");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Reads (unmasked, server) WebSocket frames until the header of a binary one; returns its
/// payload length and leaves `pending` holding whatever of its payload was already read.
pub async fn skip_to_binary(tcp: &mut TcpStream, pending: &mut Vec<u8>) -> u64 {
    loop {
        fill(tcp, pending, 2).await;
        let opcode = pending[0] & 0x0F;
        let (len, at) = match pending[1] & 0x7F {
            126 => {
                fill(tcp, pending, 4).await;
                (u64::from(u16::from_be_bytes([pending[2], pending[3]])), 4)
            }
            127 => {
                fill(tcp, pending, 10).await;
                let b: [u8; 8] = pending[2..10].try_into().expect("8 bytes");
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        assert_eq!(pending[1] & 0x80, 0, "server frames are not masked");
        pending.drain(..at);
        if opcode == 2 {
            return len;
        }
        fill(tcp, pending, len as usize).await;
        pending.drain(..len as usize);
    }
}

/// Writes `bytes` on a new connection and reads what comes back until the server closes or
/// `PATIENCE` passes; the HTTP status of the answer, if it gave one.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before reading it all: a failed write is fine.
    let _ = tcp.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
    answer_status(&answer)
}
