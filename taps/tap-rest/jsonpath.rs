//! The part of JSONPath that REST configurations use: `$`, dotted names, `[n]` indexes,
//! `['quoted name']` and `[*]` / `*` to take every element.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    All,
}

/// A compiled path.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    steps: Vec<Step>,
    text: String,
}

impl Path {
    /// Parses `a.b[0].c`, `$.data.items`, `$['a b'].c`, `items[*].id`.
    pub fn parse(text: &str) -> Result<Path, String> {
        let t = text.trim();
        let mut rest = t.strip_prefix('$').unwrap_or(t);
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
                continue;
            }
            if let Some(r) = rest.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| format!("`{text}` has an unclosed `[`"))?;
                let inner = r[..end].trim();
                rest = &r[end + 1..];
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    steps.push(Step::Key(q.to_owned()));
                } else {
                    let n = inner
                        .parse()
                        .map_err(|_| format!("`{text}`: `[{inner}]` is not an index"))?;
                    steps.push(Step::Index(n));
                }
                continue;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            steps.push(if key == "*" {
                Step::All
            } else {
                Step::Key(key.to_owned())
            });
            rest = &rest[end..];
        }
        Ok(Path {
            steps,
            text: t.to_owned(),
        })
    }

    /// The path as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The single top-level field the path names, when it is one (`updated_at`).
    pub fn top_level_field(&self) -> Option<&str> {
        match self.steps.as_slice() {
            [Step::Key(k)] => Some(k),
            _ => None,
        }
    }

    /// Every value the path matches, in document order.
    pub fn find<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![v];
        for step in &self.steps {
            let mut next = Vec::new();
            for c in cur {
                match step {
                    Step::Key(k) => next.extend(c.get(k)),
                    Step::Index(i) => next.extend(c.get(*i)),
                    Step::All => match c {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(o) => next.extend(o.values()),
                        _ => {}
                    },
                }
            }
            cur = next;
        }
        cur
    }

    /// The first value the path matches.
    pub fn first<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.find(v).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_rest_configs_name() {
        let doc = json!({"data": {"items": [{"id": 1}, {"id": 2}]}, "a b": {"c": 3}, "next": null});
        assert_eq!(
            Path::parse("$.data.items").unwrap().first(&doc),
            Some(&json!([{"id": 1}, {"id": 2}]))
        );
        assert_eq!(
            Path::parse("data.items[*].id").unwrap().find(&doc),
            vec![&json!(1), &json!(2)]
        );
        assert_eq!(
            Path::parse("data.items[1].id").unwrap().first(&doc),
            Some(&json!(2))
        );
        assert_eq!(
            Path::parse("$['a b'].c").unwrap().first(&doc),
            Some(&json!(3))
        );
        assert_eq!(Path::parse("$").unwrap().first(&doc), Some(&doc));
        assert_eq!(
            Path::parse("updated_at").unwrap().top_level_field(),
            Some("updated_at")
        );
        assert!(Path::parse("a[x]").is_err());
        assert!(Path::parse("missing.x").unwrap().first(&doc).is_none());
    }
}
