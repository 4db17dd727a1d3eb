//! A client of `camring bridge ws`: the URL (`ws://HOST:PORT[/path][?query]`, with the
//! token and settings as query parameters, docs/protocol.md 2.2), the connection over
//! tokio-tungstenite, and why one was refused.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use camring_protocol::control::SettingsUpdate;
use camring_shm::clock::now_ns;
use futures_util::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::url::{self, HostPort};
use crate::{Connect, ConnectFailure, Link, Received};

/// Largest message (and frame) accepted: a message carries whole images.
pub const MAX_MESSAGE: usize = 1 << 30;
/// Longest the goodbye waits for the server's close.
const CLOSE_WAIT: Duration = Duration::from_millis(300);

/// Where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    /// `host:port` to open the TCP connection to (`[::1]:8080` for IPv6).
    pub authority: String,
    /// The request's path and query, e.g. `/ws?token=T&quality=70`.
    pub path_and_query: String,
    /// The token's value as sent (percent-encoded), masked when the URL is shown.
    token: Option<String>,
}

impl WsTarget {
    /// Builds the target from the URL the user gave, the token and the settings.
    ///
    /// The scheme must be `ws://` (or `http://`, the address `camring bridge ws` prints,
    /// which means the same server); `wss://` is refused (no TLS here). A missing port is
    /// 80. An empty path or `/` becomes `/ws`. Parameters already in the URL's query are
    /// kept unless `token` or `settings` set the same name.
    pub fn new(url: &str, token: Option<&str>, settings: &SettingsUpdate) -> Result<Self, String> {
        let rest = if let Some(r) = url::strip_scheme(url, "ws://") {
            r
        } else if let Some(r) = url::strip_scheme(url, "http://") {
            r
        } else if url::strip_scheme(url, "wss://").is_some()
            || url::strip_scheme(url, "https://").is_some()
        {
            return Err(format!(
                "{url}: TLS (wss://) is not supported by camring view; connect with ws:// to the bridge itself"
            ));
        } else {
            return Err(format!(
                "{url}: expected a ws://HOST:PORT URL (as camring bridge ws prints it)"
            ));
        };
        let (authority, rest) = url::split_authority(rest);
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url}: no host (expected ws://HOST:PORT)"));
        }
        let authority = HostPort::parse(authority, Some(80))
            .ok_or_else(|| format!("{url}: bad host or port"))?
            .authority();
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = if path.is_empty() || path == "/" {
            "/ws"
        } else {
            path
        };
        let ours = settings.to_query();
        let token = token.map(url::encode);
        let mut pairs: Vec<(String, String)> = url::pairs(query)
            .filter(|(n, _)| {
                !(ours.iter().any(|(o, _)| o == n) || (token.is_some() && *n == "token"))
            })
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        if let Some(t) = &token {
            pairs.push(("token".to_owned(), t.clone()));
        }
        pairs.extend(ours.into_iter().map(|(n, v)| (n.to_owned(), v)));
        let token = token.or_else(|| {
            pairs
                .iter()
                .find(|(n, _)| n == "token")
                .map(|(_, v)| v.clone())
        });
        let mut path_and_query = path.to_owned();
        for (i, (n, v)) in pairs.iter().enumerate() {
            path_and_query.push(if i == 0 { '?' } else { '&' });
            path_and_query.push_str(n);
            path_and_query.push('=');
            path_and_query.push_str(v);
        }
        Ok(WsTarget {
            authority,
            path_and_query,
            token,
        })
    }

    /// The URL the WebSocket handshake requests (token included).
    pub fn request_url(&self) -> String {
        format!("ws://{}{}", self.authority, self.path_and_query)
    }
}

impl fmt::Display for WsTarget {
    /// The URL with the token's value masked, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.request_url();
        match &self.token {
            Some(t) if !t.is_empty() => {
                f.write_str(&url.replace(&format!("token={t}"), "token=***"))
            }
            _ => f.write_str(&url),
        }
    }
}

/// Why a WebSocket connection could not be opened.
#[derive(Debug)]
pub enum WsConnectError {
    /// The server answered the upgrade with an HTTP error.
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
        /// The start of the response's body (the server says why in it).
        body: String,
        /// The URL, token masked.
        target: String,
    },
    /// No TCP connection (nothing listening, unreachable, unknown host).
    Unreachable {
        /// `host:port`.
        authority: String,
        /// Why.
        why: String,
    },
    /// The WebSocket handshake failed otherwise.
    Handshake {
        /// The URL, token masked.
        target: String,
        /// Why.
        why: String,
    },
}

