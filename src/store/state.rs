//! Singer state as Meltano keeps it: state ids, the partial/completed split, and the merge rules.
//!
//! Meltano stores a row per state id with a `completed_state` and a `partial_state`, each a
//! payload `{"singer_state": ...}`. Reading merges the partial payload over the completed one
//! (a deep merge where objects merge key by key and anything else is replaced). Writing a
//! complete payload replaces the completed state and drops the partial one; writing a partial
//! payload deep-merges it over the existing partial state and keeps the completed state.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::store::RunId;

/// The top-level key of a state payload, as in Meltano.
pub const SINGER_STATE_KEY: &str = "singer_state";

/// How many state events (each with the payload it wrote) are kept per state id: the newest;
/// older ones are dropped as new ones are written, so the history stays bounded however often
/// a tap emits STATE.
pub const STATE_EVENTS_KEPT: i64 = 1000;

/// The id under which a flow's state is stored: `{environment}:{extractor}-to-{loader}` plus an
/// optional `:{suffix}`, as Meltano builds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StateId(String);

impl StateId {
    /// Wraps an id as typed (by a user or read from a database).
    pub fn new(id: impl Into<String>) -> Self {
        StateId(id.into())
    }

    /// The id Meltano gives the flow `extractor` → `loader` in `environment`, with an optional
    /// `state_id_suffix`. Without an environment the `{environment}:` prefix is left out.
    pub fn for_flow(
        environment: Option<&str>,
        extractor: &str,
        loader: &str,
        suffix: Option<&str>,
    ) -> Self {
        let mut id = match environment {
            Some(env) => format!("{env}:{extractor}-to-{loader}"),
            None => format!("{extractor}-to-{loader}"),
        };
        if let Some(suffix) = suffix.filter(|s| !s.is_empty()) {
            id.push(':');
            id.push_str(suffix);
        }
        StateId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StateId {
    fn from(s: &str) -> Self {
        StateId(s.to_owned())
    }
}

/// One stored state row: both halves, as Meltano's `state` table holds them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredState {
    /// The state id.
    pub state_id: StateId,
    /// The completed payload (`{}` or `{"singer_state": ...}`).
    pub completed: Value,
    /// The partial payload, merged over `completed` when read.
    pub partial: Value,
    /// When the row last changed (absent for rows imported without a time).
    pub updated_at: Option<DateTime<Utc>>,
}

impl StoredState {
    /// The payload the next run starts from: the partial state merged over the completed state.
    pub fn merged(&self) -> Value {
        let mut dest = self.completed.clone();
        merge_into(&self.partial, &mut dest);
        dest
    }
}

/// Deep-merges `src` into `dest` the way Meltano's `merge(src, dest)` does: for each key of
/// `src`, objects merge recursively and any other value replaces what `dest` had.
pub fn merge_into(src: &Value, dest: &mut Value) {
    let Value::Object(src) = src else {
        return;
    };
    if !dest.is_object() {
        *dest = Value::Object(Map::new());
    }
    let Value::Object(dest) = dest else {
        unreachable!("dest was just made an object");
    };
    for (key, value) in src {
        if value.is_object() {
            let node = dest
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            merge_into(value, node);
        } else {
            dest.insert(key.clone(), value.clone());
        }
    }
}

/// Whether a payload counts as complete state in Meltano's sense (a non-empty object).
pub fn is_nonempty_object(value: &Value) -> bool {
    value.as_object().is_some_and(|m| !m.is_empty())
}

/// Checks that a payload has Meltano's shape (`{"singer_state": ...}` at the top).
pub fn validate_payload(payload: &Value) -> Result<()> {
    match payload {
        Value::Object(map) if map.contains_key(SINGER_STATE_KEY) => Ok(()),
        _ => Err(Error::config(format!(
            "invalid state: `{SINGER_STATE_KEY}` not found at the top level"
        ))
        .hint(format!(
            "state looks like {{\"{SINGER_STATE_KEY}\": {{\"bookmarks\": ...}}}}; pass `--no-validate` to store it anyway"
        ))),
    }
}

/// Parses JSON text given by a user (argument, file or stdin) into a payload.
pub fn parse_payload(text: &str, origin: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::config(format!("{origin} is not valid JSON: {e}")).hint(format!(
            "state looks like {{\"{SINGER_STATE_KEY}\": {{\"bookmarks\": ...}}}}"
        ))
    })
}

/// The result of [`crate::store::Store::commit_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The state was stored.
    Committed,
    /// The value was not stored; the bookmark is unchanged. The engine should warn.
    Ignored(IgnoredReason),
}

/// Why a STATE value was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoredReason {
    /// The value was `{}` (or `null`): storing it would lose the bookmark.
    Empty,
    /// The value was not a JSON object.
    NotAnObject,
    /// The value was not valid JSON (the parser's message).
    InvalidJson(String),
}

