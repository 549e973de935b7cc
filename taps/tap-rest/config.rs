//! The tap's configuration in the shape of dlt's `rest_api` source: `client`, `resource_defaults`
//! and `resources`, with dlt's parameter names and defaults, plus dsm's `client.rate_limit`,
//! `client.retry`, `client.timeout` and `client.ca_bundle`.

use std::time::Duration;

use dsm::singer::plugin_kit::PluginError;
use serde_json::{Map, Value};

use crate::jsonpath::Path;

/// The paginator types, as their bare-string names.
pub const PAGINATORS: &str =
    "single_page, page_number, offset, cursor, json_link, header_link, header_cursor";

/// Everything the tap needs, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub client: Client,
    pub resources: Vec<Resource>,
}

/// `client`: where the API is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Client {
    pub base_url: String,
    pub headers: Vec<(String, String)>,
    pub auth: Option<Auth>,
    pub rate_limit: Option<RateLimit>,
    pub retry: Retry,
    pub timeout: Duration,
    pub ca_bundle: Option<String>,
}

/// `client.auth`.
#[derive(Debug, Clone)]
pub enum Auth {
    Bearer {
        token: String,
    },
    ApiKey {
        name: String,
        api_key: String,
        in_query: bool,
    },
    HttpBasic {
        username: String,
        password: String,
    },
    OAuth2ClientCredentials {
        access_token_url: String,
        client_id: String,
        client_secret: String,
        request_data: Map<String, Value>,
        default_token_expiration: Duration,
    },
}

/// `client.rate_limit`: a token bucket per host.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub requests_per_second: f64,
    pub burst: f64,
}

/// `client.retry`: capped, jittered exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_attempts: u32,
    pub max_delay: Duration,
    /// The first delay; each later one doubles, up to `max_delay`.
    pub backoff: Duration,
}

/// One resource: a stream and the endpoint it comes from.
#[derive(Debug, Clone)]
pub struct Resource {
    pub name: String,
    pub table_name: String,
    pub primary_key: Vec<String>,
    pub write_disposition: WriteDisposition,
    pub selected: bool,
    pub columns: Map<String, Value>,
    pub endpoint: Endpoint,
    pub include_from_parent: Vec<String>,
    /// The resource whose records this one is requested for, from `{resources.<parent>.<field>}`
    /// placeholders or `resolve` params.
    pub parent: Option<String>,
}

/// `write_disposition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDisposition {
    Append,
    Merge,
    Replace,
}

/// `endpoint`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub path: String,
    pub method: String,
    pub params: Vec<(String, Value)>,
    pub json: Option<Value>,
    pub headers: Vec<(String, String)>,
    pub data_selector: Option<Path>,
    pub paginator: PaginatorSpec,
    pub incremental: Option<Incremental>,
    pub response_actions: Vec<ResponseAction>,
}

/// `incremental`.
#[derive(Debug, Clone)]
pub struct Incremental {
    pub cursor_path: Path,
    pub cursor_text: String,
    pub initial_value: Option<Value>,
    pub end_value: Option<Value>,
    pub start_param: Option<String>,
    pub end_param: Option<String>,
}

/// `response_actions` entry (only `ignore` is an action here).
#[derive(Debug, Clone)]
pub struct ResponseAction {
    pub status_code: Option<u16>,
    pub content: Option<String>,
}

/// A paginator as configured.
#[derive(Debug, Clone)]
pub enum PaginatorSpec {
    SinglePage,
    PageNumber {
        base_page: i64,
        page: Option<i64>,
        page_param: String,
        total_path: Option<Path>,
        maximum_page: Option<i64>,
        stop_after_empty_page: bool,
        has_more_path: Option<Path>,
    },
    Offset {
        limit: i64,
        offset: i64,
        offset_param: String,
        limit_param: String,
        total_path: Option<Path>,
        maximum_offset: Option<i64>,
        stop_after_empty_page: bool,
        has_more_path: Option<Path>,
    },
    Cursor {
        cursor_path: Path,
        cursor_param: String,
        stop_after_empty_page: bool,
        has_more_path: Option<Path>,
    },
    JsonLink {
        next_url_path: Path,
    },
    HeaderLink {
        links_next_key: String,
    },
    HeaderCursor {
        cursor_key: String,
        cursor_param: String,
    },
}

fn bad(at: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::config(format!("`{at}` {what}"))
}

