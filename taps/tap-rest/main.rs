//! `tap-rest`: a built-in Singer tap of dsm that reads REST APIs described in configuration, in
//! the shape of dlt's `rest_api` source (`client`, `resource_defaults`, `resources`), with a
//! proactive rate limit per host, retries, every paginator dlt has, incremental bookmarks in
//! STATE, parent/child resources and a schema inferred from the data when none is declared.

mod config;
mod http;
mod jsonpath;
mod paginate;
mod schema;

use std::collections::{HashMap, HashSet};

use dsm::singer::plugin_kit::{
    self as kit, About, MessageWriter, PluginArgs, PluginError, StreamSpec,
};
use serde_json::{Map, Value, json};

use crate::config::{Config, Resource, WriteDisposition};
use crate::http::{Http, Request, Response};
use crate::paginate::Pager;
use crate::schema::Schema;

const USAGE: &str = "usage: tap-rest [--about [--format json]] [--discover] --config FILE \
[--catalog FILE] [--state FILE]\n";

fn setting(kind: &str, description: &str) -> Value {
    json!({"type": [kind, "null"], "description": description})
}

fn secret(description: &str) -> Value {
    json!({"type": ["string", "null"], "description": description, "secret": true, "writeOnly": true})
}

fn about() -> About {
    About {
        name: "tap-rest",
        description: "Reads REST APIs described in configuration, with rate limits (dsm built-in)",
        capabilities: &["catalog", "discover", "state", "properties", "about"],
        settings: json!({
            "type": "object",
            "properties": {
                "client.base_url": setting("string", "Root URL of the API; endpoint paths are relative to it."),
                "client.headers": setting("object", "Headers sent with every request."),
                "client.auth.type": setting("string", "bearer, api_key, http_basic or oauth2_client_credentials."),
                "client.auth.token": secret("Bearer token."),
                "client.auth.name": setting("string", "Header or query parameter that carries the API key (default Authorization)."),
                "client.auth.api_key": secret("API key."),
                "client.auth.location": setting("string", "Where the API key goes: header (default) or query."),
                "client.auth.username": setting("string", "HTTP basic user name."),
                "client.auth.password": secret("HTTP basic password."),
                "client.auth.access_token_url": setting("string", "OAuth2 token endpoint (client credentials grant)."),
                "client.auth.client_id": setting("string", "OAuth2 client id."),
                "client.auth.client_secret": secret("OAuth2 client secret."),
                "client.auth.access_token_request_data": setting("object", "Extra form fields of the OAuth2 token request."),
                "client.auth.default_token_expiration": setting("number", "Token lifetime in seconds when the token response has no expires_in (default 3600)."),
                "client.paginator": setting("object", "Default paginator: a name or an object with type (single_page, page_number, offset, cursor, json_link, header_link, header_cursor)."),
                "client.rate_limit.requests_per_second": setting("number", "Most requests per second to one host, over all resources."),
                "client.rate_limit.burst": setting("number", "Requests allowed at once before the rate applies (default 1)."),
                "client.retry.max_attempts": setting("integer", "Attempts per request for 429, 5xx, timeouts and dropped connections (default 5)."),
                "client.retry.max_delay": setting("number", "Longest wait between attempts, in seconds (default 300)."),
                "client.retry.backoff": setting("number", "First wait between attempts, in seconds, doubled each time (default 1)."),
                "client.timeout": setting("number", "Seconds a request may take (default 60)."),
                "client.ca_bundle": setting("string", "PEM file of CA certificates trusted besides the system's."),
                "resource_defaults": setting("object", "Settings every resource starts from."),
                "resources": setting("array", "The endpoints to read: names or objects with name, endpoint, primary_key, write_disposition, ...")
            },
            "required": ["client.base_url", "resources"]
        }),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

/// A resource as a catalog entry: stream id the resource name, stream name its table.
fn stream_spec(r: &Resource) -> StreamSpec {
    let mut props = Map::new();
    for (name, col) in &r.columns {
        props.insert(name.clone(), schema::column_schema(col));
    }
    let rk = r
        .endpoint
        .incremental
        .as_ref()
        .and_then(|i| i.cursor_path.top_level_field().map(str::to_owned));
    StreamSpec {
        name: r.name.clone(),
        schema: json!({"type": "object", "properties": props}),
        key_properties: key_properties(r),
        valid_replication_keys: rk.clone().into_iter().collect(),
        replication_key: rk,
    }
}

fn key_properties(r: &Resource) -> Vec<String> {
    match r.write_disposition {
        WriteDisposition::Append => Vec::new(),
        WriteDisposition::Merge | WriteDisposition::Replace => r.primary_key.clone(),
    }
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let raw = args.load_config()?;
    let config = Config::parse(&raw)?;
    let mut out = MessageWriter::stdout();
    if args.discover {
        let entries = config
            .resources
            .iter()
            .map(|r| {
                let mut e = stream_spec(r).catalog_entry();
                e["stream"] = r.table_name.clone().into();
                e
            })
            .collect();
        out.write_value(&kit::catalog_document(entries))?;
        return out.flush();
    }
    let catalog = args.load_catalog()?;
    let mut state = args.load_state()?;
    if state.is_null() {
        state = json!({});
    }
    let mut sync = Sync {
        http: Http::new(&config.client)?,
        config: &config,
        w: Writer {
            streams: HashMap::new(),
            tables: HashMap::new(),
            out,
            time_extracted: kit::now_rfc3339(),
        },
    };
    for r in &config.resources {
        let spec = stream_spec(r);
        let chosen = r.selected && kit::select(&spec, catalog.as_ref()).is_some();
        let entry = catalog.as_ref().and_then(|c| kit::find_stream(c, &r.name));
        let mut declared = Map::new();
        for (name, col) in &r.columns {
            declared.insert(name.clone(), schema::column_schema(col));
        }
        // A catalog schema with properties (discovery's, or Meltano's `schema` extra) wins.
        if let Some(props) = entry
            .and_then(|e| e.pointer("/schema/properties"))
            .and_then(Value::as_object)
            .filter(|p| !p.is_empty())
        {
            declared = props.clone();
        }
        let start = r.endpoint.incremental.as_ref().and_then(|inc| {
            kit::bookmark(&state, &r.name, &inc.cursor_text).or_else(|| inc.initial_value.clone())
        });
        // Resources that share a table share its schema: one SCHEMA that grows with both.
        let table = sync
            .w
            .tables
            .entry(r.table_name.clone())
            .or_insert_with(|| (Schema::new(Map::new(), HashSet::new()), false));
        table.0.declare(declared, deselected(entry));
        sync.w.streams.insert(
            r.name.clone(),
            Stream {
                emit: chosen,
                version: (r.write_disposition == WriteDisposition::Replace)
                    .then(kit::new_table_version),
                start,
                max_seen: None,
                records: 0,
            },
        );
    }
    let needed: HashSet<String> = config
        .resources
        .iter()
        .filter(|r| sync.runs(r))
        .map(|r| r.name.clone())
        .collect();
    for r in config.resources.iter().filter(|r| r.parent.is_none()) {
        if !needed.contains(&r.name) {
            continue;
        }
        sync.resource(r, None)?;
        // The tree under this resource is complete: its bookmarks and table versions hold.
        for name in sync.tree(&r.name) {
            let res = config.resource(&name).expect("a resource of the tree");
            let st = sync
                .w
                .streams
                .get_mut(&name)
                .expect("every resource has a stream");
            if let (Some(inc), Some(v)) = (&res.endpoint.incremental, st.max_seen.clone())
                && inc.end_value.is_none()
                && st.emit
            {
                kit::set_bookmark(&mut state, &name, &inc.cursor_text, v);
            }
            if let (Some(v), true) = (st.version, st.emit) {
                sync.w.out.activate_version(&res.table_name, v)?;
            }
        }
        sync.w.out.state(&state)?;
    }
    let summary: Vec<String> = config
        .resources
        .iter()
        .filter(|r| sync.w.streams[&r.name].emit)
        .map(|r| format!("{} {}", sync.w.streams[&r.name].records, r.name))
        .collect();
    http::tracing_line(&format!(
        "{} requests; records: {}",
        sync.http.requests,
        summary.join(", ")
    ));
    sync.w.out.flush()
}

/// Property names deselected in the catalog entry.
fn deselected(entry: Option<&Value>) -> HashSet<String> {
    let mut out = HashSet::new();
    let Some(md) = entry
        .and_then(|e| e.get("metadata"))
        .and_then(Value::as_array)
    else {
        return out;
    };
    for m in md {
        let crumb = m.get("breadcrumb").and_then(Value::as_array);
        if let Some([p, name]) = crumb.map(Vec::as_slice)
            && p == "properties"
            && m.pointer("/metadata/selected") == Some(&Value::Bool(false))
            && m.pointer("/metadata/inclusion").and_then(Value::as_str) != Some("automatic")
            && let Some(n) = name.as_str()
        {
            out.insert(n.to_owned());
        }
    }
    out
}

struct Stream {
    emit: bool,
    version: Option<u64>,
    /// The incremental start value of this run (bookmark, else `initial_value`).
    start: Option<Value>,
    /// The largest cursor value of this run.
    max_seen: Option<Value>,
    records: u64,
}

struct Sync<'a> {
    http: Http,
    config: &'a Config,
    w: Writer,
}

/// What turns records into messages: the streams, their schemas and the output. Apart from the
/// HTTP client, so that a page's records are written while the next page is being fetched.
struct Writer {
    streams: HashMap<String, Stream>,
    /// Each table's schema, and whether it was sent.
    tables: HashMap<String, (Schema, bool)>,
    out: MessageWriter<std::io::Stdout>,
    time_extracted: String,
}

/// A parent record a child resource is requested for.
struct ParentCtx<'p> {
    name: &'p str,
    record: &'p Map<String, Value>,
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<'a> Sync<'a> {
    fn children(&self, name: &str) -> Vec<&'a Resource> {
        self.config
            .resources
            .iter()
            .filter(|r| r.parent.as_deref() == Some(name))
            .collect()
    }

    /// The names of a resource and all resources under it.
    fn tree(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_owned()];
        let mut i = 0;
        while i < out.len() {
            let kids: Vec<String> = self
                .children(&out[i])
                .iter()
                .map(|r| r.name.clone())
                .collect();
            out.extend(kids);
            i += 1;
        }
        out
    }

    /// Whether a resource must be requested: it is emitted, or a resource under it is.
    fn runs(&self, r: &Resource) -> bool {
        self.tree(&r.name).iter().any(|n| self.w.streams[n].emit)
    }

    /// Replaces `{incremental.start_value}`, `{incremental.end_value}`,
    /// `{incremental.initial_value}` and `{resources.<parent>.<field>}` in `text`.
    fn render(
        &self,
        text: &str,
        r: &Resource,
        parent: Option<&ParentCtx<'_>>,
    ) -> Result<Option<Value>, PluginError> {
        if !text.contains('{') {
            return Ok(None);
        }
        let mut out = String::new();
        let mut whole: Option<Value> = None;
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let inner = &rest[start + 1..start + len];
            let value: Option<Value> = if let Some(f) = inner.strip_prefix("incremental.") {
                let inc = r.endpoint.incremental.as_ref().ok_or_else(|| {
                    PluginError::config(format!(
                        "resource `{}` uses `{{{inner}}}` but has no `incremental`",
                        r.name
                    ))
                })?;
                let st = &self.w.streams[&r.name];
                Some(match f {
                    "start_value" | "last_value" => st.start.clone().unwrap_or(Value::Null),
                    "initial_value" => inc.initial_value.clone().unwrap_or(Value::Null),
                    "end_value" => inc.end_value.clone().unwrap_or(Value::Null),
                    other => {
                        return Err(PluginError::config(format!(
                            "resource `{}`: `{{incremental.{other}}}` is not a placeholder (start_value, end_value, initial_value)",
                            r.name
                        )));
                    }
                })
            } else if let Some(refr) = inner.strip_prefix("resources.") {
                let (res, field) = refr.split_once('.').unwrap_or((refr, ""));
                let p = parent.filter(|p| p.name == res).ok_or_else(|| {
                    PluginError::config(format!(
                        "resource `{}`: `{{{inner}}}` names `{res}`, which is not its parent",
                        r.name
                    ))
                })?;
                let path = jsonpath::Path::parse(field)
                    .map_err(|e| PluginError::config(format!("`{{{inner}}}`: {e}")))?;
                let v = path
                    .first(&Value::Object(p.record.clone()))
                    .filter(|v| !v.is_null())
                    .cloned()
                    .ok_or_else(|| {
                        PluginError::data_hint(
                            format!(
                                "a record of resource `{res}` has no `{field}` for resource `{}`: {}",
                                r.name,
                                preview(&Value::Object(p.record.clone()))
                            ),
                            "check the field named in `{resources.<parent>.<field>}`",
                        )
                    })?;
                Some(v)
            } else {
                None
            };
            match value {
                Some(v) => {
                    if start == 0 && len + 1 == rest.len() && out.is_empty() {
                        whole = Some(v.clone());
                    }
                    out.push_str(&rest[..start]);
                    out.push_str(&value_text(&v));
                }
                None => out.push_str(&rest[..=start + len]),
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Ok(Some(whole.unwrap_or(Value::String(out))))
    }

    fn render_text(
        &self,
        text: &str,
        r: &Resource,
        parent: Option<&ParentCtx<'_>>,
    ) -> Result<String, PluginError> {
        Ok(match self.render(text, r, parent)? {
            None => text.to_owned(),
            Some(v) => value_text(&v),
        })
    }

    fn render_json(
        &self,
        v: &Value,
        r: &Resource,
        parent: Option<&ParentCtx<'_>>,
    ) -> Result<Value, PluginError> {
        Ok(match v {
            Value::String(s) => self.render(s, r, parent)?.unwrap_or_else(|| v.clone()),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.render_json(x, r, parent))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => {
                let mut m = Map::new();
                for (k, x) in o {
                    m.insert(k.clone(), self.render_json(x, r, parent)?);
                }
                Value::Object(m)
            }
            other => other.clone(),
        })
    }

    fn first_request(
        &self,
        r: &Resource,
        parent: Option<&ParentCtx<'_>>,
    ) -> Result<Request, PluginError> {
        let path = self.render_text(&r.endpoint.path, r, parent)?;
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path
        } else {
            format!(
                "{}/{}",
                self.config.client.base_url.trim_end_matches('/'),
                path.trim_start_matches('/')
            )
        };
        let mut req = Request {
            method: r.endpoint.method.clone(),
            url,
            query: Vec::new(),
            headers: Vec::new(),
            json: None,
        };
        for (k, v) in &r.endpoint.params {
            match self.render_json(v, r, parent)? {
                Value::Null => {}
                v => req.set_query(k, value_text(&v)),
            }
        }
        if let Some(inc) = &r.endpoint.incremental {
            let st = &self.w.streams[&r.name];
            if let (Some(p), Some(v)) = (&inc.start_param, &st.start) {
                req.set_query(p, value_text(v));
            }
            if let (Some(p), Some(v)) = (&inc.end_param, &inc.end_value) {
                req.set_query(p, value_text(v));
            }
        }
        for (k, v) in &r.endpoint.headers {
            req.headers
                .push((k.clone(), self.render_text(v, r, parent)?));
        }
        if let Some(j) = &r.endpoint.json {
            req.json = Some(self.render_json(j, r, parent)?);
        }
        Ok(req)
    }

    fn ignored(r: &Resource, resp: &Response) -> bool {
        r.endpoint.response_actions.iter().any(|a| {
            a.status_code.is_none_or(|c| c == resp.status)
                && a.content
                    .as_deref()
                    .is_none_or(|c| String::from_utf8_lossy(&resp.body).contains(c))
        })
    }

    /// Reads every page of `r` (for one parent record when it is a child) and, for each
    /// record, the resources under it.
    fn resource(
        &mut self,
        r: &Resource,
        parent: Option<&ParentCtx<'_>>,
    ) -> Result<(), PluginError> {
        let mut req = self.first_request(r, parent)?;
        let mut pager = Pager::new(r.endpoint.paginator.clone());
        pager.init(&mut req);
        let children: Vec<&'a Resource> = self
            .children(&r.name)
            .into_iter()
            .filter(|c| self.runs(c))
            .collect();
        let page_name = |page: u64| match parent {
            None => format!("page {page} of resource `{}`", r.name),
            Some(p) => format!(
                "page {page} of resource `{}` (for a record of `{}`)",
                r.name, p.name
            ),
        };
        let mut page = 1u64;
        let mut what = page_name(page);
        let mut resp = self.http.send(&req, &what)?;
        if children.is_empty() {
            // The next request is known from a page alone: one long-lived thread fetches it
            // while this one writes the page's records (a thread per page cost more than the
            // fetch it overlapped).
            let http = &mut self.http;
            let writer = &mut self.w;
            return std::thread::scope(|s| {
                let (ask, asked) = std::sync::mpsc::channel::<(Request, String)>();
                let (answer, answered) = std::sync::mpsc::channel();
                // It also parses the page it fetched, so parsing overlaps the writing too.
                s.spawn(move || {
                    for (req, what) in asked {
                        let page = http.send(&req, &what).and_then(|resp| {
                            let items = Self::page_items(r, &req, &resp, &what)?;
                            Ok((resp, items))
                        });
                        if answer.send(page).is_err() {
                            break;
                        }
                    }
                });
                let mut items = Self::page_items(r, &req, &resp, &what)?;
                loop {
                    let Some((doc, page_items)) = items else {
                        break;
                    };
                    let seen = paginate::PageSummary::of(&page_items);
                    // A paginator error (a repeated cursor) comes after this page's records.
                    let more = pager.next(&resp, doc.as_ref(), &seen, &mut req, &what);
                    drop(doc);
                    let next_what = page_name(page + 1);
                    let fetching = matches!(more, Ok(true));
                    if fetching && ask.send((req.clone(), next_what.clone())).is_err() {
                        return Err(PluginError::data(format!(
                            "{next_what}: the request failed unexpectedly"
                        )));
                    }
                    for item in page_items {
                        let record = with_parent_fields(item, r, parent);
                        if writer.in_range(r, &record, &what)? {
                            writer.emit(r, &record)?;
                        }
                    }
                    if !fetching {
                        more?;
                        break;
                    }
                    (resp, items) = answered.recv().unwrap_or_else(|_| {
                        Err(PluginError::data(format!(
                            "{next_what}: the request failed unexpectedly"
                        )))
                    })?;
                    page += 1;
                    what = next_what;
                }
                Ok(())
            });
        }
        loop {
            let Some((doc, items)) = Self::page_items(r, &req, &resp, &what)? else {
                break;
            };
            let seen = paginate::PageSummary::of(&items);
            let more = pager.next(&resp, doc.as_ref(), &seen, &mut req, &what);
            let next_what = page_name(page + 1);
            for item in items {
                let record = with_parent_fields(item, r, parent);
                if !self.w.in_range(r, &record, &what)? {
                    continue;
                }
                self.w.emit(r, &record)?;
                for c in &children {
                    let ctx = ParentCtx {
                        name: &r.name,
                        record: &record,
                    };
                    self.resource(c, Some(&ctx))?;
                }
            }
            if !more? {
                break;
            }
            resp = self.http.send(&req, &next_what)?;
            page += 1;
            what = next_what;
        }
        Ok(())
    }

    /// A page's document and items; `None` when a response action says to ignore it.
    #[allow(clippy::type_complexity)]
    fn page_items(
        r: &Resource,
        req: &Request,
        resp: &Response,
        what: &str,
    ) -> Result<Option<(Option<Value>, Vec<Value>)>, PluginError> {
        if Self::ignored(r, resp) {
            return Ok(None);
        }
        if !(200..300).contains(&resp.status) {
            return Err(status_error(what, &req.method, resp));
        }
        let mut doc: Option<Value> = if resp.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(serde_json::from_slice(&resp.body).map_err(|e| {
                PluginError::data_hint(
                    format!("{what}: the response of `{}` is not JSON: {e}", resp.url),
                    format!(
                        "it starts with: {}",
                        String::from_utf8_lossy(&resp.body[..resp.body.len().min(120)])
                    ),
                )
            })?)
        };
        let items = match doc.as_mut() {
            None => Vec::new(),
            Some(d) => select_items(d, r, what)?,
        };
        Ok(Some((doc, items)))
    }
}

