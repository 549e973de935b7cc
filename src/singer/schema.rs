//! Checking records against a stream's JSON Schema.
//!
//! The schema of each SCHEMA message is compiled once into a tree of checks (the keywords Singer
//! schemas use: `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`,
//! `const`, bounds, lengths, `pattern`, `format`, `multipleOf`, `anyOf`/`oneOf`/`allOf`/`not`).
//! `multipleOf` is exact on decimals: the number's text is used, never a float.

use regex::Regex;
use serde_json::{Map, Number, Value};

const T_NULL: u8 = 1;
const T_BOOL: u8 = 2;
const T_INT: u8 = 4;
const T_NUM: u8 = 8;
const T_STR: u8 = 16;
const T_ARR: u8 = 32;
const T_OBJ: u8 = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    DateTime,
    Date,
    Time,
    Email,
    Uuid,
    Ipv4,
    Ipv6,
    Uri,
}

/// A compiled schema node.
#[derive(Debug, Default, Clone)]
struct Node {
    never: bool,
    types: Option<u8>,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
    prefix_items: Vec<Node>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<Number>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Regex>,
    format: Option<Format>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    all_of: Vec<Node>,
    not: Option<Box<Node>>,
}

fn type_bit(t: &str) -> u8 {
    match t {
        "null" => T_NULL,
        "boolean" => T_BOOL,
        "integer" => T_INT,
        "number" => T_NUM | T_INT,
        "string" => T_STR,
        "array" => T_ARR,
        "object" => T_OBJ,
        _ => 0,
    }
}

/// How many `$ref`s deep compiling follows before it stops checking (a recursive schema, such
/// as a tree of comments, is checked to this depth and accepted below it).
const MAX_REF_DEPTH: usize = 16;

/// Where a schema's `$ref`s point into: the whole SCHEMA message's schema, and how many
/// references were followed on the way here.
#[derive(Clone, Copy)]
struct Refs<'a> {
    root: &'a Value,
    depth: usize,
}

