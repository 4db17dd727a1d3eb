//! Hostile segments: files under `/dev/shm/camring-*` that a reader (or a producer) finds
//! but that are not valid rings, or valid rings whose slots were tampered with.
//!
//! Every case must give a typed error, never a panic, never an out-of-bounds access, and
//! never a loop that does not end. The crafted segments start from a real one: a `Writer`
//! publishes a few frames, its file is copied while it is live, and the copy is patched
//! and written back under another name. Such a copy looks like a ring whose producer died
//! (state LIVE, nobody holds the lock), which also lets these tests exercise takeover.
//!
//! Every test removes what it creates (`Cleanup`), and uses names unique to the process
//! and the test, because tests run in parallel.
#![cfg(not(loom))]

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use camring_protocol::layout::{
    CameraEntry, CameraLayout, LayoutError, SlotError, SlotHeader, Superblock, MAX_FRAME,
    MAX_READERS, MAX_SLOTS, OFF_GENERATION, OFF_HEAD, OFF_READERS, OFF_STATE, PAGE,
    READER_ENTRY_SIZE, SLOT_HEADER_SIZE, SLOT_OFF_CAMERAS, SLOT_OFF_HEADER, SLOT_OFF_SEQ,
    STATE_INIT, STATE_LIVE, SUPERBLOCK_SIZE,
};
use camring_protocol::PixelFormat;
use camring_shm::seqlock::{complete, writing};
use camring_shm::{
    admin, path_of, CreateError, Follow, OpenError, Origin, OwnedFrame, ProducerState, ReadError,
    ReadMode, Reader, RingConfig, Writer,
};
use zerocopy::{FromBytes, IntoBytes};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
const STRIDE: u32 = WIDTH * 3;
const LEN: usize = (STRIDE * HEIGHT) as usize;
const CAMERAS: u32 = 2;
const SLOTS: u32 = 4;
/// Frames published into the source ring: slot 0 holds frame 4, slots 1-3 frames 1-3.
const FRAMES: u64 = 5;
const SHORT: Duration = Duration::from_millis(50);

/// Removes the segments (files, symlinks, FIFOs or directories) a test created, even when
/// the test panics.
struct Cleanup(Vec<PathBuf>);

impl Cleanup {
    fn new() -> Self {
        Cleanup(Vec::new())
    }

    /// A ring name unique to this process and `test`, registered for removal.
    fn name(&mut self, test: &str) -> String {
        let name = format!("t-hostile-{}-{test}", std::process::id());
        let path = path_of(&name);
        remove_any(&path);
        self.0.push(path);
        name
    }
}

fn remove_any(path: &PathBuf) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir(path);
        }
        Ok(_) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {}
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            remove_any(p);
        }
    }
}

fn camera_layout() -> CameraLayout {
    CameraLayout {
        width: WIDTH,
        height: HEIGHT,
        format: PixelFormat::Rgb8.code(),
        max_len: LEN as u32,
    }
}

fn config() -> RingConfig {
    RingConfig::new(SLOTS, vec![camera_layout(); CAMERAS as usize], 30_000)
}

fn entry(camera: u32) -> CameraEntry {
    CameraEntry {
        camera_id: camera,
        format: PixelFormat::Rgb8.code(),
        width: WIDTH,
        height: HEIGHT,
        stride: STRIDE,
        ..Default::default()
    }
}

/// The byte every payload byte of `camera` in `frame` has.
fn fill_byte(frame: u64, camera: u32) -> u8 {
    (frame as u8) ^ ((camera as u8) << 7)
}

/// Publishes `count` frames whose payloads are uniform `fill_byte`s.
fn publish(w: &mut Writer, count: u64) {
    for _ in 0..count {
        let mut loan = w.loan();
        let n = loan.frame();
        for cam in 0..CAMERAS {
            loan.push_camera(entry(cam), LEN)
                .unwrap()
                .fill(fill_byte(n, cam));
        }
        loan.commit(n * 1000, 0).unwrap();
    }
}

/// Checks a frame's contents against what `publish` wrote.
fn check_frame(f: &OwnedFrame, n: u64) {
    assert_eq!(f.header.frame, n);
    assert_eq!(f.cameras.len(), CAMERAS as usize);
    for (cam, p) in f.payloads.iter().enumerate() {
        assert_eq!(p.len(), LEN);
        let want = fill_byte(n, cam as u32);
        assert!(p.iter().all(|&b| b == want), "frame {n} camera {cam}");
    }
}

/// The bytes of a live ring that published `FRAMES` frames, copied while the writer was
/// alive (so its state is LIVE). The source ring itself is gone afterwards.
fn live_image(cleanup: &mut Cleanup, test: &str) -> Image {
    let src = cleanup.name(&format!("{test}-src"));
    let mut w = Writer::create(&src, &config()).unwrap();
    publish(&mut w, FRAMES);
    let bytes = fs::read(path_of(&src)).unwrap();
    drop(w);
    assert!(
        !path_of(&src).exists(),
        "dropping the writer removes the ring"
    );
    let mut img = Image { bytes };
    assert_eq!(img.u32(OFF_STATE), STATE_LIVE);
    assert_eq!(img.u64(OFF_HEAD), FRAMES);
    img.set_u32(OFF_STATE, STATE_LIVE);
    img
}

/// A segment's bytes, to patch.
struct Image {
    bytes: Vec<u8>,
}

impl Image {
    fn sb(&self) -> Superblock {
        Superblock::read_from_bytes(&self.bytes[..size_of::<Superblock>()]).unwrap()
    }

    fn set_sb(&mut self, sb: &Superblock) {
        self.bytes[..size_of::<Superblock>()].copy_from_slice(sb.as_bytes());
    }

    fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().unwrap())
    }

    fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.bytes[off..off + 8].try_into().unwrap())
    }

    fn set_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn set_u64(&mut self, off: usize, v: u64) {
        self.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Offset of the slot that holds `frame`.
    fn slot(&self, frame: u64) -> usize {
        let sb = self.sb();
        sb.slot_offset(frame % u64::from(sb.slot_count)) as usize
    }

    fn header(&self, frame: u64) -> SlotHeader {
        let off = self.slot(frame) + SLOT_OFF_HEADER;
        SlotHeader::read_from_bytes(&self.bytes[off..off + size_of::<SlotHeader>()]).unwrap()
    }

    fn set_header(&mut self, frame: u64, h: &SlotHeader) {
        let off = self.slot(frame) + SLOT_OFF_HEADER;
        self.bytes[off..off + size_of::<SlotHeader>()].copy_from_slice(h.as_bytes());
    }

    fn entry(&self, frame: u64, i: usize) -> CameraEntry {
        let off = self.slot(frame) + SLOT_OFF_CAMERAS + i * size_of::<CameraEntry>();
        CameraEntry::read_from_bytes(&self.bytes[off..off + size_of::<CameraEntry>()]).unwrap()
    }

    fn set_entry(&mut self, frame: u64, i: usize, e: &CameraEntry) {
        let off = self.slot(frame) + SLOT_OFF_CAMERAS + i * size_of::<CameraEntry>();
        self.bytes[off..off + size_of::<CameraEntry>()].copy_from_slice(e.as_bytes());
    }

    fn set_seq(&mut self, frame: u64, seq: u64) {
        let off = self.slot(frame) + SLOT_OFF_SEQ;
        self.set_u64(off, seq);
    }

    /// Writes the image as ring `name` (owner-only, like a real ring).
    fn write(&self, name: &str) {
        write_file(name, &self.bytes);
    }
}

fn write_file(name: &str, bytes: &[u8]) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path_of(name))
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// Changes a `u64` of ring `name`'s file in place, as another process would: readers that
/// have it mapped see the change.
fn poke_u64(name: &str, off: usize, v: u64) {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path_of(name))
        .unwrap();
    f.write_all_at(&v.to_le_bytes(), off as u64).unwrap();
}

/// A valid superblock (no slots written) of the test layout.
fn fresh_image() -> Image {
    let sb = Superblock::new(
        SLOTS,
        camring_protocol::layout::slot_size_for(&[camera_layout(); CAMERAS as usize]),
        30_000,
        &[camera_layout(); CAMERAS as usize],
    );
    let mut img = Image {
        bytes: vec![0; sb.total_size as usize],
    };
    img.set_sb(&sb);
    img.set_u32(OFF_STATE, STATE_LIVE);
    img
}

fn open_err(name: &str) -> OpenError {
    match Reader::open(name) {
        Ok(r) => panic!("opened a hostile ring: {:?}", r.layout()),
        Err(e) => e,
    }
}

