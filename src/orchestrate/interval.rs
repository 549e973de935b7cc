//! Schedule intervals: Meltano's `@` shortcuts and 5-field cron expressions in a time zone.

use chrono::{DateTime, Duration, SubsecRound, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::OrchestrateError;

/// When a schedule runs, as written in `meltano.yml` under `interval`.
///
/// Meltano's shortcuts expand to the cron expressions Airflow uses; `@once` runs a single time
/// ever; `@manual` and `@none` never run on their own (they only run when named).
#[derive(Debug, Clone)]
pub enum Interval {
    /// A 5-field cron expression (after expanding any shortcut), evaluated in `tz`.
    Cron {
        /// The interval as written (`@daily`, `*/5 * * * *`).
        written: String,
        /// The 5-field expression it stands for (`0 0 * * *`).
        expression: String,
        /// The parsed expression.
        cron: Box<Cron>,
        /// The time zone the expression is read in (UTC unless the schedule names one).
        tz: Tz,
    },
    /// `@once`: due a single time, on the first tick after it was first seen.
    Once,
    /// `@manual` or `@none`: never due; runs only when named.
    Manual {
        /// The interval as written.
        written: String,
    },
}

/// The 5-field cron expression a Meltano shortcut stands for (Airflow's meanings).
pub fn shortcut_expression(shortcut: &str) -> Option<&'static str> {
    Some(match shortcut {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => return None,
    })
}

/// Every shortcut dsm accepts, for error messages.
pub const SHORTCUTS: &[&str] = &[
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@midnight",
    "@once",
    "@manual",
    "@none",
];

/// What is wrong with a cron expression, in words (the library's message without its type
/// names such as `ComponentError`).
fn cron_reason(e: &croner::errors::CronError) -> String {
    use croner::errors::CronError as E;
    match e {
        E::InvalidPattern(m) | E::IllegalCharacters(m) | E::ComponentError(m) => {
            m.trim_end_matches('.').to_string()
        }
        E::EmptyPattern => "the expression is empty".to_string(),
        E::InvalidDate | E::InvalidTime | E::TimeSearchLimitExceeded => {
            "the expression matches no time".to_string()
        }
    }
}

impl Interval {
    /// Reads an interval in time zone `tz` (Meltano schedules are in UTC unless told otherwise).
    pub fn parse(written: &str, tz: Tz) -> Result<Interval, OrchestrateError> {
        let written = written.trim();
        match written {
            "@once" => return Ok(Interval::Once),
            "@manual" | "@none" => {
                return Ok(Interval::Manual {
                    written: written.to_string(),
                });
            }
            _ => {}
        }
        let expression = if written.starts_with('@') {
            shortcut_expression(written)
                .ok_or_else(|| OrchestrateError::BadInterval {
                    interval: written.to_string(),
                    reason: format!("unknown shortcut; use one of {}", SHORTCUTS.join(", ")),
                    suggestion: crate::error::did_you_mean(written, SHORTCUTS.iter().copied())
                        .map(str::to_owned),
                })?
                .to_string()
        } else {
            let fields: Vec<&str> = written.split_whitespace().collect();
            if fields.len() != 5 {
                return Err(OrchestrateError::BadInterval {
                    interval: written.to_string(),
                    reason: format!(
                        "a cron expression has 5 fields (minute hour day month weekday), this one has {}",
                        fields.len()
                    ),
                    suggestion: None,
                });
            }
            fields.join(" ")
        };
        let cron = Cron::new(&expression)
            .parse()
            .map_err(|e| OrchestrateError::BadInterval {
                interval: written.to_string(),
                reason: cron_reason(&e),
                suggestion: None,
            })?;
        Ok(Interval::Cron {
            written: written.to_string(),
            expression,
            cron: Box::new(cron),
            tz,
        })
    }

    /// The interval as written in the project file.
    pub fn written(&self) -> &str {
        match self {
            Interval::Cron { written, .. } | Interval::Manual { written } => written,
            Interval::Once => "@once",
        }
    }

    /// The 5-field cron expression, for intervals that have one.
    pub fn cron_expression(&self) -> Option<&str> {
        match self {
            Interval::Cron { expression, .. } => Some(expression),
            _ => None,
        }
    }

    /// The time zone of a cron interval (UTC for the others).
    pub fn tz(&self) -> Tz {
        match self {
            Interval::Cron { tz, .. } => *tz,
            _ => Tz::UTC,
        }
    }

    /// Whether the interval ever runs on its own (`@manual`/`@none` do not; `dsm sync` skips them).
    pub fn runs_on_its_own(&self) -> bool {
        !matches!(self, Interval::Manual { .. })
    }

