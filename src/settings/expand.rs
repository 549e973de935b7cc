//! `$VAR` / `${VAR}` expansion in setting values, as Meltano does it: `$VAR` only for names that
//! start with an upper-case letter (`[A-Z][A-Z0-9_]*`), `${var}` for any word, and `\$VAR` stays
//! as the literal `$VAR`.

use std::sync::OnceLock;

use regex::{Captures, Regex};
use serde_json::Value as J;

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(\\)?\$(?:\{(\w+)\}|([A-Z][A-Z0-9_]*))").expect("the pattern compiles")
    })
}

/// What expansion found besides the value.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// Names that were referenced but not defined (expanded to an empty string).
    pub missing: Vec<String>,
}

/// Expands variables in strings inside `value` (recursively in arrays and objects).
pub fn expand(value: &J, lookup: &dyn Fn(&str) -> Option<String>, out: &mut Expansion) -> J {
    match value {
        J::String(s) => J::String(expand_str(s, lookup, out)),
        J::Array(items) => J::Array(items.iter().map(|v| expand(v, lookup, out)).collect()),
        J::Object(map) => J::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), expand(v, lookup, out)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The variables `s` would expand (not the escaped ones), by the same grammar as
/// [`expand_str`].
pub fn referenced(s: &str) -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::new());
    expand_str(
        s,
        &|name| {
            names.borrow_mut().push(name.to_owned());
            None
        },
        &mut Expansion::default(),
    );
    names.into_inner()
}

/// Expands variables in one string.
pub fn expand_str(s: &str, lookup: &dyn Fn(&str) -> Option<String>, out: &mut Expansion) -> String {
    pattern()
        .replace_all(s, |c: &Captures<'_>| {
            let (name, curly) = match (c.get(2), c.get(3)) {
                (Some(n), _) => (n.as_str(), true),
                (None, Some(n)) => (n.as_str(), false),
                (None, None) => unreachable!("the pattern always captures a name"),
            };
            if c.get(1).is_some() {
                return if curly {
                    format!("${{{name}}}")
                } else {
                    format!("${name}")
                };
            }
            match lookup(name) {
                Some(v) => v,
                None => {
                    out.missing.push(name.to_string());
                    String::new()
                }
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "lower" => Some("l".into()),
            _ => None,
        }
    }

    #[test]
    fn referenced_names_whole_variables_and_skips_escaped_ones() {
        let yml = "uri: postgresql://u:${PG_PASSWORD}@h/db\ntoken: $TAP_X_TOKEN\nkept: \\$TAP_Y\n";
        assert_eq!(referenced(yml), ["PG_PASSWORD", "TAP_X_TOKEN"]);
        assert!(referenced("no references").is_empty());
    }

    #[test]
    fn expands_both_forms_and_keeps_escapes() {
        let mut out = Expansion::default();
        let s = expand_str(
            r"${HOME}/x $HOME ${lower} $lower \$HOME \${HOME} $NOPE",
            &env,
            &mut out,
        );
        assert_eq!(s, "/home/me/x /home/me l $lower $HOME ${HOME} ");
        assert_eq!(out.missing, ["NOPE"]);
    }

    #[test]
    fn expands_inside_arrays_and_objects() {
        let mut out = Expansion::default();
        let v = expand(&serde_json::json!({"a": ["$HOME", 1]}), &env, &mut out);
        assert_eq!(v, serde_json::json!({"a": ["/home/me", 1]}));
    }
}
