//! Meltano's selection patterns and the rules they expand to.
//!
//! Matching follows Python's `fnmatch.fnmatch` on POSIX (case-sensitive): `*` matches any run of
//! characters including `.`, `?` one character, `[seq]`/`[!seq]` a class; a `[` without its `]`
//! is literal. That is why `stream.*` also selects nested properties.

use serde_json::Value;

/// Python's `fnmatch.fnmatch(name, pattern)` on POSIX.
pub fn fnmatch(name: &str, pattern: &str) -> bool {
    let tokens = tokenize(pattern);
    let name: Vec<char> = name.chars().collect();
    matches(&tokens, &name)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    Any,
    Star,
    /// A class: negated, single characters and inclusive ranges. Empty never matches.
    Class(bool, Vec<(char, char)>),
}

fn tokenize(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let n = p.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = p[i];
        i += 1;
        match c {
            '*' => {
                if out.last() != Some(&Token::Star) {
                    out.push(Token::Star);
                }
            }
            '?' => out.push(Token::Any),
            '[' => {
                let mut j = i;
                if j < n && p[j] == '!' {
                    j += 1;
                }
                if j < n && p[j] == ']' {
                    j += 1;
                }
                while j < n && p[j] != ']' {
                    j += 1;
                }
                if j >= n {
                    out.push(Token::Literal('['));
                    continue;
                }
                let stuff = &p[i..j];
                i = j + 1;
                let (negated, body) = match stuff.first() {
                    Some('!') => (true, &stuff[1..]),
                    _ => (false, stuff),
                };
                let mut items = Vec::new();
                let mut k = 0;
                while k < body.len() {
                    if k + 2 < body.len() && body[k + 1] == '-' {
                        // Python drops empty ranges such as `z-a`.
                        if body[k] <= body[k + 2] {
                            items.push((body[k], body[k + 2]));
                        }
                        k += 3;
                    } else {
                        items.push((body[k], body[k]));
                        k += 1;
                    }
                }
                out.push(Token::Class(negated, items));
            }
            other => out.push(Token::Literal(other)),
        }
    }
    out
}

fn matches(tokens: &[Token], name: &[char]) -> bool {
    // Iterative matching with single-star backtracking (stars are collapsed).
    let (mut t, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < name.len() {
        let ok = match tokens.get(t) {
            Some(Token::Literal(c)) => *c == name[s],
            Some(Token::Any) => true,
            Some(Token::Class(neg, items)) => {
                let hit = items.iter().any(|(a, b)| *a <= name[s] && name[s] <= *b);
                // An empty non-negated class never matches; `[!]` matches any character.
                hit != *neg
            }
            Some(Token::Star) => {
                star = Some((t, s));
                t += 1;
                continue;
            }
            None => false,
        };
        if ok {
            t += 1;
            s += 1;
        } else if let Some((st, ss)) = star {
            t = st + 1;
            s = ss + 1;
            star = Some((st, ss + 1));
        } else {
            return false;
        }
    }
    tokens[t..].iter().all(|x| *x == Token::Star)
}

/// Which streams a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamPattern {
    /// One glob on `tap_stream_id`.
    Glob(String),
    /// Any of these globs (the select filter's rules).
    AnyOf(Vec<String>),
}

impl StreamPattern {
    fn matches(&self, tap_stream_id: &str) -> bool {
        match self {
            StreamPattern::Glob(p) => fnmatch(tap_stream_id, p),
            StreamPattern::AnyOf(ps) => ps.iter().any(|p| fnmatch(tap_stream_id, p)),
        }
    }
}

/// A rule that sets `key: value` in the metadata of matching streams and properties
/// (Meltano's `MetadataRule`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataRule {
    /// Streams it applies to.
    pub tap_stream_id: StreamPattern,
    /// Breadcrumb glob parts, e.g. `["properties", "*"]`; `[]` is the stream itself.
    pub breadcrumb: Vec<String>,
    /// Metadata key.
    pub key: String,
    /// Value to set.
    pub value: Value,
    /// Matches the streams that match none of the patterns.
    pub negated: bool,
}

