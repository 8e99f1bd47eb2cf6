//! Failing dependencies, logged once per interval with a count.
//!
//! A dependency that is down (Redis, a directory, an identity provider, an upstream app) fails
//! every request that needs it: logging each failure wrote 169k lines for a 5 s outage under
//! load. Here each dependency — keyed by its kind and name, e.g. (`redis`, `shared`) — logs its
//! first failure at once (WARN); later failures within the interval are only counted, and
//! summed up as "N more failures in the last Xs" by the next line: the next failure after the
//! interval, or the background sweep once the interval has passed (so a burst that stops
//! still reports its count).
//!
//! The per-failure path is lock-free: a handle (`Dependency`, kept by the caller or looked up
//! by name under a read lock) holds two atomics; only the failure that writes a line formats
//! it. The number of keys is bounded (`MAX_KEYS`); past it, failures share one overflow key.
//!
//! The interval is 10 s, or `TESSERA_FAILURE_LOG_INTERVAL_MS` when set (read once).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Default interval between two lines about one dependency.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Most dependencies tracked by name; later ones share the overflow key.
pub const MAX_KEYS: usize = 512;
const NEVER: u64 = 0;

/// A time source in milliseconds; injectable for tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn monotonic() -> Clock {
    let base = Instant::now();
    Arc::new(move || u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// What one log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub kind: &'static str,
    pub name: String,
    /// What failed (the message), e.g. `session store unavailable`.
    pub what: String,
    /// The error of the failure logged (for a summary: the last one seen).
    pub error: String,
    /// Failures counted since the previous line, not logged one by one.
    pub suppressed: u64,
    /// Time since the previous line about this dependency (0 for the first).
    pub since_ms: u64,
}

impl Line {
    /// The text of the line's message.
    pub fn message(&self) -> String {
        if self.suppressed == 0 {
            self.what.clone()
        } else {
            format!(
                "{} ({} more failures in the last {}s)",
                self.what,
                self.suppressed,
                seconds(self.since_ms)
            )
        }
    }

    fn emit(&self) {
        tracing::warn!(
            dependency = self.kind,
            name = %self.name,
            error = %self.error,
            suppressed = self.suppressed,
            "{}",
            self.message()
        );
    }
}

/// Whole seconds, at least 1 (a count "in the last 0s" reads wrong).
fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// One dependency's state: when it last wrote a line, and what was counted since.
#[derive(Debug)]
struct Slot {
    kind: &'static str,
    name: String,
    /// Clock time of the last line + 1 (`NEVER` = no line yet).
    last: AtomicU64,
    suppressed: AtomicU64,
    /// The last failure counted (message, error), for the summary; best effort.
    last_failure: Mutex<Option<(String, String)>>,
}

impl Slot {
    /// Records a failure at `now`: `Some(line)` when it is to be logged.
    fn record(&self, now: u64, interval: u64, what: &str, error: &dyn Display) -> Option<Line> {
        loop {
            let last = self.last.load(Ordering::Acquire);
            if last != NEVER && now < (last - 1).saturating_add(interval) {
                self.suppressed.fetch_add(1, Ordering::AcqRel);
                // only a summary needs it; a busy lock means another failure is writing it
                if let Ok(mut f) = self.last_failure.try_lock() {
                    *f = Some((what.to_string(), error.to_string()));
                }
                return None;
            }
            if self
                .last
                .compare_exchange(last, now + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let suppressed = self.suppressed.swap(0, Ordering::AcqRel);
                return Some(Line {
                    kind: self.kind,
                    name: self.name.clone(),
                    what: what.to_string(),
                    error: error.to_string(),
                    suppressed,
                    since_ms: if last == NEVER { 0 } else { now - (last - 1) },
                });
            }
        }
    }

    /// The summary of failures counted but not logged, once the interval has passed.
    fn sweep(&self, now: u64, interval: u64) -> Option<Line> {
        let last = self.last.load(Ordering::Acquire);
        if last == NEVER
            || now < (last - 1).saturating_add(interval)
            || self.suppressed.load(Ordering::Acquire) == 0
        {
            return None;
        }
        self.last
            .compare_exchange(last, now + 1, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let suppressed = self.suppressed.swap(0, Ordering::AcqRel);
        if suppressed == 0 {
            return None;
        }
        let (what, error) = self
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| ("failing".to_string(), String::new()));
        Some(Line {
            kind: self.kind,
            name: self.name.clone(),
            what,
            error,
            suppressed,
            since_ms: now - (last - 1),
        })
    }
}

