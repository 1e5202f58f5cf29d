//! Retry timing: per-pod exponential backoff and the unschedulable-pool leftover flush.

use super::QueueError;
use serde::Deserialize;

/// Queue timing, with upstream kube-scheduler's defaults
/// (`podInitialBackoffSeconds: 1`, `podMaxBackoffSeconds: 10`,
/// `podMaxInUnschedulablePodsDuration: 5m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Backoff after the first failed attempt; doubles per further attempt.
    pub initial_backoff_ms: u64,
    /// Upper bound of the backoff.
    pub max_backoff_ms: u64,
    /// A pod left this long in the unschedulable pool is retried even if no
    /// event helped it, in case the queue missed one.
    pub unschedulable_flush_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 10_000,
            unschedulable_flush_ms: 5 * 60 * 1_000,
        }
    }
}

impl QueueConfig {
    pub fn validate(&self) -> Result<(), QueueError> {
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err(QueueError::BackoffInitialAboveMax {
                initial_ms: self.initial_backoff_ms,
                max_ms: self.max_backoff_ms,
            });
        }
        Ok(())
    }

    /// Backoff after `attempts` failed attempts: initial × 2^(attempts-1),
    /// capped at the maximum; no backoff before the first attempt.
    pub fn backoff_ms(&self, attempts: u32) -> u64 {
        let Some(doublings) = attempts.checked_sub(1) else {
            return 0;
        };
        let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
        self.initial_backoff_ms
            .saturating_mul(factor)
            .min(self.max_backoff_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let c = QueueConfig::default();
        let table = [
            (0, 0),
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (5, 10_000),
            (6, 10_000),
            (64, 10_000),
            (u32::MAX, 10_000),
        ];
        for (attempts, want) in table {
            assert_eq!(c.backoff_ms(attempts), want, "attempts {attempts}");
        }
    }

    #[test]
    fn custom_durations_and_validation() {
        let c = QueueConfig {
            initial_backoff_ms: 300,
            max_backoff_ms: 1_000,
            unschedulable_flush_ms: 0,
        };
        assert_eq!(c.backoff_ms(2), 600);
        assert_eq!(c.backoff_ms(3), 1_000);
        assert!(c.validate().is_ok());
        let bad = QueueConfig {
            initial_backoff_ms: 20_000,
            ..QueueConfig::default()
        };
        assert_eq!(
            bad.validate(),
            Err(QueueError::BackoffInitialAboveMax {
                initial_ms: 20_000,
                max_ms: 10_000
            })
        );
    }

    #[test]
    fn config_reads_partial_yaml_with_defaults() {
        let c: QueueConfig = serde_saphyr::from_str("max_backoff_ms: 30000\n").unwrap();
        assert_eq!(c.max_backoff_ms, 30_000);
        assert_eq!(c.initial_backoff_ms, 1_000);
        assert_eq!(c.unschedulable_flush_ms, 300_000);
    }
}
