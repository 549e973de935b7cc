//! The merged-stream declaration under the project-level `annotations.dsm.merged_streams`.
//!
//! ```yaml
//! annotations:
//!   dsm:
//!     merged_streams:
//!       - name: companies
//!         sources:
//!           - extractor: tap-csv
//!             stream: companies
//!             fields: { company_name: name }   # source field -> common name
//!           - { extractor: tap-api, stream: orgs, name: api }
//!         key: [id]                            # default: the sources' key_properties
//!         priority: [api, tap-csv]             # default: the order of `sources`
//!         policy: priority                     # record-level default rule
//!         fields:
//!           email: coalesce
//!           revenue: max
//!           name: { rule: latest, field: updated_at, tie_break: priority }
//!         null_key: skip                       # skip | quarantine | fail (default)
//!         provenance: true                     # adds `_dsm_provenance` to output records
//!         conflict_retention_days: 90
//! ```

use serde_json::{Map, Value};

use super::MergeError;
use crate::error::did_you_mean;

/// One merged stream: its sources, key and rules.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedStream {
    /// The merged stream's name (the stream the target receives).
    pub name: String,
    /// The sources, in declared order.
    pub sources: Vec<Source>,
    /// The key in common field names; `None` takes the sources' `key_properties`.
    pub key: Option<Vec<String>>,
    /// Source names, highest priority first (every source, exactly once).
    pub priority: Vec<String>,
    /// The record-level rule, applied to every field without its own rule.
    pub policy: Rule,
    /// Per-field rules (common names), in declared order.
    pub fields: Vec<(String, Rule)>,
    /// What to do with a record whose key is missing or null.
    pub null_key: NullKeyRule,
    /// Whether output records carry `_dsm_provenance`.
    pub provenance: bool,
    /// How long conflict-log entries are kept, when set.
    pub conflict_retention_days: Option<u32>,
}

/// One source of a merged stream: an extractor's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The name rules refer to (default: the extractor's name).
    pub name: String,
    /// The extractor.
    pub extractor: String,
    /// The stream of the extractor.
    pub stream: String,
    /// Source field → common field; fields not listed keep their names.
    pub fields: Vec<(String, String)>,
}

/// How one field's value is chosen among the sources' candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The highest-priority source that has the field wins (even with null).
    Priority,
    /// The candidate whose record has the greatest value of `field` wins.
    Latest {
        /// The common field ordering the candidates (e.g. `updated_at`).
        field: String,
        /// How equal `field` values are settled.
        tie_break: TieBreak,
    },
    /// The source that supplied the key first wins (see the module doc on arrival).
    First,
    /// The source whose current value arrived last wins.
    Last,
    /// The first non-null value by priority.
    Coalesce,
    /// The greatest non-null value (numbers, dates).
    Max,
    /// The smallest non-null value (numbers, dates).
    Min,
    /// Disagreeing non-null values stop the run.
    Fail,
    /// Disagreeing non-null values hold the record back and log it.
    Quarantine,
}

/// How `latest` settles candidates with equal ordering values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TieBreak {
    /// The source listed first in `priority`.
    Priority,
    /// The greater value itself (in dsm's total order of JSON values), then priority.
    Value,
}

/// What happens to a record whose key is missing or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullKeyRule {
    /// Drop the record and count it.
    Skip,
    /// Log the record in the conflict log and go on.
    Quarantine,
    /// Stop the run.
    Fail,
}

impl Rule {
    /// The rule's name as written in `meltano.yml`.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Priority => "priority",
            Rule::Latest { .. } => "latest",
            Rule::First => "first",
            Rule::Last => "last",
            Rule::Coalesce => "coalesce",
            Rule::Max => "max",
            Rule::Min => "min",
            Rule::Fail => "fail",
            Rule::Quarantine => "quarantine",
        }
    }
}

impl NullKeyRule {
    /// The rule's name as written in `meltano.yml`.
    pub fn name(self) -> &'static str {
        match self {
            NullKeyRule::Skip => "skip",
            NullKeyRule::Quarantine => "quarantine",
            NullKeyRule::Fail => "fail",
        }
    }
}