struct Inner {
    interval: u64,
    clock: Clock,
    slots: RwLock<HashMap<(&'static str, String), Arc<Slot>>>,
    overflow: Arc<Slot>,
}

/// The rate-limited failure log (one per process: `global()`; own instances for tests).
#[derive(Clone)]
pub struct FailureLog(Arc<Inner>);

impl std::fmt::Debug for FailureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLog")
            .field("interval_ms", &self.0.interval)
            .finish_non_exhaustive()
    }
}

/// A handle on one dependency's slot: recording a failure through it takes no lock.
#[derive(Clone)]
pub struct Dependency {
    log: Arc<Inner>,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("kind", &self.slot.kind)
            .field("name", &self.slot.name)
            .finish()
    }
}

impl Dependency {
    /// Records a failure; logs it (WARN) when it is the first in the interval.
    pub fn failed(&self, what: &str, error: &dyn Display) {
        if let Some(line) = self.record(what, error) {
            line.emit();
        }
    }

    /// `failed` without logging: the line to write, if any (tests).
    pub fn record(&self, what: &str, error: &dyn Display) -> Option<Line> {
        let now = (self.log.clock)();
        self.slot.record(now, self.log.interval, what, error)
    }
}

impl FailureLog {
    pub fn new(interval: Duration, clock: Clock) -> Self {
        let interval = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Self(Arc::new(Inner {
            interval,
            clock,
            slots: RwLock::new(HashMap::new()),
            overflow: Arc::new(Slot {
                kind: "other",
                name: "*".to_string(),
                last: AtomicU64::new(NEVER),
                suppressed: AtomicU64::new(0),
                last_failure: Mutex::new(None),
            }),
        }))
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.0.interval)
    }

    /// The handle of dependency (`kind`, `name`); the same slot for the same key.
    pub fn dependency(&self, kind: &'static str, name: &str) -> Dependency {
        let key = (kind, name.to_string());
        let found = self
            .0
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let slot = match found {
            Some(s) => s,
            None => {
                let mut slots = self.0.slots.write().unwrap_or_else(|e| e.into_inner());
                let len = slots.len();
                match slots.get(&key) {
                    Some(s) => s.clone(),
                    None if len >= MAX_KEYS => self.0.overflow.clone(),
                    None => {
                        let s = Arc::new(Slot {
                            kind,
                            name: key.1.clone(),
                            last: AtomicU64::new(NEVER),
                            suppressed: AtomicU64::new(0),
                            last_failure: Mutex::new(None),
                        });
                        slots.insert(key, s.clone());
                        s
                    }
                }
            }
        };
        Dependency {
            log: self.0.clone(),
            slot,
        }
    }

    /// The summaries due now: dependencies with failures counted since their last line, whose
    /// interval has passed.
    pub fn sweep(&self) -> Vec<Line> {
        let now = (self.0.clock)();
        let slots: Vec<Arc<Slot>> = {
            let map = self.0.slots.read().unwrap_or_else(|e| e.into_inner());
            map.values()
                .cloned()
                .chain(std::iter::once(self.0.overflow.clone()))
                .collect()
        };
        slots
            .iter()
            .filter_map(|s| s.sweep(now, self.0.interval))
            .collect()
    }
}

/// The process's failure log; its sweeper (a small thread) starts with it.
pub fn global() -> &'static FailureLog {
    static GLOBAL: OnceLock<FailureLog> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let interval = std::env::var("TESSERA_FAILURE_LOG_INTERVAL_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_INTERVAL);
        let log = FailureLog::new(interval, monotonic());
        let sweeper = log.clone();
        let _ = std::thread::Builder::new()
            .name("failure-log".into())
            .spawn(move || loop {
                std::thread::sleep((sweeper.interval() / 4).max(Duration::from_millis(50)));
                for line in sweeper.sweep() {
                    line.emit();
                }
            });
        log
    })
}

/// The handle of (`kind`, `name`) in the process's failure log.
pub fn dependency(kind: &'static str, name: &str) -> Dependency {
    global().dependency(kind, name)
}