impl Writer {
    /// Incremental: whether the record is in `[start, end)`, and the largest value seen.
    fn in_range(
        &mut self,
        r: &Resource,
        record: &Map<String, Value>,
        what: &str,
    ) -> Result<bool, PluginError> {
        let Some(inc) = &r.endpoint.incremental else {
            return Ok(true);
        };
        let doc = Value::Object(record.clone());
        let Some(v) = inc
            .cursor_path
            .first(&doc)
            .filter(|v| !v.is_null())
            .cloned()
        else {
            return Err(PluginError::data_hint(
                format!(
                    "{what}: a record has no `{}`, the incremental cursor: {}",
                    inc.cursor_text,
                    preview(&doc)
                ),
                "check `incremental.cursor_path`",
            ));
        };
        let st = self
            .streams
            .get_mut(&r.name)
            .expect("every resource has a stream");
        // `>=` as the Singer SDK does: the record at the bookmark is sent again.
        if let Some(s) = &st.start
            && !kit::at_or_after_bookmark(&v, s)
        {
            return Ok(false);
        }
        if let Some(e) = &inc.end_value
            && kit::at_or_after_bookmark(&v, e)
        {
            return Ok(false);
        }
        if st
            .max_seen
            .as_ref()
            .is_none_or(|m| kit::compare_values(&v, m) == Some(std::cmp::Ordering::Greater))
        {
            st.max_seen = Some(v);
        }
        Ok(true)
    }

