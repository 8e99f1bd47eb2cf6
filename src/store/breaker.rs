//! The circuit breaker of a shared store: when Redis is known to be down, requests get their
//! 503 at once instead of each waiting the full store timeout.
//!
//! - **closed** (normal): calls go to Redis. `failures` consecutive outage-like failures
//!   (timeouts, refused or dropped connections, authentication, a loading or read-only
//!   server), each within `window` of the first, open it; any success resets the count.
//! - **open**: every call fails at once with `StoreError::Unavailable`. A background probe
//!   (`PING`) runs every `probe_interval`.
//! - **half-open**: the probe is in flight (only it reaches Redis); other calls still fail at
//!   once. Its success closes the breaker, its failure opens it again for another interval.
//!
//! The state machine is here, free of I/O; the Redis store runs the probe.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `caches[].redis.circuitBreaker`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    pub enabled: bool,
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// The failures must fall within this time of the first one.
    pub window: Duration,
    /// Time between two probes while open.
    pub probe_interval: Duration,
}

pub const DEFAULT_FAILURES: u32 = 5;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            failures: DEFAULT_FAILURES,
            window: DEFAULT_WINDOW,
            probe_interval: DEFAULT_PROBE_INTERVAL,
        }
    }
}

/// The state, as the `tessera_store_circuit_state` gauge shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Closed,
            2 => State::HalfOpen,
            _ => State::Open,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: AtomicU8,
    /// Consecutive failures so far (mirrors `streak.0`, read without the lock on success).
    count: AtomicU32,
    /// (count, time of the streak's first failure)
    streak: Mutex<(u32, Option<Instant>)>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: AtomicU8::new(State::Closed as u8),
            count: AtomicU32::new(0),
            streak: Mutex::new((0, None)),
        }
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// May a call go to Redis now?
    #[inline]
    pub fn allows(&self) -> bool {
        !self.settings.enabled || self.state.load(Ordering::Acquire) == State::Closed as u8
    }

    /// A call succeeded: the failure streak ends.
    #[inline]
    pub fn succeeded(&self) {
        if self.count.load(Ordering::Relaxed) != 0 {
            let mut s = self.streak.lock().unwrap_or_else(|e| e.into_inner());
            *s = (0, None);
            self.count.store(0, Ordering::Relaxed);
        }
    }

    /// A call failed as an outage does, at `now`. `true` when this failure opened the
    /// breaker (the caller starts the probe).
    pub fn failed(&self, now: Instant) -> bool {
        if !self.settings.enabled {
            return false;
        }
        let n = {
            let mut s = self.streak.lock().unwrap_or_else(|e| e.into_inner());
            match s.1 {
                Some(first) if now.saturating_duration_since(first) <= self.settings.window => {
                    s.0 += 1
                }
                _ => *s = (1, Some(now)),
            }
            self.count.store(s.0, Ordering::Relaxed);
            s.0
        };
        n >= self.settings.failures
            && self
                .state
                .compare_exchange(
                    State::Closed as u8,
                    State::Open as u8,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// The probe starts: open → half-open. `false` if the breaker is not open.
    pub fn probe_starts(&self) -> bool {
        self.state
            .compare_exchange(
                State::Open as u8,
                State::HalfOpen as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The probe's outcome: success closes the breaker (and ends the streak), failure opens
    /// it again.
    pub fn probe_ended(&self, ok: bool) {
        if ok {
            {
                let mut s = self.streak.lock().unwrap_or_else(|e| e.into_inner());
                *s = (0, None);
                self.count.store(0, Ordering::Relaxed);
            }
            self.state.store(State::Closed as u8, Ordering::Release);
        } else {
            self.state.store(State::Open as u8, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32) -> Breaker {
        Breaker::new(BreakerSettings {
            failures,
            window: Duration::from_secs(10),
            ..BreakerSettings::default()
        })
    }

    #[test]
    fn consecutive_failures_within_the_window_open_it() {
        let b = breaker(3);
        let t = Instant::now();
        assert!(b.allows());
        assert!(!b.failed(t));
        assert!(!b.failed(t + Duration::from_secs(1)));
        // a success ends the streak
        b.succeeded();
        assert!(!b.failed(t + Duration::from_secs(2)));
        assert!(!b.failed(t + Duration::from_secs(3)));
        assert!(b.allows());
        assert!(b.failed(t + Duration::from_secs(4)), "third in a row opens");
        assert_eq!(b.state(), State::Open);
        assert!(!b.allows());
        // already open: only the first opener starts a probe
        assert!(!b.failed(t + Duration::from_secs(5)));
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_open_it() {
        let b = breaker(3);
        let t = Instant::now();
        assert!(!b.failed(t));
        assert!(!b.failed(t + Duration::from_secs(6)));
        // 11 s after the streak's first failure: a new streak starts
        assert!(!b.failed(t + Duration::from_secs(11)));
        assert!(!b.failed(t + Duration::from_secs(12)));
        assert!(b.allows());
        assert!(b.failed(t + Duration::from_secs(13)));
    }

    #[test]
    fn half_open_lets_only_the_probe_through_and_its_outcome_decides() {
        let b = breaker(1);
        assert!(b.failed(Instant::now()));
        assert!(b.probe_starts());
        assert_eq!(b.state(), State::HalfOpen);
        assert!(!b.allows(), "other calls still fail at once");
        assert!(!b.probe_starts(), "one probe at a time");
        b.probe_ended(false);
        assert_eq!(b.state(), State::Open);
        assert!(b.probe_starts());
        b.probe_ended(true);
        assert_eq!(b.state(), State::Closed);
        assert!(b.allows());
        // the streak starts from zero again
        assert!(b.failed(Instant::now()));
    }

    #[test]
    fn disabled_never_opens() {
        let b = Breaker::new(BreakerSettings {
            enabled: false,
            failures: 1,
            ..BreakerSettings::default()
        });
        for _ in 0..10 {
            assert!(!b.failed(Instant::now()));
        }
        assert!(b.allows());
    }
}
