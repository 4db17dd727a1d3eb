//! Parsing any datagram into a typed [`Datagram`] (hostile bytes never panic or allocate).

use super::*;

/// One parsed datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A piece of a message.
    Fragment(Fragment<'a>),
    /// A subscription request.
    Subscribe(Subscribe<'a>),
    /// A keepalive.
    Keepalive(Keepalive),
    /// An unsubscribe.
    Unsubscribe(Unsubscribe),
    /// The subscription is live.
    Accepted(Accepted),
    /// Subscribe again with a cookie.
    Challenge(Challenge),
    /// A refusal.
    Refused(Refused),
}

impl Datagram<'_> {
    /// The datagram's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Datagram::Fragment(_) => Kind::Fragment,
            Datagram::Subscribe(_) => Kind::Subscribe,
            Datagram::Keepalive(_) => Kind::Keepalive,
            Datagram::Unsubscribe(_) => Kind::Unsubscribe,
            Datagram::Accepted(_) => Kind::Accepted,
            Datagram::Challenge(_) => Kind::Challenge,
            Datagram::Refused(_) => Kind::Refused,
        }
    }
}

/// Reads the common header: magic (on as many of its bytes as there are), version, kind.
fn parse_common(bytes: &[u8]) -> Result<Kind, DatagramError> {
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(DatagramError::BadMagic);
    }
    let Some(&version) = bytes.get(4) else {
        return Err(DatagramError::Truncated {
            needed: COMMON_HEADER_SIZE,
            actual: bytes.len(),
        });
    };
    if version != VERSION {
        return Err(DatagramError::Version { found: version });
    }
    let Some(&kind) = bytes.get(5) else {
        return Err(DatagramError::Truncated {
            needed: COMMON_HEADER_SIZE,
            actual: bytes.len(),
        });
    };
    Kind::from_code(kind).ok_or(DatagramError::UnknownKind(kind))
}

fn fixed<T: FromBytes + KnownLayout + Immutable>(bytes: &[u8]) -> Result<&T, DatagramError> {
    T::ref_from_prefix(bytes)
        .map(|(raw, _)| raw)
        .map_err(|_| DatagramError::Truncated {
            needed: size_of::<T>(),
            actual: bytes.len(),
        })
}

fn check_request_len(bytes: &[u8]) -> Result<(), DatagramError> {
    if bytes.len() < MIN_REQUEST_SIZE {
        return Err(DatagramError::RequestTooShort(bytes.len()));
    }
    if bytes.len() > MAX_REQUEST_SIZE {
        return Err(DatagramError::RequestTooLong(bytes.len()));
    }
    Ok(())
}

fn parse_fragment_body(bytes: &[u8]) -> Result<Fragment<'_>, DatagramError> {
    let (raw, payload) =
        RawFragment::ref_from_prefix(bytes).map_err(|_| DatagramError::Truncated {
            needed: FRAGMENT_HEADER_SIZE,
            actual: bytes.len(),
        })?;
    let header = FragmentHeader {
        stream: raw.stream.get(),
        frame: raw.frame.get(),
        index: raw.index.get(),
        count: raw.count.get(),
        total_len: raw.total_len.get(),
        fragment_size: raw.fragment_size.get(),
    };
    header.check()?;
    let expected = header.payload_len();
    if payload.len() != expected {
        return Err(FragmentError::PayloadLength {
            expected,
            actual: payload.len(),
        }
        .into());
    }
    Ok(Fragment { header, payload })
}

/// Parses a datagram that must be a fragment (the receiver's fast path).
pub fn parse_fragment(bytes: &[u8]) -> Result<Fragment<'_>, DatagramError> {
    match parse_common(bytes)? {
        Kind::Fragment => parse_fragment_body(bytes),
        other => Err(DatagramError::UnexpectedKind(other)),
    }
}

/// Parses and validates any datagram, borrowing fragment payloads, tokens and settings
/// from `bytes`.
///
/// Checks, in order: the magic, the version, the kind, the kind's fixed part; then for a
/// fragment its header ([`FragmentHeader::check`]) and that the payload has exactly the
/// length the header says; for a request its length ([`MIN_REQUEST_SIZE`] to
/// [`MAX_REQUEST_SIZE`]), for a subscribe the token and settings lengths and the MTU; for
/// an accepted reply its MTU. Reserved bytes, padding and bytes after a reply's fixed part
/// are ignored; a refusal's unknown reason is kept as [`RefuseReason::Other`].
pub fn parse(bytes: &[u8]) -> Result<Datagram<'_>, DatagramError> {
    let kind = parse_common(bytes)?;
    Ok(match kind {
        Kind::Fragment => Datagram::Fragment(parse_fragment_body(bytes)?),
        Kind::Subscribe => {
            let raw: &RawSubscribe = fixed(bytes)?;
            check_request_len(bytes)?;
            let token_len = usize::from(raw.token_len.get());
            let settings_len = usize::from(raw.settings_len.get());
            if token_len > MAX_TOKEN_LEN {
                return Err(DatagramError::TokenTooLong(token_len));
            }
            if settings_len > MAX_SETTINGS_LEN {
                return Err(DatagramError::SettingsTooLong(settings_len));
            }
            let token_end = SUBSCRIBE_FIXED_SIZE + token_len;
            let settings_end = token_end + settings_len;
            if settings_end > bytes.len() {
                return Err(DatagramError::FieldsPastEnd {
                    needed: settings_end,
                    actual: bytes.len(),
                });
            }
            let mtu = raw.mtu.get();
            if mtu != 0 && !(MIN_MTU..=MAX_MTU).contains(&(mtu as usize)) {
                return Err(DatagramError::Mtu(mtu));
            }
            Datagram::Subscribe(Subscribe {
                cookie: raw.cookie,
                mtu,
                token: &bytes[SUBSCRIBE_FIXED_SIZE..token_end],
                settings: &bytes[token_end..settings_end],
            })
        }
        Kind::Keepalive | Kind::Unsubscribe => {
            let raw: &RawCookie = fixed(bytes)?;
            check_request_len(bytes)?;
            let cookie = raw.cookie;
            if kind == Kind::Keepalive {
                Datagram::Keepalive(Keepalive { cookie })
            } else {
                Datagram::Unsubscribe(Unsubscribe { cookie })
            }
        }
        Kind::Accepted => {
            let raw: &RawAccepted = fixed(bytes)?;
            let mtu = raw.mtu.get();
            if !(MIN_MTU..=MAX_MTU).contains(&(mtu as usize)) {
                return Err(DatagramError::Mtu(mtu));
            }
            Datagram::Accepted(Accepted {
                cookie: raw.cookie,
                stream: raw.stream.get(),
                mtu,
                keepalive_ms: raw.keepalive_ms.get(),
                timeout_ms: raw.timeout_ms.get(),
            })
        }
        Kind::Challenge => {
            let raw: &RawCookie = fixed(bytes)?;
            Datagram::Challenge(Challenge { cookie: raw.cookie })
        }
        Kind::Refused => {
            let raw: &RawRefused = fixed(bytes)?;
            Datagram::Refused(Refused {
                reason: RefuseReason::from_code(raw.reason.get()),
            })
        }
    })
}
