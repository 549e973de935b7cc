//! dsm's own keys, all under `annotations.dsm` (Meltano reserves `annotations` for tools, so a
//! dsm project stays a valid Meltano project). One typed model per level; the schema in
//! `schemas/meltano.schema.json` (`$defs/dsm`) describes the same shapes, and a test keeps the two
//! in step. Unknown keys here are errors (reported by validation with a did-you-mean).

use serde::{Deserialize, Serialize};
use serde_json::Value as J;

use crate::project::model::Object;

/// Project level `annotations.dsm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DsmProject {
    /// Streams merged from several sources into one.
    pub merged_streams: Vec<MergedStream>,
    /// Project-wide defaults for flows.
    pub defaults: Option<Defaults>,
    /// The classification labels (`crate::classification` applies them).
    pub classification: Option<ClassificationDecl>,
    /// How stream-map expressions are read.
    pub stream_maps: Option<StreamMapsOptions>,
    /// Settings of a PostgreSQL system store (team mode).
    pub store: Option<StoreOptions>,
    /// Who is told of requests, first syncs and source errors (`crate::notify` delivers).
    pub notifications: Vec<NotificationDecl>,
    /// How source requests are kept and approved.
    pub requests: Option<RequestOptions>,
}

/// `annotations.dsm.requests`: source requests (`dsm requests`, `/api/requests`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestOptions {
    /// How long a rejected (or cancelled) request is kept, with its secrets, for a
    /// resubmission (default 30 days).
    pub retention: Option<Duration>,
    /// Whether approving a request also starts the new source's first sync (default false).
    pub first_sync: Option<bool>,
}

/// One receiver of `annotations.dsm.notifications`: a webhook or a command, and the events it
/// gets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationDecl {
    /// The events it gets (`request_submitted`, `request_approved`, `request_rejected`,
    /// `first_sync_finished`, `source_error`).
    pub events: Vec<String>,
    /// A URL that gets a signed JSON POST.
    pub webhook: Option<WebhookReceiver>,
    /// A program (argv) that gets the event as JSON on stdin.
    pub command: Option<Vec<String>>,
}

/// `webhook` of a notification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookReceiver {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The signing secret, as a reference: `$NAME` or `${NAME}` (the secret store's
    /// `notifications` entry `NAME`, else the environment, else `.env`); never the value.
    pub secret: String,
}

/// `annotations.dsm.store`: the leases of a PostgreSQL system store. `DSM_LEASE_HEARTBEAT` and
/// `DSM_LEASE_EXPIRY` win over these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// How often a run renews its flow's lease (default 10s).
    pub lease_heartbeat: Option<Duration>,
    /// How long an unrenewed lease lasts, on the database's clock (default 60s).
    pub lease_expiry: Option<Duration>,
}

/// `annotations.dsm.classification`: the project's labels and the default of a source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassificationDecl {
    /// The labels; empty: the built-in set.
    pub labels: Vec<LabelDecl>,
    /// The label of a source that declares none.
    pub default: Option<String>,
}

/// One declared classification label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelDecl {
    /// Its name.
    pub name: String,
    /// Its order: higher is more restricted.
    pub rank: u32,
    /// Who may see data carrying it (default: the source's own organisation).
    pub visibility: Option<Visibility>,
}

/// Who may see data carrying a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone.
    Everyone,
    /// Members of any organisation.
    Organisations,
    /// Members of the source's own organisation.
    Own,
}

/// `annotations.dsm.stream_maps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamMapsOptions {
    /// Which functions expressions may call.
    pub dialect: Dialect,
}

/// Which stream-map functions a project may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Exactly what the Singer SDK's mapper accepts: the project runs under Meltano too.
    #[default]
    Sdk,
    /// dsm's wider set as well (`len`, `min`, `round`, `str.format` ...): dsm only.
    Extended,
}

/// Project-wide defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    /// Loader for extractors that name none.
    pub default_loader: Option<String>,
    /// Retries of a failed flow.
    pub retries: Option<u32>,
    /// Wait between retries.
    pub retry_backoff: Option<Duration>,
    /// Time limit of a flow.
    pub timeout: Option<Duration>,
    /// Record validation.
    pub validation: Option<Validation>,
}

