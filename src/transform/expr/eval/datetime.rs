//! `datetime`, `date` and `timedelta`: ISO text in and out, `strftime`, and constructors with
//! Python's range checks.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};

use super::*;

pub(crate) fn iso_datetime(dt: &NaiveDateTime, off: &Option<FixedOffset>, sep: char) -> String {
    let mut s = dt.format("%Y-%m-%d").to_string();
    s.push(sep);
    let _ = write!(s, "{}", dt.format("%H:%M:%S"));
    let micros = dt.and_utc().timestamp_subsec_micros();
    if micros != 0 {
        let _ = write!(s, ".{micros:06}");
    }
    if let Some(o) = off {
        s.push_str(&offset_text(o));
    }
    s
}

pub(super) fn offset_text(o: &FixedOffset) -> String {
    let secs = o.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    let mut s = format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60);
    if a % 60 != 0 {
        let _ = write!(s, ":{:02}", a % 60);
    }
    s
}

/// `datetime.datetime.fromisoformat`, as Python 3.11 reads the common forms.
pub(crate) fn parse_iso_datetime(s: &str) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let s = s.trim();
    let date = NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok()?;
    if s.len() == 10 {
        return Some((date.and_hms_opt(0, 0, 0)?, None));
    }
    let rest = s.get(11..)?;
    let (time, offset) = if let Some(t) = rest.strip_suffix('Z') {
        (t, Some(FixedOffset::east_opt(0)?))
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let o = &rest[i + 1..];
        let (h, m, sec) = match o.len() {
            5 => (o.get(..2)?, o.get(3..5)?, "0"),
            4 => (o.get(..2)?, o.get(2..4)?, "0"),
            8 => (o.get(..2)?, o.get(3..5)?, o.get(6..8)?),
            2 => (o.get(..2)?, "0", "0"),
            _ => return None,
        };
        let secs = h.parse::<i32>().ok()? * 3600
            + m.parse::<i32>().ok()? * 60
            + sec.parse::<i32>().ok()?;
        let secs = if rest.as_bytes()[i] == b'-' {
            -secs
        } else {
            secs
        };
        (&rest[..i], Some(FixedOffset::east_opt(secs)?))
    } else {
        (rest, None)
    };
    let (hms, frac) = match time.split_once(['.', ',']) {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let num = |p: &str| -> Option<u32> {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
    };
    let (h, m, sec) = match parts.as_slice() {
        [h] => (num(h)?, 0, 0),
        [h, m] => (num(h)?, num(m)?, 0),
        [h, m, s] => (num(h)?, num(m)?, num(s)?),
        _ => return None,
    };
    let micro = match frac {
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let f6: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            f6.parse().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    Some((date.and_hms_micro_opt(h, m, sec, micro)?, offset))
}

pub(super) fn strftime(
    fmt: &str,
    dt: &NaiveDateTime,
    off: &Option<FixedOffset>,
) -> Result<String, EvalError> {
    use chrono::format::{Item, StrftimeItems};
    let fmt = fmt.replace("%f", "%6f");
    let items: Vec<Item> = StrftimeItems::new(&fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return fail(format!("invalid strftime format `{fmt}`"));
    }
    Ok(match off {
        Some(o) => DateTime::<FixedOffset>::from_naive_utc_and_offset(*dt - *o, *o)
            .format_with_items(items.into_iter())
            .to_string(),
        None => dt.format_with_items(items.into_iter()).to_string(),
    })
}

/// `datetime.datetime(year, month, day, hour=0, minute=0, second=0, microsecond=0)` or
/// `datetime.date(year, month, day)`, by position or keyword, with Python's range checks.
pub(super) fn construct_datetime<'a>(
    with_time: bool,
    args: Vec<Py<'a>>,
    kw: &[(&str, Py<'a>)],
) -> Result<Py<'a>, EvalError> {
    let names: &[&str] = if with_time {
        &[
            "year",
            "month",
            "day",
            "hour",
            "minute",
            "second",
            "microsecond",
        ]
    } else {
        &["year", "month", "day"]
    };
    let class = if with_time { "datetime" } else { "date" };
    if args.len() > names.len() {
        return fail(format!(
            "{class}() takes at most {} arguments ({} given)",
            names.len(),
            args.len()
        ));
    }
    let mut parts: Vec<Option<i64>> = vec![None; names.len()];
    for (i, a) in args.iter().enumerate() {
        parts[i] = Some(match a {
            Py::Int(n) => *n,
            other => {
                return fail(format!(
                    "'{}' object cannot be interpreted as an integer",
                    other.type_name()
                ));
            }
        });
    }
    for (name, v) in kw {
        let Some(i) = names.iter().position(|n| n == name) else {
            return fail(format!(
                "'{name}' is an invalid keyword argument for {class}()"
            ));
        };
        if parts[i].is_some() {
            return fail(format!(
                "argument for {class}() given by name ('{name}') and position"
            ));
        }
        let Py::Int(n) = v else {
            return fail(format!(
                "'{}' object cannot be interpreted as an integer",
                v.type_name()
            ));
        };
        parts[i] = Some(*n);
    }
    for (i, name) in names.iter().enumerate().take(3) {
        if parts[i].is_none() {
            return fail(format!(
                "{class}() missing required argument '{name}' (pos {})",
                i + 1
            ));
        }
    }
    let get = |i: usize| parts.get(i).copied().flatten().unwrap_or(0);
    let in_range = |v: i64, lo: i64, hi: i64, name: &str| -> Result<u32, EvalError> {
        if (lo..=hi).contains(&v) {
            Ok(v as u32)
        } else {
            fail(format!("{name} must be in {lo}..{hi}"))
        }
    };
    let year = in_range(get(0), 1, 9999, "year")?;
    let month = in_range(get(1), 1, 12, "month")?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, get(2).clamp(0, 32) as u32)
        .ok_or_else(|| EvalError::Failed("day is out of range for month".into()))?;
    if !with_time {
        return Ok(Py::Date(date));
    }
    let time = date
        .and_hms_micro_opt(
            in_range(get(3), 0, 23, "hour")?,
            in_range(get(4), 0, 59, "minute")?,
            in_range(get(5), 0, 59, "second")?,
            in_range(get(6), 0, 999_999, "microsecond")?,
        )
        .expect("the parts were checked");
    Ok(Py::DateTime(time, None))
}

