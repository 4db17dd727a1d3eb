//! The JSON text messages that travel next to the binary multi-frames (specified for
//! client writers in `docs/protocol.md`): client to server control ([`ClientMessage`]),
//! server to client state, stats, logs and errors ([`ServerMessage`]), and the per-client
//! [`Settings`] that control messages and the connection URL change.
//!
//! Every message is one JSON object whose `type` field says what it is. Client messages
//! are strict (an unknown field or an out-of-range value is an error the server reports
//! back); server messages may grow fields, which clients ignore.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use crate::format::PixelFormat;
use crate::layout::MAX_CAMERAS;

/// JPEG quality when a client asks for none.
pub const DEFAULT_QUALITY: u8 = 80;
/// Largest frame-rate cap a client may ask for, frames per second.
pub const MAX_FPS: f64 = 1000.0;
/// Largest text message a client may send, in bytes; a longer one closes the connection
/// with [`CLOSE_MESSAGE_TOO_BIG`].
pub const MAX_CLIENT_MESSAGE: usize = 4096;
/// Most multi-frames sent to one client and not yet written out; a newer frame replaces a
/// pending one, which counts as dropped.
pub const MAX_FRAMES_IN_FLIGHT: usize = 2;
/// Clients one adapter serves at once unless configured otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 64;
/// Interval between two `stats` messages, milliseconds.
pub const STATS_INTERVAL_MS: u64 = 1000;
/// WebSocket close code for a binary message from a client (clients send only text).
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
/// WebSocket close code for a client message longer than [`MAX_CLIENT_MESSAGE`].
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Why a control message or connection parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The text is not JSON, not an object of a known `type`, or has a field that is
    /// unknown or out of range (serde's message, which names it).
    #[error("invalid control message: {0}")]
    Json(String),
    /// A connection parameter has a value out of range.
    #[error("invalid {name}: {reason}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The connection URL has a parameter this protocol does not know.
    #[error("unknown parameter {0:?}")]
    UnknownParameter(String),
}

/// JPEG quality a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// The server picks: it lowers quality, then size, while the client drops frames, and
    /// raises them while it keeps up. JSON `"auto"`.
    Auto,
    /// A fixed JPEG quality from 1 to 100. JSON: the number.
    Fixed(u8),
}

impl Default for Quality {
    fn default() -> Self {
        Quality::Fixed(DEFAULT_QUALITY)
    }
}

const QUALITY_EXPECTED: &str = "an integer from 1 to 100 or \"auto\"";

impl Quality {
    fn from_number(q: u64) -> Option<Self> {
        u8::try_from(q)
            .ok()
            .filter(|q| (1..=100).contains(q))
            .map(Quality::Fixed)
    }
}

impl FromStr for Quality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Quality::Auto);
        }
        s.parse::<u64>()
            .ok()
            .and_then(Quality::from_number)
            .ok_or_else(|| format!("{s:?} is not {QUALITY_EXPECTED}"))
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quality::Auto => f.write_str("auto"),
            Quality::Fixed(q) => write!(f, "{q}"),
        }
    }
}

impl Serialize for Quality {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Quality::Auto => s.serialize_str("auto"),
            Quality::Fixed(q) => s.serialize_u8(*q),
        }
    }
}

