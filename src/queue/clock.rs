//! Time for the queue: real for the live scheduler, virtual for the simulator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A monotonic millisecond clock. The origin is arbitrary; only differences matter.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// Real time, counted from the moment the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Virtual time the simulator drives. Clones share one time, so the queue and
/// the simulator can each hold one.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Moves time to `ms`, never backwards (the clock stays monotonic: a
    /// smaller `ms` is ignored). Returns the time after the call.
    pub fn set(&self, ms: u64) -> u64 {
        self.now.fetch_max(ms, Ordering::SeqCst).max(ms)
    }

    /// Moves time forward by `ms` (saturating). Returns the time after the call.
    pub fn advance(&self, ms: u64) -> u64 {
        let prev = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            })
            .unwrap_or_else(|t| t);
        prev.saturating_add(ms)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time_and_never_go_back() {
        let c = ManualClock::new(1_000);
        let shared = c.clone();
        assert_eq!(c.advance(500), 1_500);
        assert_eq!(shared.now_ms(), 1_500);
        assert_eq!(shared.set(4_000), 4_000);
        assert_eq!(c.now_ms(), 4_000);
        assert_eq!(c.set(10), 4_000, "set must not move time backwards");
        assert_eq!(c.now_ms(), 4_000);
        assert_eq!(c.advance(u64::MAX), u64::MAX);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = c.now_ms();
        assert!(b >= a + 5, "{a} -> {b}");
    }
}