/// One merged stream: several (extractor, stream) sources into one stream by key. The rules are
/// checked and applied by `crate::merge` (`merge::declaration` documents every key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergedStream {
    /// Name of the merged stream (the stream the target receives).
    pub name: String,
    /// Where records come from.
    pub sources: Vec<MergeSource>,
    /// Key fields (common names); empty: the sources' `key_properties`.
    pub key: Vec<String>,
    /// Source names, highest priority first; empty: the order of `sources`.
    pub priority: Vec<String>,
    /// The record-level rule: a rule name or `{rule, field, tie_break}`.
    pub policy: Option<J>,
    /// Per-field rules (common field name to rule).
    pub fields: Object,
    /// What a record without a key value does: `skip`, `quarantine` or `fail`.
    pub null_key: Option<String>,
    /// Whether output records carry `_dsm_provenance`.
    pub provenance: Option<bool>,
    /// How long conflict-log entries are kept, in days.
    pub conflict_retention_days: Option<u32>,
}

/// One source of a merged stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MergeSource {
    /// The name rules refer to (default: the extractor's name).
    pub name: Option<String>,
    /// Extractor name.
    pub extractor: String,
    /// Stream name in that extractor.
    pub stream: String,
    /// Source field name to common field name.
    pub fields: Object,
}

/// Record validation settings: checks each record against its stream's JSON Schema.
///
/// `enabled: false` turns validation off everywhere. Otherwise a stream listed in `streams` uses
/// its own mode, every other stream `on_error`; with neither set (and `enabled` absent) nothing
/// is validated, and `enabled: true` alone means `fail`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Validation {
    /// Whether records are checked against their schema.
    pub enabled: Option<bool>,
    /// What a bad record does, in streams not listed in `streams`.
    pub on_error: Option<OnError>,
    /// The mode of single streams, by stream name.
    pub streams: std::collections::BTreeMap<String, OnError>,
}

/// What a record failing validation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The run fails, naming the record number, stream, path and reason.
    Fail,
    /// A warning, the record passes.
    Warn,
    /// The record is dropped.
    Skip,
    /// The record is dropped and written, with the reason, to the run's dead-letter file.
    Quarantine,
    /// The stream is not validated (and not parsed for it).
    Off,
}

/// Plugin level `annotations.dsm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DsmPlugin {
    /// What the source is, for the registry.
    pub source: Option<SourceInfo>,
    /// The loader `dsm sync` uses for this extractor.
    pub default_loader: Option<String>,
    /// Whether `dsm sync` runs it.
    pub enabled: Option<bool>,
    /// Record validation.
    pub validation: Option<Validation>,
    /// Built-in transforms applied to its output.
    pub transforms: Vec<TransformSpec>,
    /// A loader's clearance: the highest classification label it may receive.
    pub clearance: Option<String>,
    /// A webhook source's event retention and bounds.
    pub webhooks: Option<WebhookOptions>,
}

/// `annotations.dsm.webhooks` of a source of type `webhook` (see `crate::webhooks` for the
/// defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookOptions {
    /// How long consumed events are kept.
    pub retention: Option<Duration>,
    /// The most events kept (pending and consumed); when pending ones alone reach it, new
    /// events are refused.
    pub max_events: Option<u64>,
    /// The most payload bytes kept, in the same way.
    pub max_bytes: Option<u64>,
}

/// `annotations.dsm.source`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceInfo {
    /// Kind of source.
    #[serde(rename = "type")]
    pub kind: Option<SourceKind>,
    /// Vendor or system (`postgres`, `stripe`).
    pub provider: Option<String>,
    /// Category (`crm`, `billing`).
    pub category: Option<String>,
    /// Free labels.
    pub labels: Vec<String>,
    /// The source's classification label.
    pub classification: Option<String>,
    /// The organisation the source belongs to; without one it is the platform's.
    pub organisation: Option<String>,
    /// Labels of single fields, by stream then field.
    pub fields: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// Kind of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Files.
    File,
    /// A database.
    Database,
    /// An API.
    Api,
    /// A warehouse.
    Warehouse,
    /// Events pushed to `dsm serve` by webhook.
    Webhook,
    /// Anything else.
    Other,
}

/// One built-in transform step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSpec {
    /// Transform name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Streams it applies to (all when empty).
    pub streams: Vec<String>,
    /// Its settings.
    pub config: Object,
}

