//! The daemon's timeline: the wall clock, except that it never steps back.
//!
//! An NTP step forward is taken as it comes (the alarm engine's timers move with it, so a pending on-delay still
//! lasts its time). A step back by D would put new readings before ones already stored and shorten every pending
//! delay by D; instead the timeline keeps going from where it was and then runs 10 % slow until it meets the
//! corrected wall clock again (10·D later): each sensor's readings keep their order and their spacing (within
//! 10 %), and no alarm delay is shortened (one can last up to 10 % longer meanwhile). Readings stamped before the
//! step (the old clock) are left as they were.

use crate::model::Timestamp;
use std::time::Instant;

/// A wall-clock jump larger than this (against the monotonic clock) is a step.
const STEP_MS: i64 = 2000;
/// How fast an offset from a backward step is worked off: this share of real time.
const SLEW: f64 = 0.1;

/// What [`Timeline::observe`] saw.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Observed {
    /// The wall clock stepped by this much (ms; negative: back).
    pub step_ms: i64,
    /// Move the alarm engine's timers by this much (ms): the part of a forward step the timeline takes.
    pub shift_ms: i64,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Timeline {
    wall: Timestamp,
    mono: Instant,
    /// Added to the wall clock (ms): what is left of backward steps.
    offset: f64,
}

impl Timeline {
    pub(super) fn new(wall: Timestamp, mono: Instant) -> Timeline {
        Timeline {
            wall,
            mono,
            offset: 0.0,
        }
    }

    /// Look at the clocks (before each batch and at each beat).
    pub(super) fn observe(&mut self, wall: Timestamp, mono: Instant) -> Observed {
        let real = mono.saturating_duration_since(self.mono).as_millis();
        let real = i64::try_from(real).unwrap_or(i64::MAX);
        let step = wall.0.saturating_sub(self.wall.0).saturating_sub(real);
        (self.wall, self.mono) = (wall, mono);
        self.offset = (self.offset - SLEW * real as f64).max(0.0);
        if step.abs() <= STEP_MS {
            return Observed::default();
        }
        if step < 0 {
            // Back: the timeline goes on where it was.
            self.offset += -step as f64;
            return Observed {
                step_ms: step,
                shift_ms: 0,
            };
        }
        // Forward: first it eats what is left of earlier backward steps.
        let absorbed = self.offset.min(step as f64);
        self.offset -= absorbed;
        Observed {
            step_ms: step,
            shift_ms: step - absorbed as i64,
        }
    }

    /// The timeline's time for a reading stamped `ts` by the wall clock: `ts` plus what is left of backward steps,
    /// unless it was stamped on the clock before the step (then it is ahead of the timeline and left as it was).
    pub(super) fn map(&self, ts: Timestamp) -> Timestamp {
        if self.offset < 1.0 {
            return ts;
        }
        let mapped = Timestamp(ts.0.saturating_add(self.offset as i64));
        let now = Timestamp(self.wall.0.saturating_add(self.offset as i64));
        if mapped.0 > now.0.saturating_add(STEP_MS) {
            ts
        } else {
            mapped
        }
    }

    /// The timeline's time now.
    pub(super) fn now(&self) -> Timestamp {
        self.map(Timestamp::now())
    }

    /// What is left of backward steps (ms).
    #[cfg(test)]
    pub(super) fn offset_ms(&self) -> i64 {
        self.offset as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_step_back_keeps_the_timeline_going_and_slews_back_to_the_wall_clock() {
        let m0 = Instant::now();
        let mut t = Timeline::new(Timestamp(1_000_000), m0);
        // One second later the wall clock reads 30 s earlier.
        let m1 = m0 + Duration::from_secs(1);
        let o = t.observe(Timestamp(1_000_000 + 1_000 - 30_000), m1);
        assert_eq!(
            o,
            Observed {
                step_ms: -30_000,
                shift_ms: 0
            }
        );
        // A reading taken now is stamped where the timeline was going, not 30 s back.
        assert_eq!(t.map(Timestamp(971_000)), Timestamp(1_001_000));
        // A reading stamped by the old clock just before the step stays as it was.
        assert_eq!(t.map(Timestamp(1_000_900)), Timestamp(1_000_900));
        // 100 s later 10 s of the offset are worked off: the timeline ran 90 s.
        let m2 = m1 + Duration::from_secs(100);
        assert_eq!(t.observe(Timestamp(1_071_000), m2), Observed::default());
        assert_eq!(t.offset_ms(), 20_000);
        assert_eq!(t.map(Timestamp(1_071_000)), Timestamp(1_091_000));
        // 300 s later it is back on the wall clock.
        let m3 = m2 + Duration::from_secs(300);
        t.observe(Timestamp(1_371_000), m3);
        assert_eq!(t.map(Timestamp(1_371_000)), Timestamp(1_371_000));
    }

    #[test]
    fn a_step_forward_moves_the_timers_by_what_the_offset_does_not_take() {
        let m0 = Instant::now();
        let mut t = Timeline::new(Timestamp(0), m0);
        assert_eq!(
            t.observe(Timestamp(3_600_000), m0),
            Observed {
                step_ms: 3_600_000,
                shift_ms: 3_600_000
            }
        );
        t.observe(Timestamp(3_600_000 - 10_000), m0);
        assert_eq!(t.offset_ms(), 10_000);
        // Forward by 25 s: 10 s go to the offset, the timers move 15 s.
        assert_eq!(
            t.observe(Timestamp(3_600_000 + 15_000), m0),
            Observed {
                step_ms: 25_000,
                shift_ms: 15_000
            }
        );
        assert_eq!(t.offset_ms(), 0);
    }
}
