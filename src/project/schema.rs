//! dsm's JSON Schema for `meltano.yml` (`schemas/meltano.schema.json`, compiled in) and a small
//! validator that walks the positioned YAML tree with it, so every problem is reported with its
//! line, column and a did-you-mean taken from the schema's own key names.
//!
//! It understands the parts of JSON Schema the file uses: `$ref`, `allOf`, `oneOf`, `anyOf`,
//! `type`, `enum`, `const`, `pattern`, `minimum`, `required`, `properties`, `patternProperties`,
//! `additionalProperties` and `unevaluatedProperties`.

use std::sync::OnceLock;

use serde_json::Value as J;

use crate::error::did_you_mean;
use crate::project::yaml::{Node, Pos, Value};

/// dsm's schema text, as checked in.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/meltano.schema.json");

/// dsm's schema, parsed once.
pub fn schema() -> &'static J {
    static SCHEMA: OnceLock<J> = OnceLock::new();
    SCHEMA
        .get_or_init(|| serde_json::from_str(SCHEMA_TEXT).expect("the compiled-in schema is JSON"))
}

/// One structural problem found by the validator.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// A stable name for the kind of problem (`unknown-key`, `wrong-type`, ...), for scripts.
    pub code: &'static str,
    /// Where (of the key for unknown keys, else of the value).
    pub pos: Pos,
    /// The path in the document, like `plugins.extractors[0].config`.
    pub path: String,
    /// What is wrong, one line.
    pub message: String,
    /// What to do, when we know.
    pub hint: Option<String>,
}

/// Validates a document against dsm's schema and returns every problem found.
pub fn validate(doc: &Node) -> Vec<Violation> {
    validate_against(doc, schema())
}

fn validate_against(doc: &Node, root: &J) -> Vec<Violation> {
    let mut v = Validator {
        root,
        out: Vec::new(),
    };
    v.check(doc, root, "");
    v.out
}

struct Validator<'s> {
    root: &'s J,
    out: Vec<Violation>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Whether the value at `path` may be a secret: anything under a plugin's or environment's
/// `config` or `env`, and a setting's `value`. Messages about such values name the path and
/// what was expected, never the value itself (it may be a password typed in the wrong place).
fn may_be_secret(path: &str) -> bool {
    let segments: Vec<&str> = path
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    segments.iter().enumerate().any(|(i, s)| match *s {
        "config" | "env" => true,
        "value" => i > 0 && segments[i - 1] == "settings",
        // A notification webhook's secret, and its URL (a chat's carries its secret in the
        // path).
        "secret" | "url" => i > 0 && segments[i - 1] == "webhook",
        _ => false,
    })
}

/// How a message shows the value at `path`: as written, or withheld when it may be a secret.
fn shown(path: &str, value: impl std::fmt::Display) -> String {
    if may_be_secret(path) {
        "[hidden: it may be a secret]".to_string()
    } else {
        format!("{value}")
    }
}

fn describe(path: &str) -> String {
    if path.is_empty() {
        "at the top level".to_string()
    } else {
        format!("under `{path}`")
    }
}