/// Records a failure of (`kind`, `name`) in the process's failure log: logged (WARN, with the
/// count of the failures not logged since the previous line) at most once per interval.
pub fn failed(kind: &'static str, name: &str, what: &str, error: &dyn Display) {
    dependency(kind, name).failed(what, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_at(t: &Arc<AtomicU64>) -> FailureLog {
        let t = t.clone();
        FailureLog::new(
            Duration::from_secs(10),
            Arc::new(move || t.load(Ordering::SeqCst)),
        )
    }

    #[test]
    fn first_failure_logs_then_counts_until_the_interval_passes() {
        let t = Arc::new(AtomicU64::new(5_000));
        let log = log_at(&t);
        let redis = log.dependency("redis", "shared");
        let first = redis.record("store unavailable", &"refused").unwrap();
        assert_eq!(first.suppressed, 0);
        assert_eq!(first.since_ms, 0);
        assert_eq!(first.message(), "store unavailable");
        assert_eq!(first.error, "refused");
        for i in 0..99 {
            t.store(5_000 + i * 10, Ordering::SeqCst);
            assert!(redis.record("store unavailable", &"refused").is_none());
        }
        // not yet: the interval is measured from the line
        t.store(14_999, Ordering::SeqCst);
        assert!(redis.record("store unavailable", &"timeout").is_none());
        t.store(15_000, Ordering::SeqCst);
        let next = redis.record("store unavailable", &"timeout").unwrap();
        assert_eq!(next.suppressed, 100);
        assert_eq!(next.since_ms, 10_000);
        assert_eq!(
            next.message(),
            "store unavailable (100 more failures in the last 10s)"
        );
        // the count starts again
        t.store(16_000, Ordering::SeqCst);
        assert!(redis.record("store unavailable", &"x").is_none());
        t.store(40_000, Ordering::SeqCst);
        assert_eq!(redis.record("w", &"x").unwrap().suppressed, 1);
    }

    #[test]
    fn the_sweep_summarizes_a_burst_that_stopped() {
        let t = Arc::new(AtomicU64::new(0));
        let log = log_at(&t);
        let ldap = log.dependency("ldap", "corp");
        assert!(ldap.record("directory unavailable", &"down").is_some());
        assert!(log.sweep().is_empty(), "nothing counted yet");
        t.store(100, Ordering::SeqCst);
        for _ in 0..41 {
            assert!(ldap.record("directory unavailable", &"timeout").is_none());
        }
        t.store(9_000, Ordering::SeqCst);
        assert!(log.sweep().is_empty(), "the interval has not passed");
        t.store(12_500, Ordering::SeqCst);
        let lines = log.sweep();
        assert_eq!(
            lines,
            vec![Line {
                kind: "ldap",
                name: "corp".into(),
                what: "directory unavailable".into(),
                error: "timeout".into(),
                suppressed: 41,
                since_ms: 12_500,
            }]
        );
        assert_eq!(
            lines[0].message(),
            "directory unavailable (41 more failures in the last 13s)"
        );
        // once only; and the summary counts as the dependency's line for the interval
        assert!(log.sweep().is_empty());
        t.store(13_000, Ordering::SeqCst);
        assert!(ldap.record("directory unavailable", &"x").is_none());
        t.store(22_500, Ordering::SeqCst);
        assert_eq!(log.sweep()[0].suppressed, 1);
    }

    #[test]
    fn dependencies_are_counted_apart_and_keys_are_bounded() {
        let t = Arc::new(AtomicU64::new(0));
        let log = log_at(&t);
        assert!(log.dependency("oidc", "a").record("w", &"e").is_some());
        assert!(log.dependency("oidc", "b").record("w", &"e").is_some());
        assert!(log.dependency("ldap", "a").record("w", &"e").is_some());
        assert!(log.dependency("oidc", "a").record("w", &"e").is_none());
        for i in 3..MAX_KEYS {
            log.dependency("upstream", &format!("app{i}"));
        }
        // past the bound: one shared slot, still rate limited
        let over = log.dependency("upstream", "one-too-many");
        assert_eq!(over.slot.kind, "other");
        assert!(over.record("w", &"e").is_some());
        assert!(log
            .dependency("upstream", "another")
            .record("w", &"e")
            .is_none());
        assert_eq!(log.0.slots.read().unwrap().len(), MAX_KEYS);
    }

    #[test]
    fn concurrent_failures_write_one_line_and_lose_no_count() {
        let t = Arc::new(AtomicU64::new(1));
        let log = log_at(&t);
        let dep = log.dependency("redis", "shared");
        let lines: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let dep = dep.clone();
                    s.spawn(move || {
                        (0..1000)
                            .filter(|_| dep.record("w", &"e").is_some())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(lines, 1);
        t.store(20_000, Ordering::SeqCst);
        assert_eq!(log.sweep()[0].suppressed, 3999);
    }
}