fn layout_err(name: &str) -> LayoutError {
    match open_err(name) {
        OpenError::Layout { source, .. } => source,
        e => panic!("expected a layout error, got {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Superblock-level hostility
// ---------------------------------------------------------------------------------------

#[test]
fn bad_magic_is_refused() {
    let mut c = Cleanup::new();
    let name = c.name("bad-magic");
    let mut img = fresh_image();
    let mut sb = img.sb();
    sb.magic = *b"CAMRINX\0";
    img.set_sb(&sb);
    img.write(&name);
    assert_eq!(layout_err(&name), LayoutError::BadMagic);

    // All zeros, all ones.
    write_file(&name, &vec![0u8; img.bytes.len()]);
    assert_eq!(layout_err(&name), LayoutError::BadMagic);
    write_file(&name, &vec![0xffu8; img.bytes.len()]);
    assert_eq!(layout_err(&name), LayoutError::BadMagic);

    // `camring ls` reports it without failing.
    let info = admin::inspect(&name).unwrap();
    assert!(info.layout.is_none());
    assert!(info.error.is_some());
}

#[test]
fn wrong_version_is_refused() {
    let mut c = Cleanup::new();
    let name = c.name("version");
    for version in [0, 2, u32::MAX] {
        let mut img = fresh_image();
        let mut sb = img.sb();
        sb.version = version;
        img.set_sb(&sb);
        img.write(&name);
        assert_eq!(
            layout_err(&name),
            LayoutError::Version { found: version },
            "version {version}"
        );
    }
}

#[test]
fn file_smaller_than_superblock_is_truncated() {
    let mut c = Cleanup::new();
    let name = c.name("short");
    let img = fresh_image();
    for len in [0usize, 1, 8, 100, 543, 4095] {
        write_file(&name, &img.bytes[..len]);
        assert_eq!(
            layout_err(&name),
            LayoutError::Truncated {
                expected: SUPERBLOCK_SIZE,
                actual: len as u64
            },
            "{len} bytes"
        );
        let info = admin::inspect(&name).unwrap();
        assert!(info.error.is_some());
    }
}

#[test]
fn file_smaller_than_total_size_is_truncated() {
    let mut c = Cleanup::new();
    let name = c.name("short-total");
    let img = fresh_image();
    let total = img.sb().total_size;
    for len in [
        SUPERBLOCK_SIZE,
        SUPERBLOCK_SIZE + 1,
        total - PAGE,
        total - 1,
    ] {
        write_file(&name, &img.bytes[..len as usize]);
        assert_eq!(
            layout_err(&name),
            LayoutError::Truncated {
                expected: total,
                actual: len
            },
            "{len} bytes"
        );
    }
    // A file larger than the layout is fine (only the layout's part is used).
    let mut big = img.bytes.clone();
    big.resize(big.len() + 3 * PAGE as usize + 17, 0xAA);
    write_file(&name, &big);
    let mut r = Reader::open(&name).unwrap();
    assert!(r.try_read(ReadMode::Latest).unwrap().is_none());
}

#[test]
fn absurd_layouts_are_invalid() {
    let mut c = Cleanup::new();
    let name = c.name("absurd");
    type Patch = fn(&mut Superblock);
    let cases: &[(&str, Patch)] = &[
        ("slot_count 0", |sb| sb.slot_count = 0),
        ("slot_count MAX_SLOTS + 1", |sb| {
            sb.slot_count = MAX_SLOTS + 1
        }),
        ("slot_count u32::MAX", |sb| sb.slot_count = u32::MAX),
        ("slot_size 0", |sb| sb.slot_size = 0),
        ("slot_size == header", |sb| sb.slot_size = SLOT_HEADER_SIZE),
        ("slot_size not page multiple", |sb| sb.slot_size += 1),
        ("slot_size overflows", |sb| {
            sb.slot_size = u64::MAX - (u64::MAX % PAGE)
        }),
        ("slot_size half of u64", |sb| sb.slot_size = 1 << 63),
        ("segment over 1 TiB", |sb| {
            sb.slot_count = MAX_SLOTS;
            sb.slot_size = 1 << 30;
            sb.total_size = SUPERBLOCK_SIZE + (u64::from(MAX_SLOTS) << 30);
        }),
        ("overflowing size with matching total", |sb| {
            sb.slot_count = MAX_SLOTS;
            sb.slot_size = (u64::MAX / u64::from(MAX_SLOTS)) & !(PAGE - 1);
            sb.total_size = sb
                .slot_size
                .wrapping_mul(u64::from(MAX_SLOTS))
                .wrapping_add(SUPERBLOCK_SIZE);
        }),
        ("camera_count 0", |sb| sb.camera_count = 0),
        ("camera_count 17", |sb| sb.camera_count = 17),
        ("camera_count u32::MAX", |sb| sb.camera_count = u32::MAX),
        ("superblock_size 0", |sb| sb.superblock_size = 0),
        ("superblock_size huge", |sb| sb.superblock_size = u32::MAX),
        ("slots_offset 0", |sb| sb.slots_offset = 0),
        ("slots_offset past end", |sb| sb.slots_offset = u64::MAX),
        ("total_size 0", |sb| sb.total_size = 0),
        ("total_size + 1 page", |sb| sb.total_size += PAGE),
        ("total_size u64::MAX", |sb| sb.total_size = u64::MAX),
    ];
    for (what, patch) in cases {
        let mut img = fresh_image();
        let mut sb = img.sb();
        patch(&mut sb);
        img.set_sb(&sb);
        img.write(&name);
        let err = layout_err(&name);
        assert!(
            matches!(err, LayoutError::Invalid(_)),
            "{what}: expected Invalid, got {err:?}"
        );
        let info = admin::inspect(&name).unwrap();
        assert!(info.layout.is_none() && info.error.is_some(), "{what}");
    }
}

#[test]
fn initializing_ring_is_transient() {
    let mut c = Cleanup::new();
    let name = c.name("init");
    let mut img = fresh_image();
    img.set_u32(OFF_STATE, STATE_INIT);
    img.write(&name);
    let err = open_err(&name);
    assert!(matches!(err, OpenError::Initializing(_)), "{err:?}");
    assert!(err.is_transient());
    // open_wait gives up after its timeout instead of hanging.
    let err = Reader::open_wait(&name, SHORT).unwrap_err();
    assert!(matches!(err, OpenError::Initializing(_)), "{err:?}");
    assert_eq!(admin::inspect(&name).unwrap().state, "initializing");
}

#[test]
fn unknown_state_value_is_not_fatal() {
    let mut c = Cleanup::new();
    let name = c.name("state-77");
    let mut img = live_image(&mut c, "state-77");
    img.set_u32(OFF_STATE, 77);
    img.write(&name);
    let mut r = Reader::open(&name).unwrap();
    // Nobody holds the producer lock.
    assert!(matches!(r.producer(), ProducerState::Dead { .. }));
    let f = r.try_read(ReadMode::Latest).unwrap().unwrap();
    assert_eq!(f.number(), FRAMES - 1);
    f.validate().unwrap();
    assert_eq!(admin::inspect(&name).unwrap().state, "invalid");
}

#[test]
fn missing_ring_is_not_found() {
    let mut c = Cleanup::new();
    let name = c.name("missing");
    let err = open_err(&name);
    assert!(matches!(err, OpenError::NotFound(_)), "{err:?}");
    assert!(err.is_transient());
    let err = Reader::open_wait(&name, SHORT).unwrap_err();
    assert!(matches!(err, OpenError::NotFound(_)), "{err:?}");
    assert!(admin::inspect(&name).is_err());
    assert!(matches!(
        admin::remove(&name, false),
        Err(admin::RemoveError::NotFound(_))
    ));
}

#[test]
fn invalid_names_are_refused() {
    let long = "x".repeat(201);
    for name in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../../etc/passwd",
        "a b",
        "tab\t",
        "nul\0",
        "ümlaut",
        "semi;colon",
        long.as_str(),
    ] {
        assert!(!camring_shm::valid_name(name), "{name:?}");
        let err = open_err(name);
        assert!(
            matches!(err, OpenError::InvalidName(_)),
            "{name:?}: {err:?}"
        );
        assert!(!err.is_transient());
        let err = Writer::create(name, &config()).unwrap_err();
        assert!(
            matches!(err, CreateError::InvalidName(_)),
            "{name:?}: {err:?}"
        );
        assert!(admin::remove(name, true).is_err());
    }
    // The limits themselves are fine.
    assert!(camring_shm::valid_name(&"x".repeat(200)));
    assert!(camring_shm::valid_name("a.b_c-D9"));
}

#[test]
fn symlink_is_not_followed() {
    let mut c = Cleanup::new();
    let target = c.name("symlink-target");
    let link = c.name("symlink");
    let img = live_image(&mut c, "symlink");
    img.write(&target);
    std::os::unix::fs::symlink(path_of(&target), path_of(&link)).unwrap();

    let err = open_err(&link);
    assert!(matches!(err, OpenError::Io { .. }), "{err:?}");
    // A producer refuses it too, and leaves both the link and its target alone.
    let err = Writer::create(&link, &config()).unwrap_err();
    assert!(matches!(err, CreateError::Io { .. }), "{err:?}");
    assert!(fs::symlink_metadata(path_of(&link))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(path_of(&target)).unwrap(), img.bytes);
}

#[test]
fn fifo_and_directory_are_not_rings() {
    let mut c = Cleanup::new();
    let fifo = c.name("fifo");
    let dir = c.name("dir");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path_of(&fifo),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    fs::create_dir(path_of(&dir)).unwrap();

    let err = open_err(&fifo);
    assert!(
        matches!(
            err,
            OpenError::Layout {
                source: LayoutError::Truncated { .. },
                ..
            } | OpenError::Io { .. }
        ),
        "{err:?}"
    );
    let err = open_err(&dir);
    assert!(matches!(err, OpenError::Io { .. }), "{err:?}");
    let err = Writer::create(&dir, &config()).unwrap_err();
    assert!(matches!(err, CreateError::Io { .. }), "{err:?}");
    assert!(path_of(&dir).is_dir());
}

/// Bytes of tmpfs allocated to ring `name`'s file.
fn allocated(name: &str) -> u64 {
    fs::metadata(path_of(name)).unwrap().blocks() * 512
}

/// A sparse file of `len` bytes (nothing allocated) starting with `head`.
fn write_sparse(name: &str, head: &[u8], len: u64) {
    let f = fs::File::create(path_of(name)).unwrap();
    f.set_len(len).unwrap();
    f.write_all_at(head, 0).unwrap();
}

/// The size of the file is hostile input too: opening (or inspecting, or replacing) a
/// huge sparse garbage file must not make the kernel allocate it. Sizes are kept small so
/// that a regression cannot fill a small /dev/shm.
#[test]
fn sparse_garbage_is_not_allocated() {
    let mut c = Cleanup::new();
    let name = c.name("sparse");
    let len = 8 << 20;
    write_sparse(&name, b"NOTARING", len);
    assert_eq!(layout_err(&name), LayoutError::BadMagic);
    assert!(admin::inspect(&name).unwrap().error.is_some());
    assert!(
        allocated(&name) < 1 << 20,
        "opening an 8 MiB hole allocated {} KiB",
        allocated(&name) >> 10
    );
}

/// Same with a superblock that is valid: a producer allocates its whole segment up front
/// (fallocate), so a sparse one was not made by a producer, and mapping it pre-faulted
/// allocates up to `total_size` (validation allows 1 TiB), filling /dev/shm; a reader
/// that then touches a page tmpfs cannot allocate dies of SIGBUS.
#[test]
fn sparse_ring_with_valid_layout_is_not_allocated() {
    let mut c = Cleanup::new();
    let name = c.name("sparse-valid");
    let cam = camera_layout();
    let sb = Superblock::new(4, 2 << 20, 0, &[cam]);
    let mut head = sb.as_bytes().to_vec();
    head.resize(OFF_STATE + 4, 0);
    head[OFF_STATE..].copy_from_slice(&STATE_LIVE.to_le_bytes());
    write_sparse(&name, &head, sb.total_size);
    // Refusing it is fine, so is opening it without allocating it.
    let _ = Reader::open(&name);
    assert!(
        allocated(&name) < 1 << 20,
        "opening an {} MiB sparse ring allocated {} KiB",
        sb.total_size >> 20,
        allocated(&name) >> 10
    );
}

#[test]
fn hostile_reader_table_does_not_panic() {
    let mut c = Cleanup::new();
    let name = c.name("reader-table");
    let mut img = live_image(&mut c, "reader-table");
    // Every entry taken by a pid that cannot exist (beyond pid_max, or negative as i32).
    for i in 0..MAX_READERS {
        let pid = match i % 4 {
            0 => u32::MAX,
            1 => 1 << 31,
            2 => (1 << 31) + 1,
            _ => 0x3fff_fff0,
        };
        img.set_u32(OFF_READERS + i * READER_ENTRY_SIZE, pid);
    }
    img.write(&name);
    let mut r = Reader::open(&name).unwrap();
    let _ = admin::inspect(&name).unwrap();
    assert!(r.try_read(ReadMode::Latest).unwrap().is_some());
}

// ---------------------------------------------------------------------------------------
// Slot-level hostility
// ---------------------------------------------------------------------------------------

#[test]
fn crafted_copy_of_a_live_ring_reads_back() {
    let mut c = Cleanup::new();
    let name = c.name("copy");
    let mut img = live_image(&mut c, "copy");
    // Open with head 2 so that Next mode starts at frame 1, then restore head.
    img.set_u64(OFF_HEAD, 2);
    img.write(&name);
    let mut r = Reader::open(&name).unwrap();
    poke_u64(&name, OFF_HEAD, FRAMES);
    assert!(matches!(r.producer(), ProducerState::Dead { .. }));
    let mut out = OwnedFrame::default();
    let mut seen = Vec::new();
    while r.read_copy(ReadMode::Next, &mut out).unwrap() {
        check_frame(&out, out.header.frame);
        seen.push(out.header.frame);
    }
    // Frame 1 is before `oldest` (the slot a producer could be writing): lapped.
    assert_eq!(seen, [2, 3, 4]);
    assert_eq!(r.stats().lapped, 1);
    assert!(!r.wait(SHORT));
}

/// One way to corrupt a consistent slot, and the error a reader must report.
struct Corruption {
    what: &'static str,
    patch: fn(&mut Image, u64),
    expect: fn(&SlotError) -> bool,
}

fn corruptions() -> Vec<Corruption> {
    fn slot_size(img: &Image) -> u64 {
        img.sb().slot_size
    }
    vec![
        Corruption {
            what: "offset u64::MAX",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.offset = u64::MAX;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::OutOfBounds { camera: 0, .. }),
        },
        Corruption {
            what: "length u64::MAX",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.length = u64::MAX;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::OutOfBounds { camera: 0, .. }),
        },
        Corruption {
            what: "offset + length wraps to a small value",
            patch: |img, n| {
                let mut e = img.entry(n, 1);
                e.length = u64::MAX - e.offset + 2;
                img.set_entry(n, 1, &e);
            },
            expect: |e| matches!(e, SlotError::OutOfBounds { camera: 1, .. }),
        },
        Corruption {
            what: "payload runs past the slot",
            patch: |img, n| {
                let size = slot_size(img);
                let mut e = img.entry(n, 1);
                e.offset = size - 8;
                img.set_entry(n, 1, &e);
            },
            expect: |e| matches!(e, SlotError::OutOfBounds { camera: 1, .. }),
        },
        Corruption {
            what: "length of the whole ring",
            patch: |img, n| {
                let size = slot_size(img);
                let mut e = img.entry(n, 0);
                e.offset = SLOT_HEADER_SIZE;
                e.length = size * u64::from(SLOTS);
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::OutOfBounds { camera: 0, .. }),
        },
        Corruption {
            what: "payload inside the header page",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.offset = 0;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::OutOfBounds { camera: 0, .. }),
        },
        Corruption {
            what: "out of bounds even when flagged missing",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.flags = camring_protocol::layout::CAM_MISSING;
                e.offset = u64::MAX - 1;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::OutOfBounds { camera: 0, .. }),
        },
        Corruption {
            what: "camera_count 17",
            patch: |img, n| {
                let mut h = img.header(n);
                h.camera_count = 17;
                img.set_header(n, &h);
            },
            expect: |e| matches!(e, SlotError::CameraCount(17)),
        },
        Corruption {
            what: "camera_count above the ring's",
            patch: |img, n| {
                let mut h = img.header(n);
                h.camera_count = CAMERAS + 1;
                img.set_header(n, &h);
            },
            expect: |e| matches!(e, SlotError::CameraCount(c) if *c == CAMERAS + 1),
        },
        Corruption {
            what: "camera_count u32::MAX",
            patch: |img, n| {
                let mut h = img.header(n);
                h.camera_count = u32::MAX;
                img.set_header(n, &h);
            },
            expect: |e| matches!(e, SlotError::CameraCount(u32::MAX)),
        },
        Corruption {
            what: "unknown format 99",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.format = 99;
                img.set_entry(n, 0, &e);
            },
            expect: |e| {
                matches!(
                    e,
                    SlotError::Format {
                        camera: 0,
                        code: 99
                    }
                )
            },
        },
        Corruption {
            what: "format 0",
            patch: |img, n| {
                let mut e = img.entry(n, 1);
                e.format = 0;
                img.set_entry(n, 1, &e);
            },
            expect: |e| matches!(e, SlotError::Format { camera: 1, code: 0 }),
        },
        Corruption {
            what: "height u32::MAX",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.height = u32::MAX;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::Geometry { camera: 0, .. }),
        },
        Corruption {
            what: "height too large for the length",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.height = HEIGHT + 1;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::Geometry { camera: 0, .. }),
        },
        Corruption {
            what: "width and stride u32::MAX",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.width = u32::MAX;
                e.stride = u32::MAX;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::Geometry { camera: 0, .. }),
        },
        Corruption {
            what: "stride below the width",
            patch: |img, n| {
                let mut e = img.entry(n, 1);
                e.stride = 1;
                img.set_entry(n, 1, &e);
            },
            expect: |e| matches!(e, SlotError::Geometry { camera: 1, .. }),
        },
        Corruption {
            what: "width 0",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.width = 0;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::Geometry { camera: 0, .. }),
        },
        Corruption {
            what: "NV12 with odd height",
            patch: |img, n| {
                let mut e = img.entry(n, 0);
                e.format = PixelFormat::Nv12.code();
                e.stride = WIDTH;
                e.height = 47;
                img.set_entry(n, 0, &e);
            },
            expect: |e| matches!(e, SlotError::Geometry { camera: 0, .. }),
        },
        Corruption {
            what: "header frame mismatch",
            patch: |img, n| {
                let mut h = img.header(n);
                h.frame = 12345;
                img.set_header(n, &h);
            },
            expect: |e| matches!(e, SlotError::FrameMismatch { found: 12345, .. }),
        },
        Corruption {
            what: "header frame u64::MAX",
            patch: |img, n| {
                let mut h = img.header(n);
                h.frame = u64::MAX;
                img.set_header(n, &h);
            },
            expect: |e| {
                matches!(
                    e,
                    SlotError::FrameMismatch {
                        found: u64::MAX,
                        ..
                    }
                )
            },
        },
    ]
}

