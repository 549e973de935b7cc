//! `retries`, `retry_backoff` and `timeout` from a flow's `annotations.dsm`, and durations.
//!
//! The shape in `meltano.yml` (every key optional):
//!
//! ```yaml
//! annotations:
//!   dsm:
//!     retries: 3            # attempts after the first one (default 0)
//!     retry_backoff:
//!       initial: 5s         # wait before the first retry (default 5s)
//!       max: 5m             # the wait never grows past this (default 5m)
//!       multiplier: 2       # each wait is the previous one times this (default 2, at least 1)
//!     timeout: 1h           # one attempt is stopped after this long (default: none)
//! ```
//!
//! Durations are a number with a unit (`500ms`, `30s`, `5m`, `2h`, `1d`), several of them
//! together (`1h30m`), or a bare number of seconds.

use std::time::Duration;

use super::OrchestrateError;

/// How long to wait between attempts: exponential, with a cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBackoff {
    /// The wait before the first retry.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Each wait is the previous one times this (at least 1).
    pub multiplier: f64,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        RetryBackoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(300),
            multiplier: 2.0,
        }
    }
}

impl RetryBackoff {
    /// The wait before attempt `attempt` (1-based; attempt 1 has no wait, attempt 2 waits
    /// `initial`, attempt 3 `initial × multiplier`, ... never more than `max`).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(attempt - 2).unwrap_or(i32::MAX);
        let seconds = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        if !seconds.is_finite() || seconds >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::try_from_secs_f64(seconds).unwrap_or(self.max)
        }
    }
}

/// How often a flow is tried and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RetryPolicy {
    /// Attempts after the first (`retries: 2` means up to 3 attempts).
    pub retries: u32,
    /// The waits between attempts.
    pub backoff: RetryBackoff,
}

impl RetryPolicy {
    /// The most attempts this policy makes.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }
}

/// The run-history trigger of one attempt of flow `flow` started by `base` (`sync`,
/// `schedule`): `sync:NAME`, and `sync:NAME (attempt 2 of 3)` when the flow may retry, so each
/// attempt's row says which it was.
pub fn attempt_trigger(base: &str, flow: &str, attempt: u32, max_attempts: u32) -> String {
    if max_attempts > 1 {
        format!("{base}:{flow} (attempt {attempt} of {max_attempts})")
    } else {
        format!("{base}:{flow}")
    }
}

/// The attempt number written by [`attempt_trigger`] (1 for any other trigger).
pub fn attempt_of_trigger(trigger: &str) -> u32 {
    trigger
        .strip_suffix(')')
        .and_then(|t| t.rsplit_once(" (attempt "))
        .and_then(|(_, rest)| rest.split_once(" of "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(1)
}

/// Reads `500ms`, `30s`, `5m`, `2h`, `1d`, combinations such as `1h30m`, or bare seconds (`90`),
/// in the one grammar of [`crate::duration`].
pub fn parse_duration(text: &str) -> Result<Duration, OrchestrateError> {
    crate::duration::parse(text).map_err(|e| OrchestrateError::BadDuration {
        value: e.text,
        reason: e.reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_triggers_round_trip() {
        assert_eq!(attempt_trigger("sync", "daily", 1, 1), "sync:daily");
        assert_eq!(
            attempt_trigger("schedule", "daily", 2, 3),
            "schedule:daily (attempt 2 of 3)"
        );
        assert_eq!(attempt_of_trigger("schedule:daily (attempt 2 of 3)"), 2);
        assert_eq!(attempt_of_trigger("sync:daily"), 1);
        assert_eq!(attempt_of_trigger("cli"), 1);
        assert_eq!(attempt_of_trigger("sync:x (attempt two of 3)"), 1);
    }

    #[test]
    fn durations_read_units_combinations_and_bare_seconds() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        for bad in ["", "5x", "m", "5m3", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn backoff_grows_by_the_multiplier_and_stops_at_the_cap() {
        let backoff = RetryBackoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(30),
            multiplier: 2.0,
        };
        let waits: Vec<u64> = (1..=6).map(|a| backoff.delay_before(a).as_secs()).collect();
        assert_eq!(waits, [0, 5, 10, 20, 30, 30]);
    }
}