fn obj<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, PluginError> {
    v.as_object().ok_or_else(|| bad(at, "must be an object"))
}

fn opt_str(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, PluginError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad(&format!("{at}.{key}"), "must be a string")),
    }
}

fn req_str(o: &Map<String, Value>, key: &str, at: &str) -> Result<String, PluginError> {
    opt_str(o, key, at)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(&format!("{at}.{key}"), "is missing"))
}

fn opt_f64(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<f64>, PluginError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(Some)
            .ok_or_else(|| bad(&format!("{at}.{key}"), "must be a number of 0 or more")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(Some)
            .ok_or_else(|| bad(&format!("{at}.{key}"), "must be a number of 0 or more")),
        Some(_) => Err(bad(&format!("{at}.{key}"), "must be a number")),
    }
}

fn opt_i64(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, PluginError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| bad(&format!("{at}.{key}"), "must be an integer")),
    }
}

fn opt_bool(o: &Map<String, Value>, key: &str, at: &str) -> Result<Option<bool>, PluginError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(_) => Err(bad(&format!("{at}.{key}"), "must be true or false")),
    }
}

/// A number of seconds from the config; a negative or absurd one (over 100 years) is an error.
fn seconds(f: f64, at: &str) -> Result<Duration, PluginError> {
    dsm::duration::seconds_f64(f)
        .map_err(|e| bad(at, format!("is not a usable number of seconds: {e}")))
}

/// A path setting: absent means the default, `null` means none.
fn path_or(
    o: &Map<String, Value>,
    key: &str,
    default: Option<&str>,
    at: &str,
) -> Result<Option<Path>, PluginError> {
    let text = match o.get(key) {
        None => default.map(str::to_owned),
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad(&format!("{at}.{key}"), "must be a JSON path string")),
    };
    text.map(|t| Path::parse(&t).map_err(|e| bad(&format!("{at}.{key}"), e)))
        .transpose()
}

fn headers(v: Option<&Value>, at: &str) -> Result<Vec<(String, String)>, PluginError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    obj(v, at)?
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(n) => Ok((k.clone(), n.to_string())),
            Value::Bool(b) => Ok((k.clone(), b.to_string())),
            _ => Err(bad(&format!("{at}.{k}"), "must be a string")),
        })
        .collect()
}

/// Merges `over` into `base`: objects key by key, anything else replaced.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Folds Meltano-style dotted keys (`client.base_url`) into nested objects, so a config written
/// either way reads the same.
fn nest_dotted(config: &Map<String, Value>) -> Value {
    let mut out = Value::Object(Map::new());
    let mut dotted: Vec<(&String, &Value)> = Vec::new();
    for (k, v) in config {
        if k.contains('.') {
            dotted.push((k, v));
        } else {
            deep_merge(
                &mut out,
                &Value::Object(Map::from_iter([(k.clone(), v.clone())])),
            );
        }
    }
    for (k, v) in dotted {
        let mut nested = v.clone();
        for part in k.rsplit('.') {
            nested = Value::Object(Map::from_iter([(part.to_owned(), nested)]));
        }
        deep_merge(&mut out, &nested);
    }
    out
}

impl Config {
    /// Reads and checks the configuration.
    pub fn parse(raw: &Map<String, Value>) -> Result<Config, PluginError> {
        let root = nest_dotted(raw);
        let client_v = root.get("client").ok_or_else(|| {
            PluginError::config_hint(
                "setting `client` is missing",
                "give at least `client.base_url` and one entry under `resources`",
            )
        })?;
        let client = parse_client(obj(client_v, "client")?)?;
        let default_paginator = match obj(client_v, "client")?.get("paginator") {
            None | Some(Value::Null) => None,
            Some(p) => Some(p.clone()),
        };
        let defaults = match root.get("resource_defaults") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v) => {
                obj(v, "resource_defaults")?;
                v.clone()
            }
        };
        let list = match root.get("resources") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                return Err(PluginError::config_hint(
                    "setting `resources` is empty",
                    "list the endpoints to read, e.g. `resources: [{name: users, endpoint: {path: users}}]`",
                ));
            }
            Some(_) => return Err(bad("resources", "must be a list")),
        };
        let mut resources = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let mut merged = defaults.clone();
            let given = match r {
                Value::String(name) => {
                    serde_json::json!({"name": name, "endpoint": {"path": name}})
                }
                Value::Object(_) => r.clone(),
                _ => {
                    return Err(bad(
                        &format!("resources[{i}]"),
                        "must be a name or an object",
                    ));
                }
            };
            deep_merge(&mut merged, &given);
            resources.push(parse_resource(&merged, i, default_paginator.as_ref())?);
        }
        let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
        for (i, r) in resources.iter().enumerate() {
            if names[..i].contains(&r.name.as_str()) {
                return Err(bad(
                    &format!("resources[{i}].name"),
                    format!("`{}` is used by two resources", r.name),
                ));
            }
            if let Some(p) = &r.parent {
                let Some(pi) = names.iter().position(|n| n == p) else {
                    return Err(PluginError::config_hint(
                        format!(
                            "resource `{}` refers to resource `{p}`, which is not defined",
                            r.name
                        ),
                        format!("the resources are: {}", names.join(", ")),
                    ));
                };
                if pi == i || chain_has_cycle(&resources, i) {
                    return Err(bad(
                        &format!("resources[{i}]"),
                        format!("`{}` depends on itself through its parents", r.name),
                    ));
                }
            }
        }
        Ok(Config { client, resources })
    }

    /// The resource named `name`.
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
}

