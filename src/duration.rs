//! The one grammar for durations, used by every flag, variable, setting and annotation that
//! takes one (`--timeout`, `--since`, `--older-than`, `DSM_RUN_TIMEOUT`, `timeout:`,
//! `retry_backoff:`, `DSM_RUNS_RETENTION_MAX_AGE` ...).
//!
//! A bare integer is seconds (`90`); otherwise one or more numbers each followed by a unit:
//! `ms`, `s`, `m`, `h`, `d` or `w` (`500ms`, `1.5h`, `1h30m`, `7d`). A duration longer than
//! [`MAX`] (100 years) is refused, so no clock arithmetic downstream can overflow; where a
//! duration meets a clock, [`before`] and [`after`] check anyway.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The longest duration dsm accepts: 100 years of 365.25 days.
pub const MAX: Duration = Duration::from_secs(100 * 36_525 * 864);

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration: {reason}")]
pub struct DurationError {
    /// The text as given (cut when long).
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl DurationError {
    fn new(given: &str, reason: &'static str) -> Self {
        let given = given.trim();
        let mut text: String = given.chars().take(40).collect();
        if text.len() < given.len() {
            text.push('…');
        }
        DurationError { text, reason }
    }

    /// What to write instead, for a `hint:` line.
    pub fn hint() -> &'static str {
        "write seconds (`90`) or a number with a unit: `500ms`, `30s`, `15m`, `2h`, `7d`, `2w` \
         (combined as `1h30m`), at most 100 years"
    }
}

impl From<DurationError> for crate::error::Error {
    fn from(e: DurationError) -> Self {
        crate::error::Error::config(e.to_string()).hint(DurationError::hint())
    }
}

