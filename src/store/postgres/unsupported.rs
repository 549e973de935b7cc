//! The concerns the PostgreSQL store does not keep yet. Writing to one is an error naming the
//! feature (never a silent local fallback); reading one answers what is true of this store,
//! that it holds nothing of it (no secrets, no config versions, no source status changes, no
//! tokens, no webhook events), so runs of projects that use none of them work. The audit chain is not read at all.

use chrono::{DateTime, Utc};

use super::PgStore;
use crate::error::{Error, Result};
use crate::store::audit::{AuditAppend, AuditChain, AuditRow, AuditStore, ChainLink};
use crate::store::config_history::{ConfigHistoryStore, ConfigRestore, ConfigVersionRow};
use crate::store::requests::{
    NewRequest, PruneAudit, RequestFilter, RequestRecord, RequestStore, RequestUpdate,
};
use crate::store::secrets::{
    KeyCheck, Rotation, RotationInput, SealedSecret, SecretInfo, SecretStore,
};
use crate::store::sources::{SourceStatusChange, SourceStatusStore};
use crate::store::tokens::{NewToken, TokenRecord, TokenStore};
use crate::store::webhooks::{
    NewWebhookEvent, Received, WebhookCounts, WebhookEvent, WebhookLimits, WebhookStore,
};

/// The error for a feature the PostgreSQL store does not keep yet.
pub fn not_yet(feature: &str) -> Error {
    Error::config(format!(
        "{feature} cannot use a PostgreSQL store yet (team mode keeps state, leases, run history and settings)"
    ))
    .hint("run this against the project's SQLite store (leave out `--database-uri` and DSM_DATABASE_URI)")
}

impl SecretStore for PgStore {
    fn current_key(&self) -> Result<Option<KeyCheck>> {
        Ok(None)
    }

    fn register_first_key(&self, _check_value: &[u8]) -> Result<()> {
        Err(not_yet("the encrypted secret store"))
    }

    fn sealed_secret(&self, _plugin: &str, _setting: &str) -> Result<Option<SealedSecret>> {
        Ok(None)
    }

    fn sealed_secrets(&self, _plugin: Option<&str>) -> Result<Vec<SealedSecret>> {
        Ok(Vec::new())
    }

    fn secret_infos(&self) -> Result<Vec<SecretInfo>> {
        Ok(Vec::new())
    }

    fn put_secret(
        &self,
        _secret: &SealedSecret,
        _updated_by: &str,
        _entry: &AuditAppend<'_>,
    ) -> Result<()> {
        Err(not_yet("the encrypted secret store"))
    }

    fn delete_secret(
        &self,
        _plugin: &str,
        _setting: &str,
        _entry: &AuditAppend<'_>,
    ) -> Result<bool> {
        Err(not_yet("the encrypted secret store"))
    }

    fn rotate_secrets(
        &self,
        _rotate: &mut dyn FnMut(RotationInput) -> Result<Rotation>,
    ) -> Result<usize> {
        Err(not_yet("the encrypted secret store"))
    }
}

impl AuditStore for PgStore {
    fn append_audit(&self, _entry: &AuditAppend<'_>) -> Result<ChainLink> {
        Err(not_yet("the audit log"))
    }

    fn audit_rows(&self, _since: Option<&str>) -> Result<Vec<AuditRow>> {
        Err(not_yet("the audit log"))
    }

    fn audit_chain(&self) -> Result<AuditChain> {
        Err(not_yet("the audit log"))
    }

    fn prune_audit(
        &self,
        _before: &str,
        _anchor_mac: &dyn Fn(&ChainLink) -> Vec<u8>,
        _entry: &dyn Fn(&ChainLink, &ChainLink) -> AuditRow,
    ) -> Result<usize> {
        Err(not_yet("the audit log"))
    }

    fn record_audit_head(&self, _head: &ChainLink) -> Result<()> {
        Err(not_yet("the audit log"))
    }
}

impl ConfigHistoryStore for PgStore {
    fn latest_config_version(&self, _plugin: &str) -> Result<Option<(i64, String)>> {
        Ok(None)
    }

    fn record_config_version(&self, _row: &ConfigVersionRow) -> Result<i64> {
        Err(not_yet("config history"))
    }

    fn config_versions(&self, _plugin: &str) -> Result<Vec<ConfigVersionRow>> {
        Ok(Vec::new())
    }

    fn config_version(&self, _plugin: &str, _version: i64) -> Result<Option<ConfigVersionRow>> {
        Ok(None)
    }

    fn restore_config(&self, _restore: &ConfigRestore<'_>) -> Result<()> {
        Err(not_yet("config history"))
    }
}

impl SourceStatusStore for PgStore {
    fn record_source_status(&self, _change: &SourceStatusChange) -> Result<()> {
        Err(not_yet("source status"))
    }

    fn source_status_history(
        &self,
        _source: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<SourceStatusChange>> {
        Ok(Vec::new())
    }
}

impl TokenStore for PgStore {
    fn create_token(&self, _token: &NewToken) -> Result<TokenRecord> {
        Err(not_yet("API tokens"))
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(Vec::new())
    }

    fn revoke_token(&self, _name: &str) -> Result<bool> {
        Err(not_yet("API tokens"))
    }

    fn touch_token(&self, _name: &str, _at: DateTime<Utc>) -> Result<()> {
        Err(not_yet("API tokens"))
    }
}

impl WebhookStore for PgStore {
    fn receive_webhook(
        &self,
        _event: &NewWebhookEvent,
        _limits: &WebhookLimits,
    ) -> Result<Received> {
        Err(not_yet("webhook events"))
    }

    fn webhook_events(
        &self,
        _source: &str,
        _after_seq: i64,
        _pending_only: bool,
        _limit: usize,
    ) -> Result<Vec<WebhookEvent>> {
        Ok(Vec::new())
    }

    fn pending_webhooks(
        &self,
        _source: &str,
        _after_seq: i64,
        _limit: usize,
    ) -> Result<Vec<WebhookEvent>> {
        Ok(Vec::new())
    }

    fn webhook_event(&self, _source: &str, _id: i64) -> Result<Option<WebhookEvent>> {
        Ok(None)
    }

    fn webhook_counts(&self, _source: &str) -> Result<WebhookCounts> {
        Ok(WebhookCounts::default())
    }

    fn consume_webhooks(
        &self,
        _source: &str,
        _through_seq: i64,
        _at: DateTime<Utc>,
    ) -> Result<u64> {
        Ok(0)
    }

    fn replay_webhooks(&self, _source: &str, _ids: Option<&[i64]>) -> Result<Vec<i64>> {
        Err(not_yet("webhook events"))
    }

    fn prune_webhooks(&self, _source: &str, _consumed_before: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }
}

impl RequestStore for PgStore {
    fn create_request(
        &self,
        _request: &NewRequest,
        _secrets: &[SealedSecret],
        _entry: &AuditAppend<'_>,
    ) -> Result<()> {
        Err(not_yet("source requests"))
    }

    fn request(&self, _id: &str) -> Result<Option<RequestRecord>> {
        Err(not_yet("source requests"))
    }

    fn list_requests(&self, _filter: &RequestFilter) -> Result<Vec<RequestRecord>> {
        Err(not_yet("source requests"))
    }

    fn update_request(&self, _update: &RequestUpdate, _entry: &AuditAppend<'_>) -> Result<bool> {
        Err(not_yet("source requests"))
    }

    fn prune_requests(&self, _before: &str, _entry: &PruneAudit<'_>) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}
