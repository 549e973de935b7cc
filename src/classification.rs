//! Classification labels: what data may go where. A project declares its labels once
//! (`annotations.dsm.classification`, else the built-in set), a source and single fields carry
//! labels (`annotations.dsm.source.classification`, `annotations.dsm.source.fields`), and a
//! loader a clearance (`annotations.dsm.clearance`). Every stream that leaves dsm gets a label
//! derived through the flow's transforms ([`Derivation`]); a flow whose streams rise above the
//! loader's clearance is refused before the loader starts ([`enforce`]).
//!
//! Labels only go down through a removal the project declared: a field a field mask replaces by
//! a constant, or a stream map drops, no longer counts; a hashed or partly masked field does. A
//! mapper run as a process gets the highest label of everything it receives on every stream it
//! writes, and a merged stream the highest label of its sources.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result, did_you_mean};
use crate::project::annotations::{ClassificationDecl, Visibility};
use crate::project::{Plugin, PluginType, Project};
use crate::transform::{Keeps, Transform};

/// The name under which [`Derivation::labels`] lists every stream whose name is not known
/// before the run (an extractor without a catalog, or what a mapper process writes).
pub const OTHER_STREAMS: &str = "*";

/// One classification label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Its name.
    pub name: String,
    /// Its order: higher is more restricted.
    pub rank: u32,
    /// Who may see data carrying it.
    pub visibility: Visibility,
}

/// The labels of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheme {
    labels: Vec<Label>,
    default: String,
}

impl Scheme {
    /// The labels a project has when it declares none: `public` (everyone), `internal`
    /// (organisations), `confidential` and `institutional` (the source's own organisation);
    /// sources without a label are `internal`.
    pub fn builtin() -> Scheme {
        let label = |name: &str, rank, visibility| Label {
            name: name.to_owned(),
            rank,
            visibility,
        };
        Scheme {
            labels: vec![
                label("public", 0, Visibility::Everyone),
                label("internal", 1, Visibility::Organisations),
                label("confidential", 2, Visibility::Own),
                label("institutional", 2, Visibility::Own),
            ],
            default: "internal".into(),
        }
    }

    /// The scheme a declaration describes; what is wrong with it otherwise (one line each).
    pub fn from_decl(
        decl: Option<&ClassificationDecl>,
    ) -> std::result::Result<Scheme, Vec<String>> {
        let Some(decl) = decl else {
            return Ok(Scheme::builtin());
        };
        let mut scheme = if decl.labels.is_empty() {
            Scheme::builtin()
        } else {
            Scheme {
                labels: decl
                    .labels
                    .iter()
                    .map(|l| Label {
                        name: l.name.clone(),
                        rank: l.rank,
                        visibility: l.visibility.unwrap_or(Visibility::Own),
                    })
                    .collect(),
                default: String::new(),
            }
        };
        let mut problems = Vec::new();
        for (i, l) in scheme.labels.iter().enumerate() {
            if l.name.trim().is_empty() {
                problems.push(format!("label {} has no name", i + 1));
            } else if scheme.labels[..i].iter().any(|o| o.name == l.name) {
                problems.push(format!("label `{}` is declared twice", l.name));
            }
        }
        match &decl.default {
            Some(d) => scheme.default = d.clone(),
            None if decl.labels.is_empty() => {}
            None => problems
                .push("`default` is missing: name the label of a source that declares none".into()),
        }
        if !scheme.default.is_empty() && scheme.label(&scheme.default).is_none() {
            problems.push(format!(
                "the default label `{}` is not one of the labels",
                scheme.default
            ));
        }
        if problems.is_empty() {
            Ok(scheme)
        } else {
            Err(problems)
        }
    }

    /// The project's scheme; a declaration that does not hold is a configuration error.
    pub fn of(project: &Project) -> Result<Scheme> {
        Scheme::from_decl(project.dsm().classification.as_ref()).map_err(|problems| {
            let mut e = Error::config(format!(
                "`annotations.dsm.classification` of meltano.yml: {}",
                problems[0]
            ));
            for p in &problems[1..] {
                e = e.detail(p.clone());
            }
            e.hint("run `dsm validate` to see where")
        })
    }

    /// The label called `name`.
    pub fn label(&self, name: &str) -> Option<&Label> {
        self.labels.iter().find(|l| l.name == name)
    }

    /// The labels, as declared.
    pub fn labels(&self) -> &[Label] {
        &self.labels
    }