impl<'de> Deserialize<'de> for Quality {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Quality;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(QUALITY_EXPECTED)
            }

            fn visit_u64<E: de::Error>(self, q: u64) -> Result<Quality, E> {
                Quality::from_number(q)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(q), &self))
            }

            fn visit_i64<E: de::Error>(self, q: i64) -> Result<Quality, E> {
                u64::try_from(q)
                    .ok()
                    .and_then(Quality::from_number)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(q), &self))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quality, E> {
                if s == "auto" {
                    Ok(Quality::Auto)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Which cameras a client wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CameraSet {
    /// Every camera of the ring. JSON `"all"`.
    #[default]
    All,
    /// These camera ids: 1 to 16 distinct ids, each below 16. JSON: an array of numbers.
    Only(Vec<u32>),
}

impl CameraSet {
    /// Whether camera `id` is wanted.
    pub fn contains(&self, id: u32) -> bool {
        match self {
            CameraSet::All => true,
            CameraSet::Only(ids) => ids.contains(&id),
        }
    }

    fn check(ids: Vec<u32>) -> Result<Self, String> {
        if ids.is_empty() || ids.len() > MAX_CAMERAS {
            return Err(format!("expected 1 to {MAX_CAMERAS} camera ids or \"all\""));
        }
        if let Some(id) = ids.iter().find(|&&id| id as usize >= MAX_CAMERAS) {
            return Err(format!("camera id {id} is not below {MAX_CAMERAS}"));
        }
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(i, id)| ids[..*i].contains(id))
            .map(|(i, id)| (i, *id))
        {
            return Err(format!("camera id {id} is listed twice (at {i})"));
        }
        Ok(CameraSet::Only(ids))
    }
}

impl FromStr for CameraSet {
    type Err = String;

    /// `all`, or ids separated by commas (`0,2`).
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(CameraSet::All);
        }
        let ids = s
            .split(',')
            .map(|id| {
                id.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{id:?} is not a camera id"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        CameraSet::check(ids)
    }
}

impl Serialize for CameraSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CameraSet::All => s.serialize_str("all"),
            CameraSet::Only(ids) => ids.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for CameraSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Ids(Vec<u32>),
            Name(String),
        }
        match Repr::deserialize(d)
            .map_err(|_| de::Error::custom("expected \"all\" or an array of camera ids"))?
        {
            Repr::Name(s) if s == "all" => Ok(CameraSet::All),
            Repr::Name(s) => Err(de::Error::custom(format!(
                "expected \"all\" or an array of camera ids, found {s:?}"
            ))),
            Repr::Ids(ids) => CameraSet::check(ids).map_err(de::Error::custom),
        }
    }
}

fn check_fps(fps: f64) -> Result<f64, String> {
    if fps.is_finite() && (0.0..=MAX_FPS).contains(&fps) {
        Ok(fps)
    } else {
        Err(format!(
            "frame-rate cap {fps} is not from 0 (no cap) to {MAX_FPS}"
        ))
    }
}

fn check_skip(skip: u32) -> Result<u32, String> {
    if skip >= 1 {
        Ok(skip)
    } else {
        Err("skip factor must be at least 1 (1 sends every frame)".to_owned())
    }
}

fn de_fps<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)?
        .map(check_fps)
        .transpose()
        .map_err(de::Error::custom)
}

fn de_skip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<u32>::deserialize(d)?
        .map(check_skip)
        .transpose()
        .map_err(de::Error::custom)
}

/// What one client gets: the effective settings of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// JPEG quality.
    pub quality: Quality,
    /// Largest width sent, pixels; wider images are downscaled keeping their aspect ratio.
    /// 0 = no limit.
    pub max_width: u32,
    /// Largest height sent, pixels; 0 = no limit.
    pub max_height: u32,
    /// Frame-rate cap, frames per second: a frame is sent only if at least `1 / fps`
    /// seconds passed since the last one sent. 0 = no cap.
    pub fps: f64,
    /// Skip factor: only every `skip`-th multi-frame of the ring is considered (1 = all).
    pub skip: u32,
    /// The cameras sent.
    pub cameras: CameraSet,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            quality: Quality::default(),
            max_width: 0,
            max_height: 0,
            fps: 0.0,
            skip: 1,
            cameras: CameraSet::All,
        }
    }
}

impl Settings {
    /// Applies the fields `update` sets, keeping the others.
    pub fn apply(&mut self, update: &SettingsUpdate) {
        if let Some(q) = update.quality {
            self.quality = q;
        }
        if let Some(w) = update.max_width {
            self.max_width = w;
        }
        if let Some(h) = update.max_height {
            self.max_height = h;
        }
        if let Some(f) = update.fps {
            self.fps = f;
        }
        if let Some(s) = update.skip {
            self.skip = s;
        }
        if let Some(c) = &update.cameras {
            self.cameras = c.clone();
        }
    }
}

/// A change of settings: the fields present replace the current values, absent (or
/// `null`) ones are kept. The body of a `settings` control message, and what the
/// connection URL's parameters say.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// See [`Settings::quality`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// See [`Settings::max_width`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    /// See [`Settings::max_height`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u32>,
    /// See [`Settings::fps`]; 0 to [`MAX_FPS`].
    #[serde(
        default,
        deserialize_with = "de_fps",
        skip_serializing_if = "Option::is_none"
    )]
    pub fps: Option<f64>,
    /// See [`Settings::skip`]; at least 1.
    #[serde(
        default,
        deserialize_with = "de_skip",
        skip_serializing_if = "Option::is_none"
    )]
    pub skip: Option<u32>,
    /// See [`Settings::cameras`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cameras: Option<CameraSet>,
}

