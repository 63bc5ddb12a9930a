//! A policy call's deadline, counted in the CPU time the call uses rather than on the wall
//! clock: on a busy machine (20 clients on 2 cores) a call that waits for a core is delayed,
//! not denied, while a policy that really loops still burns CPU and is stopped.
//!
//! The epoch ticker wakes the store's deadline callback every tick while the guest runs; the
//! callback reads the CPU clock of the thread the guest runs on (`CLOCK_THREAD_CPUTIME_ID`)
//! and adds what the call used since the last tick. A guest runs on one thread between ticks
//! (wasmtime only moves a call to another thread at an await, and policies make no blocking
//! host calls); if it did move, that interval counts as one tick. Time in host functions the
//! guest calls counts too: it is work done for the call.
//!
//! Reading that clock is a system call (≈ 0.3 µs here, against ≈ 1.5 µs for a whole `check`
//! of a small policy), so a call is not charged one at its start: the interval up to its first
//! tick counts as its wall time, at most one tick, and the clock is first read there. Calls
//! shorter than a tick (nearly all) never read it; a loop is charged at most one tick less than
//! it used.
//!
//! A wall-clock backstop ([`WALL_FACTOR`] times the budget, plus a second) still ends a call
//! that somehow never gets the CPU, so nothing waits forever.

use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// The wall-clock backstop: this many times the CPU budget, plus [`WALL_SLACK`].
const WALL_FACTOR: u32 = 20;
const WALL_SLACK: Duration = Duration::from_secs(1);

/// The CPU time the calling thread has used so far.
pub(crate) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// What one call may use and has used.
#[derive(Debug)]
pub(crate) struct CallBudget {
    cpu_limit: Duration,
    cpu_used: Duration,
    wall_limit: Duration,
    started: Instant,
    /// The thread the guest ran on at the last tick, and its CPU clock then (none before the
    /// first tick).
    last: Option<(ThreadId, Duration)>,
    tick: Duration,
}

impl CallBudget {
    /// A budget of `limit` CPU time from now, read every `tick`.
    pub fn start(limit: Duration, tick: Duration) -> CallBudget {
        CallBudget {
            cpu_limit: limit,
            cpu_used: Duration::ZERO,
            wall_limit: limit.saturating_mul(WALL_FACTOR).saturating_add(WALL_SLACK),
            started: Instant::now(),
            last: None,
            tick,
        }
    }

    /// At a tick during the call: add the CPU time used since the last one; `false` when the
    /// call is over its budget (or past the wall-clock backstop) and must stop.
    pub fn may_go_on(&mut self) -> bool {
        let here = std::thread::current().id();
        let now = thread_cpu_time();
        let spent = match self.last {
            Some((thread, then)) if thread == here => now.saturating_sub(then),
            Some(_) => self.tick,
            None => self.started.elapsed().min(self.tick),
        };
        self.cpu_used = self.cpu_used.saturating_add(spent);
        self.last = Some((here, now));
        self.cpu_used <= self.cpu_limit && self.started.elapsed() <= self.wall_limit
    }

    /// CPU time counted so far.
    #[cfg(test)]
    pub fn used(&self) -> Duration {
        self.cpu_used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time() - start < d {
            std::hint::black_box(0);
        }
    }

    #[test]
    fn work_counts_and_waiting_does_not() {
        let tick = Duration::from_millis(1);
        let mut b = CallBudget::start(Duration::from_millis(20), tick);
        // Up to the first tick: wall time, at most one tick.
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.may_go_on());
        assert_eq!(b.used(), tick);
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.may_go_on(), "sleeping is not work: {:?}", b.used());
        assert!(b.used() < Duration::from_millis(10), "{:?}", b.used());
        spin(Duration::from_millis(30));
        assert!(
            !b.may_go_on(),
            "30 ms of work is over 20 ms: {:?}",
            b.used()
        );
    }

    #[test]
    fn the_wall_clock_backstop_still_ends_a_call() {
        let mut b = CallBudget::start(Duration::ZERO, Duration::from_millis(1));
        b.wall_limit = Duration::from_millis(5);
        std::thread::sleep(Duration::from_millis(10));
        assert!(!b.may_go_on());
    }
}