fn compile(schema: &Value, path: &str, refs: Refs<'_>) -> Result<Node, String> {
    let obj = match schema {
        Value::Bool(true) => return Ok(Node::default()),
        Value::Bool(false) => {
            return Ok(Node {
                never: true,
                ..Node::default()
            });
        }
        Value::Object(o) => o,
        _ => return Err(format!("schema at `{path}` is not an object")),
    };
    if let Some(target) = obj.get("$ref") {
        return compile_ref(obj, target, path, refs);
    }
    let mut n = Node::default();
    let f = |k: &str| obj.get(k).and_then(Value::as_f64);
    let u = |k: &str| obj.get(k).and_then(Value::as_u64).map(|v| v as usize);
    if let Some(t) = obj.get("type") {
        n.types = Some(match t {
            Value::String(s) => type_bit(s),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .fold(0, |acc, s| acc | type_bit(s)),
            _ => return Err(format!("`type` at `{path}` must be a string or a list")),
        });
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (k, v) in props {
            n.properties.push((
                k.clone(),
                compile(v, &format!("{path}/properties/{k}"), refs)?,
            ));
        }
    }
    if let Some(Value::Array(req)) = obj.get("required") {
        n.required = req
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    if let Some(v @ (Value::Bool(false) | Value::Object(_))) = obj.get("additionalProperties") {
        n.additional = Some(Box::new(compile(
            v,
            &format!("{path}/additionalProperties"),
            refs,
        )?));
    }
    match obj.get("items") {
        Some(Value::Array(tuple)) => {
            for (i, s) in tuple.iter().enumerate() {
                n.prefix_items
                    .push(compile(s, &format!("{path}/items/{i}"), refs)?);
            }
        }
        Some(v) => n.items = Some(Box::new(compile(v, &format!("{path}/items"), refs)?)),
        None => {}
    }
    if let Some(Value::Array(p)) = obj.get("prefixItems") {
        for (i, s) in p.iter().enumerate() {
            n.prefix_items
                .push(compile(s, &format!("{path}/prefixItems/{i}"), refs)?);
        }
    }
    n.enumeration = obj.get("enum").and_then(Value::as_array).cloned();
    n.constant = obj.get("const").cloned();
    n.minimum = f("minimum");
    n.maximum = f("maximum");
    // Draft 4 wrote exclusive bounds as booleans next to minimum/maximum.
    match obj.get("exclusiveMinimum") {
        Some(Value::Bool(true)) => n.exclusive_minimum = n.minimum.take(),
        Some(Value::Number(x)) => n.exclusive_minimum = x.as_f64(),
        _ => {}
    }
    match obj.get("exclusiveMaximum") {
        Some(Value::Bool(true)) => n.exclusive_maximum = n.maximum.take(),
        Some(Value::Number(x)) => n.exclusive_maximum = x.as_f64(),
        _ => {}
    }
    if let Some(Value::Number(m)) = obj.get("multipleOf") {
        if m.as_f64().is_none_or(|x| x <= 0.0) {
            return Err(format!("`multipleOf` at `{path}` must be positive"));
        }
        n.multiple_of = Some(m.clone());
    }
    n.min_length = u("minLength");
    n.max_length = u("maxLength");
    n.min_items = u("minItems");
    n.max_items = u("maxItems");
    if let Some(p) = obj.get("pattern").and_then(Value::as_str) {
        n.pattern = Some(
            Regex::new(p)
                .map_err(|e| format!("`pattern` at `{path}` is not a regex dsm can run: {e}"))?,
        );
    }
    n.format = match obj.get("format").and_then(Value::as_str) {
        Some("date-time") => Some(Format::DateTime),
        Some("date") => Some(Format::Date),
        Some("time") => Some(Format::Time),
        Some("email") => Some(Format::Email),
        Some("uuid") => Some(Format::Uuid),
        Some("ipv4") => Some(Format::Ipv4),
        Some("ipv6") => Some(Format::Ipv6),
        Some("uri") => Some(Format::Uri),
        _ => None, // Unknown formats are annotations only, as the specification says.
    };
    for (key, list) in [
        ("anyOf", &mut n.any_of),
        ("oneOf", &mut n.one_of),
        ("allOf", &mut n.all_of),
    ] {
        if let Some(Value::Array(subs)) = obj.get(key) {
            for (i, s) in subs.iter().enumerate() {
                list.push(compile(s, &format!("{path}/{key}/{i}"), refs)?);
            }
        }
    }
    if let Some(s) = obj.get("not") {
        n.not = Some(Box::new(compile(s, &format!("{path}/not"), refs)?));
    }
    Ok(n)
}

/// A `$ref` to a place in the same schema (`#`, `#/definitions/x`, `#/$defs/x`): the target's
/// rules, and those of any keywords beside the reference (later drafts apply both).
fn compile_ref(
    obj: &Map<String, Value>,
    target: &Value,
    path: &str,
    refs: Refs<'_>,
) -> Result<Node, String> {
    let Some(pointer) = target.as_str().and_then(|t| t.strip_prefix('#')) else {
        return Err(format!(
            "`$ref` at `{path}` points outside the stream's schema ({target}); dsm validates against local references (`#/definitions/...`) only"
        ));
    };
    if refs.depth >= MAX_REF_DEPTH {
        return Ok(Node::default());
    }
    // JSON Pointer escapes: `~1` is `/`, `~0` is `~`; a `#` fragment may also be percent-encoded.
    let pointer = pointer.replace("%24", "$").replace("%25", "%");
    let resolved = refs.root.pointer(&pointer).ok_or_else(|| {
        format!(
            "`$ref` at `{path}` points to `#{pointer}`, which the stream's schema does not have"
        )
    })?;
    let deeper = Refs {
        root: refs.root,
        depth: refs.depth + 1,
    };
    let mut node = compile(resolved, &format!("{path}/$ref"), deeper)?;
    let siblings: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "$ref")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if siblings.keys().any(|k| {
        !matches!(
            k.as_str(),
            "description" | "title" | "definitions" | "$defs" | "$comment"
        )
    }) {
        let beside = compile(&Value::Object(siblings), path, refs)?;
        node = Node {
            all_of: vec![node, beside],
            ..Node::default()
        };
    }
    Ok(node)
}

fn value_type(v: &Value) -> u8 {
    match v {
        Value::Null => T_NULL,
        Value::Bool(_) => T_BOOL,
        Value::Number(n) => {
            // With exact number text, `is_i64()` would parse; a byte scan is enough here.
            let text = n.as_str();
            if !text.contains(['.', 'e', 'E']) || is_integral(text) {
                T_INT
            } else {
                T_NUM
            }
        }
        Value::String(_) => T_STR,
        Value::Array(_) => T_ARR,
        Value::Object(_) => T_OBJ,
    }
}