fn chain_has_cycle(resources: &[Resource], start: usize) -> bool {
    let mut seen = vec![start];
    let mut cur = &resources[start];
    while let Some(p) = &cur.parent {
        let Some(pi) = resources.iter().position(|r| &r.name == p) else {
            return false;
        };
        if seen.contains(&pi) {
            return true;
        }
        seen.push(pi);
        cur = &resources[pi];
    }
    false
}

fn parse_client(o: &Map<String, Value>) -> Result<Client, PluginError> {
    let base_url = req_str(o, "base_url", "client")?;
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(PluginError::config_hint(
            format!("`client.base_url` `{base_url}` is not an http(s) URL"),
            "write it with its scheme, e.g. `https://api.example.com/v1/`",
        ));
    }
    let auth = match o.get("auth") {
        None | Some(Value::Null) => None,
        Some(a) => Some(parse_auth(obj(a, "client.auth")?)?),
    };
    let rate_limit = match o.get("rate_limit") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let r = obj(v, "client.rate_limit")?;
            let rps = opt_f64(r, "requests_per_second", "client.rate_limit")?
                .filter(|f| *f > 0.0)
                .ok_or_else(|| {
                    bad(
                        "client.rate_limit.requests_per_second",
                        "must be a number above 0",
                    )
                })?;
            let burst = opt_f64(r, "burst", "client.rate_limit")?.unwrap_or(1.0);
            if burst < 1.0 {
                return Err(bad("client.rate_limit.burst", "must be 1 or more"));
            }
            Some(RateLimit {
                requests_per_second: rps,
                burst: burst.floor(),
            })
        }
    };
    let retry = match o.get("retry") {
        None | Some(Value::Null) => Retry {
            max_attempts: 5,
            max_delay: Duration::from_secs(300),
            backoff: Duration::from_secs(1),
        },
        Some(v) => {
            let r = obj(v, "client.retry")?;
            let max_attempts = opt_i64(r, "max_attempts", "client.retry")?.unwrap_or(5);
            if !(1..=100).contains(&max_attempts) {
                return Err(bad(
                    "client.retry.max_attempts",
                    "must be between 1 and 100",
                ));
            }
            Retry {
                max_attempts: max_attempts as u32,
                max_delay: seconds(
                    opt_f64(r, "max_delay", "client.retry")?.unwrap_or(300.0),
                    "client.retry.max_delay",
                )?,
                backoff: seconds(
                    opt_f64(r, "backoff", "client.retry")?.unwrap_or(1.0),
                    "client.retry.backoff",
                )?,
            }
        }
    };
    let timeout = seconds(
        opt_f64(o, "timeout", "client")?.unwrap_or(60.0),
        "client.timeout",
    )?;
    if timeout.is_zero() {
        return Err(bad("client.timeout", "must be above 0"));
    }
    Ok(Client {
        base_url,
        headers: headers(o.get("headers"), "client.headers")?,
        auth,
        rate_limit,
        retry,
        timeout,
        ca_bundle: opt_str(o, "ca_bundle", "client")?,
    })
}