impl SettingsUpdate {
    /// Takes every field `over` sets, keeping the others (a later update over an earlier).
    pub fn overridden_by(mut self, over: &SettingsUpdate) -> SettingsUpdate {
        let o = over.clone();
        self.quality = o.quality.or(self.quality);
        self.max_width = o.max_width.or(self.max_width);
        self.max_height = o.max_height.or(self.max_height);
        self.fps = o.fps.or(self.fps);
        self.skip = o.skip.or(self.skip);
        self.cameras = o.cameras.or(self.cameras);
        self
    }
}

impl SettingsUpdate {
    /// The settings a connection URL's query asks for, from its decoded `(name, value)`
    /// pairs: `quality`, `max_width`, `max_height`, `fps`, `skip`, `cameras` (as in JSON,
    /// with `cameras` written `all` or `0,2`). `token` is skipped (the adapter checks it);
    /// any other name is an error. A repeated name: the last one counts.
    pub fn from_query<'a, I>(pairs: I) -> Result<Self, ControlError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        fn value<T: FromStr>(name: &'static str, v: &str) -> Result<T, ControlError> {
            v.parse().map_err(|_| ControlError::Parameter {
                name,
                reason: format!("{v:?} is not a number"),
            })
        }
        let bad = |name, reason| ControlError::Parameter { name, reason };
        let mut u = SettingsUpdate::default();
        for (name, v) in pairs {
            match name {
                "token" => {}
                "quality" => u.quality = Some(v.parse().map_err(|r| bad("quality", r))?),
                "max_width" => u.max_width = Some(value("max_width", v)?),
                "max_height" => u.max_height = Some(value("max_height", v)?),
                "fps" => u.fps = Some(check_fps(value("fps", v)?).map_err(|r| bad("fps", r))?),
                "skip" => u.skip = Some(check_skip(value("skip", v)?).map_err(|r| bad("skip", r))?),
                "cameras" => u.cameras = Some(v.parse().map_err(|r| bad("cameras", r))?),
                other => return Err(ControlError::UnknownParameter(other.to_owned())),
            }
        }
        Ok(u)
    }

    /// The query parameters (docs/protocol.md, 2.2) that say what this update sets, in
    /// the protocol's order, values unencoded: what [`SettingsUpdate::from_query`] reads
    /// back.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(q) = self.quality {
            pairs.push(("quality", q.to_string()));
        }
        if let Some(w) = self.max_width {
            pairs.push(("max_width", w.to_string()));
        }
        if let Some(h) = self.max_height {
            pairs.push(("max_height", h.to_string()));
        }
        if let Some(f) = self.fps {
            pairs.push(("fps", f.to_string()));
        }
        if let Some(s) = self.skip {
            pairs.push(("skip", s.to_string()));
        }
        if let Some(c) = &self.cameras {
            let v = match c {
                CameraSet::All => "all".to_owned(),
                CameraSet::Only(ids) => {
                    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                }
            };
            pairs.push(("cameras", v));
        }
        pairs
    }
}

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Change some settings: `{"type":"settings","quality":"auto","fps":10}`.
    Settings(SettingsUpdate),
    /// Stop sending multi-frames (stats keep coming): `{"type":"pause"}`.
    Pause,
    /// Send multi-frames again: `{"type":"resume"}`.
    Resume,
}

impl ClientMessage {
    /// Parses and validates a client's text message.
    pub fn from_json(text: &str) -> Result<Self, ControlError> {
        serde_json::from_str(text).map_err(|e| ControlError::Json(e.to_string()))
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("control messages always serialize")
    }
}

/// What the server knows of the ring's producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProducerStatus {
    /// No ring of that name yet, or the adapter is re-attaching to a new one.
    Waiting,
    /// A producer publishes.
    Live,
    /// The producer stopped cleanly.
    Stopped,
    /// The producer died without stopping.
    Dead,
}

