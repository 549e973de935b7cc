//! The registry of sources and destinations: operator status and its history, health from the
//! run history, metrics for monitoring, and retention of the run history.
//!
//! Everything here reads and writes through the [`Store`](crate::store::Store) trait and takes
//! the current time as an argument, so tests control the clock.

pub mod access;
pub mod catalog;
pub mod flowmap;
pub mod health;
pub mod listing;
pub mod metrics;
pub mod plan;
pub mod probe;
pub mod retention;
pub mod status;

use chrono::{DateTime, Duration, Utc};

use crate::error::Result;
use crate::store::RunRecord;

pub use health::{Health, HealthOptions, Subject, Verdict, health_report};
pub use metrics::{MetricsSnapshot, render_prometheus, snapshot, write_atomically};
pub use retention::{PruneOutcome, PrunePolicy, prune_runs};
pub use status::{
    OperatorStatus, SourceState, SourceStatus, held_out_of_syncs, set_operator_status,
    source_status, source_statuses, status_history,
};

/// Parses an age or window such as `90s`, `15m`, `24h`, `7d` or `2w` (a bare number is seconds)
/// in the one duration grammar (see [`crate::duration`]).
pub fn parse_age(text: &str) -> Result<Duration> {
    Ok(crate::duration::signed(crate::duration::parse(text)?))
}

/// How long a finished run took (`None` while it runs; a killed run counts until its last
/// heartbeat, the last moment it was known alive).
pub fn run_duration(run: &RunRecord) -> Option<Duration> {
    use crate::store::RunStatus;
    let end: DateTime<Utc> = match (run.ended_at, run.status) {
        (_, RunStatus::Running) => return None,
        (Some(end), _) => end,
        (None, _) => run.heartbeat_at,
    };
    Some(
        end.signed_duration_since(run.started_at)
            .max(Duration::zero()),
    )
}

/// The extractors of a run (a run normally has one).
pub fn run_extractors(run: &RunRecord) -> impl Iterator<Item = &str> {
    run.plugins
        .iter()
        .filter(|p| p.role == "extractor")
        .map(|p| p.plugin.as_str())
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_parses_ages_with_units() {
        assert_eq!(parse_age("90").unwrap(), Duration::seconds(90));
        assert_eq!(parse_age("15m").unwrap(), Duration::minutes(15));
        assert_eq!(parse_age("24h").unwrap(), Duration::hours(24));
        assert_eq!(parse_age("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_age("2w").unwrap(), Duration::days(14));
        for bad in ["", "h", "7 days", "-3d", "3y", "99999999999999999999d"] {
            let err = parse_age(bad).unwrap_err();
            assert!(err.message().contains("is not a duration"), "{bad}");
        }
    }
}
