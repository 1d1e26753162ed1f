//! An attempt's deadline: one timer kept across attempts, moved later instead of made anew.
//!
//! `tokio::time::timeout` makes a fresh timer for every attempt. tokio's time driver writes its eventfd whenever a
//! new entry is due before the wheel's next wake-up, and with the poll timer on a timerfd (timer.rs, not in the
//! wheel) every attempt's deadline is: one `write(2)` per poll on the runtime thread's own eventfd (seen with
//! `strace -k` at the gateway workload, ten a second). A kept entry whose deadline only moves later costs no system
//! call: tokio leaves it in its slot and files it again when that slot comes up (once per timeout, not per poll).
//! The kept timer is let go when the next attempt is due after its deadline, so a timer nobody waits on never
//! wakes the runner between polls; a read that answers at once (a simulated sensor) never arms it at all.

use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A source runner's attempt deadline (one per runner).
pub(crate) struct Deadline {
    /// How long an attempt may take.
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub(crate) fn new(limit: Duration) -> Deadline {
        Deadline { limit, sleep: None }
    }

    /// Return when an attempt started at `started` runs out of time. The kept timer is moved there (later: no
    /// system call), or made on the first wait. Cancel-safe: dropped half-way, the timer stays armed for the next
    /// wait to move (or [`Self::release_before`] to let go).
    pub(crate) async fn of(&mut self, started: Instant) {
        let at = started + self.limit;
        let sleep = match &mut self.sleep {
            Some(s) => {
                s.as_mut().reset(at);
                s
            }
            none => none.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        sleep.as_mut().await;
    }

    /// The next attempt starts at `next`: let the timer go if it would expire before then (its expiry would wake
    /// the runner for nothing).
    pub(crate) fn release_before(&mut self, next: Instant) {
        if self.sleep.as_ref().is_some_and(|s| s.deadline() < next) {
            self.sleep = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::sleep;

    fn kept(d: &Deadline) -> Option<*const Sleep> {
        d.sleep.as_ref().map(|s| &**s as *const Sleep)
    }

    /// An answer `answer` after the attempt starts: whether it was in time.
    async fn attempt(d: &mut Deadline, answer: Duration) -> bool {
        tokio::select! {
            biased;
            _ = sleep(answer) => true,
            _ = d.of(Instant::now()) => false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_deadline_moves_later_and_ends_an_attempt_only_at_its_own_deadline() {
        let limit = Duration::from_millis(300);
        let mut d = Deadline::new(limit);
        assert!(attempt(&mut d, Duration::from_millis(10)).await);
        let timer = kept(&d).expect("the first wait arms the timer");
        // Attempts every 100 ms, each answered in 10 ms: the first deadline (300 ms after the first attempt)
        // passes meanwhile and must end none of them.
        for _ in 0..5 {
            sleep(Duration::from_millis(90)).await;
            d.release_before(Instant::now());
            assert!(attempt(&mut d, Duration::from_millis(10)).await);
            assert_eq!(kept(&d), Some(timer), "the same timer, moved later");
        }
        // A slow answer, still inside its own deadline.
        assert!(attempt(&mut d, Duration::from_millis(250)).await);
        // No answer: the attempt ends at its deadline, not before and not at an earlier one.
        let start = Instant::now();
        assert!(!attempt(&mut d, Duration::from_secs(10)).await);
        assert_eq!(start.elapsed(), limit);
        // Timed out, the timer is armed again by the next attempt.
        assert!(attempt(&mut d, Duration::from_millis(10)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_is_let_go_when_the_next_attempt_is_due_after_it() {
        let limit = Duration::from_millis(300);
        let mut d = Deadline::new(limit);
        assert!(attempt(&mut d, Duration::from_millis(10)).await);
        // The next attempt 100 ms on: before the deadline, kept.
        d.release_before(Instant::now() + Duration::from_millis(100));
        assert!(kept(&d).is_some());
        // The next attempt 5 s on: let go, so it cannot wake the runner meanwhile.
        d.release_before(Instant::now() + Duration::from_secs(5));
        assert!(kept(&d).is_none());
        // And armed again by the next attempt.
        assert!(attempt(&mut d, Duration::from_millis(10)).await);
        assert!(kept(&d).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_ready_at_once_never_arms_the_timer() {
        let mut d = Deadline::new(Duration::from_millis(300));
        let answered = tokio::select! {
            biased;
            _ = std::future::ready(()) => true,
            _ = d.of(Instant::now()) => false,
        };
        assert!(answered);
        assert!(kept(&d).is_none());
    }
}