#[test]
fn corrupt_slots_are_reported_latest() {
    let mut c = Cleanup::new();
    let base = live_image(&mut c, "corrupt-latest");
    for (i, k) in corruptions().into_iter().enumerate() {
        let name = c.name(&format!("corrupt-latest-{i}"));
        let mut img = Image {
            bytes: base.bytes.clone(),
        };
        (k.patch)(&mut img, FRAMES - 1);
        img.write(&name);

        let mut r = Reader::open(&name).unwrap();
        match r.try_read(ReadMode::Latest) {
            Err(ReadError::Corrupt(e)) => assert!((k.expect)(&e), "{}: got {e:?}", k.what),
            Err(e) => panic!("{}: expected Corrupt, got {e:?}", k.what),
            Ok(f) => panic!("{}: accepted {:?}", k.what, f.map(|f| *f.header())),
        }
        assert_eq!(r.stats().corrupt, 1, "{}", k.what);
        assert_eq!(r.stats().frames, 0, "{}", k.what);
        // The corrupt frame is skipped for good: no loop, no second report.
        assert!(
            r.try_read(ReadMode::Latest).unwrap().is_none(),
            "{}",
            k.what
        );
        assert!(r.try_read(ReadMode::Next).unwrap().is_none(), "{}", k.what);
        assert_eq!(r.stats().corrupt, 1, "{}", k.what);
        assert!(!r.has_new(), "{}", k.what);
        assert!(!r.wait(Duration::from_millis(10)), "{}", k.what);

        // The copy API reports it the same way.
        let mut r = Reader::open(&name).unwrap();
        let mut out = OwnedFrame::default();
        assert!(
            matches!(
                r.read_copy(ReadMode::Latest, &mut out),
                Err(ReadError::Corrupt(_))
            ),
            "{}",
            k.what
        );
        assert!(!r.read_copy(ReadMode::Latest, &mut out).unwrap());
        drop(r);
        fs::remove_file(path_of(&name)).unwrap();
    }
}