    /// The label of a source that declares none.
    pub fn default_label(&self) -> &Label {
        self.label(&self.default)
            .expect("the default is checked to be a label")
    }

    /// The lowest label (the first declared of the lowest rank).
    pub fn lowest(&self) -> &Label {
        self.labels
            .iter()
            .min_by_key(|l| l.rank)
            .expect("a scheme has at least one label")
    }

    /// The highest label (the first declared of the highest rank).
    pub fn highest(&self) -> &Label {
        self.labels
            .iter()
            .rev()
            .max_by_key(|l| l.rank)
            .expect("a scheme has at least one label")
    }

    /// Why `name` is not a label, with a did-you-mean.
    pub fn unknown(&self, name: &str, place: &str) -> (String, String) {
        let names = self.labels.iter().map(|l| l.name.as_str());
        let hint = match did_you_mean(name, names.clone()) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!(
                "the labels are {}",
                names
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        (
            format!("unknown classification label `{name}` in {place}"),
            hint,
        )
    }

    fn resolve(&self, name: &str, place: &str) -> Result<&Label> {
        self.label(name).ok_or_else(|| {
            let (message, hint) = self.unknown(name, place);
            Error::config(message).hint(hint)
        })
    }
}

/// Who besides its own organisation may see a source: the visibility of its label (declared,
/// else the project's default). Fails closed: a label that is not declared, or no scheme
/// (labels that do not hold together), give `own`.
pub fn source_visibility(scheme: Option<&Scheme>, plugin: &Plugin) -> Visibility {
    let Some(scheme) = scheme else {
        return Visibility::Own;
    };
    let declared = plugin
        .annotations
        .source
        .as_ref()
        .and_then(|s| s.classification.as_deref());
    match declared {
        Some(name) => scheme.label(name).map_or(Visibility::Own, |l| l.visibility),
        None => scheme.default_label().visibility,
    }
}

/// Whether the project uses classification: a label on any source or field, or a clearance on
/// any loader. Only then are flows checked.
pub fn is_classified(project: &Project) -> bool {
    project.plugins().iter().any(|p| {
        let source = p.annotations.source.as_ref();
        p.annotations.clearance.is_some()
            || source.is_some_and(|s| s.classification.is_some() || !s.fields.is_empty())
    })
}

/// The loaders of a classified project that declare no clearance (they accept only the lowest
/// label); empty when the project is not classified.
pub fn loaders_without_clearance(project: &Project) -> Vec<String> {
    if !is_classified(project) {
        return Vec::new();
    }
    project
        .plugins_of(PluginType::Loaders)
        .filter(|p| p.annotations.clearance.is_none())
        .map(|p| p.name.clone())
        .collect()
}

/// A loader's clearance: the highest label it may receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Clearance {
    /// The label.
    pub label: Label,
    /// Whether the loader declares it (else it is the lowest label).
    pub declared: bool,
}

/// The clearance of `loader`; `None` when the project is not classified (nothing is checked).
pub fn clearance(project: &Project, scheme: &Scheme, loader: &Plugin) -> Result<Option<Clearance>> {
    if !is_classified(project) {
        return Ok(None);
    }
    Ok(Some(match &loader.annotations.clearance {
        Some(name) => Clearance {
            label: scheme
                .resolve(
                    name,
                    &format!("`annotations.dsm.clearance` of loader `{}`", loader.name),
                )?
                .clone(),
            declared: true,
        },
        None => Clearance {
            label: scheme.lowest().clone(),
            declared: false,
        },
    }))
}

/// Why a stream has a label: the label and what raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Raise {
    /// The label.
    pub label: Label,
    /// What raised the stream to it: `field \`ssn\``, `the source \`tap-x\``...
    pub because: String,
}

/// What a stream carries at one point of a flow: labels that stay whatever happens later, and
/// labelled fields still present under their names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    base: Vec<Raise>,
    fields: BTreeMap<String, Raise>,
}

impl Content {
    fn raises(&self) -> impl Iterator<Item = &Raise> {
        self.base.iter().chain(self.fields.values())
    }

    /// The highest label (the first met on a tie).
    pub fn top(&self) -> Option<&Raise> {
        self.raises()
            .fold(None, |best: Option<&Raise>, r| match best {
                Some(b) if b.label.rank >= r.label.rank => Some(b),
                _ => Some(r),
            })
    }

