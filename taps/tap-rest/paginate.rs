//! Paginators: from one response to the request for the next page, or the end. A cursor, next
//! URL or page that comes back a second time is an error, never an endless loop.

use std::collections::HashSet;

use dsm::singer::plugin_kit::PluginError;
use serde_json::Value;

use crate::config::PaginatorSpec;
use crate::http::{Request, Response};
use crate::jsonpath::Path;

/// A paginator's state over one resource's (or one parent record's) pages.
pub struct Pager {
    spec: PaginatorSpec,
    /// The page number or offset of the next request.
    value: i64,
    /// Cursors and URLs seen so far.
    seen: HashSet<String>,
    /// The previous page, to catch an API that ignores the page parameter.
    last_page: Option<PageSummary>,
}

/// What is kept of a page to recognise it again: its length and its first and last records.
#[derive(Debug, Clone, PartialEq)]
pub struct PageSummary {
    len: usize,
    first: Option<Value>,
    last: Option<Value>,
}

impl PageSummary {
    pub fn of(items: &[Value]) -> Self {
        PageSummary {
            len: items.len(),
            first: items.first().cloned(),
            last: items.last().cloned(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The numbers of a range paginator (`page_number`, `offset`).
struct Range<'a> {
    total_path: &'a Option<Path>,
    maximum: Option<i64>,
    stop_after_empty_page: bool,
    has_more_path: &'a Option<Path>,
    step: i64,
    /// The first value past the last one, given a total: pages (+ base) or items.
    total_end: i64,
}

fn loop_error(what: &str, how: String) -> PluginError {
    PluginError::data_hint(
        format!("{what}: the API is looping: {how}"),
        "the paginator would never end; check the endpoint's `paginator` settings against the API's documentation",
    )
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "false" && s != "0",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn resolve(base: &str, link: &str) -> String {
    if link.starts_with("http://") || link.starts_with("https://") {
        return link.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    let host_end = rest.find('/').unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..host_end]);
    if let Some(abs) = link.strip_prefix("//") {
        return format!("{scheme}://{abs}");
    }
    if link.starts_with('/') {
        return format!("{origin}{link}");
    }
    let path = rest[host_end..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    if let Some(q) = link.strip_prefix('?') {
        return format!("{origin}{path}?{q}");
    }
    format!("{origin}{dir}/{link}")
}

/// The `rel="next"` URL of a `Link` header.
fn link_header(value: &str, rel: &str) -> Option<String> {
    for part in value.split(',') {
        let (url, params) = part.split_once(';').unwrap_or((part, ""));
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let matches = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|r| r.trim_matches('"').split_whitespace().any(|r| r == rel))
                .unwrap_or(false)
        });
        if matches {
            return Some(url.to_owned());
        }
    }
    None
}

impl Pager {
    pub fn new(spec: PaginatorSpec) -> Self {
        let value = match &spec {
            PaginatorSpec::PageNumber {
                base_page, page, ..
            } => page.unwrap_or(*base_page),
            PaginatorSpec::Offset { offset, .. } => *offset,
            _ => 0,
        };
        Pager {
            spec,
            value,
            seen: HashSet::new(),
            last_page: None,
        }
    }

    /// Sets the first request's parameters.
    pub fn init(&self, req: &mut Request) {
        match &self.spec {
            PaginatorSpec::PageNumber { page_param, .. } => {
                req.set_query(page_param, self.value.to_string());
            }
            PaginatorSpec::Offset {
                offset_param,
                limit_param,
                limit,
                ..
            } => {
                req.set_query(offset_param, self.value.to_string());
                req.set_query(limit_param, limit.to_string());
            }
            _ => {}
        }
    }

