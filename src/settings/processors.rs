//! A setting's `value_processor` and `value_post_processor`, with the names Meltano knows:
//! `nest_object`, `upcase_string`, `stringify` and `parse_date`.
//!
//! The processor runs when a value is typed (whatever store it came from); the post-processor
//! runs on the value that goes into the plugin's config file and `config print`. A setting of
//! kind `date_iso8601` without a post-processor gets `parse_date`, as in Meltano.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Months, Utc};
use regex::Regex;
use serde_json::Value as J;

use crate::error::{Error, Result};

/// The processor names Meltano defines.
pub const NAMES: [&str; 4] = ["nest_object", "upcase_string", "stringify", "parse_date"];

/// Applies processor `name` to a setting's value (never `null`: callers skip those).
pub fn apply(name: &str, value: J, setting: &str, plugin: &str) -> Result<J> {
    apply_at(name, value, setting, plugin, Utc::now())
}

/// [`apply`] with the time relative dates count from.
pub fn apply_at(
    name: &str,
    value: J,
    setting: &str,
    plugin: &str,
    now: DateTime<Utc>,
) -> Result<J> {
    let needs = |what: &str| {
        Error::config(format!(
            "setting `{setting}` of `{plugin}` uses the value processor `{name}`, which needs {what}"
        ))
        .hint("fix the value, or the setting's `value_processor` in meltano.yml")
    };
    match name {
        "nest_object" => match value {
            J::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, v) in map {
                    nest(&mut out, &split_path(&key), v);
                }
                Ok(J::Object(out))
            }
            _ => Err(needs("an object")),
        },
        "upcase_string" => match value {
            J::String(s) => Ok(J::String(s.to_uppercase())),
            _ => Err(needs("a string")),
        },
        "stringify" => match value {
            J::String(_) => Ok(value),
            other => Ok(J::String(crate::pyjson::dumps(&other))),
        },
        "parse_date" => match value {
            J::String(s) => Ok(J::String(parse_date(&s, now).unwrap_or(s))),
            _ => Err(needs("a string")),
        },
        other => Err(Error::config(format!(
            "setting `{setting}` of `{plugin}` names the value processor `{other}`, which does not exist"
        ))
        .hint(format!("use one of: {}", NAMES.join(", ")))),
    }
}

/// `a.b\.c` as `["a", "b.c"]`: dots separate keys unless escaped.
fn split_path(key: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                parts.last_mut().expect("never empty").push('.');
            }
            '.' => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    parts
}

/// Puts `value` at `path`, creating objects on the way; an object meeting an object merges.
fn nest(into: &mut serde_json::Map<String, J>, path: &[String], value: J) {
    let (first, rest) = path.split_first().expect("a path has a key");
    if rest.is_empty() {
        match (into.get_mut(first), value) {
            (Some(J::Object(old)), J::Object(new)) => {
                for (k, v) in new {
                    nest(old, &split_path(&k), v);
                }
            }
            (_, value) => {
                into.insert(first.clone(), value);
            }
        }
        return;
    }
    let slot = into
        .entry(first.clone())
        .or_insert_with(|| J::Object(serde_json::Map::new()));
    if !slot.is_object() {
        *slot = J::Object(serde_json::Map::new());
    }
    if let J::Object(map) = slot {
        nest(map, rest, value);
    }
}

/// An ISO 8601 date stays as written; a relative date (`today`, `yesterday`, `now`,
/// `3 days ago`, `2 weeks ago`, `1 month ago`, ...) becomes the ISO time it names; anything
/// else is `None` (the value is kept as written, as Meltano does).
pub fn parse_date(s: &str, now: DateTime<Utc>) -> Option<String> {
    static ISO: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
            .expect("the pattern compiles")
    });
    static AGO: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(\d+|an?)\s+(second|minute|hour|day|week|month|year)s?\s+ago$")
            .expect("the pattern compiles")
    });
    let text = s.trim();
    if ISO.is_match(text) {
        return Some(s.to_string());
    }
    let lower = text.to_lowercase();
    let at = match lower.as_str() {
        "now" => now,
        "today" => now,
        "yesterday" => now.checked_sub_signed(Duration::try_days(1)?)?,
        _ => {
            let caps = AGO.captures(&lower)?;
            let n: i64 = match &caps[1] {
                "a" | "an" => 1,
                digits => digits.parse().ok()?,
            };
            // A huge N is no date: `None`, never an overflow.
            let back = |span: Option<Duration>| now.checked_sub_signed(span?);
            match &caps[2] {
                "second" => back(Duration::try_seconds(n))?,
                "minute" => back(Duration::try_minutes(n))?,
                "hour" => back(Duration::try_hours(n))?,
                "day" => back(Duration::try_days(n))?,
                "week" => back(Duration::try_weeks(n))?,
                "month" => now.checked_sub_months(Months::new(u32::try_from(n).ok()?))?,
                _ => {
                    now.checked_sub_months(Months::new(u32::try_from(n).ok()?.checked_mul(12)?))?
                }
            }
        }
    };
    // Meltano writes the time as Python's `isoformat()` of a naive datetime: no offset.
    Some(at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(name: &str, v: J) -> Result<J> {
        let now = "2026-11-22T10:00:00Z".parse().unwrap();
        apply_at(name, v, "s", "tap-x", now)
    }

    #[test]
    fn nest_object_nests_dotted_keys_and_keeps_escaped_dots() {
        let v = run(
            "nest_object",
            json!({"a.b": 1, "a.c": {"d": 2}, "s3\\.url": "x", "a": {"e": 3}}),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": {"b": 1, "c": {"d": 2}, "e": 3}, "s3.url": "x"})
        );
    }

    #[test]
    fn upcase_stringify_and_their_wrong_inputs() {
        assert_eq!(
            run("upcase_string", json!("eu-west")).unwrap(),
            json!("EU-WEST")
        );
        let e = run("upcase_string", json!(3)).unwrap_err();
        assert!(e.message().contains("needs a string"), "{}", e.message());
        assert_eq!(run("stringify", json!("x")).unwrap(), json!("x"));
        assert_eq!(
            run("stringify", json!({"a": [1, 2]})).unwrap(),
            json!(r#"{"a": [1, 2]}"#)
        );
        let e = run("shout", json!("x")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.hints()[0].contains("upcase_string"), "{:?}", e.hints());
    }

    #[test]
    fn parse_date_keeps_iso_dates_and_resolves_relative_ones() {
        assert_eq!(
            run("parse_date", json!("2024-01-31")).unwrap(),
            json!("2024-01-31")
        );
        assert_eq!(
            run("parse_date", json!("3 days ago")).unwrap(),
            json!("2026-11-19T10:00:00.000000")
        );
        assert_eq!(
            run("parse_date", json!("a month ago")).unwrap(),
            json!("2026-10-22T10:00:00.000000")
        );
        assert_eq!(
            run("parse_date", json!("whenever")).unwrap(),
            json!("whenever")
        );
    }
}