/// One camera of the ring, as its producer declared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraDescription {
    /// The camera's id (the `camera_id` of its entries).
    pub id: u32,
    /// Nominal width in the ring, pixels.
    pub width: u32,
    /// Nominal height in the ring, pixels.
    pub height: u32,
    /// Pixel format in the ring, by name (`"jpeg"`, `"rgb8"`, ...).
    #[serde(with = "format_name")]
    pub format: PixelFormat,
}

/// `state`: sent when a client connects, after every valid control message, and when the
/// producer's status changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The binary message version the server sends ([`crate::wire::VERSION`]).
    pub version: u32,
    /// The ring's name.
    pub ring: String,
    /// The producer's status.
    pub producer: ProducerStatus,
    /// Every camera of the ring (whatever this client asked for).
    pub cameras: Vec<CameraDescription>,
    /// This client's effective settings.
    pub settings: Settings,
    /// Whether this client paused.
    pub paused: bool,
}

/// Two latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One connection's counters.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ConnectionStats {
    /// Multi-frames sent per second over the last interval.
    pub fps: f64,
    /// Multi-frames sent since the connection opened.
    pub sent: u64,
    /// Multi-frames dropped for this client since it connected: replaced by a newer one
    /// before they could be sent (frames left out by `skip`, `fps` or pause do not count).
    pub dropped: u64,
    /// Bytes of binary messages sent since the connection opened.
    pub bytes: u64,
    /// Capture to send, as the server measures it, over the last interval (the oldest
    /// capture time of a message's cameras).
    pub latency_us: Percentiles,
    /// The JPEG quality the server currently encodes at for this client (the one it chose
    /// under `"auto"`); `null` when it encodes nothing for it.
    pub quality: Option<u8>,
}

/// One camera's counters for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CameraStats {
    /// The camera's id.
    pub id: u32,
    /// Images of this camera sent per second over the last interval (missing ones not
    /// counted).
    pub fps: f64,
    /// Images sent since the connection opened.
    pub sent: u64,
    /// Images dropped with their multi-frame since the connection opened.
    pub dropped: u64,
    /// Payload bytes sent since the connection opened.
    pub bytes: u64,
    /// Capture to send over the last interval.
    pub latency_us: Percentiles,
}

/// `stats`: about once every [`STATS_INTERVAL_MS`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// The server's clock when it wrote this, ms since the Unix epoch.
    pub time_ms: u64,
    /// The connection as a whole.
    pub connection: ConnectionStats,
    /// Each camera this client gets.
    pub cameras: Vec<CameraStats>,
}

/// Severity of a `log` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Something worth knowing.
    Info,
    /// Something went wrong but the stream goes on.
    Warn,
    /// Something failed.
    Error,
}

/// `log`: a line from the server's log that concerns this client or the ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// `error`: a control message was refused; the connection stays open and nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// What was wrong.
    pub message: String,
}

/// A text message from the server to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The stream's state and this client's settings.
    State(State),
    /// Counters, about once a second.
    Stats(Stats),
    /// A log line.
    Log(LogEntry),
    /// A refused control message.
    Error(ErrorReport),
}

impl ServerMessage {
    /// The `error` message for a refused control message.
    pub fn error(error: &ControlError) -> Self {
        ServerMessage::Error(ErrorReport {
            message: error.to_string(),
        })
    }