#[test]
fn corrupt_slots_are_reported_next() {
    let mut c = Cleanup::new();
    let mut base = live_image(&mut c, "corrupt-next");
    // Open at frame 2 (head 3), then restore the head: Next reads 2, 3, 4.
    base.set_u64(OFF_HEAD, 3);
    let bad = 3;
    for (i, k) in corruptions().into_iter().enumerate() {
        let name = c.name(&format!("corrupt-next-{i}"));
        let mut img = Image {
            bytes: base.bytes.clone(),
        };
        (k.patch)(&mut img, bad);
        img.write(&name);
        let mut r = Reader::open(&name).unwrap();
        poke_u64(&name, OFF_HEAD, FRAMES);

        let mut out = OwnedFrame::default();
        assert!(r.read_copy(ReadMode::Next, &mut out).unwrap());
        check_frame(&out, 2);
        match r.try_read(ReadMode::Next) {
            Err(ReadError::Corrupt(e)) => assert!((k.expect)(&e), "{}: got {e:?}", k.what),
            Err(e) => panic!("{}: expected Corrupt, got {e:?}", k.what),
            Ok(f) => panic!("{}: accepted {:?}", k.what, f.map(|f| *f.header())),
        }
        // Only the corrupt frame is lost: the next one reads fine.
        assert!(r.read_copy(ReadMode::Next, &mut out).unwrap(), "{}", k.what);
        check_frame(&out, 4);
        assert!(!r.read_copy(ReadMode::Next, &mut out).unwrap());
        let s = r.stats();
        assert_eq!((s.frames, s.corrupt, s.lapped), (2, 1, 0), "{}", k.what);
        drop(r);
        fs::remove_file(path_of(&name)).unwrap();
    }
}