/// Reads a duration in the grammar above.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let bad = |reason| DurationError::new(text, reason);
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .ok()
            .and_then(|n| seconds(n).ok())
            .ok_or_else(|| bad("longer than 100 years"));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| bad("a number at the end has no unit (ms, s, m, h, d, w)"))?;
        let number = &rest[..end];
        rest = &rest[end..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit: u128 = match &rest[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            _ => return Err(bad("units are ms, s, m, h, d and w")),
        };
        rest = &rest[unit_len..];
        let nanos = scaled(number, nanos_per_unit).ok_or_else(|| {
            if number.is_empty() || number.matches('.').count() > 1 || number == "." {
                bad("expected a number before each unit")
            } else {
                bad("longer than 100 years")
            }
        })?;
        total = total
            .checked_add(nanos)
            .filter(|t| *t <= MAX.as_nanos())
            .ok_or_else(|| bad("longer than 100 years"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad("longer than 100 years"))?;
    let nanos = u32::try_from(total % 1_000_000_000).expect("a remainder of 10^9 fits in u32");
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one `.`) times `unit` nanoseconds, exactly to the
/// nanosecond (fraction digits beyond that are dropped); `None` when malformed or over [`MAX`].
fn scaled(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // More than 20 digits is over any limit; parsing would overflow first.
    let whole: u128 = if whole.is_empty() {
        0
    } else if whole.len() > 20 {
        return None;
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(unit)?;
    let mut scale = unit;
    for digit in fraction.bytes().take(24) {
        scale /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
    }
    (nanos <= MAX.as_nanos()).then_some(nanos)
}

/// A whole number of seconds as a duration (a YAML `timeout: 90`), refused over [`MAX`].
pub fn seconds(n: u64) -> Result<Duration, DurationError> {
    let d = Duration::from_secs(n);
    if d > MAX {
        return Err(DurationError::new(&n.to_string(), "longer than 100 years"));
    }
    Ok(d)
}

/// A number of seconds from JSON (`60`, `0.5`), refused when negative, not finite or over
/// [`MAX`].
pub fn seconds_f64(n: f64) -> Result<Duration, DurationError> {
    if !n.is_finite() || n < 0.0 {
        return Err(DurationError::new(
            &n.to_string(),
            "expected a non-negative number of seconds",
        ));
    }
    Duration::try_from_secs_f64(n)
        .ok()
        .filter(|d| *d <= MAX)
        .ok_or_else(|| DurationError::new(&n.to_string(), "longer than 100 years"))
}

/// The duration as a signed time span for calendar arithmetic. Any duration within [`MAX`]
/// fits; a longer one (not from [`parse`]) is clamped to [`MAX`].
pub fn signed(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d.min(MAX)).expect("100 years fits in a TimeDelta")
}

/// `now - d`, or `None` when that is before the calendar's start.
pub fn before(now: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(signed(d))
}

/// `now + d`, or `None` when that is past the calendar's end.
pub fn after(now: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    now.checked_add_signed(signed(d))
}

/// Reads a moment as every `--since`/`--before`/`--older-than` takes it: a duration back from
/// `now` in the grammar above (`30d`, `12h`, `45m`), a date (`2024-01-31`, midnight UTC) or an
/// RFC 3339 time.
pub fn moment(text: &str, now: DateTime<Utc>) -> crate::error::Result<DateTime<Utc>> {
    let bad = || {
        crate::error::Error::config(format!("`{text}` is not a time"))
            .hint("use a duration back from now (`30d`, `12h`, `45m`), a date or an RFC 3339 time")
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        return Ok(day.and_utc());
    }
    match parse(text) {
        Ok(d) => before(now, d).ok_or_else(bad),
        Err(e) if e.reason == "longer than 100 years" => Err(e.into()),
        Err(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_the_grammar_reads() {
        for (text, want) in [
            ("90", Duration::from_secs(90)),
            (" 90 ", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("1.5h", Duration::from_secs(5400)),
            ("1h30m", Duration::from_secs(5400)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("2w", Duration::from_secs(14 * 86_400)),
            ("0.001s", Duration::from_millis(1)),
            ("36525d", Duration::from_secs(36_525 * 86_400)),
        ] {
            assert_eq!(parse(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn huge_or_malformed_durations_are_errors_never_panics() {
        for text in [
            "",
            "s",
            "5 parsecs",
            "1.2.3s",
            ".s",
            "-5s",
            "5x",
            "99999999999999999999h",
            "99999999999999999999",
            "18446744073709551615",
            "18446744073709551615w",
            "36526d",
            "1e400s",
            "inf",
            "NaNs",
            &"9".repeat(10_000),
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
        assert!(seconds(u64::MAX).is_err());
        assert!(seconds_f64(f64::MAX).is_err());
        assert!(seconds_f64(-1.0).is_err());
        assert!(seconds_f64(f64::NAN).is_err());
        let err = parse("99999999999999999999h").unwrap_err();
        assert_eq!(err.reason, "longer than 100 years");
    }

    #[test]
    fn clock_arithmetic_is_checked() {
        let now = DateTime::<Utc>::MIN_UTC + TimeDelta::try_days(1).unwrap();
        assert_eq!(before(now, MAX), None);
        assert!(before(Utc::now(), MAX).is_some());
        assert_eq!(
            after(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)),
            None
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn any_text_is_a_duration_or_an_error(text in "\\PC{0,40}") {
            let _ = parse(&text);
        }

        #[test]
        fn unit_sums_read_exactly(h in 0u64..1000, m in 0u64..60, s in 0u64..60) {
            let text = format!("{h}h{m}m{s}s");
            proptest::prop_assert_eq!(
                parse(&text).unwrap(),
                Duration::from_secs(h * 3600 + m * 60 + s)
            );
        }
    }

    #[test]
    fn moments_parse_durations_dates_and_times() {
        let now: DateTime<Utc> = "2024-05-10T12:00:00Z".parse().unwrap();
        assert_eq!(
            moment("2d", now).unwrap(),
            "2024-05-08T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            moment("2024-01-31", now).unwrap(),
            "2024-01-31T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            moment("2024-01-31T10:00:00+02:00", now).unwrap(),
            "2024-01-31T08:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            moment("2w", now).unwrap(),
            "2024-04-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            moment("2024-01-31T08:00:00Z", now).unwrap(),
            "2024-01-31T08:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "a time in UTC ends in a letter and is still a time"
        );
        assert!(moment("2x", now).is_err());
        assert!(moment("99999999999999999999d", now).is_err());
        assert!(moment("soon", now).is_err());
    }
}