fn parse_auth(a: &Map<String, Value>) -> Result<Auth, PluginError> {
    let at = "client.auth";
    let ty = opt_str(a, "type", at)?.unwrap_or_else(|| {
        // dlt guesses the type from the fields when it is left out.
        if a.contains_key("token") {
            "bearer".into()
        } else if a.contains_key("api_key") {
            "api_key".into()
        } else if a.contains_key("username") {
            "http_basic".into()
        } else if a.contains_key("client_secret") {
            "oauth2_client_credentials".into()
        } else {
            String::new()
        }
    });
    Ok(match ty.as_str() {
        "bearer" => Auth::Bearer {
            token: req_str(a, "token", at)?,
        },
        "api_key" => {
            let location = opt_str(a, "location", at)?.unwrap_or_else(|| "header".into());
            let in_query = match location.as_str() {
                "header" => false,
                "query" => true,
                other => {
                    return Err(bad(
                        "client.auth.location",
                        format!("`{other}` is not `header` or `query`"),
                    ));
                }
            };
            Auth::ApiKey {
                name: opt_str(a, "name", at)?.unwrap_or_else(|| "Authorization".into()),
                api_key: req_str(a, "api_key", at)?,
                in_query,
            }
        }
        "http_basic" => Auth::HttpBasic {
            username: req_str(a, "username", at)?,
            password: opt_str(a, "password", at)?.unwrap_or_default(),
        },
        "oauth2_client_credentials" => {
            let request_data = match a.get("access_token_request_data") {
                None | Some(Value::Null) => Map::new(),
                Some(v) => obj(v, "client.auth.access_token_request_data")?.clone(),
            };
            Auth::OAuth2ClientCredentials {
                access_token_url: req_str(a, "access_token_url", at)?,
                client_id: req_str(a, "client_id", at)?,
                client_secret: req_str(a, "client_secret", at)?,
                request_data,
                default_token_expiration: seconds(
                    opt_f64(a, "default_token_expiration", at)?.unwrap_or(3600.0),
                    &format!("{at}.default_token_expiration"),
                )?,
            }
        }
        "" => {
            return Err(PluginError::config_hint(
                "`client.auth.type` is missing",
                "use one of: bearer, api_key, http_basic, oauth2_client_credentials",
            ));
        }
        other => {
            return Err(PluginError::config_hint(
                format!("`client.auth.type` `{other}` is not supported"),
                "use one of: bearer, api_key, http_basic, oauth2_client_credentials",
            ));
        }
    })
}

/// Parses a paginator from its bare-string or object form.
pub fn parse_paginator(v: &Value, at: &str) -> Result<PaginatorSpec, PluginError> {
    let (ty, o) = match v {
        Value::String(s) => (s.clone(), Map::new()),
        Value::Object(o) => (req_str(o, "type", at)?, o.clone()),
        _ => return Err(bad(at, "must be a paginator name or an object with `type`")),
    };
    let stop = |o: &Map<String, Value>| -> Result<bool, PluginError> {
        Ok(opt_bool(o, "stop_after_empty_page", at)?.unwrap_or(true))
    };
    Ok(match ty.as_str() {
        "single_page" => PaginatorSpec::SinglePage,
        "page_number" => {
            let has_more_path = path_or(&o, "has_more_path", None, at)?;
            let default_total = if has_more_path.is_some() {
                None
            } else {
                Some("total")
            };
            PaginatorSpec::PageNumber {
                base_page: opt_i64(&o, "base_page", at)?.unwrap_or(0),
                page: opt_i64(&o, "page", at)?,
                page_param: opt_str(&o, "page_param", at)?.unwrap_or_else(|| "page".into()),
                total_path: path_or(&o, "total_path", default_total, at)?,
                maximum_page: opt_i64(&o, "maximum_page", at)?,
                stop_after_empty_page: stop(&o)?,
                has_more_path,
            }
        }
        "offset" => {
            let limit = opt_i64(&o, "limit", at)?
                .filter(|l| *l > 0)
                .ok_or_else(|| bad(&format!("{at}.limit"), "is missing (the page size)"))?;
            let has_more_path = path_or(&o, "has_more_path", None, at)?;
            let default_total = if has_more_path.is_some() {
                None
            } else {
                Some("total")
            };
            PaginatorSpec::Offset {
                limit,
                offset: opt_i64(&o, "offset", at)?.unwrap_or(0),
                offset_param: opt_str(&o, "offset_param", at)?.unwrap_or_else(|| "offset".into()),
                limit_param: opt_str(&o, "limit_param", at)?.unwrap_or_else(|| "limit".into()),
                total_path: path_or(&o, "total_path", default_total, at)?,
                maximum_offset: opt_i64(&o, "maximum_offset", at)?,
                stop_after_empty_page: stop(&o)?,
                has_more_path,
            }
        }
        "cursor" => PaginatorSpec::Cursor {
            cursor_path: path_or(&o, "cursor_path", Some("cursors.next"), at)?
                .ok_or_else(|| bad(&format!("{at}.cursor_path"), "cannot be null"))?,
            cursor_param: opt_str(&o, "cursor_param", at)?.unwrap_or_else(|| "cursor".into()),
            stop_after_empty_page: stop(&o)?,
            has_more_path: path_or(&o, "has_more_path", None, at)?,
        },
        "json_link" | "json_response" => PaginatorSpec::JsonLink {
            next_url_path: path_or(&o, "next_url_path", Some("next"), at)?
                .ok_or_else(|| bad(&format!("{at}.next_url_path"), "cannot be null"))?,
        },
        "header_link" => PaginatorSpec::HeaderLink {
            links_next_key: opt_str(&o, "links_next_key", at)?.unwrap_or_else(|| "next".into()),
        },
        "header_cursor" => PaginatorSpec::HeaderCursor {
            cursor_key: opt_str(&o, "cursor_key", at)?.unwrap_or_else(|| "next".into()),
            cursor_param: opt_str(&o, "cursor_param", at)?.unwrap_or_else(|| "cursor".into()),
        },
        "auto" => {
            return Err(PluginError::config_hint(
                format!(
                    "`{at}` `auto` is not supported: guessing how an API pages can stop early or loop"
                ),
                format!("name the paginator the API uses: {PAGINATORS}"),
            ));
        }
        other => {
            return Err(PluginError::config_hint(
                format!("`{at}` `{other}` is not a paginator"),
                format!("use one of: {PAGINATORS}"),
            ));
        }
    })
}