impl ConnectFailure for WsConnectError {
    fn permanent(&self) -> bool {
        matches!(self, WsConnectError::Refused { status, .. } if *status != 503 && *status < 500)
    }

    fn unreachable(&self) -> bool {
        matches!(self, WsConnectError::Unreachable { .. })
    }

    fn describe(&self) -> String {
        match self {
            WsConnectError::Refused {
                status,
                reason,
                body,
                target,
            } => {
                let hint = match status {
                    401 => "wrong or missing --token".to_owned(),
                    503 => "the server already serves its maximum number of clients".to_owned(),
                    400 if !body.is_empty() => format!("bad parameter: {body}"),
                    400 => "a parameter was refused".to_owned(),
                    404 => format!("no WebSocket endpoint at {target}"),
                    _ if !body.is_empty() => body.clone(),
                    _ => String::new(),
                };
                let hint = if hint.is_empty() {
                    hint
                } else {
                    format!(" — {hint}")
                };
                format!("the server refused the connection: {status} {reason}{hint}")
            }
            WsConnectError::Unreachable { authority, why } => {
                format!("cannot connect to {authority}: {why}")
            }
            WsConnectError::Handshake { target, why } => {
                format!("WebSocket handshake with {target} failed: {why}")
            }
        }
    }
}

/// Opens WebSocket connections to one target.
#[derive(Debug, Clone)]
pub struct WsClient {
    /// Where.
    pub target: WsTarget,
    /// SO_RCVBUF set on the socket before connecting (a small one makes a slow client).
    pub rcvbuf: Option<u32>,
}

impl WsClient {
    /// Opens the TCP connection (with SO_RCVBUF set first if asked; `TCP_NODELAY`) and the
    /// WebSocket.
    pub async fn open(&self) -> Result<WsLink, WsConnectError> {
        let target = &self.target;
        let unreachable = |e: std::io::Error| WsConnectError::Unreachable {
            authority: target.authority.clone(),
            why: e.to_string(),
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.authority.as_str())
            .await
            .map_err(unreachable)?
            .collect();
        let mut stream = None;
        let mut last_error = None;
        for addr in addrs {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(unreachable)?;
            if let Some(bytes) = self.rcvbuf {
                socket.set_recv_buffer_size(bytes).map_err(unreachable)?;
            }
            match socket.connect(addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(stream) = stream else {
            return Err(WsConnectError::Unreachable {
                authority: target.authority.clone(),
                why: last_error
                    .map_or_else(|| "the host has no address".to_owned(), |e| e.to_string()),
            });
        };
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        match tokio_tungstenite::client_async_with_config(
            target.request_url(),
            stream,
            Some(config),
        )
        .await
        {
            Ok((ws, _response)) => Ok(WsLink(ws)),
            Err(WsError::Http(response)) => {
                let status = response.status();
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| {
                        String::from_utf8_lossy(b)
                            .trim()
                            .chars()
                            .take(300)
                            .collect()
                    })
                    .unwrap_or_default();
                Err(WsConnectError::Refused {
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("").to_owned(),
                    body,
                    target: target.to_string(),
                })
            }
            Err(WsError::Io(e)) => Err(unreachable(e)),
            Err(e) => Err(WsConnectError::Handshake {
                target: target.to_string(),
                why: e.to_string(),
            }),
        }
    }
}

impl Connect for WsClient {
    type Link = WsLink;
    type Error = WsConnectError;

    async fn connect(&mut self) -> Result<WsLink, WsConnectError> {
        self.open().await
    }
}

/// An open WebSocket connection.
#[derive(Debug)]
pub struct WsLink(WebSocketStream<TcpStream>);

impl Link for WsLink {
    async fn recv(&mut self) -> Result<Received, String> {
        loop {
            match self.0.next().await {
                Some(Ok(Message::Binary(data))) => {
                    return Ok(Received::Message {
                        data,
                        received_ns: now_ns(),
                    })
                }
                Some(Ok(Message::Text(text))) => return Ok(Received::Text(text.to_string())),
                Some(Ok(Message::Close(frame))) => {
                    return Err(match frame {
                        Some(f) if f.reason.is_empty() => {
                            format!("server closed with code {}", u16::from(f.code))
                        }
                        Some(f) => format!(
                            "server closed with code {}: {}",
                            u16::from(f.code),
                            f.reason
                        ),
                        None => "server closed the connection".to_owned(),
                    });
                }
                // Ping, pong: tungstenite answers pings itself.
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("connection closed".to_owned()),
            }
        }
    }

