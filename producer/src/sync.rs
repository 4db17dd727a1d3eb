//! The synchroniser: at each tick of the group clock, takes each camera's newest image
//! and decides whether it is fresh, a repeat of something already sent, or missing, so
//! that a slow or dead camera never holds the group back.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::frame::{Feed, Image};

/// What one camera contributes to a multi-frame.
#[derive(Debug, Clone)]
pub enum Pick {
    /// An image not sent before, captured within the tolerance of the tick.
    Fresh(Arc<Image>),
    /// Nothing fresh: the newest image again (already sent, or too old to count as
    /// fresh), while it is not older than the hold time.
    Repeated(Arc<Image>),
    /// Nothing usable: no image yet, or the newest is older than the hold time.
    Missing,
}

impl Pick {
    /// The image, unless missing.
    pub fn image(&self) -> Option<&Arc<Image>> {
        match self {
            Pick::Fresh(i) | Pick::Repeated(i) => Some(i),
            Pick::Missing => None,
        }
    }
}

/// One tick's worth of images, one per camera in the group's order.
#[derive(Debug, Clone)]
pub struct MultiFrame {
    /// The tick's time (CLOCK_REALTIME ns): when the group clock asked for it.
    pub tick_ns: u64,
    /// Spread of the capture times of the images in it (max − min), ns.
    pub spread_ns: u64,
    /// One pick per camera.
    pub picks: Vec<Pick>,
}

/// Per-camera counts of what the synchroniser decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PickStats {
    /// Fresh images.
    pub fresh: u64,
    /// Repeated images.
    pub repeated: u64,
    /// Ticks with nothing usable.
    pub missing: u64,
}

/// How the synchroniser judges freshness.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncPolicy {
    /// An image counts as fresh if captured at most this long before (or after) the tick.
    pub tolerance: Duration,
    /// An image older than this is no longer repeated: the camera is marked missing.
    pub hold: Duration,
}

/// Default hold: a camera silent for a second is missing, not repeated.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);

impl SyncPolicy {
    /// The default policy for a camera delivering every `camera_period` in a group
    /// ticking every `group_period`: fresh within one and a half of the longer period,
    /// so a phase-shifted or slower camera's new image is always fresh; hold one second.
    pub fn for_periods(group_period: Duration, camera_period: Duration) -> Self {
        SyncPolicy {
            tolerance: group_period.max(camera_period).mul_f64(1.5),
            hold: DEFAULT_HOLD.max(group_period * 2),
        }
    }
}

/// Takes each tick's picks from the cameras' feeds.
#[derive(Debug)]
pub struct Synchroniser {
    feeds: Vec<Arc<Feed>>,
    policies: Vec<SyncPolicy>,
    last_sent: Vec<Option<u64>>,
    stats: Vec<PickStats>,
}

impl Synchroniser {
    /// A synchroniser over `feeds`, with one policy per feed.
    pub fn new(feeds: Vec<Arc<Feed>>, policies: Vec<SyncPolicy>) -> Self {
        assert_eq!(feeds.len(), policies.len(), "one policy per feed");
        let n = feeds.len();
        Synchroniser {
            feeds,
            policies,
            last_sent: vec![None; n],
            stats: vec![PickStats::default(); n],
        }
    }

    /// The feeds, in the group's order.
    pub fn feeds(&self) -> &[Arc<Feed>] {
        &self.feeds
    }

    /// Per-camera counts so far.
    pub fn stats(&self) -> &[PickStats] {
        &self.stats
    }