    fn absorb(&mut self, other: Content) {
        for r in other.base {
            if !self.base.contains(&r) {
                self.base.push(r);
            }
        }
        for (f, r) in other.fields {
            self.fields.entry(f).or_insert(r);
        }
    }

    /// Every label it carries, none removable any more.
    fn fixed(&self) -> Content {
        let mut c = Content::default();
        for r in self.raises() {
            if !c.base.contains(r) {
                c.base.push(r.clone());
            }
        }
        c
    }
}

/// The label of one stream as it leaves dsm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StreamLabel {
    /// The stream (`*`: every stream whose name is not known before the run).
    pub stream: String,
    /// The label's name.
    pub label: String,
    /// Its rank.
    pub rank: u32,
    /// What raised the stream to it.
    pub because: String,
}

impl StreamLabel {
    /// `stream \`users\``, or what `*` stands for.
    pub fn describe(&self) -> String {
        if self.stream == OTHER_STREAMS {
            "every stream not known before the run".into()
        } else {
            format!("stream `{}`", self.stream)
        }
    }
}

/// The labels of a flow's streams, followed from the source through each step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derivation {
    streams: BTreeMap<String, Content>,
    other: Option<Content>,
}

impl Derivation {
    /// The streams of `extractor` as it sends them: `streams` when known (the selected streams
    /// of its catalog), else every stream with labelled fields plus [`OTHER_STREAMS`].
    pub fn of_source(
        scheme: &Scheme,
        extractor: &Plugin,
        streams: Option<&[String]>,
    ) -> Result<Derivation> {
        let info = extractor.annotations.source.clone().unwrap_or_default();
        let source = match &info.classification {
            Some(name) => Raise {
                label: scheme
                    .resolve(
                        name,
                        &format!(
                            "`annotations.dsm.source.classification` of extractor `{}`",
                            extractor.name
                        ),
                    )?
                    .clone(),
                because: format!("source `{}`", extractor.name),
            },
            None => Raise {
                label: scheme.default_label().clone(),
                because: format!(
                    "the project's default label (source `{}` declares none)",
                    extractor.name
                ),
            },
        };
        let content_of = |stream: &str| -> Result<Content> {
            let mut fields = BTreeMap::new();
            for (field, name) in info.fields.get(stream).into_iter().flatten() {
                let place = format!(
                    "`annotations.dsm.source.fields` of extractor `{}` (`{stream}.{field}`)",
                    extractor.name
                );
                fields.insert(
                    field.clone(),
                    Raise {
                        label: scheme.resolve(name, &place)?.clone(),
                        because: format!("field `{field}` of `{}`", extractor.name),
                    },
                );
            }
            Ok(Content {
                base: vec![source.clone()],
                fields,
            })
        };
        let mut d = Derivation::default();
        match streams {
            Some(list) => {
                for s in list {
                    d.streams.insert(s.clone(), content_of(s)?);
                }
            }
            None => {
                for s in info.fields.keys() {
                    d.streams.insert(s.clone(), content_of(s)?);
                }
                d.other = Some(content_of(OTHER_STREAMS)?);
            }
        }
        Ok(d)
    }

    /// After a transform dsm runs: fields it removes no longer count, a field it reads into a
    /// new property does, under whatever name.
    pub fn through(&mut self, transform: &dyn Transform) {
        let mut out: BTreeMap<String, Content> = BTreeMap::new();
        for (name, content) in std::mem::take(&mut self.streams) {
            for lineage in transform.lineage(&name) {
                let mut next = Content {
                    base: content.base.clone(),
                    fields: BTreeMap::new(),
                };
                for (field, raise) in &content.fields {
                    let read = lineage.reads.as_ref().is_none_or(|r| r.contains(field));
                    let kept = match &lineage.keeps {
                        Keeps::All => true,
                        Keeps::AllBut(removed) => !removed.contains(field),
                        Keeps::Nothing => false,
                    };
                    if read {
                        next.base.push(raise.clone());
                    } else if kept {
                        next.fields.insert(field.clone(), raise.clone());
                    }
                }
                out.entry(lineage.stream).or_default().absorb(next);
            }
        }
        self.streams = out;
    }