/// Placeholder references to other resources in a text: `{resources.<name>.<field>}`.
pub fn resource_refs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{resources.") {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        let inner = &after["resources.".len()..end];
        if let Some((res, field)) = inner.split_once('.') {
            out.push((res.to_owned(), field.to_owned()));
        }
        rest = &after[end..];
    }
    out
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn parse_resource(
    v: &Value,
    i: usize,
    default_paginator: Option<&Value>,
) -> Result<Resource, PluginError> {
    let at = format!("resources[{i}]");
    let o = obj(v, &at)?;
    let name = req_str(o, "name", &at)?;
    let at = format!("resources.{name}");
    let table_name = opt_str(o, "table_name", &at)?.unwrap_or_else(|| name.clone());
    let primary_key = match o.get("primary_key") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(&format!("{at}.primary_key"), "must list column names"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                &format!("{at}.primary_key"),
                "must be a name or a list",
            ));
        }
    };
    let write_disposition = match o.get("write_disposition") {
        None | Some(Value::Null) => WriteDisposition::Append,
        Some(Value::String(s)) => wd(s, &at)?,
        Some(Value::Object(d)) => wd(&req_str(d, "disposition", &at)?, &at)?,
        Some(_) => return Err(bad(&format!("{at}.write_disposition"), "must be a string")),
    };
    if write_disposition == WriteDisposition::Merge && primary_key.is_empty() {
        return Err(PluginError::config_hint(
            format!("resource `{name}` has `write_disposition: merge` but no `primary_key`"),
            "merging needs the key that identifies a record, e.g. `primary_key: id`",
        ));
    }
    let columns = match o.get("columns") {
        None | Some(Value::Null) => Map::new(),
        Some(v) => obj(v, &format!("{at}.columns"))?.clone(),
    };
    let include_from_parent = match o.get("include_from_parent") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            return Err(bad(
                &format!("{at}.include_from_parent"),
                "must be a list of field names",
            ));
        }
    };
    let endpoint_v = match o.get("endpoint") {
        None | Some(Value::Null) => serde_json::json!({"path": name}),
        Some(Value::String(p)) => serde_json::json!({"path": p}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(bad(
                &format!("{at}.endpoint"),
                "must be a path or an object",
            ));
        }
    };
    let endpoint = parse_endpoint(
        obj(&endpoint_v, &format!("{at}.endpoint"))?,
        &format!("{at}.endpoint"),
        &name,
        default_paginator,
    )?;
    // The parent: `{resources.<p>.<field>}` in the path, params, json or headers, or a
    // `resolve` param (dlt's older form, rewritten to a placeholder by parse_endpoint).
    let mut texts = vec![endpoint.path.clone()];
    for (_, v) in &endpoint.params {
        collect_strings(v, &mut texts);
    }
    if let Some(j) = &endpoint.json {
        collect_strings(j, &mut texts);
    }
    for (_, v) in &endpoint.headers {
        texts.push(v.clone());
    }
    let mut parents: Vec<String> = texts
        .iter()
        .flat_map(|t| resource_refs(t))
        .map(|(r, _)| r)
        .collect();
    parents.dedup();
    if parents.len() > 1 {
        return Err(bad(
            &at,
            format!(
                "refers to more than one parent resource ({})",
                parents.join(", ")
            ),
        ));
    }
    Ok(Resource {
        name,
        table_name,
        primary_key,
        write_disposition,
        selected: opt_bool(o, "selected", &at)?.unwrap_or(true),
        columns,
        endpoint,
        include_from_parent,
        parent: parents.pop(),
    })
}