impl<'s> Validator<'s> {
    fn resolve(&self, reference: &str) -> &'s J {
        let pointer = reference.trim_start_matches('#');
        self.root
            .pointer(pointer)
            .expect("every $ref in the compiled-in schema resolves")
    }

    /// The schema plus everything it pulls in through `$ref` and `allOf`, flattened.
    fn parts(&self, schema: &'s J, out: &mut Vec<&'s J>) {
        out.push(schema);
        if let Some(r) = schema.get("$ref").and_then(J::as_str) {
            self.parts(self.resolve(r), out);
        }
        if let Some(all) = schema.get("allOf").and_then(J::as_array) {
            for s in all {
                self.parts(s, out);
            }
        }
    }

    fn push(
        &mut self,
        code: &'static str,
        pos: Pos,
        path: &str,
        message: String,
        hint: Option<String>,
    ) {
        self.out.push(Violation {
            code,
            pos,
            path: path.to_string(),
            message,
            hint,
        });
    }

    fn check(&mut self, node: &Node, schema: &'s J, path: &str) {
        if schema == &J::Bool(false) {
            self.push(
                "not-allowed",
                node.pos,
                path,
                format!("`{path}` is not allowed here"),
                None,
            );
            return;
        }
        let mut parts = Vec::new();
        self.parts(schema, &mut parts);

        for part in &parts {
            if !self.check_scalar_rules(node, part, path) {
                return;
            }
        }
        for part in &parts {
            for key in ["oneOf", "anyOf"] {
                if let Some(branches) = part.get(key).and_then(J::as_array) {
                    self.check_branches(node, branches, path);
                }
            }
            if let (Some(items), Value::Seq(seq)) = (part.get("items"), &node.value) {
                for (i, item) in seq.iter().enumerate() {
                    self.check(item, items, &format!("{path}[{i}]"));
                }
            }
        }
        if let Value::Map(entries) = &node.value {
            self.check_object(node, entries, &parts, path);
        }
    }

    /// `type`, `enum`, `const`, `pattern`, `minimum`: false when the type is wrong (no descent).
    fn check_scalar_rules(&mut self, node: &Node, part: &J, path: &str) -> bool {
        if let Some(ty) = part.get("type") {
            let allowed: Vec<&str> = match ty {
                J::String(s) => vec![s.as_str()],
                J::Array(a) => a.iter().filter_map(J::as_str).collect(),
                _ => vec![],
            };
            let actual = node.value.type_name();
            let ok = allowed
                .iter()
                .any(|t| *t == actual || (*t == "number" && matches!(node.value, Value::Int(_))));
            if !ok && !allowed.is_empty() {
                let what = if path.is_empty() { "the file" } else { path };
                self.push(
                    "wrong-type",
                    node.pos,
                    path,
                    format!(
                        "`{what}` must be {}, found {}",
                        expected(&allowed),
                        article(actual)
                    ),
                    None,
                );
                return false;
            }
        }
        let json = || node.to_json();
        if let Some(options) = part.get("enum").and_then(J::as_array) {
            let value = json();
            if !options.contains(&value) {
                let names: Vec<&str> = options.iter().filter_map(J::as_str).collect();
                let hint = match &node.value {
                    Value::Str(s) if !may_be_secret(path) => did_you_mean(s, names.iter().copied())
                        .map(|m| format!("did you mean `{m}`?")),
                    _ => None,
                }
                .or_else(|| Some(format!("use one of: {}", names.join(", "))));
                self.push(
                    "not-one-of",
                    node.pos,
                    path,
                    format!(
                        "`{path}` has the value {}, which is not allowed",
                        shown(path, &value)
                    ),
                    hint,
                );
            }
        }
        if let Some(c) = part.get("const") {
            let value = json();
            if &value != c {
                self.push(
                    "wrong-value",
                    node.pos,
                    path,
                    format!("`{path}` must be {c}, found {}", shown(path, &value)),
                    None,
                );
            }
        }
        if let (Some(p), Value::Str(s)) = (part.get("pattern").and_then(J::as_str), &node.value) {
            let re = regex::Regex::new(p).expect("patterns in the compiled-in schema compile");
            if !re.is_match(s) {
                self.push(
                    "wrong-form",
                    node.pos,
                    path,
                    format!(
                        "`{path}` has the value {}, which has the wrong form",
                        shown(path, format!("{s:?}"))
                    ),
                    part.get("examples")
                        .and_then(J::as_array)
                        .map(|e| format!("for example: {}", join_examples(e))),
                );
            }
        }
        if let (Some(min), Value::Int(i)) = (part.get("minimum").and_then(J::as_i64), &node.value)
            && *i < i128::from(min)
        {
            self.push(
                "too-small",
                node.pos,
                path,
                format!("`{path}` must be at least {min}, found {}", shown(path, i)),
                None,
            );
        }
        true
    }

    /// Reports the violations of the branch the node comes closest to: the fewest violations,
    /// and among those the branch whose required keys the node has most of (an extractor/loader
    /// schedule missing `transform` is told about `transform`, not about `job`).
    fn check_branches(&mut self, node: &Node, branches: &'s [J], path: &str) {
        let present = |branch: &J| -> usize {
            let Value::Map(entries) = &node.value else {
                return 0;
            };
            branch.get("required").and_then(J::as_array).map_or(0, |r| {
                r.iter()
                    .filter_map(J::as_str)
                    .filter(|k| entries.iter().any(|(e, _)| e.name == *k))
                    .count()
            })
        };
        let mut best: Option<(Vec<Violation>, usize)> = None;
        for branch in branches {
            let mut sub = Validator {
                root: self.root,
                out: Vec::new(),
            };
            sub.check(node, branch, path);
            if sub.out.is_empty() {
                return;
            }
            let have = present(branch);
            let better = best.as_ref().is_none_or(|(b, h)| {
                sub.out.len() < b.len() || (sub.out.len() == b.len() && have > *h)
            });
            if better {
                best = Some((sub.out, have));
            }
        }
        if let Some((b, _)) = best {
            self.out.extend(b);
        }
    }

    fn check_object(
        &mut self,
        node: &Node,
        entries: &[(crate::project::yaml::Key, Node)],
        parts: &[&'s J],
        path: &str,
    ) {
        let mut props: Vec<(&'s str, &'s J)> = Vec::new();
        let mut patterns: Vec<(regex::Regex, &'s J)> = Vec::new();
        let mut additional: Option<&'s J> = None;
        let mut strict = false;
        let mut required: Vec<&'s str> = Vec::new();
        for part in parts {
            if let Some(p) = part.get("properties").and_then(J::as_object) {
                props.extend(p.iter().map(|(k, v)| (k.as_str(), v)));
            }
            if let Some(p) = part.get("patternProperties").and_then(J::as_object) {
                for (k, v) in p {
                    let re =
                        regex::Regex::new(k).expect("patterns in the compiled-in schema compile");
                    patterns.push((re, v));
                }
            }
            match part.get("additionalProperties") {
                Some(J::Bool(false)) => strict = true,
                Some(s @ J::Object(_)) => additional = Some(s),
                _ => {}
            }
            if part.get("unevaluatedProperties") == Some(&J::Bool(false)) {
                strict = true;
            }
            if let Some(r) = part.get("required").and_then(J::as_array) {
                required.extend(r.iter().filter_map(J::as_str));
            }
        }
        for (key, value) in entries {
            let child = join(path, &key.name);
            let mut matching: Vec<&'s J> = Vec::new();
            for (k, s) in &props {
                if *k == key.name && !matching.contains(s) {
                    matching.push(s);
                }
            }
            if !matching.is_empty() {
                for s in matching {
                    self.check(value, s, &child);
                }
                continue;
            }
            let by_pattern: Vec<&'s J> = patterns
                .iter()
                .filter(|(re, _)| re.is_match(&key.name))
                .map(|(_, s)| *s)
                .collect();
            if !by_pattern.is_empty() {
                for s in by_pattern {
                    self.check(value, s, &child);
                }
                continue;
            }
            if let Some(s) = additional {
                self.check(value, s, &child);
            } else if strict {
                let mut names: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
                names.sort_unstable();
                names.dedup();
                let hint = did_you_mean(&key.name, names.iter().copied())
                    .map(|m| format!("did you mean `{m}`?"))
                    .or_else(|| Some(format!("known keys here: {}", names.join(", "))));
                self.push(
                    "unknown-key",
                    key.pos,
                    &child,
                    format!("unknown key `{}` {}", key.name, describe(path)),
                    hint,
                );
            }
        }
        required.sort_unstable();
        required.dedup();
        for r in required {
            if !entries.iter().any(|(k, _)| k.name == r) {
                self.push(
                    "missing-key",
                    node.pos,
                    path,
                    format!("missing key `{r}` {}", describe(path)),
                    None,
                );
            }
        }
    }
}

fn article(ty: &str) -> String {
    match ty {
        "integer" | "array" | "object" => format!("an {ty}"),
        "null" => "nothing (null)".to_string(),
        _ => format!("a {ty}"),
    }
}

fn expected(types: &[&str]) -> String {
    types
        .iter()
        .map(|t| article(t))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn join_examples(e: &[J]) -> String {
    e.iter()
        .map(|v| match v {
            J::String(s) => format!("`{s}`"),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every key name the schema declares in some `properties` (for the tests' drift checks).
#[cfg(test)]
pub(crate) fn property_names_of(pointer: &str) -> Vec<String> {
    let v = Validator {
        root: schema(),
        out: Vec::new(),
    };
    let mut parts = Vec::new();
    v.parts(v.resolve(pointer), &mut parts);
    let mut names: Vec<String> = parts
        .iter()
        .filter_map(|p| p.get("properties").and_then(J::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::yaml::parse;

    fn errors(yaml: &str) -> Vec<Violation> {
        validate(&parse(yaml).unwrap())
    }

    #[test]
    fn unknown_plugin_type_has_position_and_did_you_mean() {
        let e = errors("plugins:\n  extractor:\n  - name: tap-x\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].pos, Pos { line: 2, column: 3 });
        assert_eq!(e[0].message, "unknown key `extractor` under `plugins`");
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `extractors`?"));
    }

    #[test]
    fn all_errors_are_reported_together() {
        let e = errors(
            "defualt_environment: dev\nplugins:\n  extractors:\n  - name: tap-x\n    pip_ur: x\n    select: nope\n",
        );
        let messages: Vec<&str> = e.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(e.len(), 3, "{messages:?}");
        assert!(messages[0].contains("`defualt_environment`"));
        assert!(messages.iter().any(|m| m.contains("unknown key `pip_ur`")));
        assert!(messages.iter().any(|m| {
            m.contains("`plugins.extractors[0].select` must be an array, found a string")
        }));
    }

    #[test]
    fn values_that_may_be_secrets_are_not_quoted() {
        // A schema that constrains values under `config`, `env` and a setting's `value`, to
        // reach every rule that quotes a value.
        let rules = serde_json::json!({
            "enum": ["a", "b"], "pattern": "^x", "const": "x", "minimum": 10
        });
        let root = serde_json::json!({
            "type": "object",
            "properties": {
                "plugins": {"type": "object", "properties": {"extractors": {"type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "config": {"type": "object", "additionalProperties": rules},
                        "env": {"type": "object", "additionalProperties": rules},
                        "settings": {"type": "array", "items": {"type": "object", "properties": {"value": rules}}}
                    }
                }}}},
                "interval": rules
            }
        });
        let yaml = "plugins:\n  extractors:\n  - config: {password: hunter2-cfg, port: 3}\n    env: {TOKEN: hunter2-env}\n    settings:\n    - {name: p, value: hunter2-val}\ninterval: visible-1\n";
        let found = validate_against(&parse(yaml).unwrap(), &root);
        let text = format!("{found:?}");
        assert!(found.len() >= 8, "{text}");
        for secret in ["hunter2-cfg", "hunter2-env", "hunter2-val"] {
            assert!(!text.contains(secret), "{secret} quoted: {text}");
        }
        assert!(
            text.contains(
                "`plugins.extractors[0].config.password` has the value [hidden: it may be a secret]"
            ),
            "{text}"
        );
        assert!(text.contains("`plugins.extractors[0].config.port` must be at least 10, found [hidden: it may be a secret]"), "{text}");
        // Outside those places values still help the reader.
        assert!(
            found.iter().any(|v| v.message.contains("\"visible-1\"")),
            "{text}"
        );
    }

    #[test]
    fn plugin_config_is_free_form() {
        assert!(
            errors("plugins:\n  loaders:\n  - name: t\n    config: {anything: [1, 2]}\n")
                .is_empty()
        );
    }

    #[test]
    fn relaxed_intervals_are_accepted() {
        for interval in [
            "@manual",
            "@none",
            "@midnight",
            "@annually",
            "@daily",
            "0 * * * *",
        ] {
            let yaml = format!("schedules:\n- name: s\n  job: j\n  interval: '{interval}'\n");
            assert!(errors(&yaml).is_empty(), "{interval}: {:?}", errors(&yaml));
        }
        assert!(!errors("schedules:\n- name: s\n  job: j\n  interval: '@sometimes'\n").is_empty());
    }

    #[test]
    fn state_id_suffix_on_an_environment_is_accepted() {
        assert!(errors("environments:\n- name: dev\n  state_id_suffix: x\n").is_empty());
        assert!(!errors("environments:\n- name: dev\n  state_id_sufix: x\n").is_empty());
    }

    #[test]
    fn env_specific_settings_are_accepted() {
        let yaml = "plugins:\n  extractors:\n  - name: t\n    settings:\n    - name: a\n      env_specific: true\n";
        assert!(errors(yaml).is_empty(), "{:?}", errors(yaml));
    }

    #[test]
    fn unknown_dsm_annotation_is_an_error_other_tools_are_not() {
        let e = errors(
            "plugins:\n  extractors:\n  - name: t\n    annotations:\n      other_tool: {x: 1}\n      dsm:\n        defualt_loader: x\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `default_loader`?"));
        assert_eq!(e[0].pos.line, 7);
    }

    #[test]
    fn checked_in_schema_is_meltanos_plus_dsm() {
        // Every key Meltano's own schema knows must still be known to dsm's.
        // A copy of Meltano's schema (its source is in the fixture's README).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/meltano/meltano.schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("Meltano's schema at {}: {e}", path.display()));
        let meltano: J = serde_json::from_str(&text).unwrap();
        fn keys(v: &J, path: &str, out: &mut Vec<String>) {
            if let Some(o) = v.as_object() {
                for (k, c) in o {
                    if k == "properties"
                        && let Some(p) = c.as_object()
                    {
                        for name in p.keys() {
                            out.push(format!("{path}/{name}"));
                        }
                    }
                    keys(c, &format!("{path}/{k}"), out);
                }
            }
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        keys(schema(), "", &mut ours);
        keys(&meltano, "", &mut theirs);
        let missing: Vec<&String> = theirs.iter().filter(|k| !ours.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "dsm's schema lost Meltano keys: {missing:?}"
        );
    }
}