const RULES: [&str; 9] = [
    "priority",
    "latest",
    "first",
    "last",
    "coalesce",
    "max",
    "min",
    "fail",
    "quarantine",
];
const STREAM_KEYS: [&str; 9] = [
    "name",
    "sources",
    "key",
    "priority",
    "policy",
    "fields",
    "null_key",
    "provenance",
    "conflict_retention_days",
];
const SOURCE_KEYS: [&str; 4] = ["name", "extractor", "stream", "fields"];
const RULE_KEYS: [&str; 3] = ["rule", "field", "tie_break"];

/// Reads `merged_streams` from the project-level `annotations.dsm` object (absent: none).
pub fn merged_streams(annotations_dsm: &Value) -> Result<Vec<MergedStream>, MergeError> {
    match annotations_dsm.get("merged_streams") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(list) => MergedStream::parse_list(list),
    }
}

fn where_(stream: &str) -> String {
    if stream.is_empty() {
        "a merged stream".to_owned()
    } else {
        format!("merged stream `{stream}`")
    }
}

fn check_keys(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), MergeError> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            let mut e = MergeError::declaration(format!("unknown key `{k}` in {what}"));
            if let Some(m) = did_you_mean(k, allowed.iter().copied()) {
                e = e.with_hint(format!("did you mean `{m}`?"));
            } else {
                e = e.with_hint(format!("accepted keys: {}", allowed.join(", ")));
            }
            return Err(e);
        }
    }
    Ok(())
}

fn string(v: &Value, what: impl FnOnce() -> String) -> Result<String, MergeError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(MergeError::declaration(format!(
            "{} must be a non-empty string",
            what()
        ))),
    }
}

fn string_list(v: &Value, what: impl Fn() -> String) -> Result<Vec<String>, MergeError> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|i| string(i, &what)).collect()
        }
        _ => Err(MergeError::declaration(format!(
            "{} must be a non-empty list of strings",
            what()
        ))),
    }
}

impl MergedStream {
    /// Parses the `merged_streams` list; names must be unique.
    pub fn parse_list(value: &Value) -> Result<Vec<MergedStream>, MergeError> {
        let Value::Array(items) = value else {
            return Err(MergeError::declaration(
                "`annotations.dsm.merged_streams` must be a list",
            ));
        };
        let mut out: Vec<MergedStream> = Vec::with_capacity(items.len());
        for item in items {
            let m = MergedStream::parse(item)?;
            if out.iter().any(|o| o.name == m.name) {
                return Err(MergeError::declaration(format!(
                    "merged stream `{}` is declared twice",
                    m.name
                )));
            }
            out.push(m);
        }
        Ok(out)
    }

    /// Parses and checks one merged stream (everything that can be checked without schemas).
    pub fn parse(value: &Value) -> Result<MergedStream, MergeError> {
        let Value::Object(obj) = value else {
            return Err(MergeError::declaration(
                "each entry of `merged_streams` must be a mapping",
            ));
        };
        let name = match obj.get("name") {
            Some(v) => string(v, || "`name` of a merged stream".into())?,
            None => {
                return Err(MergeError::declaration("a merged stream has no `name`")
                    .with_hint("give each entry of `merged_streams` a `name`"));
            }
        };
        let here = where_(&name);
        check_keys(obj, &STREAM_KEYS, &here)?;

        let sources = match obj.get("sources") {
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .map(|s| Source::parse(s, &name))
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(MergeError::declaration(format!(
                    "{here} needs a non-empty list of `sources`"
                ))
                .with_hint("each source is `{ extractor: tap-x, stream: s }`"));
            }
        };
        for (i, s) in sources.iter().enumerate() {
            if sources[..i].iter().any(|o| o.name == s.name) {
                return Err(MergeError::declaration(format!(
                    "{here} has two sources named `{}`",
                    s.name
                ))
                .with_hint("give one of them a distinct `name`"));
            }
        }
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        let known_source = |n: &str, what: &str| -> Result<(), MergeError> {
            if names.contains(&n) {
                return Ok(());
            }
            let mut e =
                MergeError::declaration(format!("{what} of {here} names unknown source `{n}`"));
            e = match did_you_mean(n, names.iter().copied()) {
                Some(m) => e.with_hint(format!("did you mean `{m}`?")),
                None => e.with_hint(format!("the sources are: {}", names.join(", "))),
            };
            Err(e)
        };