fn is_integral(text: &str) -> bool {
    decimal(text).is_some_and(|(m, scale)| scale <= 0 || m % 10i128.pow(scale as u32) == 0)
}

/// A decimal's text as `mantissa × 10^-scale`, exactly (None if it does not fit 128 bits).
fn decimal(text: &str) -> Option<(i128, i32)> {
    let (mant, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let (negative, int) = match int.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, int),
    };
    let mut m: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        m = m.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some((if negative { -m } else { m }, frac.len() as i32 - exp))
}

fn pow10(e: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(e).ok()?)
}

/// Whether `value` is an exact multiple of `step`, computed on the decimal text.
fn exact_multiple(value: &Number, step: &Number) -> bool {
    let exact = || {
        let (a, p) = decimal(value.as_str())?;
        let (b, q) = decimal(step.as_str())?;
        // a·10^-p / (b·10^-q) is an integer ⇔ a·10^q mod b·10^p == 0 (after normalising scales).
        let s = p.max(q);
        let a = a.checked_mul(pow10(s - p)?)?;
        let b = b.checked_mul(pow10(s - q)?)?;
        if b == 0 {
            return None;
        }
        Some(a % b == 0)
    };
    exact().unwrap_or_else(|| {
        let (v, s) = (
            value.as_f64().unwrap_or(f64::NAN),
            step.as_f64().unwrap_or(f64::NAN),
        );
        let q = v / s;
        q.is_finite() && (q - q.round()).abs() < 1e-9
    })
}

fn check_format(f: Format, s: &str) -> bool {
    match f {
        Format::DateTime => {
            chrono::DateTime::parse_from_rfc3339(s).is_ok()
                // Singer taps often write UTC timestamps without an offset; targets read them
                // as UTC, so they are accepted rather than quarantining most real streams.
                || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        }
        Format::Date => s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        Format::Time => {
            let base = s.trim_end_matches('Z');
            let base = match base.rfind(['+', '-']) {
                Some(i) if i >= 8 => &base[..i],
                _ => base,
            };
            chrono::NaiveTime::parse_from_str(base, "%H:%M:%S%.f").is_ok()
        }
        Format::Email => s.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && !d.is_empty() && !d.contains('@') && !s.contains(char::is_whitespace)
        }),
        Format::Uuid => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() == 5
                && [8, 4, 4, 4, 12]
                    .iter()
                    .zip(&parts)
                    .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        Format::Ipv4 => s.parse::<std::net::Ipv4Addr>().is_ok(),
        Format::Ipv6 => s.parse::<std::net::Ipv6Addr>().is_ok(),
        Format::Uri => s.split_once(':').is_some_and(|(scheme, _)| {
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        }),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn type_names(bits: u8) -> String {
    let names: Vec<&str> = [
        (T_NULL, "null"),
        (T_BOOL, "boolean"),
        (T_INT, "integer"),
        (T_NUM, "number"),
        (T_STR, "string"),
        (T_ARR, "array"),
        (T_OBJ, "object"),
    ]
    .iter()
    .filter(|(b, n)| bits & b != 0 && !(*n == "integer" && bits & T_NUM != 0))
    .map(|(_, n)| *n)
    .collect();
    names.join(" or ")
}

/// A validation failure: where and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON pointer into the record (`/user/email`), empty for the record itself.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// A property name as a JSON Pointer segment (copied only when it has `~` or `/`).
fn escape(k: &str) -> std::borrow::Cow<'_, str> {
    if k.contains(['~', '/']) {
        k.replace('~', "~0").replace('/', "~1").into()
    } else {
        k.into()
    }
}

