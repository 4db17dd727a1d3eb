//! What the `ws://` and `quic://` URLs share: the scheme, `HOST[:PORT]` with IPv6 in
//! brackets, and percent-encoding of query values.

/// The rest of `url` after `scheme` (`ws://`, any case), if it starts with it.
pub(crate) fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// Splits `rest` (what follows the scheme) into the authority and what follows it (path
/// and query, the fragment dropped).
pub(crate) fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    (authority, tail.split('#').next().unwrap_or(""))
}

/// A URL's host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// The host without IPv6 brackets (the TLS server name, what is resolved).
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// `HOST[:PORT]` or `[V6][:PORT]`, `default_port` if none (`None`: a port is
    /// required); `None` if there is no host, a user part, or a bad or missing port.
    pub fn parse(authority: &str, default_port: Option<u16>) -> Option<HostPort> {
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (addr, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains('@') {
            return None;
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok()?,
            None => default_port?,
        };
        Some(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
pub(crate) fn encode(value: &str) -> String {
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

/// Percent-decoding (`+` is a space, as in forms; a bad escape is kept as it is).
pub(crate) fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `name=value` pairs of a query, values as they are (not decoded).
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        let hp = |a: &str| HostPort::parse(a, Some(80)).map(|h| h.authority());
        assert_eq!(hp("h:1").as_deref(), Some("h:1"));
        assert_eq!(hp("host").as_deref(), Some("host:80"));
        assert_eq!(hp("[::1]:9000").as_deref(), Some("[::1]:9000"));
        assert_eq!(hp("[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(HostPort::parse("[::1]", Some(80)).unwrap().host, "::1");
        assert_eq!(HostPort::parse("host", None), None);
        assert_eq!(HostPort::parse("host:1", None).unwrap().port, 1);
        for bad in [
            "", ":80", "h:99999", "h:x", "u@h:1", "[::1", "[]:1", "[::1]x",
        ] {
            assert_eq!(hp(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_encoding_round_trips() {
        assert_eq!(encode("s3cr&t=/x y"), "s3cr%26t%3D%2Fx%20y");
        assert_eq!(decode(&encode("s3cr&t=/x y ü")), "s3cr&t=/x y ü");
        assert_eq!(decode("a%2Cb+c%zz%4"), "a,b c%zz%4");
    }
}
