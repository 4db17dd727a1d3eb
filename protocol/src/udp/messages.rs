//! The requests (client to server) and replies (server to client), and what a server
//! answers to a datagram it refused.

use super::*;

/// A client's request to start (or renew, or change the settings of) its subscription.
///
/// The server answers with [`Accepted`] (frames follow), [`Challenge`] (send this again
/// with the cookie it gives), or [`Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// All zeros on a first try; the cookie of a [`Challenge`] when answering one.
    pub cookie: Cookie,
    /// The largest datagram the client wants ([`MIN_MTU`]`..=`[`MAX_MTU`]), or 0 for the
    /// server's default. The server sends `min(its own, this)`.
    pub mtu: u32,
    /// The server's token, if it has one (at most [`MAX_TOKEN_LEN`] bytes).
    pub token: &'a [u8],
    /// The settings: the JSON object of a `settings` control message without its `type`
    /// (the JSON of [`SettingsUpdate`], e.g. `{"quality":70,"fps":10}`), at most
    /// [`MAX_SETTINGS_LEN`] bytes; empty for the defaults.
    pub settings: &'a [u8],
}

impl Subscribe<'_> {
    /// Size of the encoded request, padding included.
    pub fn encoded_len(&self) -> usize {
        (SUBSCRIBE_FIXED_SIZE + self.token.len() + self.settings.len()).max(MIN_REQUEST_SIZE)
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.token.len() > MAX_TOKEN_LEN {
            return Err(EncodeError::TokenTooLong(self.token.len()));
        }
        if self.settings.len() > MAX_SETTINGS_LEN {
            return Err(EncodeError::SettingsTooLong(self.settings.len()));
        }
        if self.mtu != 0 && !(MIN_MTU..=MAX_MTU).contains(&(self.mtu as usize)) {
            return Err(EncodeError::Mtu(self.mtu as usize));
        }
        Ok(())
    }

    /// Writes the request (zero-padded to [`MIN_REQUEST_SIZE`]) at the start of `buf` and
    /// returns its length.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.check()?;
        let len = self.encoded_len();
        check_buffer(buf, len)?;
        let raw = RawSubscribe {
            common: RawCommon::new(Kind::Subscribe),
            cookie: self.cookie,
            token_len: (self.token.len() as u16).into(),
            settings_len: (self.settings.len() as u16).into(),
            mtu: self.mtu.into(),
        };
        let token_end = SUBSCRIBE_FIXED_SIZE + self.token.len();
        let settings_end = token_end + self.settings.len();
        buf[..SUBSCRIBE_FIXED_SIZE].copy_from_slice(raw.as_bytes());
        buf[SUBSCRIBE_FIXED_SIZE..token_end].copy_from_slice(self.token);
        buf[token_end..settings_end].copy_from_slice(self.settings);
        buf[settings_end..len].fill(0);
        Ok(len)
    }

    /// The request as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0; self.encoded_len()];
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// The settings the client asks for, parsed as a `settings` control message's body
    /// (empty: no change from the defaults).
    pub fn settings_update(&self) -> Result<SettingsUpdate, ControlError> {
        if self.settings.is_empty() {
            return Ok(SettingsUpdate::default());
        }
        serde_json::from_slice(self.settings).map_err(|e| ControlError::Json(e.to_string()))
    }
}

/// A client's "still here": sent at least every `keepalive_ms` of its [`Accepted`]. The
/// server answers with [`Accepted`] again, or [`Refused`] with
/// [`RefuseReason::UnknownSubscriber`] when it does not know the client (restarted, or
/// timed the client out): the client then subscribes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// The cookie of the client's [`Accepted`].
    pub cookie: Cookie,
}

/// A client's "stop sending": the server forgets the subscriber and does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The cookie of the client's [`Accepted`].
    pub cookie: Cookie,
}

fn encode_cookie_request(kind: Kind, cookie: &Cookie) -> [u8; MIN_REQUEST_SIZE] {
    let raw = RawCookie {
        common: RawCommon::new(kind),
        cookie: *cookie,
    };
    let mut out = [0; MIN_REQUEST_SIZE];
    out[..CHALLENGE_SIZE].copy_from_slice(raw.as_bytes());
    out
}

impl Keepalive {
    /// The request, zero-padded to [`MIN_REQUEST_SIZE`].
    pub fn encode(&self) -> [u8; MIN_REQUEST_SIZE] {
        encode_cookie_request(Kind::Keepalive, &self.cookie)
    }
}

impl Unsubscribe {
    /// The request, zero-padded to [`MIN_REQUEST_SIZE`].
    pub fn encode(&self) -> [u8; MIN_REQUEST_SIZE] {
        encode_cookie_request(Kind::Unsubscribe, &self.cookie)
    }
}