    fn emit(&mut self, r: &Resource, record: &Map<String, Value>) -> Result<(), PluginError> {
        let st = self
            .streams
            .get_mut(&r.name)
            .expect("every resource has a stream");
        if !st.emit {
            return Ok(());
        }
        let (schema, sent) = self
            .tables
            .get_mut(&r.table_name)
            .expect("every table has a schema");
        let record = schema.shape(record);
        if schema.observe(&record) || !*sent {
            let mut msg = json!({
                "type": "SCHEMA",
                "stream": r.table_name,
                "schema": schema.document(),
                "key_properties": key_properties(r),
            });
            if let Some(k) = r
                .endpoint
                .incremental
                .as_ref()
                .and_then(|i| i.cursor_path.top_level_field())
            {
                msg["bookmark_properties"] = json!([k]);
            }
            self.out.write_value(&msg)?;
            *sent = true;
        }
        // The RECORD line is written from the record in place: no copy into a message value.
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"type\":\"RECORD\",\"stream\":");
        kit::write_json_str(&mut line, &r.table_name);
        line.extend_from_slice(b",\"record\":");
        serde_json::to_writer(&mut line, &*record).map_err(|e| kit::output_error(e.into()))?;
        if let Some(v) = st.version {
            line.extend_from_slice(format!(",\"version\":{v}").as_bytes());
        }
        line.extend_from_slice(b",\"time_extracted\":");
        kit::write_json_str(&mut line, &self.time_extracted);
        line.push(b'}');
        st.records += 1;
        self.out.write_line(&line)
    }
}