/// `datetime.timedelta(days, seconds, microseconds, milliseconds, minutes, hours, weeks)`, by
/// position or keyword, each an int or a float; fractions round to the microsecond, half to
/// even.
pub(super) fn construct_delta<'a>(
    args: &[Py<'a>],
    kw: &[(&str, Py<'a>)],
) -> Result<Py<'a>, EvalError> {
    if args.len() > delta::UNITS.len() {
        return fail(format!(
            "timedelta() takes at most 7 arguments ({} given)",
            args.len()
        ));
    }
    let mut given: Vec<Option<&Py<'a>>> = vec![None; delta::UNITS.len()];
    for (i, a) in args.iter().enumerate() {
        given[i] = Some(a);
    }
    for (name, v) in kw {
        let Some(i) = delta::UNITS.iter().position(|(n, _)| n == name) else {
            return fail(format!(
                "'{name}' is an invalid keyword argument for timedelta()"
            ));
        };
        if given[i].is_some() {
            return fail(format!(
                "argument for timedelta() given by name ('{name}') and position"
            ));
        }
        given[i] = Some(v);
    }
    let mut whole: i128 = 0;
    let mut fraction = 0.0f64;
    for (v, (name, unit)) in given.iter().zip(delta::UNITS) {
        match v.map(num) {
            None => {}
            Some(Some(Num::D(_))) => {
                return fail(format!(
                    "TypeError: unsupported type for timedelta {name} component: decimal.Decimal"
                ));
            }
            Some(Some(Num::I(i))) => whole += i128::from(i) * i128::from(unit),
            Some(Some(Num::F(f))) => {
                let w = f.trunc();
                if w.abs() > 1.0e15 {
                    return fail("OverflowError: timedelta out of range");
                }
                whole += (w as i128) * i128::from(unit);
                fraction += (f - w) * unit as f64;
            }
            Some(None) => {
                return fail(format!(
                    "unsupported type for timedelta component: {}",
                    v.map_or("None", |v| v.type_name())
                ));
            }
        }
    }
    let micros = delta::round_micros(fraction)?;
    Ok(Py::Delta(delta::checked(whole + i128::from(micros))?))
}
