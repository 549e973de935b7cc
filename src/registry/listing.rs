//! The list of sources with their status and the filters of `dsm sources list` and
//! `GET /api/sources`: one implementation for the CLI and the HTTP API.

use serde::Serialize;

use crate::error::Result;
use crate::registry::catalog::{SourceInfo, SourceType};
use crate::registry::status::{SourceState, SourceStatus, source_statuses};
use crate::store::{RunId, Store, format_time};

/// Which sources to list. Text comparisons ignore case.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    /// Only sources of this type.
    pub source_type: Option<SourceType>,
    /// Only sources with this status.
    pub status: Option<SourceStatus>,
    /// Only sources of this data category.
    pub category: Option<String>,
    /// Only sources of this provider.
    pub provider: Option<String>,
    /// Only sources carrying every one of these labels.
    pub labels: Vec<String>,
    /// Only `extractor` or `loader`.
    pub plugin_type: Option<String>,
    /// Free text matched against name, provider, category, labels, type and status reason.
    pub search: Option<String>,
    /// Only sources this caller sees ([`Viewer`](crate::registry::access::Viewer)); `None`:
    /// every source (the CLI's local user).
    pub viewer: Option<crate::registry::access::Viewer>,
}

/// One entry of the source list (`dsm sources list --format json`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceEntry {
    /// What the source is.
    #[serde(flatten)]
    pub info: SourceInfo,
    /// The active environment.
    pub environment: Option<String>,
    /// Its status.
    pub status: SourceStatus,
    /// The operator's reason or the last run's error.
    pub reason: Option<String>,
    /// Since when the status holds (RFC 3339).
    pub since: Option<String>,
    /// The run going on now.
    #[schema(value_type = Option<String>)]
    pub running_run: Option<RunId>,
    /// The last finished run.
    #[schema(value_type = Option<String>)]
    pub last_run: Option<RunId>,
    /// Whether syncs skip it.
    pub skipped_by_syncs: bool,
}

fn eq_ci(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl SourceFilter {
    /// Whether `info` passes every filter that needs no status.
    pub fn matches_info(&self, info: &SourceInfo) -> bool {
        let opt_eq = |want: &Option<String>, have: &Option<String>| {
            want.as_deref()
                .is_none_or(|w| have.as_deref().is_some_and(|h| eq_ci(w, h)))
        };
        self.viewer.as_ref().is_none_or(|v| v.sees(info))
            && self.source_type.is_none_or(|t| t == info.source_type)
            && opt_eq(&self.category, &info.category)
            && opt_eq(&self.provider, &info.provider)
            && self
                .plugin_type
                .as_deref()
                .is_none_or(|t| eq_ci(t, &info.plugin_type))
            && self
                .labels
                .iter()
                .all(|l| info.labels.iter().any(|have| eq_ci(have, l)))
    }

    /// Whether the free text search hits `info` or its status reason.
    fn search_hits(&self, info: &SourceInfo, st: Option<&SourceState>) -> bool {
        self.search.as_deref().is_none_or(|q| {
            let q = q.to_lowercase();
            [
                Some(info.name.as_str()),
                info.provider.as_deref(),
                info.category.as_deref(),
                st.and_then(|s| s.reason.as_deref()),
                Some(info.source_type.as_str()),
            ]
            .into_iter()
            .flatten()
            .chain(info.labels.iter().map(String::as_str))
            .any(|field| field.to_lowercase().contains(&q))
        })
    }

    /// Whether the filter needs each source's status (which costs a look at the run history).
    fn needs_status(&self) -> bool {
        self.status.is_some() || self.search.is_some()
    }
}

fn entry(info: &SourceInfo, st: SourceState, environment: Option<&str>) -> SourceEntry {
    SourceEntry {
        info: info.clone(),
        environment: environment.map(str::to_owned),
        status: st.status,
        reason: st.reason,
        since: st.since.map(format_time),
        running_run: st.running_run,
        last_run: st.last_run,
        skipped_by_syncs: st.skipped_by_syncs,
    }
}

/// The sources passing `filter`, in the order given, with their status; `offset` and `limit`
/// cut a page out of the result (statuses are looked up only for that page when no filter
/// needs them). Returns the page and whether more entries follow it.
pub fn list_sources(
    store: &dyn Store,
    sources: &[SourceInfo],
    filter: &SourceFilter,
    environment: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<(Vec<SourceEntry>, bool)> {
    let mut candidates = sources.iter().filter(|i| filter.matches_info(i));
    if filter.needs_status() {
        let candidates: Vec<&SourceInfo> = candidates.collect();
        let names: Vec<&str> = candidates.iter().map(|i| i.name.as_str()).collect();
        let states = source_statuses(store, &names)?;
        let mut hits = candidates
            .into_iter()
            .zip(states)
            .filter(|(info, st)| {
                filter.status.is_none_or(|s| s == st.status) && filter.search_hits(info, Some(st))
            })
            .skip(offset);
        let page: Vec<SourceEntry> = hits
            .by_ref()
            .take(limit)
            .map(|(info, st)| entry(info, st, environment))
            .collect();
        let more = hits.next().is_some();
        return Ok((page, more));
    }
    // Only as far as the page and one more: the first page of 10,000 sources looks at 101.
    let page: Vec<&SourceInfo> = candidates.by_ref().skip(offset).take(limit).collect();
    let more = candidates.next().is_some();
    let names: Vec<&str> = page.iter().map(|i| i.name.as_str()).collect();
    let states = source_statuses(store, &names)?;
    Ok((
        page.into_iter()
            .zip(states)
            .map(|(info, st)| entry(info, st, environment))
            .collect(),
        more,
    ))
}