        let mut priority = match obj.get("priority") {
            None => Vec::new(),
            Some(v) => string_list(v, || format!("`priority` of {here}"))?,
        };
        for (i, p) in priority.iter().enumerate() {
            known_source(p, "`priority`")?;
            if priority[..i].contains(p) {
                return Err(MergeError::declaration(format!(
                    "`priority` of {here} lists `{p}` twice"
                )));
            }
        }
        // Sources left out of `priority` come after the listed ones, in declared order.
        for n in &names {
            if !priority.iter().any(|p| p == n) {
                priority.push((*n).to_owned());
            }
        }

        let key = match obj.get("key") {
            None | Some(Value::Null) => None,
            Some(v) => Some(string_list(v, || format!("`key` of {here}"))?),
        };
        let policy = match obj.get("policy") {
            None => Rule::Priority,
            Some(v) => Rule::parse(v, &format!("`policy` of {here}"))?,
        };
        let mut fields = Vec::new();
        match obj.get("fields") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (f, r) in map {
                    fields.push((
                        f.clone(),
                        Rule::parse(r, &format!("the rule for field `{f}` of {here}"))?,
                    ));
                }
            }
            Some(_) => {
                return Err(MergeError::declaration(format!(
                    "`fields` of {here} must map field names to rules"
                )));
            }
        }
        let null_key = match obj.get("null_key") {
            None => NullKeyRule::Fail,
            Some(Value::String(s)) => match s.as_str() {
                "skip" => NullKeyRule::Skip,
                "quarantine" => NullKeyRule::Quarantine,
                "fail" => NullKeyRule::Fail,
                other => {
                    return Err(MergeError::declaration(format!(
                        "unknown `null_key` rule `{other}` in {here}"
                    ))
                    .with_hint("use `skip`, `quarantine` or `fail`"));
                }
            },
            Some(_) => {
                return Err(MergeError::declaration(format!(
                    "`null_key` of {here} must be `skip`, `quarantine` or `fail`"
                )));
            }
        };
        let provenance = match obj.get("provenance") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(MergeError::declaration(format!(
                    "`provenance` of {here} must be true or false"
                )));
            }
        };
        let conflict_retention_days = match obj.get("conflict_retention_days") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64().and_then(|d| u32::try_from(d).ok()) {
                Some(d) if d > 0 => Some(d),
                _ => {
                    return Err(MergeError::declaration(format!(
                        "`conflict_retention_days` of {here} must be a positive whole number"
                    )));
                }
            },
        };

        let stream = MergedStream {
            name,
            sources,
            key,
            priority,
            policy,
            fields,
            null_key,
            provenance,
            conflict_retention_days,
        };
        stream.check_common_names()?;
        Ok(stream)
    }

    /// Two source fields of one source must not map onto the same common name.
    fn check_common_names(&self) -> Result<(), MergeError> {
        for s in &self.sources {
            for (i, (from, to)) in s.fields.iter().enumerate() {
                if let Some((other, _)) = s.fields[..i].iter().find(|(_, t)| t == to) {
                    return Err(MergeError::declaration(format!(
                        "source `{}` of merged stream `{}` maps both `{other}` and `{from}` onto `{to}`",
                        s.name, self.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The rank of a source in `priority` (0 is the highest).
    pub fn rank(&self, source: &str) -> Option<usize> {
        self.priority.iter().position(|p| p == source)
    }

    /// The rule for a common field: its own rule, else the record-level policy.
    pub fn rule_for(&self, field: &str) -> &Rule {
        self.fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, r)| r)
            .unwrap_or(&self.policy)
    }

    /// Every field a rule refers to (per-field rules and `latest` ordering fields).
    pub fn referenced_fields(&self) -> Vec<(&str, String)> {
        let mut out = Vec::new();
        for (f, r) in &self.fields {
            out.push((f.as_str(), format!("the rule for field `{f}`")));
            if let Rule::Latest { field, .. } = r {
                out.push((field.as_str(), format!("the `latest` rule for field `{f}`")));
            }
        }
        if let Rule::Latest { field, .. } = &self.policy {
            out.push((field.as_str(), "the `latest` policy".to_owned()));
        }
        out
    }
}

impl Source {
    fn parse(value: &Value, stream: &str) -> Result<Source, MergeError> {
        let here = where_(stream);
        let Value::Object(obj) = value else {
            return Err(MergeError::declaration(format!(
                "each source of {here} must be a mapping with `extractor` and `stream`"
            )));
        };
        check_keys(obj, &SOURCE_KEYS, &format!("a source of {here}"))?;
        let extractor = match obj.get("extractor") {
            Some(v) => string(v, || format!("`extractor` of a source of {here}"))?,
            None => {
                return Err(MergeError::declaration(format!(
                    "a source of {here} has no `extractor`"
                )));
            }
        };
        let source_stream = match obj.get("stream") {
            Some(v) => string(v, || format!("`stream` of source `{extractor}` of {here}"))?,
            None => {
                return Err(MergeError::declaration(format!(
                    "source `{extractor}` of {here} has no `stream`"
                ))
                .with_hint("name the extractor's stream that feeds this merged stream"));
            }
        };
        let name = match obj.get("name") {
            Some(v) => string(v, || format!("`name` of source `{extractor}` of {here}"))?,
            None => extractor.clone(),
        };
        let fields = match obj.get("fields") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(from, to)| {
                    Ok((
                        from.clone(),
                        string(to, || {
                            format!("the common name for `{from}` of source `{name}` of {here}")
                        })?,
                    ))
                })
                .collect::<Result<Vec<_>, MergeError>>()?,
            Some(_) => {
                return Err(MergeError::declaration(format!(
                    "`fields` of source `{name}` of {here} must map source fields to common names"
                )));
            }
        };
        Ok(Source {
            name,
            extractor,
            stream: source_stream,
            fields,
        })
    }

    /// The common name of a source field.
    pub fn common_name<'a>(&'a self, field: &'a str) -> &'a str {
        self.fields
            .iter()
            .find(|(from, _)| from == field)
            .map(|(_, to)| to.as_str())
            .unwrap_or(field)
    }
}

impl Rule {
    fn parse(value: &Value, what: &str) -> Result<Rule, MergeError> {
        let (name, obj) = match value {
            Value::String(s) => (s.as_str(), None),
            Value::Object(obj) => {
                check_keys(obj, &RULE_KEYS, what)?;
                match obj.get("rule") {
                    Some(Value::String(s)) => (s.as_str(), Some(obj)),
                    _ => {
                        return Err(MergeError::declaration(format!("{what} has no `rule`"))
                            .with_hint(format!("use one of: {}", RULES.join(", "))));
                    }
                }
            }
            _ => {
                return Err(MergeError::declaration(format!(
                    "{what} must be a rule name or a mapping with `rule`"
                )));
            }
        };
        let rule = match name {
            "priority" => Rule::Priority,
            "first" => Rule::First,
            "last" => Rule::Last,
            "coalesce" => Rule::Coalesce,
            "max" => Rule::Max,
            "min" => Rule::Min,
            "fail" => Rule::Fail,
            "quarantine" => Rule::Quarantine,
            "latest" => {
                let field = match obj.and_then(|o| o.get("field")) {
                    Some(v) => string(v, || format!("`field` of {what}"))?,
                    None => {
                        return Err(MergeError::declaration(format!(
                            "{what} is `latest` but names no `field` to order by"
                        ))
                        .with_hint("write `{ rule: latest, field: updated_at }`"));
                    }
                };
                let tie_break = match obj.and_then(|o| o.get("tie_break")) {
                    None => TieBreak::Priority,
                    Some(Value::String(t)) if t == "priority" => TieBreak::Priority,
                    Some(Value::String(t)) if t == "value" => TieBreak::Value,
                    Some(_) => {
                        return Err(MergeError::declaration(format!(
                            "unknown `tie_break` in {what}"
                        ))
                        .with_hint("use `priority` or `value`"));
                    }
                };
                Rule::Latest { field, tie_break }
            }
            other => {
                let mut e = MergeError::declaration(format!("unknown rule `{other}` in {what}"));
                e = match did_you_mean(other, RULES) {
                    Some(m) => e.with_hint(format!("did you mean `{m}`?")),
                    None => e.with_hint(format!("use one of: {}", RULES.join(", "))),
                };
                return Err(e);
            }
        };
        if let Some(o) = obj
            && !matches!(rule, Rule::Latest { .. })
            && (o.contains_key("field") || o.contains_key("tie_break"))
        {
            return Err(MergeError::declaration(format!(
                "{what}: `field` and `tie_break` only apply to `latest`"
            )));
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn two_sources() -> Value {
        json!({
            "name": "companies",
            "sources": [
                {"extractor": "tap-csv", "stream": "companies", "fields": {"company_name": "name"}},
                {"extractor": "tap-api", "stream": "orgs", "name": "api"}
            ],
            "key": ["id"],
            "priority": ["api"],
            "policy": "coalesce",
            "fields": {
                "revenue": "max",
                "name": {"rule": "latest", "field": "updated_at", "tie_break": "value"}
            },
            "null_key": "skip",
            "provenance": true
        })
    }

    #[test]
    fn parses_a_full_declaration() {
        let m = MergedStream::parse(&two_sources()).unwrap();
        assert_eq!(m.name, "companies");
        assert_eq!(m.priority, vec!["api", "tap-csv"]);
        assert_eq!(m.sources[0].common_name("company_name"), "name");
        assert_eq!(m.sources[0].common_name("other"), "other");
        assert_eq!(m.rule_for("revenue"), &Rule::Max);
        assert_eq!(m.rule_for("email"), &Rule::Coalesce);
        assert_eq!(
            m.rule_for("name"),
            &Rule::Latest {
                field: "updated_at".into(),
                tie_break: TieBreak::Value
            }
        );
        assert_eq!(m.null_key, NullKeyRule::Skip);
        assert!(m.provenance);
        assert_eq!(m.key, Some(vec!["id".to_owned()]));
    }

    #[test]
    fn defaults_are_priority_by_declared_order_and_fail_on_null_keys() {
        let m = MergedStream::parse(&json!({
            "name": "m",
            "sources": [{"extractor": "a", "stream": "s"}, {"extractor": "b", "stream": "s"}]
        }))
        .unwrap();
        assert_eq!(m.priority, vec!["a", "b"]);
        assert_eq!(m.policy, Rule::Priority);
        assert_eq!(m.null_key, NullKeyRule::Fail);
        assert_eq!(m.key, None);
    }

    fn error_of(mut v: Value, edit: impl FnOnce(&mut Value)) -> MergeError {
        edit(&mut v);
        MergedStream::parse(&v).unwrap_err()
    }

    #[test]
    fn priority_naming_an_unknown_source_is_an_error_with_a_suggestion() {
        let e = error_of(two_sources(), |v| v["priority"] = json!(["apii"]));
        assert_eq!(
            e.to_string(),
            "`priority` of merged stream `companies` names unknown source `apii`"
        );
        assert_eq!(e.hint(), Some("did you mean `api`?"));
    }

    #[test]
    fn unknown_rules_and_keys_are_errors() {
        let e = error_of(two_sources(), |v| v["fields"]["revenue"] = json!("maxx"));
        assert!(e.to_string().contains("unknown rule `maxx`"), "{e}");
        assert!(e.to_string().contains("field `revenue`"), "{e}");
        assert_eq!(e.hint(), Some("did you mean `max`?"));

        let e = error_of(two_sources(), |v| v["polcy"] = json!("max"));
        assert_eq!(
            e.to_string(),
            "unknown key `polcy` in merged stream `companies`"
        );
        assert_eq!(e.hint(), Some("did you mean `policy`?"));
    }

    #[test]
    fn latest_without_a_field_is_an_error() {
        let e = error_of(two_sources(), |v| v["policy"] = json!("latest"));
        assert!(e.to_string().contains("names no `field`"), "{e}");
    }

    #[test]
    fn duplicate_sources_and_mappings_are_errors() {
        let e = error_of(two_sources(), |v| {
            v["sources"][1] = json!({"extractor": "tap-csv", "stream": "x"})
        });
        assert!(e.to_string().contains("two sources named `tap-csv`"), "{e}");
        let e = error_of(two_sources(), |v| {
            v["sources"][0]["fields"] = json!({"a": "name", "b": "name"})
        });
        assert!(
            e.to_string().contains("maps both `a` and `b` onto `name`"),
            "{e}"
        );
        let e = error_of(two_sources(), |v| v["sources"] = json!([]));
        assert!(e.to_string().contains("non-empty list of `sources`"), "{e}");
    }

    #[test]
    fn bad_null_key_rule_and_duplicate_stream_names() {
        let e = error_of(two_sources(), |v| v["null_key"] = json!("ignore"));
        assert!(
            e.to_string().contains("unknown `null_key` rule `ignore`"),
            "{e}"
        );
        let list = json!({"merged_streams": [two_sources(), two_sources()]});
        let e = merged_streams(&list).unwrap_err();
        assert_eq!(e.to_string(), "merged stream `companies` is declared twice");
        assert!(merged_streams(&json!({})).unwrap().is_empty());
    }
}
