//! A deterministic total order on JSON values, used by `max`, `min` and `latest`.
//!
//! Numbers compare by their exact decimal text (no float round trip, so `0.1` and
//! `0.10000000000000001` differ); strings that read as RFC 3339 date-times compare as instants,
//! dates (`YYYY-MM-DD`) as dates; anything else by text. Across kinds:
//! null < boolean < number < string < array < object.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Number, Value};

fn kind_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Compares two JSON values in dsm's total order.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => compare_strings(x, y),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            a.to_string().cmp(&b.to_string())
        }
        _ => kind_rank(a).cmp(&kind_rank(b)),
    }
}

/// Whether two values are the same value (numbers by value: `1` equals `1.0`).
pub fn same(a: &Value, b: &Value) -> bool {
    compare(a, b) == Ordering::Equal
}

/// A number as sign, significant digits (no leading or trailing zeros) and a power of ten.
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let all = format!("{int}{frac}");
        let mut exponent = exp.checked_sub(i64::try_from(frac.len()).ok()?)?;
        let trimmed_start = all.trim_start_matches('0');
        let digits = trimmed_start.trim_end_matches('0');
        exponent = exponent.checked_add(i64::try_from(trimmed_start.len() - digits.len()).ok()?)?;
        Some(Decimal {
            negative: negative && !digits.is_empty(),
            digits: digits.to_owned(),
            exponent,
        })
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // The position of the most significant digit decides, then the digits themselves
        // (comparing digit strings lexicographically pads the shorter one with zeros).
        let top = |d: &Decimal| d.digits.len() as i64 + d.exponent;
        top(self)
            .cmp(&top(other))
            .then_with(|| self.digits.cmp(&other.digits))
    }

    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    let (ta, tb) = (a.to_string(), b.to_string());
    match (Decimal::parse(&ta), Decimal::parse(&tb)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => ta.cmp(&tb),
    }
}

enum Moment {
    Instant(i64, u32),
    Local(NaiveDateTime),
    Date(NaiveDate),
}

fn moment(s: &str) -> Option<Moment> {
    if s.len() < 10 || !s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if s.len() == 10 {
        return NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(Moment::Date);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(Moment::Instant(t.timestamp(), t.timestamp_subsec_nanos()));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .map(Moment::Local)
}

fn compare_strings(a: &str, b: &str) -> Ordering {
    let by_time = match (moment(a), moment(b)) {
        (Some(Moment::Instant(s1, n1)), Some(Moment::Instant(s2, n2))) => {
            Some((s1, n1).cmp(&(s2, n2)))
        }
        (Some(Moment::Local(x)), Some(Moment::Local(y))) => Some(x.cmp(&y)),
        (Some(Moment::Date(x)), Some(Moment::Date(y))) => Some(x.cmp(&y)),
        _ => None,
    };
    // Equal instants written differently (`Z` and `+00:00`) still need one winner: the text
    // settles it, so the order stays total and deterministic.
    by_time.unwrap_or(Ordering::Equal).then_with(|| a.cmp(b))
}

/// Normalises an arrival time (`time_extracted`) to UTC text that sorts in time order.
pub fn normalise_time(text: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| {
        t.with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_compare_exactly_by_value() {
        assert_eq!(compare(&num("2"), &num("10")), Ordering::Less);
        assert_eq!(compare(&num("-2"), &num("-10")), Ordering::Greater);
        assert_eq!(compare(&num("1.0"), &num("1")), Ordering::Equal);
        assert_eq!(compare(&num("1e3"), &num("999.999")), Ordering::Greater);
        assert_eq!(compare(&num("0.0"), &num("-0")), Ordering::Equal);
        assert_eq!(
            compare(&num("0.1"), &num("0.10000000000000001")),
            Ordering::Less
        );
        assert_eq!(
            compare(
                &num("123456789012345678901234567890"),
                &num("123456789012345678901234567891")
            ),
            Ordering::Less
        );
        assert_eq!(compare(&num("-0.5"), &num("0.25")), Ordering::Less);
    }

    #[test]
    fn date_times_compare_as_instants_and_dates_as_dates() {
        // 10:00+02:00 is 08:00Z, earlier than 09:00Z though its text sorts later.
        assert_eq!(
            compare(
                &json!("2024-01-01T10:00:00+02:00"),
                &json!("2024-01-01T09:00:00Z")
            ),
            Ordering::Less
        );
        assert_eq!(
            compare(&json!("2024-02-01"), &json!("2024-10-01")),
            Ordering::Less
        );
        assert_eq!(compare(&json!("b"), &json!("a")), Ordering::Greater);
    }

    #[test]
    fn kinds_are_ordered_and_null_is_lowest() {
        assert_eq!(compare(&Value::Null, &json!(false)), Ordering::Less);
        assert_eq!(compare(&json!(5), &json!("5")), Ordering::Less);
        assert!(same(&json!({"a": 1}), &json!({"a": 1})));
        assert!(!same(&json!("x"), &json!("y")));
    }

    #[test]
    fn arrival_times_normalise_to_utc() {
        assert_eq!(
            normalise_time("2024-01-01T10:00:00+02:00").unwrap(),
            "2024-01-01T08:00:00.000000000Z"
        );
        assert_eq!(normalise_time("yesterday"), None);
    }
}