impl Node {
    fn check(&self, v: &Value, path: &mut String) -> Result<(), Violation> {
        let err = |path: &String, reason: String| {
            Err(Violation {
                path: path.clone(),
                reason,
            })
        };
        if self.never {
            return err(path, "no value is allowed here".into());
        }
        if let Some(t) = self.types
            && value_type(v) & t == 0
        {
            return err(
                path,
                format!("{} is not of type {}", short(v), type_names(t)),
            );
        }
        if let Some(e) = &self.enumeration
            && !e.iter().any(|x| same(x, v))
        {
            return err(
                path,
                format!(
                    "{} is not one of {}",
                    short(v),
                    short(&Value::Array(e.clone()))
                ),
            );
        }
        if let Some(c) = &self.constant
            && !same(c, v)
        {
            return err(path, format!("{} is not {}", short(v), short(c)));
        }
        match v {
            Value::Number(num) => {
                let bounded = self.minimum.is_some()
                    || self.maximum.is_some()
                    || self.exclusive_minimum.is_some()
                    || self.exclusive_maximum.is_some();
                // Parsing exact number text costs; only do it when a bound needs the value.
                let x = if bounded {
                    num.as_f64().unwrap_or(f64::NAN)
                } else {
                    0.0
                };
                if self.minimum.is_some_and(|m| x < m) {
                    return err(
                        path,
                        format!(
                            "{num} is less than the minimum {}",
                            self.minimum.unwrap_or_default()
                        ),
                    );
                }
                if self.maximum.is_some_and(|m| x > m) {
                    return err(
                        path,
                        format!(
                            "{num} is greater than the maximum {}",
                            self.maximum.unwrap_or_default()
                        ),
                    );
                }
                if self.exclusive_minimum.is_some_and(|m| x <= m) {
                    return err(
                        path,
                        format!(
                            "{num} is not greater than {}",
                            self.exclusive_minimum.unwrap_or_default()
                        ),
                    );
                }
                if self.exclusive_maximum.is_some_and(|m| x >= m) {
                    return err(
                        path,
                        format!(
                            "{num} is not less than {}",
                            self.exclusive_maximum.unwrap_or_default()
                        ),
                    );
                }
                if let Some(m) = &self.multiple_of
                    && !exact_multiple(num, m)
                {
                    return err(path, format!("{num} is not a multiple of {m}"));
                }
            }
            Value::String(s) => {
                if self.min_length.is_some() || self.max_length.is_some() {
                    let len = s.chars().count();
                    if self.min_length.is_some_and(|m| len < m) {
                        return err(
                            path,
                            format!(
                                "{} is shorter than {} characters",
                                short(v),
                                self.min_length.unwrap_or_default()
                            ),
                        );
                    }
                    if self.max_length.is_some_and(|m| len > m) {
                        return err(
                            path,
                            format!(
                                "{} is longer than {} characters",
                                short(v),
                                self.max_length.unwrap_or_default()
                            ),
                        );
                    }
                }
                if let Some(p) = &self.pattern
                    && !p.is_match(s)
                {
                    return err(
                        path,
                        format!("{} does not match `{}`", short(v), p.as_str()),
                    );
                }
                if let Some(f) = self.format
                    && !check_format(f, s)
                {
                    let name = match f {
                        Format::DateTime => "date-time",
                        Format::Date => "date",
                        Format::Time => "time",
                        Format::Email => "email",
                        Format::Uuid => "uuid",
                        Format::Ipv4 => "ipv4",
                        Format::Ipv6 => "ipv6",
                        Format::Uri => "uri",
                    };
                    return err(path, format!("{} is not a valid `{name}`", short(v)));
                }
            }
            Value::Array(items) => {
                if self.min_items.is_some_and(|m| items.len() < m) {
                    return err(
                        path,
                        format!(
                            "has {} items, fewer than {}",
                            items.len(),
                            self.min_items.unwrap_or_default()
                        ),
                    );
                }
                if self.max_items.is_some_and(|m| items.len() > m) {
                    return err(
                        path,
                        format!(
                            "has {} items, more than {}",
                            items.len(),
                            self.max_items.unwrap_or_default()
                        ),
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    let node = self.prefix_items.get(i).or(self.items.as_deref());
                    if let Some(node) = node {
                        let len = path.len();
                        path.push('/');
                        path.push_str(&i.to_string());
                        node.check(item, path)?;
                        path.truncate(len);
                    }
                }
            }
            Value::Object(obj) => self.check_object(obj, path)?,
            _ => {}
        }
        if !self.all_of.is_empty() {
            for s in &self.all_of {
                s.check(v, path)?;
            }
        }
        if !self.any_of.is_empty()
            && !self
                .any_of
                .iter()
                .any(|s| s.check(v, &mut path.clone()).is_ok())
        {
            return err(
                path,
                format!("{} matches none of the `anyOf` schemas", short(v)),
            );
        }
        if !self.one_of.is_empty() {
            let n = self
                .one_of
                .iter()
                .filter(|s| s.check(v, &mut path.clone()).is_ok())
                .count();
            if n != 1 {
                return err(
                    path,
                    format!(
                        "{} matches {n} of the `oneOf` schemas, not exactly one",
                        short(v)
                    ),
                );
            }
        }
        if let Some(not) = &self.not
            && not.check(v, &mut path.clone()).is_ok()
        {
            return err(path, format!("{} matches the `not` schema", short(v)));
        }
        Ok(())
    }

    fn check_object(&self, obj: &Map<String, Value>, path: &mut String) -> Result<(), Violation> {
        for r in &self.required {
            if !obj.contains_key(r) {
                return Err(Violation {
                    path: path.clone(),
                    reason: format!("required property `{r}` is missing"),
                });
            }
        }
        // Records mostly list their properties in the schema's order: walk both together and
        // look a name up (hashing it) only where the orders differ.
        let mut entries = obj.iter();
        let mut next = entries.next();
        for (k, node) in &self.properties {
            let found = match next {
                Some((rk, v)) if rk == k => {
                    next = entries.next();
                    Some(v)
                }
                _ => obj.get(k),
            };
            if let Some(val) = found {
                let len = path.len();
                path.push('/');
                path.push_str(&escape(k));
                node.check(val, path)?;
                path.truncate(len);
            }
        }
        if let Some(extra) = &self.additional {
            for (k, val) in obj {
                if self.properties.iter().any(|(p, _)| p == k) {
                    continue;
                }
                let len = path.len();
                path.push('/');
                path.push_str(&escape(k));
                if extra.never {
                    return Err(Violation {
                        path: path.clone(),
                        reason: format!("property `{k}` is not allowed by the schema"),
                    });
                }
                extra.check(val, path)?;
                path.truncate(len);
            }
        }
        Ok(())
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (decimal(x.as_str()), decimal(y.as_str())) {
            (Some((m, p)), Some((n, q))) => {
                let s = p.max(q);
                match (
                    pow10(s - p).and_then(|f| m.checked_mul(f)),
                    pow10(s - q).and_then(|f| n.checked_mul(f)),
                ) {
                    (Some(a), Some(b)) => a == b,
                    _ => x.as_f64() == y.as_f64(),
                }
            }
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A compiled JSON Schema for one stream.
#[derive(Debug)]
pub struct CompiledSchema {
    root: Node,
}

impl CompiledSchema {
    /// Compiles a stream's schema; an error names the keyword that cannot be used.
    pub fn compile(schema: &Value) -> Result<CompiledSchema, String> {
        Ok(CompiledSchema {
            root: compile(
                schema,
                "",
                Refs {
                    root: schema,
                    depth: 0,
                },
            )?,
        })
    }

    /// Checks a record; the first violation found is returned.
    pub fn check(&self, record: &Map<String, Value>) -> Result<(), Violation> {
        let mut path = String::new();
        check_root(&self.root, record, &mut path)?;
        if let Some(t) = self.root.types
            && t & T_OBJ == 0
        {
            return Err(Violation {
                path,
                reason: format!(
                    "the record is an object, the schema wants {}",
                    type_names(t)
                ),
            });
        }
        Ok(())
    }
}

/// Checks a record against a top-level schema without copying it; the rarely used top-level
/// `anyOf`/`oneOf`/`not` are checked on a copy.
fn check_root(
    node: &Node,
    record: &Map<String, Value>,
    path: &mut String,
) -> Result<(), Violation> {
    node.check_object(record, path)?;
    for s in &node.all_of {
        check_root(s, record, path)?;
    }
    if !node.any_of.is_empty() || !node.one_of.is_empty() || node.not.is_some() {
        let combinators = Node {
            any_of: node.any_of.clone(),
            one_of: node.one_of.clone(),
            not: node.not.clone(),
            ..Node::default()
        };
        combinators.check(&Value::Object(record.clone()), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(schema: Value, record: &str) -> Result<(), Violation> {
        let s = CompiledSchema::compile(&schema).unwrap();
        let Value::Object(r) = serde_json::from_str(record).unwrap() else {
            panic!("not an object")
        };
        s.check(&r)
    }

    #[test]
    fn multiple_of_is_exact_on_decimals() {
        let schema = json!({"properties": {"p": {"type": "number", "multipleOf": 0.01}}});
        assert!(check(schema.clone(), r#"{"p": 19.99}"#).is_ok());
        assert!(
            check(schema.clone(), r#"{"p": 0.07}"#).is_ok(),
            "0.07 / 0.01 is not an integer in floats"
        );
        assert!(check(schema.clone(), r#"{"p": 1e2}"#).is_ok());
        let e = check(schema, r#"{"p": 19.999}"#).unwrap_err();
        assert_eq!(e.path, "/p");
    }

    #[test]
    fn formats_are_checked() {
        let schema = json!({"properties": {"t": {"type": ["string", "null"], "format": "date-time"}, "d": {"format": "date"}, "u": {"format": "uuid"}}});
        assert!(check(schema.clone(), r#"{"t": "2024-01-01T00:00:00Z", "d": "2024-02-29", "u": "123e4567-e89b-12d3-a456-426614174000"}"#).is_ok());
        let e = check(schema.clone(), r#"{"t": "yesterday"}"#).unwrap_err();
        assert_eq!(e.reason, r#""yesterday" is not a valid `date-time`"#);
        assert!(check(schema.clone(), r#"{"d": "2023-02-29"}"#).is_err());
        assert!(check(schema, r#"{"u": "nope"}"#).is_err());
    }

    #[test]
    fn types_required_and_nesting() {
        let schema = json!({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            "user": {"type": "object", "additionalProperties": false, "properties": {"n": {"type": "string"}}}}});
        assert!(
            check(schema.clone(), r#"{"id": 1.0, "tags": ["a"]}"#).is_ok(),
            "1.0 is an integer"
        );
        assert_eq!(
            check(schema.clone(), r#"{"tags": []}"#).unwrap_err().reason,
            "required property `id` is missing"
        );
        assert_eq!(
            check(schema.clone(), r#"{"id": 1.5}"#).unwrap_err().path,
            "/id"
        );
        assert_eq!(
            check(schema.clone(), r#"{"id": 1, "tags": ["abcd"]}"#)
                .unwrap_err()
                .path,
            "/tags/0"
        );
        assert_eq!(
            check(schema, r#"{"id": 1, "user": {"x": 1}}"#)
                .unwrap_err()
                .path,
            "/user/x"
        );
    }

    #[test]
    fn combinators_and_enums() {
        let schema = json!({"properties": {"v": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}]}, "e": {"enum": [1, "a"]}}});
        assert!(check(schema.clone(), r#"{"v": "x", "e": 1.0}"#).is_ok());
        assert!(check(schema.clone(), r#"{"v": -1}"#).is_err());
        assert!(check(schema, r#"{"e": "b"}"#).is_err());
    }

    #[test]
    fn local_refs_are_followed_and_others_refused() {
        let schema = json!({
            "definitions": {"money": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"},
                            "node": {"type": "object", "properties": {"n": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/definitions/node"}}}}},
            "properties": {"price": {"$ref": "#/definitions/money"}, "tree": {"$ref": "#/definitions/node"}}
        });
        let s = CompiledSchema::compile(&schema).unwrap();
        let rec = |v: Value| v.as_object().unwrap().clone();
        assert!(
            s.check(&rec(
                json!({"price": "3.50", "tree": {"n": 1, "kids": [{"n": 2}]}})
            ))
            .is_ok()
        );
        let bad = s.check(&rec(json!({"price": "3.5"}))).unwrap_err();
        assert_eq!(bad.path, "/price");
        let deep = s
            .check(&rec(json!({"tree": {"n": 1, "kids": [{"n": "two"}]}})))
            .unwrap_err();
        assert_eq!(deep.path, "/tree/kids/0/n");
        // A whole-record `$ref` with a keyword beside it: both apply.
        let root = json!({"$defs": {"r": {"required": ["id"]}}, "$ref": "#/$defs/r", "properties": {"id": {"type": "integer"}}});
        let s = CompiledSchema::compile(&root).unwrap();
        assert!(s.check(&rec(json!({"id": 1}))).is_ok());
        assert!(s.check(&rec(json!({"x": 1}))).is_err());
        assert!(s.check(&rec(json!({"id": "1"}))).is_err());
        let e = CompiledSchema::compile(
            &json!({"properties": {"a": {"$ref": "https://example.com/s.json"}}}),
        )
        .unwrap_err();
        assert!(e.contains("local references"), "{e}");
        let e =
            CompiledSchema::compile(&json!({"properties": {"a": {"$ref": "#/definitions/nope"}}}))
                .unwrap_err();
        assert!(e.contains("does not have"), "{e}");
    }
}