#[test]
fn in_bounds_jpeg_entry_is_accepted() {
    // Positive control for the corruption cases: a changed but valid entry is accepted and
    // its payload view is exactly where the entry says.
    let mut c = Cleanup::new();
    let name = c.name("jpeg-entry");
    let mut img = live_image(&mut c, "jpeg-entry");
    let n = FRAMES - 1;
    let mut e = img.entry(n, 1);
    e.format = PixelFormat::Jpeg.code();
    e.stride = 0;
    e.length = 100;
    img.set_entry(n, 1, &e);
    img.write(&name);
    let mut r = Reader::open(&name).unwrap();
    let f = r.try_read(ReadMode::Latest).unwrap().unwrap();
    assert_eq!(f.payload(1).len(), 100);
    assert!(f.payload(1).to_vec().iter().all(|&b| b == fill_byte(n, 1)));
    f.validate().unwrap();
}

fn assert_no_frame_no_hang(r: &mut Reader, mode: ReadMode, what: &str) {
    // Whatever the first read said, the reader moved past the stuck slot: the following
    // reads return nothing and waiting times out instead of spinning or hanging.
    assert!(r.try_read(mode).unwrap().is_none(), "{what}");
    let mut out = OwnedFrame::default();
    assert!(!r.read_copy(mode, &mut out).unwrap(), "{what}");
    assert!(!r.has_new(), "{what}");
    assert!(!r.wait(SHORT), "{what}");
}

#[test]
fn slot_stuck_odd_is_torn_and_does_not_hang() {
    let mut c = Cleanup::new();
    let mut base = live_image(&mut c, "stuck-odd");
    let newest = FRAMES - 1;
    base.set_seq(newest, writing(newest));
    for mode in [ReadMode::Latest, ReadMode::Next] {
        let name = c.name(&format!("stuck-odd-{mode:?}"));
        base.write(&name);
        let mut r = Reader::open(&name).unwrap();
        match r.try_read(mode) {
            Err(ReadError::Torn) => assert!(r.stats().torn >= 1),
            Ok(None) => {}
            Err(e) => panic!("{mode:?}: expected Torn, got {e:?}"),
            Ok(Some(f)) => panic!("{mode:?}: accepted frame {}", f.number()),
        }
        assert_eq!(r.stats().frames, 0);
        assert_no_frame_no_hang(&mut r, mode, &format!("{mode:?}"));
    }
}

#[test]
fn stale_or_future_sequence_is_not_accepted() {
    let mut c = Cleanup::new();
    let base = live_image(&mut c, "seq-values");
    let newest = FRAMES - 1;
    let cases = [
        ("older frame", complete(newest - u64::from(SLOTS))),
        ("zero", 0),
        ("newer frame", complete(newest + u64::from(SLOTS))),
        ("odd, newer", writing(newest + u64::from(SLOTS))),
        ("u64::MAX", u64::MAX),
        ("u64::MAX - 1", u64::MAX - 1),
    ];
    for (i, (what, seq)) in cases.into_iter().enumerate() {
        for mode in [ReadMode::Latest, ReadMode::Next] {
            let name = c.name(&format!("seq-{i}-{mode:?}"));
            let mut img = Image {
                bytes: base.bytes.clone(),
            };
            img.set_seq(newest, seq);
            img.write(&name);
            let mut r = Reader::open(&name).unwrap();
            match r.try_read(mode) {
                Err(ReadError::Torn | ReadError::Lapped) | Ok(None) => {}
                Err(e) => panic!("{what} {mode:?}: {e:?}"),
                Ok(Some(f)) => panic!("{what} {mode:?}: accepted frame {}", f.number()),
            }
            assert_no_frame_no_hang(&mut r, mode, what);
            drop(r);
            fs::remove_file(path_of(&name)).unwrap();
        }
    }
}