    /// The first tick strictly after `t`. `@once` ticks once, at the first whole minute after
    /// `t` (it is meant to run at the first opportunity); `@manual`/`@none` never tick.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Interval::Cron { cron, tz, .. } => {
                // Whole seconds: croner steps in seconds and would keep a fraction otherwise.
                let t = t.trunc_subsecs(0);
                let find = |from: DateTime<Utc>| {
                    let start = tz.from_utc_datetime(&from.naive_utc());
                    cron.find_next_occurrence(&start, false)
                        .ok()
                        .map(|next| next.with_timezone(&Utc))
                };
                let next = find(t)?;
                if next > t {
                    return Some(next);
                }
                // In the hour a DST change repeats, a local time maps back to its first
                // occurrence; step past the repeated hour so time only moves forward.
                find(t.checked_add_signed(Duration::try_hours(1)?)?).filter(|next| *next > t)
            }
            Interval::Once => {
                let minute = t.with_second(0)?.with_nanosecond(0)?;
                minute.checked_add_signed(Duration::try_minutes(1)?)
            }
            Interval::Manual { .. } => None,
        }
    }

    /// The latest cron tick at or before `now`, if there is one within the last ten years.
    /// `@once`, `@manual` and `@none` have no recurring ticks and return `None`.
    pub fn latest_due_at_or_before(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Interval::Cron { .. } = self else {
            return None;
        };
        // croner only searches forward: look back over growing windows until one holds a tick,
        // then walk forward to the last tick that is not after `now`.
        for lookback in [
            Duration::try_hours(2),
            Duration::try_days(2),
            Duration::try_days(32),
            Duration::try_days(367),
            Duration::try_days(3660),
        ] {
            let mut tick = self.next_after(now.checked_sub_signed(lookback?)?)?;
            if tick > now {
                continue;
            }
            while let Some(next) = self.next_after(tick) {
                if next > now || next <= tick {
                    break;
                }
                tick = next;
            }
            return Some(tick);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn shortcuts_expand_to_airflow_cron_expressions() {
        let cases = [
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
        ];
        for (shortcut, expression) in cases {
            let interval = Interval::parse(shortcut, Tz::UTC).unwrap();
            assert_eq!(interval.cron_expression(), Some(expression), "{shortcut}");
            assert!(interval.runs_on_its_own());
        }
        assert!(
            !Interval::parse("@manual", Tz::UTC)
                .unwrap()
                .runs_on_its_own()
        );
        assert!(!Interval::parse("@none", Tz::UTC).unwrap().runs_on_its_own());
        assert!(matches!(
            Interval::parse("@once", Tz::UTC).unwrap(),
            Interval::Once
        ));
    }

    #[test]
    fn bad_intervals_say_why_and_suggest() {
        match Interval::parse("@dialy", Tz::UTC).unwrap_err() {
            OrchestrateError::BadInterval { suggestion, .. } => {
                assert_eq!(suggestion.as_deref(), Some("@daily"))
            }
            other => panic!("{other:?}"),
        }
        let err = Interval::parse("0 0 * *", Tz::UTC).unwrap_err();
        assert!(err.to_string().contains("this one has 4"), "{err}");
        assert!(Interval::parse("61 * * * *", Tz::UTC).is_err());
        assert!(
            Interval::parse("0 0 0 * * *", Tz::UTC).is_err(),
            "6 fields are not accepted"
        );
    }

    #[test]
    fn next_after_is_strictly_later() {
        let hourly = Interval::parse("@hourly", Tz::UTC).unwrap();
        assert_eq!(
            hourly.next_after(at("2026-03-01T10:00:00Z")),
            Some(at("2026-03-01T11:00:00Z"))
        );
        assert_eq!(
            hourly.next_after(at("2026-03-01T09:59:59.500Z")),
            Some(at("2026-03-01T10:00:00Z"))
        );
        let weekly = Interval::parse("@weekly", Tz::UTC).unwrap();
        // 2026-03-01 is a Sunday.
        assert_eq!(
            weekly.next_after(at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-08T00:00:00Z"))
        );
        assert_eq!(
            Interval::parse("@manual", Tz::UTC)
                .unwrap()
                .next_after(at("2026-03-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn latest_due_finds_the_last_tick_not_after_now() {
        let every5 = Interval::parse("*/5 * * * *", Tz::UTC).unwrap();
        assert_eq!(
            every5.latest_due_at_or_before(at("2026-03-01T10:07:00Z")),
            Some(at("2026-03-01T10:05:00Z"))
        );
        assert_eq!(
            every5.latest_due_at_or_before(at("2026-03-01T10:05:00Z")),
            Some(at("2026-03-01T10:05:00Z"))
        );
        let yearly = Interval::parse("@yearly", Tz::UTC).unwrap();
        assert_eq!(
            yearly.latest_due_at_or_before(at("2026-11-22T13:00:00Z")),
            Some(at("2026-01-01T00:00:00Z"))
        );
        let monthly = Interval::parse("@monthly", Tz::UTC).unwrap();
        assert_eq!(
            monthly.latest_due_at_or_before(at("2026-03-31T23:59:59Z")),
            Some(at("2026-03-01T00:00:00Z"))
        );
        assert_eq!(
            Interval::Once.latest_due_at_or_before(at("2026-03-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn time_zones_follow_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let daily = Interval::parse("0 9 * * *", ny).unwrap();
        // 09:00 New York is 14:00 UTC in winter (EST) and 13:00 UTC after 2026-03-08 (EDT).
        assert_eq!(
            daily.next_after(at("2026-03-06T15:00:00Z")),
            Some(at("2026-03-07T14:00:00Z"))
        );
        assert_eq!(
            daily.next_after(at("2026-03-07T15:00:00Z")),
            Some(at("2026-03-08T13:00:00Z"))
        );
        assert_eq!(
            daily.latest_due_at_or_before(at("2026-03-08T13:30:00Z")),
            Some(at("2026-03-08T13:00:00Z"))
        );
    }
}