fn wd(s: &str, at: &str) -> Result<WriteDisposition, PluginError> {
    match s {
        "append" => Ok(WriteDisposition::Append),
        "merge" => Ok(WriteDisposition::Merge),
        "replace" => Ok(WriteDisposition::Replace),
        other => Err(PluginError::config_hint(
            format!("`{at}.write_disposition` `{other}` is not supported"),
            "use append, merge or replace",
        )),
    }
}

fn parse_endpoint(
    o: &Map<String, Value>,
    at: &str,
    name: &str,
    default_paginator: Option<&Value>,
) -> Result<Endpoint, PluginError> {
    let mut path = opt_str(o, "path", at)?.unwrap_or_else(|| name.to_owned());
    let method = opt_str(o, "method", at)?
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
        return Err(bad(
            &format!("{at}.method"),
            format!("`{method}` is not an HTTP method"),
        ));
    }
    let mut incremental = match o.get("incremental") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_incremental(
            obj(v, &format!("{at}.incremental"))?,
            &format!("{at}.incremental"),
            None,
        )?),
    };
    let mut params = Vec::new();
    if let Some(p) = o.get("params").filter(|p| !p.is_null()) {
        for (k, v) in obj(p, &format!("{at}.params"))? {
            match v.get("type").and_then(Value::as_str) {
                Some("incremental") => {
                    if incremental.is_some() {
                        return Err(bad(
                            &format!("{at}.params.{k}"),
                            "is a second incremental; keep one",
                        ));
                    }
                    incremental = Some(parse_incremental(
                        obj(v, &format!("{at}.params.{k}"))?,
                        &format!("{at}.params.{k}"),
                        Some(k.as_str()),
                    )?);
                }
                Some("resolve") => {
                    let r = obj(v, &format!("{at}.params.{k}"))?;
                    let res = req_str(r, "resource", &format!("{at}.params.{k}"))?;
                    let field = req_str(r, "field", &format!("{at}.params.{k}"))?;
                    let placeholder = format!("{{resources.{res}.{field}}}");
                    // As in dlt: into the path where it names the param, else the query.
                    if path.contains(&format!("{{{k}}}")) {
                        path = path.replace(&format!("{{{k}}}"), &placeholder);
                    } else {
                        params.push((k.clone(), Value::String(placeholder)));
                    }
                }
                _ => params.push((k.clone(), v.clone())),
            }
        }
    }
    let data_selector = match o.get("data_selector") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(Path::parse(s).map_err(|e| bad(&format!("{at}.data_selector"), e))?)
        }
        Some(_) => return Err(bad(&format!("{at}.data_selector"), "must be a JSON path")),
    };
    let paginator = match o
        .get("paginator")
        .filter(|p| !p.is_null())
        .or(default_paginator)
    {
        None => PaginatorSpec::SinglePage,
        Some(p) => parse_paginator(p, &format!("{at}.paginator"))?,
    };
    let mut response_actions = Vec::new();
    if let Some(a) = o.get("response_actions").filter(|a| !a.is_null()) {
        let list = a
            .as_array()
            .ok_or_else(|| bad(&format!("{at}.response_actions"), "must be a list"))?;
        for (j, item) in list.iter().enumerate() {
            let ra = obj(item, &format!("{at}.response_actions[{j}]"))?;
            let action = opt_str(ra, "action", at)?.unwrap_or_default();
            if action != "ignore" {
                return Err(PluginError::config_hint(
                    format!("`{at}.response_actions[{j}].action` `{action}` is not supported"),
                    "the one action is `ignore` (skip a response that matches)",
                ));
            }
            let status_code = opt_i64(ra, "status_code", at)?.map(|c| c as u16);
            let content = opt_str(ra, "content", at)?;
            if status_code.is_none() && content.is_none() {
                return Err(bad(
                    &format!("{at}.response_actions[{j}]"),
                    "needs `status_code` or `content`",
                ));
            }
            response_actions.push(ResponseAction {
                status_code,
                content,
            });
        }
    }
    Ok(Endpoint {
        path,
        method,
        params,
        json: o.get("json").filter(|j| !j.is_null()).cloned(),
        headers: headers(o.get("headers"), &format!("{at}.headers"))?,
        data_selector,
        paginator,
        incremental,
        response_actions,
    })
}

