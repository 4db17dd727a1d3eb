//! The connection URL of `camring view`: what the user typed (`ws://HOST:PORT`, with or
//! without a path and query) plus the token and settings as query parameters
//! (`docs/protocol.md`, 2.2).

use std::fmt;

use camring_protocol::control::SettingsUpdate;

/// Where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to open the TCP connection to (`[::1]:8080` for IPv6).
    pub authority: String,
    /// The request's path and query, e.g. `/ws?token=T&quality=70`.
    pub path_and_query: String,
    /// The token's value as sent (percent-encoded), masked when the URL is shown.
    token: Option<String>,
}

impl Target {
    /// Builds the target from the URL the user gave, the token and the settings.
    ///
    /// The scheme must be `ws://` (or `http://`, the address `camring bridge ws` prints,
    /// which means the same server); `wss://` is refused (no TLS here). A missing port is
    /// 80. An empty path or `/` becomes `/ws`. Parameters already in the URL's query are
    /// kept unless `token` or `settings` set the same name.
    pub fn new(url: &str, token: Option<&str>, settings: &SettingsUpdate) -> Result<Self, String> {
        let rest = if let Some(r) = strip_scheme(url, "ws://") {
            r
        } else if let Some(r) = strip_scheme(url, "http://") {
            r
        } else if strip_scheme(url, "wss://").is_some() || strip_scheme(url, "https://").is_some() {
            return Err(format!(
                "{url}: TLS (wss://) is not supported by camring view; connect with ws:// to the bridge itself"
            ));
        } else {
            return Err(format!(
                "{url}: expected a ws://HOST:PORT URL (as camring bridge ws prints it)"
            ));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        let rest = rest.split('#').next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url}: no host (expected ws://HOST:PORT)"));
        }
        let authority = with_port(authority).ok_or_else(|| format!("{url}: bad host or port"))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        let path = if path.is_empty() || path == "/" {
            "/ws"
        } else {
            path
        };
        let ours = settings.to_query();
        let token = token.map(encode);
        let mut pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .filter(|(n, _)| {
                !(ours.iter().any(|(o, _)| o == n) || (token.is_some() && n == "token"))
            })
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
        Ok(Target {
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

impl fmt::Display for Target {
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

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// `host:port` with the port checked, or `host:80` without one.
fn with_port(authority: &str) -> Option<String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        if addr.is_empty() {
            return None;
        }
        match after {
            "" => (format!("[{addr}]"), None),
            p => (format!("[{addr}]"), Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => 80,
    };
    Some(format!("{host}:{port}"))
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks one setting's command-line value exactly as the server checks the same query
/// parameter ([`SettingsUpdate::from_query`]), so a bad value fails here with the server's
/// own words instead of as a refused connection.
pub fn parse_setting(name: &'static str, value: &str) -> Result<SettingsUpdate, String> {
    SettingsUpdate::from_query([(name, value)]).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use camring_protocol::control::{CameraSet, Quality};

    use super::*;

    fn target(url: &str) -> Target {
        Target::new(url, None, &SettingsUpdate::default()).unwrap()
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
            assert!(Target::new(url, None, &s).is_err(), "{url}");
        }
        let e = Target::new("wss://h:1", None, &s).unwrap_err();
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
        let t = Target::new("ws://h:1", Some("s3cr&t=/x y"), &settings).unwrap();
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
        let decoded: Vec<(String, String)> = query
            .split('&')
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap();
                (n.to_owned(), decode(v))
            })
            .collect();
        assert_eq!(decoded[0].1, "s3cr&t=/x y");
        let back =
            SettingsUpdate::from_query(decoded.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .unwrap();
        assert_eq!(back, settings);
        let fps10 = SettingsUpdate {
            fps: Some(10.0),
            cameras: Some(CameraSet::All),
            ..SettingsUpdate::default()
        };
        assert_eq!(fps10.to_query()[0], ("fps", "10".to_owned()));
        assert_eq!(fps10.to_query()[1], ("cameras", "all".to_owned()));
    }

    #[test]
    fn options_replace_the_same_parameters_of_the_url() {
        let settings = SettingsUpdate {
            fps: Some(5.0),
            ..SettingsUpdate::default()
        };
        let t = Target::new("ws://h:1/ws?fps=1&skip=3&token=old", Some("new"), &settings).unwrap();
        assert_eq!(t.path_and_query, "/ws?skip=3&token=new&fps=5");
        // A token only in the URL is kept, and masked too.
        let t = Target::new("ws://h:1/?token=abc", None, &SettingsUpdate::default()).unwrap();
        assert_eq!(t.path_and_query, "/ws?token=abc");
        assert_eq!(t.to_string(), "ws://h:1/ws?token=***");
    }

    #[test]
    fn settings_are_checked_like_the_server_does() {
        assert_eq!(
            parse_setting("quality", "auto").unwrap().quality,
            Some(Quality::Auto)
        );
        assert_eq!(parse_setting("fps", "0.5").unwrap().fps, Some(0.5));
        assert_eq!(
            parse_setting("cameras", "0,2").unwrap().cameras,
            Some(CameraSet::Only(vec![0, 2]))
        );
        for (name, bad) in [
            ("quality", "0"),
            ("quality", "high"),
            ("fps", "1001"),
            ("fps", "-1"),
            ("skip", "0"),
            ("cameras", "1,1"),
            ("cameras", "16"),
            ("max_width", "-5"),
        ] {
            assert!(parse_setting(name, bad).is_err(), "{name}={bad}");
        }
    }

    fn decode(v: &str) -> String {
        let b = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