/// A page item as a record, with the fields `include_from_parent` copies from its parent.
fn with_parent_fields(
    item: Value,
    r: &Resource,
    parent: Option<&ParentCtx<'_>>,
) -> Map<String, Value> {
    let mut record = match item {
        Value::Object(o) => o,
        other => Map::from_iter([("value".to_owned(), other)]),
    };
    if let Some(p) = parent {
        for f in &r.include_from_parent {
            if let Some(v) = p.record.get(f) {
                record.insert(format!("_{}_{}", p.name, f), v.clone());
            }
        }
    }
    record
}

fn preview(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        let cut = (0..=160)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

fn status_error(what: &str, method: &str, resp: &Response) -> PluginError {
    let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]).into_owned();
    let hint = match resp.status {
        401 | 403 => "check the credentials under `client.auth`",
        404 => {
            "check `client.base_url` and the endpoint's `path`; to skip such answers add `response_actions: [{status_code: 404, action: ignore}]`"
        }
        429 => {
            "the API kept refusing for its rate limit: lower `client.rate_limit.requests_per_second` or raise `client.retry.max_attempts`"
        }
        s if s >= 500 => "the API kept failing; `client.retry.max_attempts` sets how often to try",
        _ => "check the endpoint's `params`, `json` and `method`",
    };
    PluginError::data_hint(
        format!(
            "{what}: `{method} {}` answered {}: {}",
            resp.url,
            resp.status,
            body.trim()
        ),
        hint,
    )
}

