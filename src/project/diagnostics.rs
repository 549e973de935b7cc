//! Problems found in a project, with their positions, and the checks across files that find
//! them (references, classification labels, duplicates, schedule time zones).

use super::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::error::{Error, did_you_mean};

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The project cannot be used as it is.
    Error,
    /// Worth a look (for example a config key the plugin does not declare).
    Warning,
}

/// One problem found in the project's files.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable name for the kind of problem (`unknown-key`, `inherit-cycle`, ...), for scripts.
    pub code: &'static str,
    /// The file, relative to the project root when inside it.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub pos: Option<Pos>,
    /// What is wrong, one line.
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub(super) fn error(
        code: &'static str,
        file: &Path,
        pos: Option<Pos>,
        message: String,
        hint: Option<String>,
    ) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            file: file.to_path_buf(),
            pos,
            message,
            hint,
        }
    }

    /// `message in FILE (line L, column C)`.
    pub fn located(&self) -> String {
        match self.pos {
            Some(p) => format!("{} in {} ({p})", self.message, self.file.display()),
            None => format!("{} in {}", self.message, self.file.display()),
        }
    }

    /// This diagnostic as an [`Error`] (exit 2).
    pub fn to_error(&self) -> Error {
        let e = Error::config(self.located());
        match &self.hint {
            Some(h) => e.hint(h.clone()),
            None => e,
        }
    }
}

/// Turns the error diagnostics into one error listing them all (the first as the message).
pub fn diagnostics_error(diags: &[Diagnostic]) -> Option<Error> {
    let errors: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    match errors.as_slice() {
        [] => None,
        [one] => Some(one.to_error()),
        many => {
            let mut e = Error::config(format!("{} problems in the project file", many.len()));
            for d in many {
                e = e.detail(d.located());
                if let Some(h) = &d.hint {
                    e = e.detail(format!("  hint: {h}"));
                }
            }
            Some(e.hint("fix them, then check again with `dsm validate`"))
        }
    }
}

impl Project {
    /// Cross-references: environments' plugins exist, job/schedule names, undeclared config keys.
    pub(super) fn check_references(&mut self) {
        let file = PathBuf::from(PROJECT_FILE);
        let mut warnings = Vec::new();
        for p in &self.plugins {
            if p.settings.is_empty() {
                continue;
            }
            for key in p.config.keys() {
                let declared = p.setting(key).is_some()
                    || p.settings
                        .iter()
                        .any(|s| s.name.starts_with(&format!("{key}.")));
                if !declared {
                    let names: Vec<&str> = p.settings.iter().map(|s| s.name.as_str()).collect();
                    warnings.push(Diagnostic {
                        code: "undeclared-setting",
                        severity: Severity::Warning,
                        file: file.clone(),
                        pos: self
                            .tree
                            .get("plugins")
                            .and_then(|n| n.get(p.plugin_type.key()))
                            .and_then(|l| {
                                l.items().iter().find(|n| {
                                    n.get("name").map(yaml::Node::to_json)
                                        == Some(J::String(p.name.clone()))
                                })
                            })
                            .and_then(|n| n.get("config"))
                            .and_then(|c| c.key_pos(key)),
                        message: format!(
                            "`{key}` in the config of {} `{}` is not a setting it declares",
                            p.plugin_type.singular(),
                            p.name
                        ),
                        hint: did_you_mean(key, names.iter().copied())
                            .map(|m| format!("did you mean `{m}`?")),
                    });
                }
            }
        }
        self.diagnostics.extend(warnings);
        self.check_duplicates(&file);
        let mut seen = BTreeSet::new();
        for env in &self.file.environments {
            if !seen.insert(env.name.clone()) {
                self.diagnostics.push(Diagnostic::error(
                    "duplicate-environment",
                    &file,
                    None,
                    format!("environment `{}` is defined twice", env.name),
                    None,
                ));
            }
            let Some(cfg) = &env.config else { continue };
            for ty in PluginType::ALL {
                for p in cfg.plugins.of(ty) {
                    if !self
                        .plugins
                        .iter()
                        .any(|q| q.name == p.name && q.plugin_type == ty)
                    {
                        self.diagnostics.push(Diagnostic {
                            code: "unknown-environment-plugin",
                            severity: Severity::Warning,
                            file: file.clone(),
                            pos: None,
                            message: format!(
                                "environment `{}` configures {} `{}`, which is not in the project",
                                env.name,
                                ty.singular(),
                                p.name
                            ),
                            hint: None,
                        });
                    }
                }
            }
        }
        self.check_schedule_time_zones(&file);
        self.check_classification(&file);
        if let Some(d) = &self.file.default_environment
            && !self.file.environments.iter().any(|e| &e.name == d)
        {
            self.diagnostics.push(Diagnostic::error(
                "unknown-default-environment",
                &file,
                self.tree.get("default_environment").map(|n| n.pos),
                format!(
                    "`default_environment` is `{d}`, which is not defined under `environments`"
                ),
                Some("add it under `environments:` or change `default_environment`".into()),
            ));
        }
    }
}