impl fmt::Display for IgnoredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoredReason::Empty => f.write_str("the state value is empty"),
            IgnoredReason::NotAnObject => f.write_str("the state value is not a JSON object"),
            IgnoredReason::InvalidJson(e) => write!(f, "the state value is not valid JSON: {e}"),
        }
    }
}

/// Turns the text of a STATE message's `value` into a payload to store, or the reason not to.
pub fn payload_from_state_value(text: &str) -> std::result::Result<Value, IgnoredReason> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| IgnoredReason::InvalidJson(e.to_string()))?;
    match &value {
        Value::Null => Err(IgnoredReason::Empty),
        Value::Object(map) if map.is_empty() => Err(IgnoredReason::Empty),
        Value::Object(_) => {
            let mut payload = Map::new();
            payload.insert(SINGER_STATE_KEY.to_owned(), value);
            Ok(Value::Object(payload))
        }
        _ => Err(IgnoredReason::NotAnObject),
    }
}

/// Computes the new (completed, partial) pair after writing `payload`, following Meltano's
/// `StateStoreManager.update`: a complete, non-empty payload replaces the completed state and
/// clears the partial one; anything else is deep-merged over the partial state.
pub fn apply_write(
    existing: Option<(&Value, &Value)>,
    payload: &Value,
    partial: bool,
) -> (Value, Value) {
    let empty = || Value::Object(Map::new());
    if !partial && is_nonempty_object(payload) {
        return (payload.clone(), empty());
    }
    match existing {
        Some((completed, old_partial)) => {
            let mut merged = if old_partial.is_object() {
                old_partial.clone()
            } else {
                empty()
            };
            merge_into(payload, &mut merged);
            (completed.clone(), merged)
        }
        None => {
            let mut merged = empty();
            merge_into(payload, &mut merged);
            (empty(), merged)
        }
    }
}

/// How a state row was changed (recorded in the state events table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateAction {
    /// A run committed a STATE message from its loader.
    Committed,
    /// `state set`: the completed state was replaced.
    Set,
    /// `state merge`: a payload was merged into the partial state.
    Merged,
    /// `state clear`.
    Cleared,
    /// `state copy` onto this id.
    Copied,
    /// `state move` onto this id (the source gets `Cleared`).
    Moved,
    /// `state import` or `state import-meltano`.
    Imported,
}

impl StateAction {
    /// The name stored in the events table.
    pub fn as_str(self) -> &'static str {
        match self {
            StateAction::Committed => "committed",
            StateAction::Set => "set",
            StateAction::Merged => "merged",
            StateAction::Cleared => "cleared",
            StateAction::Copied => "copied",
            StateAction::Moved => "moved",
            StateAction::Imported => "imported",
        }
    }
}

/// One recorded change of a state row.
#[derive(Debug, Clone, Serialize)]
pub struct StateEvent {
    /// Increasing event number.
    pub event_id: i64,
    /// The state id that changed.
    pub state_id: StateId,
    /// When it changed.
    pub at: DateTime<Utc>,
    /// What happened (`committed`, `set`, `merged`, ...).
    pub action: String,
    /// The run that committed it, if any.
    pub run_id: Option<RunId>,
    /// Free text: `partial`/`complete`, the source id of a copy, the file of an import.
    pub detail: Option<String>,
    /// The payload written, if any.
    pub payload: Option<Value>,
}

/// What `import` did with each state id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Ids written.
    pub imported: Vec<StateId>,
    /// Ids left alone because dsm already had state for them.
    pub skipped: Vec<StateId>,
}

/// Singer state per state id, with its event history. Every write is one transaction that
/// records its event together with the row it changes.
pub trait StateStore {
    /// The stored row for `state_id`, if any.
    fn get_state_row(&self, state_id: &StateId) -> Result<Option<StoredState>>;

    /// The merged payload `{"singer_state": ...}` the next run starts from, if any.
    fn get_state(&self, state_id: &StateId) -> Result<Option<Value>> {
        Ok(self.get_state_row(state_id)?.map(|row| row.merged()))
    }