/// Setting level `annotations.dsm` (inside a setting's definition under `settings:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DsmSetting {
    /// Treat the setting as sensitive though its definition does not say so.
    pub sensitive: Option<bool>,
}

/// Job and schedule level `annotations.dsm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DsmJob {
    /// Jobs or schedules that must succeed first.
    pub depends_on: Vec<String>,
    /// Retries of a failed run.
    pub retries: Option<u32>,
    /// Wait between retries.
    pub retry_backoff: Option<Duration>,
    /// Time limit.
    pub timeout: Option<Duration>,
    /// Whether it runs.
    pub enabled: Option<bool>,
    /// Schedules only: the IANA time zone its cron interval is read in (`Europe/Berlin`);
    /// UTC when absent, as in Meltano.
    pub timezone: Option<String>,
}

/// A duration as written: seconds, or a number with a unit (`30s`, `5m`, `2h`, `1d`, `500ms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Duration {
    /// Whole seconds.
    Seconds(u64),
    /// Text with a unit.
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::schema::property_names_of;

    fn fields<T: Serialize + Default>() -> Vec<String> {
        let J::Object(map) = serde_json::to_value(T::default()).unwrap() else {
            panic!("not an object")
        };
        let mut keys: Vec<String> = map.keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn dsm_types_and_schema_agree() {
        assert_eq!(
            fields::<DsmProject>(),
            property_names_of("#/$defs/dsm/project")
        );
        assert_eq!(
            fields::<Defaults>(),
            property_names_of("#/$defs/dsm/defaults")
        );
        assert_eq!(
            fields::<MergedStream>(),
            property_names_of("#/$defs/dsm/merged_stream")
        );
        assert_eq!(
            fields::<MergeSource>(),
            property_names_of("#/$defs/dsm/merged_stream/properties/sources/items")
        );
        assert_eq!(
            property_names_of("#/$defs/dsm/merge_rule/oneOf/1"),
            ["field", "rule", "tie_break"]
        );
        assert_eq!(
            fields::<DsmPlugin>(),
            property_names_of("#/$defs/dsm/plugin")
        );
        assert_eq!(
            fields::<SourceInfo>(),
            property_names_of("#/$defs/dsm/plugin/properties/source")
        );
        assert_eq!(
            fields::<TransformSpec>(),
            property_names_of("#/$defs/dsm/plugin/properties/transforms/items")
        );
        assert_eq!(
            fields::<Validation>(),
            property_names_of("#/$defs/dsm/validation")
        );
        assert_eq!(
            fields::<ClassificationDecl>(),
            property_names_of("#/$defs/dsm/classification")
        );
        assert_eq!(
            fields::<LabelDecl>(),
            property_names_of("#/$defs/dsm/classification/properties/labels/items")
        );
        assert_eq!(fields::<DsmJob>(), property_names_of("#/$defs/dsm/job"));
        assert_eq!(
            fields::<WebhookOptions>(),
            property_names_of("#/$defs/dsm/plugin/properties/webhooks")
        );
        assert_eq!(
            fields::<NotificationDecl>(),
            property_names_of("#/$defs/dsm/notification")
        );
        assert_eq!(
            fields::<WebhookReceiver>(),
            property_names_of("#/$defs/dsm/notification/properties/webhook")
        );
        assert_eq!(
            fields::<DsmSetting>(),
            property_names_of("#/$defs/dsm/setting")
        );
    }

    #[test]
    fn validation_reads_modes_per_stream() {
        let v = serde_json::json!({"on_error": "warn", "streams": {"users": "quarantine", "logs": "off"}});
        let p: Validation = serde_json::from_value(v).unwrap();
        assert_eq!(p.on_error, Some(OnError::Warn));
        assert_eq!(p.streams["users"], OnError::Quarantine);
        assert_eq!(p.streams["logs"], OnError::Off);
        assert!(
            serde_json::from_value::<Validation>(serde_json::json!({"streams": {"u": "drop"}}))
                .is_err()
        );
    }

    #[test]
    fn plugin_annotations_read_from_yaml() {
        let v = serde_json::json!({"source": {"type": "database", "labels": ["x"]}, "default_loader": "target-jsonl"});
        let p: DsmPlugin = serde_json::from_value(v).unwrap();
        assert_eq!(p.source.unwrap().kind, Some(SourceKind::Database));
        assert_eq!(p.default_loader.as_deref(), Some("target-jsonl"));
    }
}