/// The server's "you are subscribed": frames of stream `stream` follow, in datagrams of at
/// most `mtu` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The subscriber's cookie, to put in [`Keepalive`] and [`Unsubscribe`].
    pub cookie: Cookie,
    /// The stream id the fragments carry (see [`Reassembler::reset`]).
    pub stream: u32,
    /// The largest datagram the server sends this subscriber.
    pub mtu: u32,
    /// Send a [`Keepalive`] at least this often, milliseconds.
    pub keepalive_ms: u32,
    /// The server drops a subscriber it has not heard from for this long, milliseconds.
    pub timeout_ms: u32,
}

impl Accepted {
    /// The reply ([`ACCEPTED_SIZE`] bytes).
    pub fn encode(&self) -> [u8; ACCEPTED_SIZE] {
        let raw = RawAccepted {
            common: RawCommon::new(Kind::Accepted),
            cookie: self.cookie,
            stream: self.stream.into(),
            mtu: self.mtu.into(),
            keepalive_ms: self.keepalive_ms.into(),
            timeout_ms: self.timeout_ms.into(),
        };
        let mut out = [0; ACCEPTED_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// The server's "prove you receive at this address": the client sends its [`Subscribe`]
/// again with this cookie. Only then do frames flow, so a forged source address cannot
/// turn the server against a victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    /// The cookie to echo.
    pub cookie: Cookie,
}

impl Challenge {
    /// The reply ([`CHALLENGE_SIZE`] bytes).
    pub fn encode(&self) -> [u8; CHALLENGE_SIZE] {
        let raw = RawCookie {
            common: RawCommon::new(Kind::Challenge),
            cookie: self.cookie,
        };
        let mut out = [0; CHALLENGE_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// The server has a token and the request had none or another one (code 1).
    Unauthorized,
    /// The request was malformed: settings refused, MTU out of range, token or settings too
    /// long (code 2).
    BadRequest,
    /// The server already serves its maximum number of subscribers (code 3).
    Full,
    /// A keepalive or unsubscribe from a client the server does not know (or with a wrong
    /// cookie): subscribe again (code 4).
    UnknownSubscriber,
    /// The request's version is not one the server reads (code 5).
    UnsupportedVersion,
    /// A code this version does not know; treat it as a refusal.
    Other(u32),
}

impl RefuseReason {
    /// The reason's code on the wire.
    pub const fn code(self) -> u32 {
        match self {
            RefuseReason::Unauthorized => 1,
            RefuseReason::BadRequest => 2,
            RefuseReason::Full => 3,
            RefuseReason::UnknownSubscriber => 4,
            RefuseReason::UnsupportedVersion => 5,
            RefuseReason::Other(code) => code,
        }
    }

    /// The reason of a code.
    pub const fn from_code(code: u32) -> Self {
        match code {
            1 => RefuseReason::Unauthorized,
            2 => RefuseReason::BadRequest,
            3 => RefuseReason::Full,
            4 => RefuseReason::UnknownSubscriber,
            5 => RefuseReason::UnsupportedVersion,
            other => RefuseReason::Other(other),
        }
    }
}

/// The server's "no", with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: RefuseReason,
}

impl Refused {
    /// The reply ([`REFUSED_SIZE`] bytes).
    pub fn encode(&self) -> [u8; REFUSED_SIZE] {
        let raw = RawRefused {
            common: RawCommon::new(Kind::Refused),
            reason: self.reason.code().into(),
            reserved: 0.into(),
        };
        let mut out = [0; REFUSED_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// What the server answers to a datagram [`parse`] refused, or `None` when it must stay
/// silent. It answers only a datagram that has the magic and at least
/// [`MIN_REQUEST_SIZE`] bytes, and is a request of another version
/// ([`RefuseReason::UnsupportedVersion`]) or a malformed request of this version
/// ([`RefuseReason::BadRequest`]); garbage, short requests and anything that is not a
/// request get no answer. The answer is never larger than the datagram.
pub fn refusal_for(datagram: &[u8], error: &DatagramError) -> Option<Refused> {
    if datagram.len() < MIN_REQUEST_SIZE || datagram[..4] != MAGIC {
        return None;
    }
    let reason = match error {
        // Another version: its kinds may mean other things, so only the length matters.
        DatagramError::Version { .. } => RefuseReason::UnsupportedVersion,
        DatagramError::RequestTooLong(_)
        | DatagramError::TokenTooLong(_)
        | DatagramError::SettingsTooLong(_)
        | DatagramError::FieldsPastEnd { .. }
        | DatagramError::Mtu(_)
            if Kind::from_code(datagram[5]).is_some_and(Kind::is_request) =>
        {
            RefuseReason::BadRequest
        }
        _ => return None,
    };
    Some(Refused { reason })
}