#[test]
fn producer_died_mid_write_of_the_next_frame() {
    // The realistic case: the producer died between `write_begin` and `write_end` of
    // frame `head`. Readers still get the newest complete frame, then nothing.
    let mut c = Cleanup::new();
    let name = c.name("died-mid-write");
    let mut img = live_image(&mut c, "died-mid-write");
    img.set_seq(FRAMES, writing(FRAMES));
    img.write(&name);
    let mut r = Reader::open(&name).unwrap();
    let mut out = OwnedFrame::default();
    assert!(r.read_copy(ReadMode::Latest, &mut out).unwrap());
    check_frame(&out, FRAMES - 1);
    assert!(matches!(r.producer(), ProducerState::Dead { .. }));
    assert_no_frame_no_hang(&mut r, ReadMode::Next, "died mid-write");
}

#[test]
fn absurd_head_does_not_panic() {
    let mut c = Cleanup::new();
    let base = live_image(&mut c, "head");
    let heads = [
        MAX_FRAME - 1,
        MAX_FRAME,
        MAX_FRAME + 1,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];
    for (i, head) in heads.into_iter().enumerate() {
        for mode in [ReadMode::Latest, ReadMode::Next] {
            // Head absurd from the start.
            let name = c.name(&format!("head-{i}-{mode:?}"));
            let mut img = Image {
                bytes: base.bytes.clone(),
            };
            img.set_u64(OFF_HEAD, head);
            img.write(&name);
            let mut r = Reader::open(&name).unwrap();
            exercise(&mut r, mode);
            let _ = r.follow().unwrap();
            exercise(&mut r, mode);
            assert_eq!(r.stats().frames, 0, "head {head} {mode:?}");
            let _ = admin::inspect(&name).unwrap();
            drop(r);

            // Head turning absurd under an attached reader, after a good read.
            base.write(&name);
            let mut r = Reader::open(&name).unwrap();
            poke_u64(&name, OFF_HEAD, 2);
            let mut r1 = Reader::open(&name).unwrap(); // starts at frame 1
            poke_u64(&name, OFF_HEAD, FRAMES);
            assert!(r.try_read(mode).unwrap().is_some());
            assert!(r1.try_read(ReadMode::Next).unwrap().is_some());
            poke_u64(&name, OFF_HEAD, head);
            exercise(&mut r, mode);
            exercise(&mut r1, ReadMode::Next);
            let _ = r.stats();
            let _ = r1.stats();
            drop((r, r1));
            fs::remove_file(path_of(&name)).unwrap();
        }
    }

    fn exercise(r: &mut Reader, mode: ReadMode) {
        for _ in 0..3 {
            match r.try_read(mode) {
                Ok(None) | Err(ReadError::Torn | ReadError::Lapped) => {}
                Ok(Some(f)) => panic!("accepted frame {} of an absurd head", f.number()),
                Err(e) => panic!("{e:?}"),
            }
        }
        let mut out = OwnedFrame::default();
        let _ = r.read_copy(mode, &mut out);
        let _ = r.has_new();
        let _ = r.wait(Duration::from_millis(5));
    }
}

#[test]
fn absurd_generation_is_harmless() {
    let mut c = Cleanup::new();
    let name = c.name("generation");
    let mut img = live_image(&mut c, "generation");
    img.set_u64(OFF_GENERATION, u64::MAX);
    img.write(&name);
    let mut r = Reader::open(&name).unwrap();
    assert_eq!(r.generation(), u64::MAX);
    assert!(r.try_read(ReadMode::Latest).unwrap().is_some());
    poke_u64(&name, OFF_GENERATION, 0);
    assert_eq!(r.follow().unwrap(), Follow::NewGeneration);
    // A producer taking it over picks a generation different from the old one.
    let w = Writer::create(&name, &config()).unwrap();
    assert_eq!(w.origin(), Origin::TookOver);
    assert_ne!(w.generation(), u64::MAX);
    assert_ne!(w.generation(), 0);
}

// ---------------------------------------------------------------------------------------
// Producers meeting hostile or dead segments
// ---------------------------------------------------------------------------------------

fn assert_works(w: &mut Writer, name: &str) {
    let mut r = Reader::open(name).unwrap();
    let first = w.next_frame();
    publish(w, 2);
    let mut out = OwnedFrame::default();
    assert!(r.read_copy(ReadMode::Latest, &mut out).unwrap());
    check_frame(&out, first + 1);
    assert!(matches!(r.producer(), ProducerState::Live { .. }));
}

#[test]
fn producer_replaces_garbage() {
    let mut c = Cleanup::new();
    let good = fresh_image();
    let mut bad_magic = good.bytes.clone();
    bad_magic[0] ^= 0xff;
    let mut bad_version = fresh_image();
    let mut sb = bad_version.sb();
    sb.version = 9;
    bad_version.set_sb(&sb);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad-magic", bad_magic),
        ("bad-version", bad_version.bytes),
        ("empty", Vec::new()),
        ("short", good.bytes[..100].to_vec()),
        ("truncated", good.bytes[..good.bytes.len() - 1].to_vec()),
        ("zeros", vec![0; 3 * PAGE as usize]),
    ];
    for (what, bytes) in cases {
        let name = c.name(&format!("replace-{what}"));
        write_file(&name, &bytes);
        let old_ino = fs::metadata(path_of(&name)).unwrap().ino();
        let mut w = Writer::create(&name, &config()).unwrap();
        assert_eq!(w.origin(), Origin::Replaced, "{what}");
        assert_ne!(fs::metadata(path_of(&name)).unwrap().ino(), old_ino);
        assert_works(&mut w, &name);
        drop(w);
        assert!(!path_of(&name).exists(), "{what}");
    }
}