    /// Commits the `value` of a STATE message the loader printed (its JSON text), wrapped as
    /// `{"singer_state": value}`: `partial` deep-merges it over the partial state, otherwise it
    /// replaces the completed state. `{}`, non-objects and invalid JSON are not stored.
    fn commit_state(
        &self,
        state_id: &StateId,
        value_json: &str,
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<CommitOutcome>;

    /// [`Self::commit_state`] for several STATE values in the order the loader printed them,
    /// made durable together (one transaction where the store has them): a burst of states
    /// costs one sync, not one each.
    fn commit_states(
        &self,
        state_id: &StateId,
        values_json: &[String],
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<Vec<CommitOutcome>> {
        values_json
            .iter()
            .map(|v| self.commit_state(state_id, v, partial, run_id))
            .collect()
    }

    /// Writes a payload with Meltano's rules (`partial` = merge, else set) and records `action`.
    fn write_state(
        &self,
        state_id: &StateId,
        payload: &Value,
        partial: bool,
        action: StateAction,
        detail: Option<&str>,
    ) -> Result<()>;

    /// All rows whose id matches the glob `pattern` (`*` matches anything), sorted by id.
    fn list_states(&self, pattern: Option<&str>) -> Result<Vec<StoredState>>;

    /// Deletes one row; returns whether it existed.
    fn clear_state(&self, state_id: &StateId) -> Result<bool>;

    /// Deletes every row; returns how many.
    fn clear_all_states(&self) -> Result<usize>;

    /// Sets `dst` to the merged state of `src` (and clears `src` when `remove_source`), in one
    /// transaction. Fails when `src` has no state.
    fn copy_state(&self, src: &StateId, dst: &StateId, remove_source: bool) -> Result<()>;

    /// Writes whole rows (both halves), like `meltano state import`. Existing rows are replaced
    /// when `overwrite`, else skipped. One transaction; `source` is recorded in the events.
    fn import_states(
        &self,
        rows: &[StoredState],
        overwrite: bool,
        source: &str,
    ) -> Result<ImportReport>;

    /// The recorded changes of one state id (or all), oldest first, at most `limit`.
    fn state_events(&self, state_id: Option<&StateId>, limit: usize) -> Result<Vec<StateEvent>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_id_follows_meltano() {
        assert_eq!(
            StateId::for_flow(Some("dev"), "tap-a", "target-b", None).as_str(),
            "dev:tap-a-to-target-b"
        );
        assert_eq!(
            StateId::for_flow(Some("prod"), "tap-a", "target-b", Some("x")).as_str(),
            "prod:tap-a-to-target-b:x"
        );
        assert_eq!(
            StateId::for_flow(None, "tap-a", "target-b", Some("")).as_str(),
            "tap-a-to-target-b"
        );
    }

    #[test]
    fn merge_is_deep_and_src_wins() {
        let mut dest = json!({"f": {"all_rows": {"pass": "dog", "n": "1"}}, "k": [1]});
        merge_into(
            &json!({"f": {"all_rows": {"fail": "cat", "n": "5"}}, "k": [2]}),
            &mut dest,
        );
        assert_eq!(
            dest,
            json!({"f": {"all_rows": {"pass": "dog", "n": "5", "fail": "cat"}}, "k": [2]})
        );
    }

    #[test]
    fn complete_write_replaces_and_clears_partial() {
        let c = json!({"singer_state": {"a": 1}});
        let p = json!({"singer_state": {"b": 2}});
        let (nc, np) = apply_write(Some((&c, &p)), &json!({"singer_state": {"z": 9}}), false);
        assert_eq!(nc, json!({"singer_state": {"z": 9}}));
        assert_eq!(np, json!({}));
    }

    #[test]
    fn partial_write_merges_over_partial_and_keeps_completed() {
        let c = json!({"singer_state": {"bookmarks": {"a": 1}}});
        let p = json!({"singer_state": {"bookmarks": {"b": 2}}});
        let (nc, np) = apply_write(
            Some((&c, &p)),
            &json!({"singer_state": {"bookmarks": {"b": 3, "c": 4}}}),
            true,
        );
        assert_eq!(nc, c);
        assert_eq!(np, json!({"singer_state": {"bookmarks": {"b": 3, "c": 4}}}));
    }

    #[test]
    fn empty_and_invalid_state_values_are_refused() {
        assert_eq!(payload_from_state_value("{}"), Err(IgnoredReason::Empty));
        assert_eq!(payload_from_state_value("null"), Err(IgnoredReason::Empty));
        assert_eq!(
            payload_from_state_value("[1]"),
            Err(IgnoredReason::NotAnObject)
        );
        assert!(matches!(
            payload_from_state_value("{\"a\":"),
            Err(IgnoredReason::InvalidJson(_))
        ));
        // Exact number text survives (arbitrary_precision).
        let p =
            payload_from_state_value("{\"n\":-73.985130,\"id\":123456789012345678901}").unwrap();
        assert_eq!(
            p.to_string(),
            "{\"singer_state\":{\"n\":-73.985130,\"id\":123456789012345678901}}"
        );
    }

    #[test]
    fn validation_needs_the_singer_state_key() {
        assert!(validate_payload(&json!({"singer_state": {}})).is_ok());
        let err = validate_payload(&json!({"bookmarks": {}})).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hints()[0].contains("--no-validate"));
    }
}