/// A rule that replaces the JSON schema of matching properties (Meltano's `SchemaRule`).
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaRule {
    /// Stream glob.
    pub tap_stream_id: String,
    /// Breadcrumb glob parts.
    pub breadcrumb: Vec<String>,
    /// The new schema of the property.
    pub payload: Value,
}

/// Whether a rule for `rule_stream`/`rule_breadcrumb` applies to a node. A `None` breadcrumb
/// checks the stream only.
fn rule_matches(
    stream: &StreamPattern,
    negated: bool,
    rule_breadcrumb: &[String],
    tap_stream_id: &str,
    breadcrumb: Option<&[String]>,
) -> bool {
    let mut result = stream.matches(tap_stream_id);
    if negated {
        result = !result;
    }
    match breadcrumb {
        Some(b) => result && fnmatch(&b.join("."), &rule_breadcrumb.join(".")),
        None => result,
    }
}

impl MetadataRule {
    /// Whether the rule applies to this stream and breadcrumb.
    pub fn matches(&self, tap_stream_id: &str, breadcrumb: Option<&[String]>) -> bool {
        rule_matches(
            &self.tap_stream_id,
            self.negated,
            &self.breadcrumb,
            tap_stream_id,
            breadcrumb,
        )
    }

    fn select(stream: &str, props: &[String], value: bool) -> MetadataRule {
        MetadataRule {
            tap_stream_id: StreamPattern::Glob(stream.to_string()),
            breadcrumb: property_breadcrumb(props),
            key: "selected".into(),
            value: Value::Bool(value),
            negated: false,
        }
    }
}

impl SchemaRule {
    /// Whether the rule applies to this stream and breadcrumb.
    pub fn matches(&self, tap_stream_id: &str, breadcrumb: Option<&[String]>) -> bool {
        rule_matches(
            &StreamPattern::Glob(self.tap_stream_id.clone()),
            false,
            &self.breadcrumb,
            tap_stream_id,
            breadcrumb,
        )
    }
}

/// `["a", "b"]` → `["properties", "a", "properties", "b"]`.
pub fn property_breadcrumb(props: &[String]) -> Vec<String> {
    props
        .iter()
        .flat_map(|p| ["properties".to_string(), p.clone()])
        .collect()
}

/// A parsed `select` pattern: `[!]stream[.property[.sub…]]`, where `\.` in the stream part is a
/// literal dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectPattern {
    /// Glob on `tap_stream_id` (escapes resolved).
    pub stream_pattern: String,
    /// Glob on the dotted property path, `None` for a bare stream name.
    pub property_pattern: Option<String>,
    /// Whether it started with `!`.
    pub negated: bool,
    /// The pattern as written.
    pub raw: String,
}

impl SelectPattern {
    /// Parses a pattern; it splits at the first dot not preceded by a backslash.
    pub fn parse(pattern: &str) -> SelectPattern {
        let raw = pattern.to_string();
        let (negated, rest) = match pattern.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, pattern),
        };
        let bytes = rest.as_bytes();
        let split =
            (0..bytes.len()).find(|&i| bytes[i] == b'.' && (i == 0 || bytes[i - 1] != b'\\'));
        let (stream, prop) = match split {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_string())),
            None => (rest, None),
        };
        SelectPattern {
            stream_pattern: stream.replace("\\.", "."),
            property_pattern: prop,
            negated,
            raw,
        }
    }
}

