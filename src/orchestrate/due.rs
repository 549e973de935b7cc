//! Which schedules `dsm schedule run-due` starts now.
//!
//! The rules, as a pure function of the schedule, what the store remembers about it, and `now`:
//! - a schedule whose time has come since its last run is due, once, however many ticks were
//!   missed (a machine that was off all weekend runs a daily schedule once, not three times);
//! - a schedule seen for the first time is not due: the caller records `now` as its "first seen"
//!   time, and the schedule is due at its first tick after that;
//! - a schedule whose flow is still running is not started again;
//! - `@once` is due at the first tick after it was first seen and never again after a run;
//! - `@manual`, `@none`, disabled flows, and flows without an interval are never due.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::flow::Flow;
use super::interval::Interval;

/// What the store remembers about one schedule between `run-due` invocations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// When `run-due` first saw the schedule (record it on [`DueDecision::FirstSeen`]).
    pub first_seen: Option<DateTime<Utc>>,
    /// When its last run started, by `run-due` or by hand (`dsm schedule run`).
    pub last_run: Option<DateTime<Utc>>,
    /// Whether a run of its flow holds the flow's lock right now.
    pub running: bool,
}

/// The verdict for one schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueDecision {
    /// Start it now; record `now` as its last run. `tick` is the latest tick it runs for.
    Due {
        /// The latest tick at or before now.
        tick: DateTime<Utc>,
    },
    /// Its time has come but its flow is still running: not started.
    StillRunning {
        /// The tick it would have run for.
        tick: DateTime<Utc>,
    },
    /// Seen for the first time: record `now` as first seen; it is due from `next` on.
    FirstSeen {
        /// Its first tick after now.
        next: Option<DateTime<Utc>>,
    },
    /// Not due yet; due from `next` on.
    NotDue {
        /// Its next tick.
        next: Option<DateTime<Utc>>,
    },
    /// Never due on its own: `@manual`/`@none`, disabled, no interval, or `@once` that ran.
    Never,
}

impl DueDecision {
    /// Whether the schedule should be started now.
    pub fn is_due(&self) -> bool {
        matches!(self, DueDecision::Due { .. })
    }
}

/// Decides whether `flow` is due at `now`, given what the store remembers about it.
pub fn decide_due(flow: &Flow, record: &ScheduleRecord, now: DateTime<Utc>) -> DueDecision {
    let Some(interval) = flow.interval.as_ref().filter(|_| flow.enabled) else {
        return DueDecision::Never;
    };
    let tick = match interval {
        Interval::Manual { .. } => return DueDecision::Never,
        Interval::Once => {
            if record.last_run.is_some() {
                return DueDecision::Never;
            }
            let Some(first_seen) = record.first_seen else {
                return DueDecision::FirstSeen {
                    next: interval.next_after(now),
                };
            };
            match interval.next_after(first_seen) {
                Some(tick) if tick <= now => tick,
                next => return DueDecision::NotDue { next },
            }
        }
        Interval::Cron { .. } => {
            let Some(since) = record.last_run.or(record.first_seen) else {
                return DueDecision::FirstSeen {
                    next: interval.next_after(now),
                };
            };
            match interval.latest_due_at_or_before(now) {
                Some(tick) if tick > since => tick,
                _ => {
                    return DueDecision::NotDue {
                        next: interval.next_after(now),
                    };
                }
            }
        }
    };
    if record.running {
        DueDecision::StillRunning { tick }
    } else {
        DueDecision::Due { tick }
    }
}