/// The records of a page: at `data_selector`, else the page itself when it is a list, else
/// its one list under a usual name (`data`, `items`, `results`, ...) or its only list, else the
/// object itself.
fn select_items(doc: &mut Value, r: &Resource, what: &str) -> Result<Vec<Value>, PluginError> {
    if let Some(sel) = &r.endpoint.data_selector {
        let found = sel.find(doc);
        return Ok(match found.as_slice() {
            [] => Vec::new(),
            [Value::Array(a)] => a.clone(),
            [Value::Null] => Vec::new(),
            [one] if !sel.text().contains('*') => vec![(*one).clone()],
            many => many.iter().map(|v| (*v).clone()).collect(),
        });
    }
    // The records are moved out of the page: the paginator reads only other parts of it.
    match doc {
        Value::Array(a) => Ok(std::mem::take(a)),
        Value::Object(o) => {
            for key in [
                "data", "items", "results", "records", "entries", "objects", "rows",
            ] {
                if let Some(Value::Array(a)) = o.get_mut(key) {
                    return Ok(std::mem::take(a));
                }
            }
            let lists: Vec<&String> = o
                .iter()
                .filter(|(_, v)| v.is_array())
                .map(|(k, _)| k)
                .collect();
            match lists.as_slice() {
                [one] => {
                    let key = (*one).clone();
                    Ok(match o.get_mut(&key) {
                        Some(Value::Array(a)) => std::mem::take(a),
                        _ => Vec::new(),
                    })
                }
                [] => Ok(vec![doc.clone()]),
                _ => Err(PluginError::config_hint(
                    format!(
                        "{what}: the response holds several lists and no `data_selector` says which has the records"
                    ),
                    format!(
                        "set `data_selector` of resource `{}` to one of: {}",
                        r.name,
                        lists
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        Value::Null => Ok(Vec::new()),
        other => Ok(vec![other.clone()]),
    }
}