impl Project {
    /// Classification labels: the declaration must hold together, and every label a source, a
    /// field or a loader names must be one of its labels.
    pub(super) fn check_classification(&mut self, file: &Path) {
        let declared = self.dsm().classification;
        let decl_node = self
            .tree
            .get("annotations")
            .and_then(|a| a.get("dsm"))
            .and_then(|d| d.get("classification"));
        let scheme = match crate::classification::Scheme::from_decl(declared.as_ref()) {
            Ok(s) => s,
            Err(problems) => {
                for p in problems {
                    self.diagnostics.push(Diagnostic::error(
                        "bad-classification",
                        file,
                        decl_node.map(|n| n.pos),
                        format!("`annotations.dsm.classification`: {p}"),
                        Some("declare `labels: [{name, rank, visibility}]` and a `default` that is one of them".into()),
                    ));
                }
                return;
            }
        };
        let mut found = Vec::new();
        for p in &self.plugins {
            let node = self
                .tree
                .get("plugins")
                .and_then(|n| n.get(p.plugin_type.key()))
                .and_then(|l| {
                    l.items().iter().find(|n| {
                        n.get("name").map(yaml::Node::to_json) == Some(J::String(p.name.clone()))
                    })
                })
                .and_then(|n| n.get("annotations"))
                .and_then(|a| a.get("dsm"));
            let mut named: Vec<(String, String, Option<Pos>)> = Vec::new();
            let source_node = node.and_then(|n| n.get("source"));
            if let Some(source) = &p.annotations.source {
                if let Some(c) = &source.classification {
                    named.push((
                        c.clone(),
                        "`annotations.dsm.source.classification`".into(),
                        source_node.and_then(|s| s.key_pos("classification")),
                    ));
                }
                for (stream, fields) in &source.fields {
                    let stream_node = source_node
                        .and_then(|s| s.get("fields"))
                        .and_then(|f| f.get(stream));
                    for (field, label) in fields {
                        named.push((
                            label.clone(),
                            format!("`annotations.dsm.source.fields` (`{stream}.{field}`)"),
                            stream_node.and_then(|s| s.key_pos(field)),
                        ));
                    }
                }
            }
            if let Some(c) = &p.annotations.clearance {
                named.push((
                    c.clone(),
                    "`annotations.dsm.clearance`".into(),
                    node.and_then(|n| n.key_pos("clearance")),
                ));
            }
            if p.plugin_type == PluginType::Loaders
                && p.annotations.clearance.is_none()
                && crate::classification::is_classified(self)
            {
                found.push(Diagnostic {
                    code: "loader-without-clearance",
                    severity: Severity::Warning,
                    file: file.to_path_buf(),
                    pos: node.map(|n| n.pos),
                    message: format!(
                        "loader `{}` declares no clearance: in this classified project it accepts only `{}`, the lowest label",
                        p.name,
                        scheme.lowest().name
                    ),
                    hint: Some(format!(
                        "set `annotations.dsm.clearance` on `{}` to the highest label its destination may hold",
                        p.name
                    )),
                });
            }
            for (label, place, pos) in named {
                if scheme.label(&label).is_none() {
                    let (message, hint) = scheme.unknown(
                        &label,
                        &format!("{place} of {} `{}`", p.plugin_type.singular(), p.name),
                    );
                    found.push(Diagnostic::error(
                        "unknown-classification-label",
                        file,
                        pos,
                        message,
                        Some(hint),
                    ));
                }
            }
        }
        self.diagnostics.extend(found);
    }