/// Decides every flow at once (flows missing from `records` are seen for the first time).
/// The result keeps the order of `flows`.
pub fn decide_all<'a>(
    flows: &'a [Flow],
    records: &HashMap<String, ScheduleRecord>,
    now: DateTime<Utc>,
) -> Vec<(&'a Flow, DueDecision)> {
    flows
        .iter()
        .map(|flow| {
            let record = records.get(&flow.name).copied().unwrap_or_default();
            (flow, decide_due(flow, &record, now))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrate::flow::{Blocks, FlowKind};
    use chrono_tz::Tz;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn schedule(name: &str, interval: &str) -> Flow {
        let mut f = Flow::new(
            name,
            FlowKind::Schedule,
            Blocks::Pair {
                extractor: "tap-csv".into(),
                loader: "target-jsonl".into(),
            },
        );
        f.interval = Some(Interval::parse(interval, Tz::UTC).unwrap());
        f
    }

    /// Plays `run-due` at each time, recording what the store would, and returns the times it ran.
    fn play(flow: &Flow, times: &[&str]) -> Vec<String> {
        let mut record = ScheduleRecord::default();
        let mut ran = Vec::new();
        for t in times {
            let now = at(t);
            match decide_due(flow, &record, now) {
                DueDecision::FirstSeen { .. } => record.first_seen = Some(now),
                DueDecision::Due { .. } => {
                    record.last_run = Some(now);
                    ran.push(t.to_string());
                }
                _ => {}
            }
        }
        ran
    }

    #[test]
    fn first_seen_schedule_waits_for_its_next_tick() {
        let flow = schedule("hourly", "@hourly");
        let now = at("2026-03-01T10:30:00Z");
        assert_eq!(
            decide_due(&flow, &ScheduleRecord::default(), now),
            DueDecision::FirstSeen {
                next: Some(at("2026-03-01T11:00:00Z"))
            }
        );
        let ran = play(
            &flow,
            &[
                "2026-03-01T10:30:00Z",
                "2026-03-01T10:59:00Z",
                "2026-03-01T11:00:00Z",
                "2026-03-01T11:01:00Z",
                "2026-03-01T12:00:30Z",
            ],
        );
        assert_eq!(ran, ["2026-03-01T11:00:00Z", "2026-03-01T12:00:30Z"]);
    }

    #[test]
    fn missed_ticks_run_once() {
        let flow = schedule("daily", "@daily");
        let record = ScheduleRecord {
            first_seen: Some(at("2026-03-01T08:00:00Z")),
            last_run: Some(at("2026-03-02T00:00:10Z")),
            running: false,
        };
        // Off from Monday to Thursday morning: three ticks missed, one run.
        let now = at("2026-03-05T09:00:00Z");
        assert_eq!(
            decide_due(&flow, &record, now),
            DueDecision::Due {
                tick: at("2026-03-05T00:00:00Z")
            }
        );
        let after = ScheduleRecord {
            last_run: Some(now),
            ..record
        };
        assert_eq!(
            decide_due(&flow, &after, at("2026-03-05T09:01:00Z")),
            DueDecision::NotDue {
                next: Some(at("2026-03-06T00:00:00Z"))
            }
        );
    }

    #[test]
    fn still_running_flow_is_not_started() {
        let flow = schedule("quarter", "*/15 * * * *");
        let record = ScheduleRecord {
            first_seen: None,
            last_run: Some(at("2026-03-01T10:00:05Z")),
            running: true,
        };
        assert_eq!(
            decide_due(&flow, &record, at("2026-03-01T10:15:00Z")),
            DueDecision::StillRunning {
                tick: at("2026-03-01T10:15:00Z")
            }
        );
        assert!(!decide_due(&flow, &record, at("2026-03-01T10:14:00Z")).is_due());
    }

    #[test]
    fn once_runs_once_ever() {
        let flow = schedule("backfill", "@once");
        let ran = play(
            &flow,
            &[
                "2026-03-01T10:30:20Z",
                "2026-03-01T10:30:50Z",
                "2026-03-01T10:31:00Z",
                "2026-03-01T10:32:00Z",
                "2027-01-01T00:00:00Z",
            ],
        );
        assert_eq!(ran, ["2026-03-01T10:31:00Z"]);
    }

    #[test]
    fn manual_none_and_disabled_are_never_due() {
        let mut disabled = schedule("off", "* * * * *");
        disabled.enabled = false;
        let record = ScheduleRecord {
            first_seen: Some(at("2020-01-01T00:00:00Z")),
            ..Default::default()
        };
        for flow in [schedule("m", "@manual"), schedule("n", "@none"), disabled] {
            assert_eq!(
                decide_due(&flow, &record, at("2026-03-01T10:00:00Z")),
                DueDecision::Never,
                "{}",
                flow.name
            );
        }
    }

    #[test]
    fn cron_in_a_time_zone_ticks_in_local_time() {
        let mut flow = schedule("berlin", "0 3 * * *");
        flow.interval =
            Some(Interval::parse("0 3 * * *", "Europe/Berlin".parse().unwrap()).unwrap());
        // 03:00 in Berlin is 02:00 UTC in winter.
        let ran = play(
            &flow,
            &[
                "2026-01-10T00:00:00Z",
                "2026-01-10T01:59:00Z",
                "2026-01-10T02:00:00Z",
            ],
        );
        assert_eq!(ran, ["2026-01-10T02:00:00Z"]);
    }

    #[test]
    fn decide_all_treats_unknown_schedules_as_first_seen() {
        let flows = [schedule("a", "@hourly"), schedule("b", "@hourly")];
        let mut records = HashMap::new();
        records.insert(
            "a".to_string(),
            ScheduleRecord {
                first_seen: Some(at("2026-03-01T09:10:00Z")),
                ..Default::default()
            },
        );
        let decisions = decide_all(&flows, &records, at("2026-03-01T10:05:00Z"));
        assert!(decisions[0].1.is_due());
        assert!(matches!(decisions[1].1, DueDecision::FirstSeen { .. }));
    }
}
