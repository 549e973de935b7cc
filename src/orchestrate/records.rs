//! What the store remembers about each schedule between `dsm schedule run-due` invocations
//! (when it was first seen, when it last ran; in the store's settings, namespace `schedule`),
//! and the lock `schedule:NAME` each schedule run holds, so two `run-due` processes started at
//! once run each due schedule exactly once.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ScheduleRecord;
use crate::error::{ErrorKind, Result};
use crate::store::{self, FlowLock, StateId, Store};

/// The store settings namespace of schedule records.
pub const RECORD_NAMESPACE: &str = "schedule";

/// The lock a schedule's runs hold: `schedule:NAME`.
pub fn lock_id(name: &str) -> StateId {
    StateId::new(format!("schedule:{name}"))
}

/// What the store remembers about schedule `name` (first seen, last run, running now).
pub fn read_record(store: &dyn Store, name: &str) -> Result<ScheduleRecord> {
    let value = store.get_setting(RECORD_NAMESPACE, name)?;
    let time = |key: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let running = store.lock_holder(&lock_id(name))?.is_some_and(|h| !h.stale);
    Ok(ScheduleRecord {
        first_seen: time("first_seen"),
        last_run: time("last_run"),
        running,
    })
}

/// Stores what `run-due` remembers about schedule `name`.
pub fn write_record(store: &dyn Store, name: &str, record: &ScheduleRecord) -> Result<()> {
    let t = |t: Option<DateTime<Utc>>| t.map(store::format_time);
    store.set_setting(
        RECORD_NAMESPACE,
        name,
        &json!({"first_seen": t(record.first_seen), "last_run": t(record.last_run)}),
    )
}

/// Takes the schedule's lock; `None` when another process holds it.
pub fn try_lock(store: &dyn Store, name: &str) -> Result<Option<FlowLock>> {
    match store.acquire_lock(&lock_id(name), None, false) {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if e.kind() == ErrorKind::AlreadyRunning => Ok(None),
        Err(e) => Err(e),
    }
}