    /// The same plugin, job or schedule named twice in `meltano.yml` itself (twice across
    /// files is found while merging the included files): only one of them would be used.
    pub(super) fn check_duplicates(&mut self, file: &Path) {
        let mut lists: Vec<(Vec<&str>, &str, String)> = PluginType::ALL
            .iter()
            .map(|ty| {
                let names = self.file.plugins.of(*ty).iter().map(|p| p.name.as_str());
                (names.collect(), ty.key(), ty.singular().to_string())
            })
            .collect();
        lists.push((
            self.file.jobs.iter().map(|j| j.name.as_str()).collect(),
            "jobs",
            "job".into(),
        ));
        lists.push((
            self.file
                .schedules
                .iter()
                .map(|s| s.name.as_str())
                .collect(),
            "schedules",
            "schedule".into(),
        ));
        let mut found = Vec::new();
        for (names, key, what) in lists {
            let items = if key == "jobs" || key == "schedules" {
                self.tree.get(key)
            } else {
                self.tree.get("plugins").and_then(|n| n.get(key))
            };
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    found.push(Diagnostic::error(
                        "duplicate-definition",
                        file,
                        items.and_then(|l| l.items().get(i)).map(|n| n.pos),
                        format!("{what} `{name}` is defined twice"),
                        Some(
                            "keep one definition: commands and runs would read only one of them"
                                .into(),
                        ),
                    ));
                }
            }
        }
        self.diagnostics.extend(found);
    }

    /// A schedule's `annotations.dsm.timezone` must be an IANA name (its cron interval is read
    /// there), and a job has no interval to read in a zone.
    pub(super) fn check_schedule_time_zones(&mut self, file: &Path) {
        let mut found = Vec::new();
        for (key, kind) in [("schedules", "schedule"), ("jobs", "job")] {
            let Some(list) = self.tree.get(key) else {
                continue;
            };
            for item in list.items() {
                let Some(zone_node) = item
                    .get("annotations")
                    .and_then(|a| a.get("dsm"))
                    .filter(|d| d.get("timezone").is_some())
                else {
                    continue;
                };
                let name = item
                    .get("name")
                    .map(yaml::Node::to_json)
                    .and_then(|n| n.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let pos = zone_node.key_pos("timezone");
                let zone = zone_node
                    .get("timezone")
                    .map(yaml::Node::to_json)
                    .and_then(|z| z.as_str().map(str::to_owned))
                    .unwrap_or_default();
                if kind == "job" {
                    found.push(Diagnostic::error(
                        "timezone-on-job",
                        file,
                        pos,
                        format!("job `{name}` has `annotations.dsm.timezone`, but only schedules have an interval"),
                        Some("move `timezone` to the schedule that runs the job".into()),
                    ));
                } else if zone.trim().parse::<chrono_tz::Tz>().is_err() {
                    let hint =
                        did_you_mean(&zone, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
                            .map(|m| format!("did you mean `{m}`?"))
                            .unwrap_or_else(|| {
                                "use an IANA name such as `UTC` or `Europe/Berlin`".into()
                            });
                    found.push(Diagnostic::error(
                        "unknown-time-zone",
                        file,
                        pos,
                        format!("schedule `{name}` has an unknown time zone `{zone}` in `annotations.dsm.timezone`"),
                        Some(hint),
                    ));
                }
            }
        }
        self.diagnostics.extend(found);
    }
}
