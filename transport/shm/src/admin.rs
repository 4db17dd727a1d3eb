//! Listing and removing rings (`camring ls`, `camring rm`).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use camring_protocol::layout::{
    Superblock, MAX_READERS, OFF_GENERATION, OFF_HEAD, OFF_HEARTBEAT, OFF_PRODUCER_PID,
    OFF_READERS, OFF_STATE, READER_ENTRY_SIZE, STATE_INIT, STATE_LIVE, STATE_REPLACED,
    STATE_STOPPED, SUPERBLOCK_SIZE,
};
use zerocopy::FromBytes;

use crate::segment::{path_of, pid_alive, producer_locked, valid_name, PREFIX, SHM_DIR};

/// What `camring ls` shows of one ring.
#[derive(Debug, Clone)]
pub struct RingInfo {
    /// Ring name.
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// Permission bits of the segment.
    pub mode: u32,
    /// The layout, if the superblock is valid.
    pub layout: Option<Superblock>,
    /// Why the superblock is not valid.
    pub error: Option<String>,
    /// Producer generation.
    pub generation: u64,
    /// Frames published.
    pub head: u64,
    /// Producer pid recorded in the ring.
    pub pid: u32,
    /// `live`, `dead`, `stopped`, `replaced` or `initializing`.
    pub state: &'static str,
    /// Nanoseconds since the last heartbeat.
    pub heartbeat_age_ns: u64,
    /// Readers registered and alive.
    pub readers: usize,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Describes ring `name` from its file, without mapping it.
pub fn inspect(name: &str) -> io::Result<RingInfo> {
    let file = File::open(path_of(name))?;
    let meta = file.metadata()?;
    let mut buf = vec![0u8; SUPERBLOCK_SIZE as usize];
    let n = file.read_at(&mut buf, 0)?;
    let mut info = RingInfo {
        name: name.to_owned(),
        size: meta.len(),
        mode: meta.mode() & 0o777,
        layout: None,
        error: None,
        generation: 0,
        head: 0,
        pid: 0,
        state: "invalid",
        heartbeat_age_ns: 0,
        readers: 0,
    };
    if n < SUPERBLOCK_SIZE as usize {
        info.error = Some(format!("truncated: {} bytes", meta.len()));
        return Ok(info);
    }
    let sb = Superblock::read_from_prefix(&buf).expect("long enough").0;
    if let Err(e) = sb.validate(meta.len()) {
        info.error = Some(e.to_string());
        return Ok(info);
    }
    if meta.blocks().saturating_mul(512) < sb.total_size {
        info.error = Some("segment is not fully allocated (sparse file)".into());
        return Ok(info);
    }
    info.layout = Some(sb);
    info.generation = u64_at(&buf, OFF_GENERATION);
    info.head = u64_at(&buf, OFF_HEAD);
    info.pid = u32_at(&buf, OFF_PRODUCER_PID);
    info.heartbeat_age_ns = crate::clock::now_ns().saturating_sub(u64_at(&buf, OFF_HEARTBEAT));
    info.state = match u32_at(&buf, OFF_STATE) {
        STATE_INIT => "initializing",
        STATE_LIVE if producer_locked(&file) => "live",
        STATE_LIVE => "dead",
        STATE_STOPPED => "stopped",
        STATE_REPLACED => "replaced",
        _ => "invalid",
    };
    info.readers = (0..MAX_READERS)
        .map(|i| u32_at(&buf, OFF_READERS + i * READER_ENTRY_SIZE))
        .filter(|&pid| pid != 0 && pid_alive(pid))
        .count();
    Ok(info)
}

/// Names of all rings in /dev/shm, sorted.
pub fn list() -> io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(SHM_DIR)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|f| f.strip_prefix(PREFIX).map(str::to_owned))
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Why a ring could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// There is no such ring.
    #[error("no such ring {0:?}")]
    NotFound(String),
    /// Its producer is alive.
    #[error("ring {name:?} has a live producer (pid {pid}); stop it (it removes its ring) or use --force")]
    Live {
        /// Ring name.
        name: String,
        /// Producer pid.
        pid: u32,
    },
    /// The OS refused.
    #[error("cannot remove ring {name:?}")]
    Io {
        /// Ring name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Removes ring `name`'s segment. Refuses while a producer holds it unless `force`.
/// Readers still attached keep their mapping until they let go.
pub fn remove(name: &str, force: bool) -> Result<(), RemoveError> {
    if !valid_name(name) {
        return Err(RemoveError::NotFound(name.to_owned()));
    }
    let path = path_of(name);
    let file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => RemoveError::NotFound(name.to_owned()),
        _ => RemoveError::Io {
            name: name.to_owned(),
            source: e,
        },
    })?;
    if !force && producer_locked(&file) {
        let mut b = [0u8; 4];
        let pid = file
            .read_exact_at(&mut b, OFF_PRODUCER_PID as u64)
            .map(|_| u32::from_le_bytes(b))
            .unwrap_or(0);
        return Err(RemoveError::Live {
            name: name.to_owned(),
            pid,
        });
    }
    std::fs::remove_file(&path).map_err(|e| RemoveError::Io {
        name: name.to_owned(),
        source: e,
    })
}