    async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            self.0.close(None).await?;
            // Until the server's close comes back (or the socket ends).
            while let Some(Ok(_)) = self.0.next().await {}
            Ok::<_, WsError>(())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use camring_protocol::control::{CameraSet, Quality};

    use super::*;

    fn target(url: &str) -> WsTarget {
        WsTarget::new(url, None, &SettingsUpdate::default()).unwrap()
    }

    #[test]
    fn path_defaults_to_ws() {
        for url in [
            "ws://127.0.0.1:8080",
            "ws://127.0.0.1:8080/",
            "http://127.0.0.1:8080/",
            "WS://127.0.0.1:8080#x",
        ] {
            let t = target(url);
            assert_eq!(t.authority, "127.0.0.1:8080", "{url}");
            assert_eq!(t.path_and_query, "/ws", "{url}");
            assert_eq!(t.request_url(), "ws://127.0.0.1:8080/ws", "{url}");
        }
        assert_eq!(target("ws://h:1/other").path_and_query, "/other");
        assert_eq!(target("ws://host").authority, "host:80");
        assert_eq!(target("ws://[::1]:9000/").authority, "[::1]:9000");
        assert_eq!(target("ws://[::1]").authority, "[::1]:80");
        assert_eq!(target("ws://h:1?fps=2").path_and_query, "/ws?fps=2");
    }

    #[test]
    fn bad_urls() {
        let s = SettingsUpdate::default();
        for url in [
            "127.0.0.1:8080",
            "ftp://h:1",
            "ws://",
            "ws://:80",
            "ws://h:99999",
            "ws://h:x",
            "ws://u@h:1",
            "ws://[::1",
            "ws://[]:1",
        ] {
            assert!(WsTarget::new(url, None, &s).is_err(), "{url}");
        }
        let e = WsTarget::new("wss://h:1", None, &s).unwrap_err();
        assert!(e.contains("TLS"), "{e}");
    }

    #[test]
    fn token_and_settings_in_the_query() {
        let settings = SettingsUpdate {
            quality: Some(Quality::Auto),
            max_width: Some(640),
            max_height: Some(360),
            fps: Some(7.5),
            skip: Some(2),
            cameras: Some(CameraSet::Only(vec![0, 2])),
        };
        let t = WsTarget::new("ws://h:1", Some("s3cr&t=/x y"), &settings).unwrap();
        assert_eq!(
            t.path_and_query,
            "/ws?token=s3cr%26t%3D%2Fx%20y&quality=auto&max_width=640&max_height=360&fps=7.5&skip=2&cameras=0,2"
        );
        assert_eq!(
            t.to_string(),
            "ws://h:1/ws?token=***&quality=auto&max_width=640&max_height=360&fps=7.5&skip=2&cameras=0,2"
        );
        // What the server reads back is what was asked for.
        let query = t.path_and_query.split_once('?').unwrap().1;
        let decoded: Vec<(String, String)> = url::pairs(query)
            .map(|(n, v)| (n.to_owned(), url::decode(v)))
            .collect();
        assert_eq!(decoded[0].1, "s3cr&t=/x y");
        let back =
            SettingsUpdate::from_query(decoded.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .unwrap();
        assert_eq!(back, settings);
    }

    #[test]
    fn options_replace_the_same_parameters_of_the_url() {
        let settings = SettingsUpdate {
            fps: Some(5.0),
            ..SettingsUpdate::default()
        };
        let t =
            WsTarget::new("ws://h:1/ws?fps=1&skip=3&token=old", Some("new"), &settings).unwrap();
        assert_eq!(t.path_and_query, "/ws?skip=3&token=new&fps=5");
        // A token only in the URL is kept, and masked too.
        let t = WsTarget::new("ws://h:1/?token=abc", None, &SettingsUpdate::default()).unwrap();
        assert_eq!(t.path_and_query, "/ws?token=abc");
        assert_eq!(t.to_string(), "ws://h:1/ws?token=***");
    }
}