/// The metadata rules for a `select` list, Meltano's `select_metadata_rules`: includes first,
/// then excludes; a bare stream means `stream.*`; selecting `a.b.c` also selects `a.b`.
pub fn select_metadata_rules<S: AsRef<str>>(patterns: &[S]) -> Vec<MetadataRule> {
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for pattern in patterns {
        let parsed = SelectPattern::parse(pattern.as_ref());
        let selected = !parsed.negated;
        let rules = if selected { &mut include } else { &mut exclude };
        let stream = parsed.stream_pattern.as_str();
        match parsed.property_pattern.as_deref() {
            None | Some("") => {
                rules.push(MetadataRule::select(stream, &[], selected));
                rules.push(MetadataRule::select(stream, &["*".to_string()], selected));
            }
            Some(prop) => {
                if selected || prop == "*" {
                    rules.push(MetadataRule::select(stream, &[], selected));
                }
                let props: Vec<String> = prop.split('.').map(str::to_string).collect();
                rules.push(MetadataRule::select(stream, &props, selected));
                if selected {
                    for idx in 1..props.len() {
                        rules.push(MetadataRule::select(stream, &props[..idx], selected));
                    }
                }
            }
        }
    }
    include.extend(exclude);
    include
}

/// The rules for `--select`/`--exclude` filters (Meltano's `select_filter_metadata_rules`):
/// deselect every stream that matches none of the plain patterns, and every stream that matches
/// one of the `!` patterns. Only the stream part of each pattern counts.
pub fn select_filter_metadata_rules<S: AsRef<str>>(patterns: &[S]) -> Vec<MetadataRule> {
    let mut includes = Vec::new();
    let mut excludes = Vec::new();
    for pattern in patterns {
        let parsed = SelectPattern::parse(pattern.as_ref());
        if parsed.negated {
            excludes.push(parsed.stream_pattern);
        } else {
            includes.push(parsed.stream_pattern);
        }
    }
    let rule = |ids: Vec<String>, negated: bool| MetadataRule {
        tap_stream_id: StreamPattern::AnyOf(ids),
        breadcrumb: Vec::new(),
        key: "selected".into(),
        value: Value::Bool(false),
        negated,
    };
    let mut rules = Vec::new();
    if !includes.is_empty() {
        rules.push(rule(includes, true));
    }
    if !excludes.is_empty() {
        rules.push(rule(excludes, false));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fnmatch_follows_python() {
        assert!(fnmatch("properties.geo.properties.city", "properties.*"));
        assert!(fnmatch("abc", "a?c"));
        assert!(!fnmatch("abc", "A?c"));
        assert!(fnmatch("b", "[abc]"));
        assert!(!fnmatch("b", "[!abc]"));
        assert!(fnmatch("[x", "[x"));
        assert!(fnmatch("]", "[]]"));
        assert!(fnmatch("q", "[a-z]"));
        assert!(!fnmatch("q", "[z-a]"));
        assert!(fnmatch("", "*"));
        assert!(!fnmatch("", "?"));
        assert!(fnmatch("a.b.c", "*.c"));
        assert!(!fnmatch("a.b.c", "*.b"));
    }

    #[test]
    fn parse_escaped_and_bare() {
        let p = SelectPattern::parse("!Unique\\.Entities.code.sub");
        assert_eq!(p.stream_pattern, "Unique.Entities");
        assert_eq!(p.property_pattern.as_deref(), Some("code.sub"));
        assert!(p.negated);
        let p = SelectPattern::parse("users");
        assert_eq!(p.property_pattern, None);
    }

    fn glob_regex(pattern: &str) -> regex::Regex {
        let mut re = String::from("(?s)^");
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                other => re.push_str(&regex::escape(&other.to_string())),
            }
        }
        re.push('$');
        regex::Regex::new(&re).expect("valid regex")
    }

    proptest! {
        // Without classes, fnmatch must agree with the plain regex translation Python uses.
        #[test]
        fn fnmatch_agrees_with_regex(name in "[ab.]{0,8}", pattern in "[ab.*?]{0,6}") {
            prop_assert_eq!(fnmatch(&name, &pattern), glob_regex(&pattern).is_match(&name));
        }

        #[test]
        fn a_name_matches_itself(name in "[a-zA-Z0-9_.]{0,12}") {
            prop_assert!(fnmatch(&name, &name));
            prop_assert!(fnmatch(&name, "*"));
        }
    }
}
