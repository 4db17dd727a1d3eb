//! `quality=auto`: the adaptive quality and size of one client.

/// Qualities `quality=auto` steps through, best first.
pub const AUTO_QUALITIES: [u8; 7] = [90, 80, 70, 60, 50, 40, 30];
/// Sizes (fractions of the ring's) `quality=auto` steps through once quality is lowest.
pub const AUTO_SCALES: [f64; 5] = [1.0, 0.75, 0.5, 0.375, 0.25];
/// Where `quality=auto` starts: 80.
const AUTO_START: usize = 1;

/// The adaptive quality of one client: lowers quality, then size, while the client drops
/// frames; raises size, then quality, after a run of windows without drops. The run it
/// needs doubles (up to 16 windows) each time a raise is followed by drops, so a client
/// at the edge of its bandwidth settles instead of oscillating.
#[derive(Debug, Clone)]
pub struct Auto {
    pub(super) quality: usize,
    pub(super) scale: usize,
    pub(super) good: u32,
    pub(super) needed: u32,
    pub(super) raised: bool,
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            quality: AUTO_START,
            scale: 0,
            good: 0,
            needed: 2,
            raised: false,
        }
    }
}

impl Auto {
    /// The quality now.
    pub fn quality(&self) -> u8 {
        AUTO_QUALITIES[self.quality]
    }

    /// The fraction of the ring's size now.
    pub fn scale(&self) -> f64 {
        AUTO_SCALES[self.scale]
    }

    /// Takes one stats window into account: `offered` frames, of which `dropped` were
    /// replaced before they were sent. Returns whether the level changed.
    pub fn step(&mut self, offered: u64, dropped: u64) -> bool {
        if offered == 0 {
            return false;
        }
        if dropped * 10 > offered {
            self.good = 0;
            if self.raised {
                self.needed = (self.needed * 2).min(16);
                self.raised = false;
            }
            if self.quality + 1 < AUTO_QUALITIES.len() {
                self.quality += 1;
            } else if self.scale + 1 < AUTO_SCALES.len() {
                self.scale += 1;
            } else {
                return false;
            }
            return true;
        }
        self.raised = false;
        if dropped > 0 {
            return false;
        }
        self.good += 1;
        if self.good < self.needed {
            return false;
        }
        self.good = 0;
        if self.scale > 0 {
            self.scale -= 1;
        } else if self.quality > 0 {
            self.quality -= 1;
        } else {
            return false;
        }
        self.raised = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_lowers_quality_then_size_and_settles() {
        let mut a = Auto::default();
        assert_eq!((a.quality(), a.scale()), (80, 1.0));
        // Dropping a third of the frames: down one step per window.
        for q in [70, 60, 50, 40, 30] {
            assert!(a.step(30, 10));
            assert_eq!(a.quality(), q);
        }
        assert!(a.step(30, 10));
        assert_eq!((a.quality(), a.scale()), (30, 0.75));
        // Keeping up: raises after two good windows, size first.
        assert!(!a.step(30, 0));
        assert!(a.step(30, 0));
        assert_eq!((a.quality(), a.scale()), (30, 1.0));
        // Dropping right after a raise doubles the run needed.
        assert!(a.step(30, 10));
        for _ in 0..3 {
            assert!(!a.step(30, 0));
        }
        assert!(a.step(30, 0));
        // A few drops (<= 10 %) neither lower nor count as good.
        assert!(!a.step(30, 3));
        // No frames offered: nothing to learn.
        assert!(!a.step(0, 0));
    }

    #[test]
    fn auto_bottoms_out() {
        let mut a = Auto::default();
        while a.step(10, 10) {}
        assert_eq!((a.quality(), a.scale()), (30, 0.25));
        assert!(!a.step(10, 10));
    }
}