    /// After a page: updates `req` for the next one and says whether there is one.
    pub fn next(
        &mut self,
        resp: &Response,
        doc: Option<&Value>,
        items: &PageSummary,
        req: &mut Request,
        what: &str,
    ) -> Result<bool, PluginError> {
        // Two identical non-empty pages in a row (same length, same first and last record):
        // the API ignores how it is asked to page.
        if !items.is_empty() && !matches!(self.spec, PaginatorSpec::SinglePage) {
            if self.last_page.as_ref() == Some(items) {
                return Err(loop_error(
                    what,
                    format!(
                        "`{}` returned the same {} items as the page before",
                        resp.url, items.len
                    ),
                ));
            }
            self.last_page = Some(items.clone());
        }
        let spec = self.spec.clone();
        match &spec {
            PaginatorSpec::SinglePage => Ok(false),
            PaginatorSpec::PageNumber {
                base_page,
                page_param,
                total_path,
                maximum_page,
                stop_after_empty_page,
                has_more_path,
                ..
            } => self.range(
                Range {
                    total_path,
                    maximum: *maximum_page,
                    stop_after_empty_page: *stop_after_empty_page,
                    has_more_path,
                    step: 1,
                    total_end: *base_page,
                },
                page_param,
                doc,
                items,
                req,
                what,
            ),
            PaginatorSpec::Offset {
                limit,
                offset_param,
                limit_param,
                total_path,
                maximum_offset,
                stop_after_empty_page,
                has_more_path,
                ..
            } => {
                req.set_query(limit_param, limit.to_string());
                self.range(
                    Range {
                        total_path,
                        maximum: *maximum_offset,
                        stop_after_empty_page: *stop_after_empty_page,
                        has_more_path,
                        step: *limit,
                        total_end: 0,
                    },
                    offset_param,
                    doc,
                    items,
                    req,
                    what,
                )
            }
            PaginatorSpec::Cursor {
                cursor_path,
                cursor_param,
                stop_after_empty_page,
                has_more_path,
            } => {
                if *stop_after_empty_page && items.is_empty() {
                    return Ok(false);
                }
                if let Some(p) = has_more_path
                    && !doc.and_then(|d| p.first(d)).is_some_and(truthy)
                {
                    return Ok(false);
                }
                let cursor = doc
                    .and_then(|d| cursor_path.first(d))
                    .and_then(|v| match v {
                        Value::String(s) if !s.is_empty() => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    });
                let Some(cursor) = cursor else {
                    return Ok(false);
                };
                if !self.seen.insert(cursor.clone()) {
                    return Err(loop_error(
                        what,
                        format!(
                            "cursor `{cursor}` (at `{}`) came back a second time",
                            cursor_path.text()
                        ),
                    ));
                }
                req.set_query(cursor_param, cursor);
                Ok(true)
            }
            PaginatorSpec::JsonLink { next_url_path } => {
                let next = doc
                    .and_then(|d| next_url_path.first(d))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                self.follow(next.map(str::to_owned), req, what)
            }
            PaginatorSpec::HeaderLink { links_next_key } => {
                let next = resp
                    .header("link")
                    .and_then(|l| link_header(l, links_next_key));
                self.follow(next, req, what)
            }
            PaginatorSpec::HeaderCursor {
                cursor_key,
                cursor_param,
            } => {
                let Some(cursor) = resp
                    .header(&cursor_key.to_ascii_lowercase())
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                else {
                    return Ok(false);
                };
                if !self.seen.insert(cursor.clone()) {
                    return Err(loop_error(
                        what,
                        format!(
                            "cursor `{cursor}` (header `{cursor_key}`) came back a second time"
                        ),
                    ));
                }
                req.set_query(cursor_param, cursor);
                Ok(true)
            }
        }
    }

    fn follow(
        &mut self,
        next: Option<String>,
        req: &mut Request,
        what: &str,
    ) -> Result<bool, PluginError> {
        let Some(next) = next else { return Ok(false) };
        if self.seen.is_empty() {
            self.seen.insert(req.full_url());
        }
        let url = resolve(&req.full_url(), &next);
        if !self.seen.insert(url.clone()) {
            return Err(loop_error(
                what,
                format!("the next page's URL `{url}` was already read"),
            ));
        }
        // The link carries the whole query; parameters set for the first page do not apply.
        req.url = url;
        req.query.clear();
        Ok(true)
    }

    fn range(
        &mut self,
        r: Range<'_>,
        param: &str,
        doc: Option<&Value>,
        items: &PageSummary,
        req: &mut Request,
        what: &str,
    ) -> Result<bool, PluginError> {
        if r.stop_after_empty_page && items.is_empty() {
            return Ok(false);
        }
        self.value += r.step;
        if let Some(p) = r.has_more_path {
            match doc.and_then(|d| p.first(d)) {
                Some(v) if !truthy(v) => return Ok(false),
                Some(_) => {}
                None => {
                    return Err(PluginError::data_hint(
                        format!("{what}: the response has no `{}`", p.text()),
                        "check the paginator's `has_more_path`",
                    ));
                }
            }
        }
        if let Some(p) = r.total_path {
            let total = doc.and_then(|d| p.first(d)).filter(|v| !v.is_null());
            let Some(total) = total else {
                return Err(PluginError::data_hint(
                    format!("{what}: the response has no total at `{}`", p.text()),
                    "set the paginator's `total_path` to where the API puts the total, or `total_path: null` to stop at the first empty page",
                ));
            };
            let Some(total) = total
                .as_i64()
                .or_else(|| total.as_str().and_then(|s| s.trim().parse().ok()))
            else {
                return Err(PluginError::data(format!(
                    "{what}: the total at `{}` is not an integer: {total}",
                    p.text()
                )));
            };
            if self.value >= total + r.total_end {
                return Ok(false);
            }
        }
        if r.maximum.is_some_and(|m| self.value >= m) {
            return Ok(false);
        }
        if r.total_path.is_none()
            && r.has_more_path.is_none()
            && !r.stop_after_empty_page
            && r.maximum.is_none()
        {
            return Err(PluginError::config(format!(
                "{what}: the paginator has no way to stop: give `total_path`, `has_more_path`, a maximum, or `stop_after_empty_page: true`"
            )));
        }
        req.set_query(param, self.value.to_string());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_and_parse() {
        assert_eq!(
            resolve("http://h:1/api/items?page=1", "/api/items?page=2"),
            "http://h:1/api/items?page=2"
        );
        assert_eq!(
            resolve("http://h:1/api/items?page=1", "items?page=2"),
            "http://h:1/api/items?page=2"
        );
        assert_eq!(
            resolve("http://h:1/api/items?page=1", "?page=2"),
            "http://h:1/api/items?page=2"
        );
        assert_eq!(
            link_header(
                r#"<http://x/a?page=1>; rel="prev", <http://x/a?page=3>; rel="next""#,
                "next"
            ),
            Some("http://x/a?page=3".into())
        );
        assert_eq!(link_header(r#"<http://x/a>; rel="prev""#, "next"), None);
    }
}
