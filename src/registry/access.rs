//! Who sees which source: a source belongs to an organisation or, without one, to the
//! platform; its classification label's visibility decides who else sees it. One rule for
//! every place that lists or names sources (the API's lists, documents, actions and events).
//!
//! - A caller always sees the sources of its own organisation; a caller without an
//!   organisation is the platform's and sees the platform's sources.
//! - `everyone` and `organisations`: every caller (with any organisation or none) sees it.
//! - `own`: only its organisation, plus the callers who see everything.
//! - A caller with an organisation acts (tests, syncs, sets credentials, edits) only on its
//!   organisation's sources; one without acts on every source it sees.

use crate::project::annotations::Visibility;
use crate::registry::catalog::SourceInfo;
use crate::store::RunRecord;

/// Who is looking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewer {
    /// The caller's organisation (`None`: the platform).
    pub organisation: Option<String>,
    /// Whether the caller sees every source whatever its label (the organisation-less admin).
    pub sees_all: bool,
}

impl Viewer {
    /// Whether a source of `organisation` whose label has `visibility` is visible.
    pub fn sees_source(&self, organisation: Option<&str>, visibility: Visibility) -> bool {
        self.sees_all
            || self.organisation.as_deref() == organisation
            || matches!(visibility, Visibility::Everyone | Visibility::Organisations)
    }

    /// Whether `info` is visible.
    pub fn sees(&self, info: &SourceInfo) -> bool {
        self.sees_source(info.organisation.as_deref(), info.visibility)
    }

    /// Whether the source called `name` is visible; a name the project no longer has counts as
    /// the platform's own (`own`).
    pub fn sees_name(&self, sources: &[SourceInfo], name: &str) -> bool {
        match sources.iter().find(|s| s.name == name) {
            Some(info) => self.sees(info),
            None => self.sees_source(None, Visibility::Own),
        }
    }

    /// Whether the caller may act on `info` (test, sync, credentials, status, edits).
    pub fn acts_on(&self, info: &SourceInfo) -> bool {
        self.sees(info) && (self.organisation.is_none() || self.organisation == info.organisation)
    }

    /// Whether a run is visible: every extractor and loader it names is.
    pub fn sees_run(&self, sources: &[SourceInfo], run: &RunRecord) -> bool {
        self.sees_all
            || run
                .plugins
                .iter()
                .filter(|p| matches!(p.role.as_str(), "extractor" | "loader"))
                .all(|p| self.sees_name(sources, &p.plugin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(organisation: Option<&str>, sees_all: bool) -> Viewer {
        Viewer {
            organisation: organisation.map(str::to_owned),
            sees_all,
        }
    }

    #[test]
    fn own_sources_are_seen_by_their_organisation_and_by_who_sees_all() {
        use Visibility::*;
        let a = viewer(Some("a"), false);
        let b = viewer(Some("b"), false);
        let platform = viewer(None, false);
        let all = viewer(None, true);
        // (organisation of the source, visibility) -> (a, b, platform, all)
        let cases = [
            ((Some("a"), Own), [true, false, false, true]),
            ((Some("a"), Organisations), [true, true, true, true]),
            ((Some("a"), Everyone), [true, true, true, true]),
            ((None, Own), [false, false, true, true]),
            ((None, Organisations), [true, true, true, true]),
        ];
        for ((org, vis), want) in cases {
            let got = [&a, &b, &platform, &all].map(|v| v.sees_source(org, vis));
            assert_eq!(got, want, "{org:?} {vis:?}");
        }
    }
}