    /// The multi-frame for the tick at `tick_ns`. Never waits: whatever each feed has now.
    pub fn pick(&mut self, tick_ns: u64) -> MultiFrame {
        let mut picks = Vec::with_capacity(self.feeds.len());
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for (i, feed) in self.feeds.iter().enumerate() {
            let policy = self.policies[i];
            let pick = match feed.latest() {
                None => Pick::Missing,
                Some(image) => {
                    let distance = Duration::from_nanos(tick_ns.abs_diff(image.capture_ns));
                    let sent = self.last_sent[i] == Some(image.sequence);
                    if !sent && distance <= policy.tolerance {
                        Pick::Fresh(image)
                    } else if distance <= policy.hold {
                        Pick::Repeated(image)
                    } else {
                        Pick::Missing
                    }
                }
            };
            let s = &mut self.stats[i];
            match &pick {
                Pick::Fresh(_) => s.fresh += 1,
                Pick::Repeated(_) => s.repeated += 1,
                Pick::Missing => s.missing += 1,
            }
            if let Some(image) = pick.image() {
                self.last_sent[i] = Some(image.sequence);
                lo = lo.min(image.capture_ns);
                hi = hi.max(image.capture_ns);
            }
            picks.push(pick);
        }
        MultiFrame {
            tick_ns,
            spread_ns: hi.saturating_sub(lo),
            picks,
        }
    }
}

#[cfg(test)]
mod tests {
    use camring_protocol::PixelFormat;

    use super::*;

    const MS: u64 = 1_000_000;

    fn publish(feed: &Feed, seq: u64, capture_ns: u64) {
        feed.publish(Image::new(
            PixelFormat::Gray8,
            1,
            1,
            1,
            capture_ns,
            seq,
            feed.buffer(1),
        ));
    }

    fn kinds(m: &MultiFrame) -> String {
        m.picks
            .iter()
            .map(|p| match p {
                Pick::Fresh(_) => 'F',
                Pick::Repeated(_) => 'R',
                Pick::Missing => 'M',
            })
            .collect()
    }

    #[test]
    fn fresh_repeated_missing_and_spread() {
        let feeds: Vec<Arc<Feed>> = (0..3)
            .map(|i| Arc::new(Feed::new(format!("c{i}"))))
            .collect();
        let policy = SyncPolicy {
            tolerance: Duration::from_millis(20),
            hold: Duration::from_millis(100),
        };
        let mut sync = Synchroniser::new(feeds.clone(), vec![policy; 3]);
        let t0 = 1_000 * MS;
        // Camera 2 has never delivered.
        publish(&feeds[0], 0, t0 - 5 * MS);
        publish(&feeds[1], 0, t0 - 12 * MS);
        let m = sync.pick(t0);
        assert_eq!(kinds(&m), "FFM");
        assert_eq!(m.spread_ns, 7 * MS);
        assert_eq!(m.tick_ns, t0);

        // Next tick: camera 0 new, camera 1 nothing new (repeat), camera 2 arrives late
        // (captured 30 ms before the tick: beyond tolerance, never sent: repeated, not
        // passed off as fresh).
        let t1 = t0 + 33 * MS;
        publish(&feeds[0], 1, t1 - 2 * MS);
        publish(&feeds[2], 0, t1 - 30 * MS);
        let m = sync.pick(t1);
        assert_eq!(kinds(&m), "FRR");
        // Spread over every image in it, the repeated one too (captured at t0 - 12 ms).
        assert_eq!(m.spread_ns, (t1 - 2 * MS) - (t0 - 12 * MS));
        assert_eq!(m.picks[1].image().unwrap().sequence, 0);

        // Long after: camera 1's image is older than the hold: missing.
        let t2 = t0 + 200 * MS;
        publish(&feeds[0], 2, t2);
        publish(&feeds[2], 1, t2 - MS);
        let m = sync.pick(t2);
        assert_eq!(kinds(&m), "FMF");
        assert_eq!(m.spread_ns, MS);

        // Camera 1 comes back: fresh again.
        publish(&feeds[1], 1, t2 + 30 * MS);
        let m = sync.pick(t2 + 33 * MS);
        assert_eq!(&kinds(&m)[1..2], "F");

        let s = sync.stats();
        assert_eq!(
            s[0],
            PickStats {
                fresh: 3,
                repeated: 1,
                missing: 0
            }
        );
        assert_eq!(
            s[1],
            PickStats {
                fresh: 2,
                repeated: 1,
                missing: 1
            }
        );
        assert_eq!(s[2].missing, 1);
    }

    #[test]
    fn default_tolerance_covers_a_slower_camera() {
        let p = SyncPolicy::for_periods(Duration::from_millis(33), Duration::from_millis(66));
        assert_eq!(p.tolerance, Duration::from_millis(99));
        assert!(p.hold >= Duration::from_secs(1));
    }
}