#[test]
fn producer_replaces_a_dead_ring_of_another_layout() {
    let mut c = Cleanup::new();
    let name = c.name("replace-layout");
    let img = live_image(&mut c, "replace-layout");
    img.write(&name);
    let mut old = Reader::open(&name).unwrap();
    let mut other = config();
    other.slots = SLOTS + 1;
    let mut w = Writer::create(&name, &other).unwrap();
    assert_eq!(w.origin(), Origin::Replaced);
    assert_eq!(w.next_frame(), 0);
    // The old segment tells its readers to follow, and following works.
    assert_eq!(old.producer(), ProducerState::Replaced);
    assert_eq!(old.follow().unwrap(), Follow::Reattached);
    assert_eq!(old.layout().slot_count, SLOTS + 1);
    publish(&mut w, 1);
    let mut out = OwnedFrame::default();
    assert!(old.read_copy(ReadMode::Next, &mut out).unwrap());
    check_frame(&out, 0);
    assert_works(&mut w, &name);
}

#[test]
fn producer_takes_over_a_dead_ring_in_place() {
    let mut c = Cleanup::new();
    let name = c.name("takeover");
    let img = live_image(&mut c, "takeover");
    let old_generation = img.u64(OFF_GENERATION);
    img.write(&name);
    let ino = fs::metadata(path_of(&name)).unwrap().ino();

    let mut r = Reader::open(&name).unwrap();
    assert!(matches!(r.producer(), ProducerState::Dead { .. }));
    assert_eq!(admin::inspect(&name).unwrap().state, "dead");
    assert!(r.try_read(ReadMode::Next).unwrap().is_some());

    let mut w = Writer::create(&name, &config()).unwrap();
    assert_eq!(w.origin(), Origin::TookOver);
    assert_eq!(w.next_frame(), FRAMES, "frame numbers continue");
    assert_ne!(w.generation(), old_generation);
    assert_eq!(fs::metadata(path_of(&name)).unwrap().ino(), ino);
    assert!(matches!(r.producer(), ProducerState::Live { .. }));
    assert_eq!(r.follow().unwrap(), Follow::NewGeneration);
    assert_eq!(r.generation(), w.generation());

    publish(&mut w, 1);
    let mut out = OwnedFrame::default();
    assert!(r.read_copy(ReadMode::Next, &mut out).unwrap());
    check_frame(&out, FRAMES);
    assert_eq!(out.header.generation, w.generation());
    assert_works(&mut w, &name);
}

#[test]
fn producer_refuses_a_dead_ring_with_absurd_head_in_place() {
    let mut c = Cleanup::new();
    let name = c.name("takeover-head");
    let mut img = live_image(&mut c, "takeover-head");
    img.set_u64(OFF_HEAD, MAX_FRAME);
    img.write(&name);
    let mut w = Writer::create(&name, &config()).unwrap();
    assert_eq!(w.origin(), Origin::Replaced);
    assert_eq!(w.next_frame(), 0);
    assert_works(&mut w, &name);
}

#[test]
fn second_producer_is_refused() {
    let mut c = Cleanup::new();
    let name = c.name("second");
    let mut w = Writer::create(&name, &config()).unwrap();
    assert_eq!(w.origin(), Origin::Created);
    publish(&mut w, 3);
    let before = fs::read(path_of(&name)).unwrap();
    match Writer::create(&name, &config()) {
        Err(CreateError::ProducerAlive { pid, .. }) => assert_eq!(pid, std::process::id()),
        Err(e) => panic!("expected ProducerAlive, got {e:?}"),
        Ok(_) => panic!("two producers on one ring"),
    }
    // Another layout is refused too, and nothing was changed.
    let mut other = config();
    other.slots = 8;
    assert!(matches!(
        Writer::create(&name, &other),
        Err(CreateError::ProducerAlive { .. })
    ));
    let after = fs::read(path_of(&name)).unwrap();
    assert_eq!(before[..OFF_HEAD + 8], after[..OFF_HEAD + 8]);
    assert_eq!(
        before[SUPERBLOCK_SIZE as usize..],
        after[SUPERBLOCK_SIZE as usize..]
    );
    assert_works(&mut w, &name);
}

#[test]
fn every_frame_is_counted_once() {
    // frames + skipped + lapped + corrupt covers each frame number the reader passed, once,
    // also when it gives up on a slot that stays torn.
    let mut c = Cleanup::new();
    let mut base = live_image(&mut c, "accounting");
    // The reader opens at frame 0 (head 1), then the head moves to FRAMES.
    base.set_u64(OFF_HEAD, 1);
    base.set_seq(FRAMES - 1, writing(FRAMES - 1));
    for mode in [ReadMode::Latest, ReadMode::Next] {
        let name = c.name(&format!("accounting-{mode:?}"));
        base.write(&name);
        let mut r = Reader::open(&name).unwrap();
        poke_u64(&name, OFF_HEAD, FRAMES);
        let mut out = OwnedFrame::default();
        loop {
            match r.read_copy(mode, &mut out) {
                Ok(true) => check_frame(&out, out.header.frame),
                Ok(false) => break,
                Err(ReadError::Torn | ReadError::Lapped) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        let s = r.stats();
        assert_eq!(
            s.frames + s.skipped + s.lapped + s.corrupt,
            FRAMES,
            "{mode:?}: {s:?}"
        );
    }
}

#[test]
fn missing_camera_with_hostile_offset_reads_as_empty() {
    let mut c = Cleanup::new();
    let name = c.name("missing-offset");
    let mut img = live_image(&mut c, "missing-offset");
    let n = FRAMES - 1;
    // A camera marked missing with length 0 needs no valid offset or format: the reader
    // must hand out an empty payload, never touch the offset.
    let mut e = img.entry(n, 0);
    e.flags = camring_protocol::layout::CAM_MISSING;
    e.length = 0;
    e.offset = u64::MAX;
    e.format = 0;
    img.set_entry(n, 0, &e);
    img.write(&name);
    let mut r = Reader::open(&name).unwrap();
    let frame = r
        .try_read(ReadMode::Latest)
        .unwrap()
        .expect("the newest frame");
    assert!(frame.payload(0).is_empty());
    let mut owned = camring_shm::OwnedFrame::default();
    frame.copy_to(&mut owned).unwrap();
    assert!(owned.payloads[0].is_empty());
}
