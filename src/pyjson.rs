//! JSON text as Python's `json.dumps` writes it: `", "` and `": "` between items, and with
//! `ensure_ascii` (Python's default) every character outside printable ASCII as `\uXXXX`
//! escapes (UTF-16 units). Meltano writes arrays and objects into environment variables this
//! way, and stream map expressions call `json.dumps` itself; both use this module so the two
//! cannot drift apart.

use std::fmt::Write as _;

use serde_json::Value;

/// `json.dumps(v)` with Python's defaults.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(k, true, out);
                out.push_str(": ");
                write_value(item, out);
            }
            out.push('}');
        }
        Value::String(s) => write_string(s, true, out),
        other => out.push_str(&other.to_string()),
    }
}

/// Appends `s` as a JSON string literal, quotes included, escaped as Python escapes it: control
/// characters always, and with `ensure_ascii` everything outside `' '..='~'` too.
pub fn write_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spacing_and_escapes_follow_python() {
        // Python: json.dumps({"a": [1, "é"], "b": {"c": None}, "d": "\x7f\t"})
        let v = json!({"a": [1, "é"], "b": {"c": null}, "d": "\u{7f}\t"});
        assert_eq!(
            dumps(&v),
            r#"{"a": [1, "\u00e9"], "b": {"c": null}, "d": "\u007f\t"}"#
        );
        // Characters beyond the BMP are two UTF-16 escapes, as in Python.
        assert_eq!(dumps(&json!("😀")), r#""\ud83d\ude00""#);
    }

    #[test]
    fn without_ensure_ascii_only_control_characters_are_escaped() {
        let mut out = String::new();
        write_string("é\u{1}", false, &mut out);
        assert_eq!(out, "\"é\\u0001\"");
    }
}