    /// After a mapper run as a process: whatever it writes may hold anything it received.
    pub fn through_process(&mut self, mapper: &str) {
        let mut all = Content::default();
        for (name, content) in std::mem::take(&mut self.streams) {
            for r in content.raises() {
                let r = Raise {
                    label: r.label.clone(),
                    because: format!(
                        "{} of stream `{name}`, which mapper `{mapper}` receives",
                        r.because
                    ),
                };
                if !all.base.contains(&r) {
                    all.base.push(r);
                }
            }
        }
        if let Some(other) = self.other.take() {
            all.absorb(other.fixed());
        }
        self.other = Some(all);
    }

    /// Stream `stream` leaves this flow's path into merged stream `merged`, which also holds
    /// what `others` (the other sources) carry: it takes the highest of them all.
    pub fn into_merged(&mut self, stream: &str, merged: &str, others: Vec<Content>) {
        let mine = self
            .streams
            .remove(stream)
            .or_else(|| self.other.clone())
            .unwrap_or_default();
        let entry = self.streams.entry(merged.to_owned()).or_default();
        entry.absorb(mine.fixed());
        for o in others {
            entry.absorb(o.fixed());
        }
    }

    /// What stream `stream` carries here (for another flow's merged stream).
    pub fn content(&self, stream: &str) -> Content {
        self.streams
            .get(stream)
            .or(self.other.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    /// The label of every stream, by name ([`OTHER_STREAMS`] last).
    pub fn labels(&self) -> Vec<StreamLabel> {
        self.streams
            .iter()
            .map(|(n, c)| (n.as_str(), c))
            .chain(self.other.iter().map(|c| (OTHER_STREAMS, c)))
            .filter_map(|(name, c)| {
                c.top().map(|r| StreamLabel {
                    stream: name.to_owned(),
                    label: r.label.name.clone(),
                    rank: r.label.rank,
                    because: r.because.clone(),
                })
            })
            .collect()
    }
}

/// The highest of `labels` (the first on a tie).
pub fn highest(labels: &[StreamLabel]) -> Option<&StreamLabel> {
    labels
        .iter()
        .fold(None, |best: Option<&StreamLabel>, l| match best {
            Some(b) if b.rank >= l.rank => Some(b),
            _ => Some(l),
        })
}

/// Refuses (exit 2) a flow that would send loader `loader` a stream above its clearance.
pub fn enforce(labels: &[StreamLabel], loader: &str, clearance: &Clearance) -> Result<()> {
    let over: Vec<&StreamLabel> = labels
        .iter()
        .filter(|l| l.rank > clearance.label.rank)
        .collect();
    let Some(first) = over.first() else {
        return Ok(());
    };
    let cleared = if clearance.declared {
        format!("`{}`", clearance.label.name)
    } else {
        format!(
            "`{}`, the lowest label, since it declares no clearance",
            clearance.label.name
        )
    };
    let mut e = Error::config(format!(
        "{} is labelled `{}`, above the clearance of loader `{loader}` ({cleared})",
        first.describe(),
        first.label
    ))
    .detail(format!("the label comes from {}", first.because));
    for l in &over[1..] {
        e = e.detail(format!(
            "{} is labelled `{}` too ({})",
            l.describe(),
            l.label,
            l.because
        ));
    }
    Err(e
        .detail("nothing was sent: the loader was not started")
        .hint("remove the field before it leaves dsm (a `field_mask` with `SET-NULL` in the extractor's `annotations.dsm.transforms`, or a stream map that drops it), or deselect the stream")
        .hint(format!(
            "or, if the destination may hold it, set `annotations.dsm.clearance: {}` on loader `{loader}`",
            first.label
        )))
}

/// The label of data piped into loader `loader` by `dsm invoke`: unknown, so it is refused
/// unless the loader is cleared for the highest label.
pub fn enforce_piped(project: &Project, loader: &Plugin) -> Result<()> {
    let scheme = Scheme::of(project)?;
    let Some(clearance) = clearance(project, &scheme, loader)? else {
        return Ok(());
    };
    let top = scheme.highest();
    if clearance.label.rank >= top.rank {
        return Ok(());
    }
    Err(Error::config(format!(
        "loader `{}` would receive piped data whose classification dsm cannot know",
        loader.name
    ))
    .detail(format!(
        "data of unknown origin counts as `{}`, the highest label, above the loader's clearance `{}`",
        top.name, clearance.label.name
    ))
    .hint(format!(
        "run the flow instead (`dsm run EXTRACTOR {}`), so dsm derives the data's label",
        loader.name
    )))
}

#[cfg(test)]
mod tests;
