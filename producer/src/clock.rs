//! The group's frame clock: ticks at absolute deadlines `start + n * period`, so the rate
//! never drifts however long each frame takes; a late tick is skipped, never bunched.

use std::time::{Duration, Instant};

/// A steady frame clock.
#[derive(Debug, Clone)]
pub struct FrameClock {
    start: Instant,
    period: Duration,
    tick: u64,
    missed: u64,
}

impl FrameClock {
    /// A clock at `fps` ticks per second, first tick now.
    pub fn new(fps: f64) -> Self {
        Self::starting_at(Instant::now(), fps)
    }

    /// A clock at `fps` whose first tick is `start`.
    pub fn starting_at(start: Instant, fps: f64) -> Self {
        assert!(fps.is_finite() && fps > 0.0, "fps must be positive");
        FrameClock {
            start,
            period: Duration::from_secs_f64(1.0 / fps),
            tick: 0,
            missed: 0,
        }
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Ticks skipped because the caller was late.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The deadline of tick `n`.
    pub fn deadline(&self, n: u64) -> Instant {
        self.start + self.period.mul_f64(n as f64)
    }

    /// Given the time `now`, returns the next tick's number and deadline, skipping
    /// (and counting) ticks whose deadline passed by more than one period. Pure: the
    /// caller sleeps.
    pub fn next_after(&mut self, now: Instant) -> (u64, Instant) {
        let due = self.deadline(self.tick);
        if now > due + self.period {
            let behind = (now - due).as_secs_f64() / self.period.as_secs_f64();
            let skip = behind.floor() as u64;
            self.missed += skip;
            self.tick += skip;
        }
        let n = self.tick;
        self.tick += 1;
        (n, self.deadline(n))
    }

    /// Sleeps until the next tick and returns its number.
    pub fn wait(&mut self) -> u64 {
        let (n, deadline) = self.next_after(Instant::now());
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_absolute() {
        let t0 = Instant::now();
        let mut c = FrameClock::starting_at(t0, 100.0);
        // Called late each time by less than a period: deadlines stay on the grid.
        for i in 0..10u64 {
            let (n, d) = c.next_after(t0 + Duration::from_millis(10 * i + 5));
            assert_eq!(n, i);
            assert_eq!(d, t0 + Duration::from_millis(10 * i));
        }
        assert_eq!(c.missed(), 0);
    }

    #[test]
    fn late_ticks_are_skipped_not_bunched() {
        let t0 = Instant::now();
        let mut c = FrameClock::starting_at(t0, 100.0);
        c.next_after(t0);
        // 55 ms late: ticks 1..=4 are skipped, tick 5 is next.
        let (n, d) = c.next_after(t0 + Duration::from_millis(55));
        assert_eq!(n, 5);
        assert_eq!(d, t0 + Duration::from_millis(50));
        assert_eq!(c.missed(), 4);
    }
}
