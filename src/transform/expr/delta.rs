//! `datetime.timedelta`: a signed number of microseconds, with Python's constructor, text and
//! arithmetic (the parts that do not need the evaluator).

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

use super::EvalError;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Python's limit: `|days| <= 999999999`.
const MAX_DAYS: i64 = 999_999_999;

fn overflow() -> EvalError {
    EvalError::Failed("OverflowError: timedelta out of range".into())
}

/// Checks Python's range for a timedelta of `micros` microseconds.
pub(crate) fn checked(micros: i128) -> Result<i64, EvalError> {
    let days = micros.div_euclid(i128::from(MICROS_PER_DAY));
    if days.abs() > i128::from(MAX_DAYS) {
        return Err(EvalError::Failed(format!(
            "OverflowError: days={days}; must have magnitude <= {MAX_DAYS}"
        )));
    }
    i64::try_from(micros).map_err(|_| overflow())
}

/// Rounds `x` microseconds half to even, as Python's timedelta does with fractions.
pub(crate) fn round_micros(x: f64) -> Result<i64, EvalError> {
    if !x.is_finite() {
        return Err(EvalError::Failed(
            "ValueError: cannot convert float NaN or infinity to timedelta".into(),
        ));
    }
    let r = x.round_ties_even();
    if r.abs() > 9.0e18 {
        return Err(overflow());
    }
    checked(r as i128)
}

/// The microseconds of each unit of `timedelta(days, seconds, microseconds, milliseconds,
/// minutes, hours, weeks)`, in that (positional) order.
pub(crate) const UNITS: [(&str, i64); 7] = [
    ("days", MICROS_PER_DAY),
    ("seconds", 1_000_000),
    ("microseconds", 1),
    ("milliseconds", 1_000),
    ("minutes", 60_000_000),
    ("hours", 3_600_000_000),
    ("weeks", 7 * MICROS_PER_DAY),
];

/// `days`, `seconds` and `microseconds` as Python normalises them (only `days` negative).
pub(crate) fn parts(micros: i64) -> (i64, i64, i64) {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    (days, rest / 1_000_000, rest % 1_000_000)
}

/// Python's `str(timedelta)`: `1 day, 0:00:05`, `-1 day, 23:59:59.500000`.
pub(crate) fn to_str(micros: i64) -> String {
    let (days, seconds, us) = parts(micros);
    let clock = format!(
        "{}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    let clock = if us == 0 {
        clock
    } else {
        format!("{clock}.{us:06}")
    };
    if days == 0 {
        clock
    } else {
        let plural = if days.abs() == 1 { "" } else { "s" };
        format!("{days} day{plural}, {clock}")
    }
}

/// Python's `repr(timedelta)`: `datetime.timedelta(days=1, seconds=5)`.
pub(crate) fn to_repr(micros: i64) -> String {
    let (days, seconds, us) = parts(micros);
    let fields: Vec<String> = [("days", days), ("seconds", seconds), ("microseconds", us)]
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    if fields.is_empty() {
        "datetime.timedelta(0)".into()
    } else {
        format!("datetime.timedelta({})", fields.join(", "))
    }
}

/// `dt + micros`.
pub(crate) fn shift(dt: &NaiveDateTime, micros: i64) -> Result<NaiveDateTime, EvalError> {
    dt.checked_add_signed(TimeDelta::microseconds(micros))
        .filter(|d| (1..=9999).contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| EvalError::Failed("OverflowError: date value out of range".into()))
}

/// `date + timedelta`: Python adds the whole days only.
pub(crate) fn shift_date(d: &NaiveDate, micros: i64) -> Result<NaiveDate, EvalError> {
    let days = parts(micros).0;
    TimeDelta::try_days(days)
        .and_then(|span| d.checked_add_signed(span))
        .filter(|d| (1..=9999).contains(&chrono::Datelike::year(d)))
        .ok_or_else(|| EvalError::Failed("OverflowError: date value out of range".into()))
}

/// `a - b` of two datetimes, in microseconds.
pub(crate) fn between(a: &NaiveDateTime, b: &NaiveDateTime) -> Result<i64, EvalError> {
    let d = a.signed_duration_since(*b);
    d.num_microseconds()
        .ok_or_else(overflow)
        .and_then(|m| checked(i128::from(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_follows_python() {
        assert_eq!(to_str(86_400_000_000 + 5_000_000), "1 day, 0:00:05");
        assert_eq!(to_str(-1_000_000), "-1 day, 23:59:59");
        assert_eq!(
            to_str(2 * 86_400_000_000 + 11_045_000_006),
            "2 days, 3:04:05.000006"
        );
        assert_eq!(to_str(0), "0:00:00");
        assert_eq!(
            to_repr(86_400_000_000 + 5_000_000),
            "datetime.timedelta(days=1, seconds=5)"
        );
        assert_eq!(
            to_repr(-1),
            "datetime.timedelta(days=-1, seconds=86399, microseconds=999999)"
        );
        assert_eq!(to_repr(0), "datetime.timedelta(0)");
    }
}