fn parse_incremental(
    o: &Map<String, Value>,
    at: &str,
    param: Option<&str>,
) -> Result<Incremental, PluginError> {
    let cursor_text = req_str(o, "cursor_path", at)?;
    let cursor_path =
        Path::parse(&cursor_text).map_err(|e| bad(&format!("{at}.cursor_path"), e))?;
    if let Some(c) = o.get("convert").filter(|c| !c.is_null()) {
        return Err(bad(
            &format!("{at}.convert"),
            format!("({c}) is a Python function and cannot run here"),
        ));
    }
    Ok(Incremental {
        cursor_path,
        cursor_text,
        initial_value: o.get("initial_value").filter(|v| !v.is_null()).cloned(),
        end_value: o.get("end_value").filter(|v| !v.is_null()).cloned(),
        start_param: param.map(str::to_owned).or(opt_str(o, "start_param", at)?),
        end_param: opt_str(o, "end_param", at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Config, PluginError> {
        Config::parse(v.as_object().unwrap())
    }

    #[test]
    fn defaults_follow_dlt() {
        let c = parse(json!({
            "client": {"base_url": "http://x/", "paginator": {"type": "page_number"}},
            "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
            "resources": ["users", {"name": "orders", "endpoint": {"paginator": "single_page"}}]
        }))
        .unwrap();
        assert_eq!(c.client.retry.max_attempts, 5);
        assert_eq!(c.client.retry.max_delay, Duration::from_secs(300));
        let users = c.resource("users").unwrap();
        assert_eq!(users.endpoint.path, "users");
        assert_eq!(users.primary_key, vec!["id"]);
        assert_eq!(users.write_disposition, WriteDisposition::Merge);
        match &users.endpoint.paginator {
            PaginatorSpec::PageNumber {
                base_page,
                page_param,
                total_path,
                stop_after_empty_page,
                ..
            } => {
                assert_eq!(*base_page, 0);
                assert_eq!(page_param, "page");
                assert!(total_path.is_some());
                assert!(*stop_after_empty_page);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.resource("orders").unwrap().endpoint.paginator,
            PaginatorSpec::SinglePage
        ));
    }

    #[test]
    fn auto_paginator_is_refused_with_the_choices() {
        let e = parse(
            json!({"client": {"base_url": "http://x", "paginator": "auto"},
            "resources": ["a"]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`auto` is not supported"), "{e}");
        let PluginError::Config { hint: Some(h), .. } = e else {
            panic!()
        };
        assert!(h.contains("header_cursor"), "{h}");
    }

    #[test]
    fn dotted_keys_nest_and_parents_are_found() {
        let c = parse(json!({
            "client.base_url": "http://x",
            "client.auth.token": "t",
            "client.auth.type": "bearer",
            "resources": ["users", {"name": "posts",
                "endpoint": {"path": "users/{resources.users.id}/posts"},
                "include_from_parent": ["name"]}]
        }))
        .unwrap();
        assert!(matches!(c.client.auth, Some(Auth::Bearer { .. })));
        assert_eq!(
            c.resource("posts").unwrap().parent.as_deref(),
            Some("users")
        );
        let e = parse(json!({"client": {"base_url": "http://x"},
            "resources": [{"name": "posts", "endpoint": "u/{resources.nope.id}"}]}))
        .unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn merge_needs_a_key() {
        let e = parse(json!({"client": {"base_url": "http://x"},
            "resources": [{"name": "a", "write_disposition": "merge"}]}))
        .unwrap_err();
        assert!(e.to_string().contains("primary_key"), "{e}");
    }
}