    /// Parses a server's text message. Unknown fields are ignored; an unknown `type` is
    /// an error a client should skip.
    pub fn from_json(text: &str) -> Result<Self, ControlError> {
        serde_json::from_str(text).map_err(|e| ControlError::Json(e.to_string()))
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

mod format_name {
    use serde::{de, Deserialize, Deserializer, Serializer};

    use crate::format::PixelFormat;

    pub fn serialize<S: Serializer>(f: &PixelFormat, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(f.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PixelFormat, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(de::Error::custom)
    }
}

/// Version of the QUIC framing (`hello.version`, docs/protocol.md 10.9).
pub const QUIC_VERSION: u32 = 1;

/// The first line of a QUIC connection's control stream, from the client (docs/protocol.md,
/// 10.9). Not a [`ClientMessage`]: it is sent once, before any of those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "hello")]
pub struct Hello {
    /// [`QUIC_VERSION`].
    pub version: u32,
    /// The server's token, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Initial settings, as a `settings` message without its `type` (same fields, ranges and
    /// strictness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsUpdate>,
}

impl Hello {
    /// Parses a hello line; the message says what is wrong.
    pub fn from_json(line: &str) -> Result<Hello, String> {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("the first control line must be a hello: {e}"))?;
        if value.get("type").and_then(|t| t.as_str()) != Some("hello") {
            return Err("the first control line must be a hello (`\"type\": \"hello\"`)".into());
        }
        let hello: Hello = serde_json::from_value(value).map_err(|e| format!("bad hello: {e}"))?;
        if hello.version != QUIC_VERSION {
            return Err(format!(
                "unsupported version {} (this server speaks {QUIC_VERSION})",
                hello.version
            ));
        }
        Ok(hello)
    }

    /// The line to send (JSON and a newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a hello serializes");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn client(v: Value) -> Result<ClientMessage, ControlError> {
        ClientMessage::from_json(&v.to_string())
    }

    fn settings(v: Value) -> Result<SettingsUpdate, ControlError> {
        let mut v = v;
        v["type"] = json!("settings");
        match client(v)? {
            ClientMessage::Settings(u) => Ok(u),
            other => panic!("not settings: {other:?}"),
        }
    }

    #[test]
    fn quality() {
        assert_eq!(
            settings(json!({"quality": "auto"})).unwrap().quality,
            Some(Quality::Auto)
        );
        for q in [1u8, 55, 100] {
            assert_eq!(
                settings(json!({ "quality": q })).unwrap().quality,
                Some(Quality::Fixed(q))
            );
            assert_eq!(q.to_string().parse::<Quality>(), Ok(Quality::Fixed(q)));
        }
        for bad in [
            json!(0),
            json!(101),
            json!(-1),
            json!(80.5),
            json!("high"),
            json!([80]),
        ] {
            let err = settings(json!({ "quality": bad })).unwrap_err().to_string();
            assert!(err.contains("1 to 100"), "{bad}: {err}");
        }
        for bad in ["0", "101", "", "Auto", "8O"] {
            assert!(bad.parse::<Quality>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_value(Quality::Auto).unwrap(), json!("auto"));
        assert_eq!(serde_json::to_value(Quality::Fixed(7)).unwrap(), json!(7));
        assert_eq!(Quality::default(), Quality::Fixed(DEFAULT_QUALITY));
    }

    #[test]
    fn cameras() {
        assert_eq!(
            settings(json!({"cameras": "all"})).unwrap().cameras,
            Some(CameraSet::All)
        );
        assert_eq!(
            settings(json!({"cameras": [2, 0]})).unwrap().cameras,
            Some(CameraSet::Only(vec![2, 0]))
        );
        let seventeen: Vec<u32> = (0..17).collect();
        for bad in [
            json!([]),
            json!([16]),
            json!([1, 1]),
            json!(seventeen),
            json!("some"),
            json!([-1]),
            json!(0),
        ] {
            assert!(settings(json!({ "cameras": bad })).is_err(), "{bad}");
        }
        assert_eq!("0, 2".parse(), Ok(CameraSet::Only(vec![0, 2])));
        assert_eq!("all".parse(), Ok(CameraSet::All));
        for bad in ["", "0,,2", "x", "1,1", "16"] {
            assert!(bad.parse::<CameraSet>().is_err(), "{bad}");
        }
        assert!(CameraSet::All.contains(9));
        assert!(CameraSet::Only(vec![0, 2]).contains(2));
        assert!(!CameraSet::Only(vec![0, 2]).contains(1));
    }

    #[test]
    fn settings_update_and_apply() {
        let u = settings(json!({
            "quality": 50, "max_width": 640, "max_height": null, "fps": 7.5, "skip": 3
        }))
        .unwrap();
        assert_eq!(
            u,
            SettingsUpdate {
                quality: Some(Quality::Fixed(50)),
                max_width: Some(640),
                max_height: None,
                fps: Some(7.5),
                skip: Some(3),
                cameras: None,
            }
        );
        let mut s = Settings {
            max_height: 480,
            cameras: CameraSet::Only(vec![1]),
            ..Settings::default()
        };
        s.apply(&u);
        assert_eq!(
            s,
            Settings {
                quality: Quality::Fixed(50),
                max_width: 640,
                max_height: 480,
                fps: 7.5,
                skip: 3,
                cameras: CameraSet::Only(vec![1]),
            }
        );
        s.apply(&SettingsUpdate::default());
        assert_eq!(s.skip, 3, "an empty update changes nothing");
        assert_eq!(settings(json!({})).unwrap(), SettingsUpdate::default());

        for bad in [
            json!({"fps": -1}),
            json!({"fps": 1001}),
            json!({"skip": 0}),
            json!({"max_width": -5}),
            json!({"max_width": 1.5}),
            json!({"maxwidth": 640}),
            json!({"quality": 80, "extra": true}),
        ] {
            let err = settings(bad.clone()).unwrap_err();
            assert!(matches!(err, ControlError::Json(_)), "{bad}: {err:?}");
        }
        let err = settings(json!({"skip": 0})).unwrap_err().to_string();
        assert!(err.contains("skip factor"), "{err}");
        let err = settings(json!({"maxwidth": 1})).unwrap_err().to_string();
        assert!(err.contains("maxwidth"), "{err}");
    }

    #[test]
    fn client_messages() {
        assert_eq!(client(json!({"type": "pause"})), Ok(ClientMessage::Pause));
        assert_eq!(client(json!({"type": "resume"})), Ok(ClientMessage::Resume));
        for bad in [
            "",
            "{",
            "[]",
            "null",
            "{}",
            r#"{"type":"jump"}"#,
            r#"{"type":7}"#,
            r#"{"quality":80}"#,
        ] {
            assert!(ClientMessage::from_json(bad).is_err(), "{bad}");
        }
        let m = ClientMessage::Settings(SettingsUpdate {
            quality: Some(Quality::Auto),
            cameras: Some(CameraSet::Only(vec![0, 2])),
            ..Default::default()
        });
        assert_eq!(
            serde_json::from_str::<Value>(&m.to_json()).unwrap(),
            json!({"type": "settings", "quality": "auto", "cameras": [0, 2]})
        );
        assert_eq!(ClientMessage::from_json(&m.to_json()), Ok(m));
        assert_eq!(ClientMessage::Pause.to_json(), r#"{"type":"pause"}"#);
    }

    #[test]
    fn query_parameters() {
        let q = [
            ("token", "secret"),
            ("quality", "auto"),
            ("max_width", "640"),
            ("max_height", "480"),
            ("fps", "12.5"),
            ("skip", "2"),
            ("cameras", "0,2"),
        ];
        let u = SettingsUpdate::from_query(q).unwrap();
        let mut s = Settings::default();
        s.apply(&u);
        assert_eq!(
            s,
            Settings {
                quality: Quality::Auto,
                max_width: 640,
                max_height: 480,
                fps: 12.5,
                skip: 2,
                cameras: CameraSet::Only(vec![0, 2]),
            }
        );
        assert_eq!(
            SettingsUpdate::from_query([]).unwrap(),
            SettingsUpdate::default()
        );
        assert_eq!(
            SettingsUpdate::from_query([("skip", "2"), ("skip", "3")])
                .unwrap()
                .skip,
            Some(3)
        );
        assert_eq!(
            SettingsUpdate::from_query([("size", "1")]),
            Err(ControlError::UnknownParameter("size".into()))
        );
        for (name, v) in [
            ("quality", "0"),
            ("max_width", "-1"),
            ("max_height", "wide"),
            ("fps", "inf"),
            ("fps", "NaN"),
            ("skip", "0"),
            ("cameras", ""),
        ] {
            match SettingsUpdate::from_query([(name, v)]) {
                Err(ControlError::Parameter { name: n, .. }) => assert_eq!(n, name),
                other => panic!("{name}={v}: {other:?}"),
            }
        }
    }

    fn sample_state() -> ServerMessage {
        ServerMessage::State(State {
            version: crate::wire::VERSION,
            ring: "cams".into(),
            producer: ProducerStatus::Live,
            cameras: vec![CameraDescription {
                id: 0,
                width: 1280,
                height: 720,
                format: PixelFormat::Jpeg,
            }],
            settings: Settings::default(),
            paused: false,
        })
    }

    #[test]
    fn server_messages_round_trip() {
        let stats = ServerMessage::Stats(Stats {
            time_ms: 1_700_000_000_123,
            connection: ConnectionStats {
                fps: 29.9,
                sent: 100,
                dropped: 3,
                bytes: 123_456,
                latency_us: Percentiles {
                    p50: 4100.0,
                    p99: 9800.0,
                },
                quality: Some(80),
            },
            cameras: vec![CameraStats {
                id: 0,
                fps: 29.9,
                sent: 100,
                dropped: 3,
                bytes: 123_000,
                latency_us: Percentiles::default(),
            }],
        });
        let log = ServerMessage::Log(LogEntry {
            level: LogLevel::Warn,
            message: "producer restarted".into(),
        });
        let error = ServerMessage::error(&ControlError::UnknownParameter("x".into()));
        for m in [sample_state(), stats, log, error] {
            assert_eq!(ServerMessage::from_json(&m.to_json()), Ok(m));
        }
        let v: Value = serde_json::from_str(&sample_state().to_json()).unwrap();
        assert_eq!(v["type"], "state");
        assert_eq!(v["cameras"][0]["format"], "jpeg");
        assert_eq!(v["settings"]["quality"], 80);
        assert_eq!(v["settings"]["cameras"], "all");
    }

    #[test]
    fn server_messages_ignore_unknown_fields() {
        let mut v: Value = serde_json::from_str(&sample_state().to_json()).unwrap();
        v["future"] = json!({"x": 1});
        v["cameras"][0]["exposure"] = json!(3);
        assert_eq!(ServerMessage::from_json(&v.to_string()), Ok(sample_state()));
        assert!(ServerMessage::from_json(r#"{"type":"future"}"#).is_err());
        let mut v: Value = serde_json::from_str(&sample_state().to_json()).unwrap();
        v["cameras"][0]["format"] = json!("h264");
        assert!(ServerMessage::from_json(&v.to_string()).is_err());
    }

    /// `value` with every number as an f64, so `0` and `0.0` compare equal.
    fn numbers_as_f64(value: Value) -> Value {
        match value {
            Value::Number(n) => json!(n.as_f64().unwrap()),
            Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
            Value::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
            }
            other => other,
        }
    }

    /// Every `json` block of docs/protocol.md is a message of this module, with exactly
    /// the fields the types have.
    #[test]
    fn doc_examples_are_valid_messages() {
        let doc = include_str!("../../docs/protocol.md");
        let blocks: Vec<&str> = doc
            .split("```json\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .collect();
        assert!(blocks.len() >= 8, "only {} json blocks", blocks.len());
        let (mut from_client, mut from_server) = (0, 0);
        for block in blocks {
            let written: Value =
                serde_json::from_str(block).unwrap_or_else(|e| panic!("not JSON ({e}):\n{block}"));
            let again = if let Ok(m) = ClientMessage::from_json(block) {
                from_client += 1;
                m.to_json()
            } else if let Ok(h) = Hello::from_json(block) {
                from_client += 1;
                h.to_line().trim_end().to_string()
            } else {
                let m = ServerMessage::from_json(block)
                    .unwrap_or_else(|e| panic!("not a message ({e}):\n{block}"));
                from_server += 1;
                m.to_json()
            };
            let again: Value = serde_json::from_str(&again).unwrap();
            assert_eq!(
                numbers_as_f64(again),
                numbers_as_f64(written),
                "fields differ:\n{block}"
            );
        }
        assert!(from_client >= 3 && from_server >= 4);
    }

    #[test]
    fn a_settings_query_reads_back_as_it_was_written() {
        let updates = [
            SettingsUpdate::default(),
            SettingsUpdate {
                quality: Some(Quality::Auto),
                max_width: Some(1920),
                max_height: Some(1),
                fps: Some(0.25),
                skip: Some(7),
                cameras: Some(CameraSet::Only(vec![15, 3, 0])),
            },
            SettingsUpdate {
                quality: Some(Quality::Fixed(55)),
                fps: Some(0.0),
                cameras: Some(CameraSet::All),
                ..SettingsUpdate::default()
            },
        ];
        for u in updates {
            let pairs = u.to_query();
            let back = SettingsUpdate::from_query(pairs.iter().map(|(n, v)| (*n, v.as_str())));
            assert_eq!(back.as_ref(), Ok(&u), "{pairs:?}");
        }
    }
}
