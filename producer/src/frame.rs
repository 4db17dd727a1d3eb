//! What sources hand to the synchroniser: captured [`Image`]s, each camera's [`Feed`]
//! (a mailbox that keeps only the newest image, never a queue), recycled image buffers,
//! and the [`Stop`] token every source thread watches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use camring_protocol::PixelFormat;

/// One camera image as captured, with its metadata.
#[derive(Debug)]
pub struct Image {
    /// Pixel format of `data` (raw, or JPEG).
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row for raw formats (the first plane for NV12); 0 for JPEG.
    pub stride: u32,
    /// Capture time, CLOCK_REALTIME nanoseconds (`camring_shm::clock::now_ns`).
    pub capture_ns: u64,
    /// The source's own frame counter. For synthetic images it is the frame number the
    /// pattern encodes.
    pub sequence: u64,
    /// The pixels are the synthetic test pattern (readers may verify them).
    pub synthetic: bool,
    data: Vec<u8>,
    pool: Weak<PoolInner>,
}

impl Image {
    /// An image over `data` (typically from [`Feed::buffer`], so it is recycled).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        stride: u32,
        capture_ns: u64,
        sequence: u64,
        data: Buffer,
    ) -> Self {
        Image {
            format,
            width,
            height,
            stride,
            capture_ns,
            sequence,
            synthetic: false,
            data: data.data,
            pool: data.pool,
        }
    }

    /// The image bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(std::mem::take(&mut self.data));
        }
    }
}

/// A buffer to capture one image into, recycled through its feed's pool so steady-state
/// capture allocates (and page-faults) nothing.
#[derive(Debug)]
pub struct Buffer {
    data: Vec<u8>,
    pool: Weak<PoolInner>,
}

impl Buffer {
    /// A buffer that is not recycled.
    pub fn unpooled(data: Vec<u8>) -> Self {
        Buffer {
            data,
            pool: Weak::new(),
        }
    }

    /// The bytes, to fill; resize as needed.
    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// Buffers kept for reuse per feed: enough for the image in the mailbox, the one being
/// captured and the ones the synchroniser still holds.
const POOL_KEEP: usize = 6;

#[derive(Debug, Default)]
struct PoolInner {
    free: Mutex<Vec<Vec<u8>>>,
}

impl PoolInner {
    fn put(&self, mut v: Vec<u8>) {
        let mut free = lock(&self.free);
        if free.len() < POOL_KEEP {
            v.clear();
            free.push(v);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these simple values half-updated.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a source is doing, as shown in stats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Opening the device or connecting.
    Starting,
    /// Delivering images.
    Live,
    /// Failed; will retry after a backoff. The error says why.
    Down(String),
    /// Stopped for good.
    Stopped,
}

/// Counters of one feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FeedStats {
    /// Images delivered by the source.
    pub captured: u64,
    /// Images replaced in the mailbox by a newer one before the synchroniser took them.
    pub replaced: u64,
    /// Images the source received but dropped as corrupt or truncated.
    pub corrupt: u64,
    /// Times the source failed (and was restarted).
    pub failures: u64,
}

/// One camera's mailbox: the source thread publishes images, the synchroniser takes the
/// newest. Never a queue: a new image replaces the one waiting.
#[derive(Debug)]
pub struct Feed {
    name: String,
    latest: Mutex<Option<Arc<Image>>>,
    taken_seq: AtomicU64,
    captured: AtomicU64,
    replaced: AtomicU64,
    corrupt: AtomicU64,
    failures: AtomicU64,
    state: Mutex<SourceState>,
    pool: Arc<PoolInner>,
}

impl Feed {
    /// An empty feed for the camera called `name` (used in messages).
    pub fn new(name: impl Into<String>) -> Self {
        Feed {
            name: name.into(),
            latest: Mutex::new(None),
            taken_seq: AtomicU64::new(u64::MAX),
            captured: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            state: Mutex::new(SourceState::Starting),
            pool: Arc::default(),
        }
    }

    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A buffer of `len` bytes (contents unspecified) to capture into, recycled when the
    /// image made from it is dropped.
    pub fn buffer(&self, len: usize) -> Buffer {
        let mut data = lock(&self.pool.free).pop().unwrap_or_default();
        data.resize(len, 0);
        Buffer {
            data,
            pool: Arc::downgrade(&self.pool),
        }
    }

    /// Publishes a newly captured image, replacing any image not yet taken.
    pub fn publish(&self, image: Image) {
        let image = Arc::new(image);
        let old = lock(&self.latest).replace(image);
        self.captured.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = old {
            // Ordering: a plain counter; the mutex orders the mailbox itself.
            if self.taken_seq.load(Ordering::Relaxed) != old.sequence {
                self.replaced.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.set_state(SourceState::Live);
    }

    /// The newest image, if any; remembers it as taken (for the `replaced` count).
    pub fn latest(&self) -> Option<Arc<Image>> {
        let image = lock(&self.latest).clone();
        if let Some(i) = &image {
            self.taken_seq.store(i.sequence, Ordering::Relaxed);
        }
        image
    }

    /// Counts an image dropped as corrupt or truncated.
    pub fn count_corrupt(&self) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the state shown in stats; [`SourceState::Down`] counts a failure.
    pub fn set_state(&self, state: SourceState) {
        let mut s = lock(&self.state);
        if *s == state {
            return;
        }
        if matches!(state, SourceState::Down(_)) {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        *s = state;
    }

    /// The current state.
    pub fn state(&self) -> SourceState {
        lock(&self.state).clone()
    }

    /// The counters.
    pub fn stats(&self) -> FeedStats {
        FeedStats {
            captured: self.captured.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// A stop request shared by the producer and its source threads; sleeping on it wakes
/// at once when stop is requested.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Stop {
    /// A token not yet stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests stop and wakes every sleeper.
    pub fn stop(&self) {
        *lock(&self.inner.0) = true;
        self.inner.1.notify_all();
    }

    /// Whether stop was requested.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.inner.0)
    }

    /// Sleeps for `d` or until stop is requested; returns whether it was.
    pub fn sleep(&self, d: Duration) -> bool {
        let guard = lock(&self.inner.0);
        let (guard, _) = self
            .inner
            .1
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(feed: &Feed, seq: u64) -> Image {
        Image::new(PixelFormat::Gray8, 4, 1, 4, 0, seq, feed.buffer(4))
    }

    #[test]
    fn mailbox_keeps_newest_and_counts_replaced() {
        let feed = Feed::new("cam");
        assert!(feed.latest().is_none());
        feed.publish(image(&feed, 0));
        assert_eq!(feed.latest().unwrap().sequence, 0);
        feed.publish(image(&feed, 1));
        feed.publish(image(&feed, 2)); // replaces 1, never taken
        assert_eq!(feed.latest().unwrap().sequence, 2);
        let s = feed.stats();
        assert_eq!((s.captured, s.replaced), (3, 1));
        assert_eq!(feed.state(), SourceState::Live);
    }

    #[test]
    fn buffers_are_recycled() {
        let feed = Feed::new("cam");
        let mut b = feed.buffer(1000);
        b[0] = 7;
        let ptr = b.as_ptr();
        drop(Image::new(PixelFormat::Gray8, 10, 100, 10, 0, 0, b));
        let again = feed.buffer(1000);
        assert_eq!(again.as_ptr(), ptr);
    }

    #[test]
    fn stop_wakes_sleepers() {
        let stop = Stop::new();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || s2.sleep(Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(20));
        stop.stop();
        assert!(t.join().unwrap());
        assert!(!Stop::new().sleep(Duration::from_millis(1)));
    }
}
