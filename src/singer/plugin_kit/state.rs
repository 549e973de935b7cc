//! Bookmarks in a Singer state document, and how replication key values compare.

use std::cmp::Ordering;

use serde_json::{Value, json};

/// The bookmarked replication key value of a stream in a state document:
/// `{"bookmarks": {stream: {"replication_key": k, "replication_key_value": v}}}`.
/// Meltano may hand over the state wrapped in `{"singer_state": …}`; that is accepted too.
pub fn bookmark(state: &Value, stream: &str, key: &str) -> Option<Value> {
    let state = state.get("singer_state").unwrap_or(state);
    // A whole STATE message (as some targets print) holds the state in `value`.
    let state = match state.get("type") {
        Some(t) if t == "STATE" => state.get("value")?,
        _ => state,
    };
    let b = state.get("bookmarks")?.get(stream)?;
    if let Some(k) = b.get("replication_key").and_then(Value::as_str)
        && k != key
    {
        return None;
    }
    b.get("replication_key_value")
        .cloned()
        .filter(|v| !v.is_null())
}

/// Sets a stream's bookmark in a state document, keeping other streams' bookmarks.
pub fn set_bookmark(state: &mut Value, stream: &str, key: &str, value: Value) {
    if !state.is_object() {
        *state = json!({});
    }
    let obj = state.as_object_mut().expect("made an object above");
    let bookmarks = obj.entry("bookmarks").or_insert_with(|| json!({}));
    if !bookmarks.is_object() {
        *bookmarks = json!({});
    }
    bookmarks
        .as_object_mut()
        .expect("made an object above")
        .insert(
            stream.to_owned(),
            json!({"replication_key": key, "replication_key_value": value}),
        );
}

/// Whether a row with replication key value `v` is synced given the bookmark `b`. Like the
/// Singer SDK, the comparison is `>=`: rows sharing the bookmark's value may have been added
/// after the last sync, so the row at the bookmark is sent again (at-least-once delivery).
/// Values that cannot be compared with the bookmark (null, another type) are skipped.
pub fn at_or_after_bookmark(v: &Value, b: &Value) -> bool {
    matches!(
        compare_values(v, b),
        Some(Ordering::Greater | Ordering::Equal)
    )
}

/// Orders two replication key values: numbers numerically, strings by text (ISO 8601
/// timestamps in one format sort correctly), `None` when they cannot be compared.
pub fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Some(x.cmp(&y));
            }
            x.as_f64()?.partial_cmp(&y.as_f64()?)
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}
