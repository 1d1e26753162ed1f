//! Waiting until a poll is due, woken once, at the instant.
//!
//! tokio's timer wheel wakes its thread at the start of the 64 ms slot that holds a deadline further away than the
//! current slot, and again at the deadline: a poll every 100 ms cost three wake-ups (two of the timer, one of the
//! answer) where two do. On Linux the runner sleeps on a timerfd armed for the deadline itself (nanosecond
//! resolution, one wake-up). Measured on the floor of `bench/ratios.sh` (a bare tokio-modbus loop, 100 registers
//! every 100 ms, two copies of each side by side for 60 s): 2.43 → 1.70 ms CPU per second, 29 → 20 context
//! switches per second. The expiry is not read (the clock says whether it is the one armed): one system call
//! fewer per poll. Elsewhere, or under a paused test clock (which only moves tokio's own timers), the wait is
//! tokio's `sleep_until`. The runtime must have I/O enabled (the daemon's has; tokio panics otherwise).

use std::time::Duration;
use tokio::time::Instant;

/// A source runner's timer (one per runner: one descriptor).
pub(crate) struct PollTimer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
}

impl PollTimer {
    /// A timerfd registered with the current runtime where that works, else tokio's timer.
    ///
    /// # Panics
    /// On Linux, outside a tokio runtime with I/O enabled.
    pub(crate) fn new() -> PollTimer {
        PollTimer {
            #[cfg(target_os = "linux")]
            fd: timerfd(),
        }
    }

    /// Whether waits are on a timerfd.
    #[cfg(test)]
    fn precise(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.fd.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Return at `at` (at once if it has passed). Cancel-safe: a wait dropped half-way leaves nothing behind (the
    /// next one re-arms, which also clears an expiry nobody read).
    pub(crate) async fn until(&mut self, at: Instant) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.fd {
            let wait = at.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return;
            }
            if arm(fd, wait) {
                // No read(2) of the expiry count: the next arm clears it, and epoll (edge-triggered under tokio)
                // reports every expiry as an event of its own whether the count was read or not. Readiness
                // before `at` is one a dropped wait left behind; the armed expiry is still to come.
                while let Ok(mut ready) = fd.readable().await {
                    ready.clear_ready();
                    if Instant::now() >= at {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep_until(at).await;
    }
}

/// A non-blocking CLOCK_MONOTONIC timerfd on the current runtime's reactor (`None`: no timerfd, or a paused test
/// clock).
#[cfg(target_os = "linux")]
fn timerfd() -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd;
    if clock_is_paused() {
        return None;
    }
    // SAFETY: no preconditions; the descriptor is owned at once.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a descriptor just created and owned by nothing else.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
    // SAFETY: the OwnedFd stays open, and is the same descriptor, for as long as the AsyncFd holds it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE).ok()
    }
}

/// Arm `fd` to expire once, `wait` from now (clearing any expiry not read). False if the kernel refused.
#[cfg(target_os = "linux")]
fn arm(fd: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, wait: Duration) -> bool {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: libc::time_t::try_from(wait.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 10^9: fits the 32-bit `long` of armv7 too.
            tv_nsec: i32::try_from(wait.subsec_nanos()).unwrap_or(0).into(),
        },
    };
    // SAFETY: a valid timerfd and itimerspec; the old value is not asked for.
    unsafe {
        libc::timerfd_settime(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            0,
            &spec,
            std::ptr::null_mut(),
        ) == 0
    }
}

/// tokio's test clock, paused, does not move by itself: two looks at it a few microseconds of real time apart see
/// the same instant. (Without tokio's `test-util` both are the system's monotonic clock.)
#[cfg(target_os = "linux")]
fn clock_is_paused() -> bool {
    let seen = Instant::now();
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_micros(5) {
        std::hint::spin_loop();
    }
    Instant::now() == seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_on_a_timerfd() {
        let mut t = PollTimer::new();
        assert!(t.precise(), "a runtime with I/O on Linux uses a timerfd");
        for ms in [30u64, 5, 70] {
            let start = Instant::now();
            let at = start + Duration::from_millis(ms);
            t.until(at).await;
            let late = Instant::now().saturating_duration_since(at);
            assert!(Instant::now() >= at, "woke before the deadline");
            assert!(
                late < Duration::from_millis(50),
                "{ms} ms wait was {late:?} late"
            );
        }
        // A deadline in the past returns at once.
        let before = Instant::now();
        t.until(before - Duration::from_millis(1)).await;
        assert!(before.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_no_early_wake_up() {
        let mut t = PollTimer::new();
        // Armed for 10 ms, dropped after 1 ms: the expiry nobody reads must not end the next, longer wait.
        let _ = tokio::time::timeout(
            Duration::from_millis(1),
            t.until(Instant::now() + Duration::from_millis(10)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let at = Instant::now() + Duration::from_millis(60);
        t.until(at).await;
        assert!(Instant::now() >= at, "a stale expiry ended the wait early");
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_uses_tokio_time() {
        let mut t = PollTimer::new();
        assert!(!t.precise());
        let at = Instant::now() + Duration::from_secs(3600);
        // Auto-advance moves the paused clock to the deadline: no real hour passes.
        t.until(at).await;
        assert!(Instant::now() >= at);
    }
}
