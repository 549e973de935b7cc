//! `s3://bucket/prefix` state backends over S3's REST API: GET, PUT (with `If-None-Match: *`
//! for the lock and `If-Match: <etag>` for state), DELETE and ListObjectsV2, signed with
//! [`super::sigv4`]. `state_backend.s3.endpoint_url` points it at any S3-compatible server
//! (addressed path-style, as such servers expect); without it, AWS itself.

use std::time::Duration;

use chrono::Utc;

use super::sigv4::{self, Credentials, EMPTY_SHA256};
use super::{Condition, Object, Objects, Settings};
use crate::error::{Error, Result};
use crate::secrets::Secret;

/// Largest object or listing page read (state files are small; a bigger one is refused).
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// Most listing pages followed (1,000 keys each).
const MAX_PAGES: usize = 10_000;

/// A bucket and key prefix.
pub struct S3Objects {
    uri: String,
    bucket: String,
    prefix: String,
    scheme: String,
    host: String,
    path_style: bool,
    region: String,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl std::fmt::Debug for S3Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Objects")
            .field("uri", &self.uri)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

struct Response {
    status: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

impl S3Objects {
    /// The backend of `settings` (`s3://[KEY:SECRET@]bucket[/prefix]`).
    pub fn new(settings: &Settings) -> Result<S3Objects> {
        let shown = super::redact_uri(&settings.uri);
        let rest = settings.uri.strip_prefix("s3://").unwrap_or(&settings.uri);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, bucket) = match authority.rsplit_once('@') {
            Some((u, b)) => (Some(u), b),
            None => (None, authority),
        };
        // Meltano takes the bucket from the URI's host name, which Python lower-cases.
        let bucket = bucket.to_ascii_lowercase();
        if bucket.is_empty() {
            return Err(
                Error::config(format!("state backend `{shown}` names no bucket"))
                    .hint("write `s3://bucket/prefix`"),
            );
        }
        let prefix = path.trim_matches('/').to_owned();
        let (uri_key, uri_secret) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
            Some((k, s)) => (
                Some(k.to_owned()),
                Some(s.to_owned()).filter(|s| !s.is_empty()),
            ),
            None => (None, None),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let key_id = settings.s3_key_id.clone().or(uri_key);
        let secret = settings
            .s3_secret
            .clone()
            .or_else(|| uri_secret.map(Secret::new));
        let credentials = match (key_id, secret) {
            (Some(k), Some(s)) => Credentials {
                access_key_id: k,
                secret_access_key: s,
                session_token: None,
            },
            (Some(_), None) => {
                return Err(Error::config(
                    "`state_backend.s3.aws_access_key_id` is set but `aws_secret_access_key` is not",
                )
                .hint("set `MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY`, or store it with `dsm secrets set meltano state_backend.s3.aws_secret_access_key`"));
            }
            (None, Some(_)) => {
                return Err(Error::config(
                    "`state_backend.s3.aws_secret_access_key` is set but `aws_access_key_id` is not",
                )
                .hint("set `MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID` or `state_backend.s3.aws_access_key_id` in meltano.yml"));
            }
            (None, None) => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(k), Some(s)) => Credentials {
                    access_key_id: k,
                    secret_access_key: Secret::new(s),
                    session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
                },
                _ => {
                    return Err(Error::config(format!(
                        "no credentials for state backend `{shown}`"
                    ))
                    .hint("set `MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID` and `MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY` (or `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`)")
                    .hint("dsm reads no `~/.aws` files or instance metadata"));
                }
            },
        };
        let region = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let (scheme, host, path_style) = match settings.s3_endpoint.as_deref().map(str::trim) {
            Some(endpoint) if !endpoint.is_empty() => {
                let Some((scheme, rest)) = endpoint.split_once("://") else {
                    return Err(Error::config(format!(
                        "`state_backend.s3.endpoint_url` `{endpoint}` is not a URL"
                    ))
                    .hint("write e.g. `http://127.0.0.1:9000` or `https://s3.example.com`"));
                };
                if scheme != "http" && scheme != "https" {
                    return Err(Error::config(format!(
                        "`state_backend.s3.endpoint_url` `{endpoint}` is neither http nor https"
                    ))
                    .hint("write e.g. `http://127.0.0.1:9000` or `https://s3.example.com`"));
                }
                let host = rest.split('/').next().unwrap_or("");
                let host = match (scheme, host.rsplit_once(':')) {
                    ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h,
                    _ => host,
                };
                (scheme.to_owned(), host.to_owned(), true)
            }
            _ => (
                "https".to_owned(),
                format!("{bucket}.s3.{region}.amazonaws.com"),
                false,
            ),
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .user_agent(concat!("dsm/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(S3Objects {
            uri: shown,
            bucket,
            prefix,
            scheme,
            host,
            path_style,
            region,
            credentials,
            agent: ureq::Agent::new_with_config(config),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The encoded request path of an object (or of the bucket for `None`).
    fn path(&self, key: Option<&str>) -> String {
        let key = key.map(|k| sigv4::uri_encode(k, true)).unwrap_or_default();
        if self.path_style {
            format!("/{}/{key}", sigv4::uri_encode(&self.bucket, false))
        } else {
            format!("/{key}")
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        extra: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Response> {
        let payload = body.map(sigv4::sha256_hex);
        let payload_hash = payload.as_deref().unwrap_or(EMPTY_SHA256);
        let mut headers = extra.to_vec();
        headers.push(("x-amz-content-sha256".into(), payload_hash.to_owned()));
        let signed = sigv4::sign(
            &sigv4::Request {
                method,
                host: &self.host,
                path,
                query,
                headers: &headers,
                payload_sha256: payload_hash,
            },
            &self.credentials,
            &self.region,
            "s3",
            Utc::now(),
        );
        let mut url = format!("{}://{}{path}", self.scheme, self.host);
        let query_text = sigv4::canonical_query(query);
        if !query_text.is_empty() {
            url.push('?');
            url.push_str(&query_text);
        }
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers.iter().chain(signed.iter()) {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let what = format!("{method} `{}` of state backend `{}`", path, self.uri);
        let build_error =
            |e: ureq::http::Error| Error::failed(format!("cannot build the request {what}: {e}"));
        let sent = match body {
            Some(b) => self
                .agent
                .run(builder.body(b.to_vec()).map_err(build_error)?),
            None => self.agent.run(builder.body(()).map_err(build_error)?),
        };
        let resp = sent.map_err(|e| {
            Error::failed(format!("request {what} failed: {e}"))
                .hint("check `state_backend.s3.endpoint_url` and that the server is reachable")
        })?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| Error::failed(format!("cannot read the answer to {what}: {e}")))?;
        Ok(Response { status, etag, body })
    }

    fn error(&self, what: &str, key: &str, resp: &Response) -> Error {
        let text = String::from_utf8_lossy(&resp.body);
        let code = xml_values(&text, "Code").into_iter().next();
        let message = xml_values(&text, "Message").into_iter().next();
        let mut err = Error::failed(format!(
            "S3 refused to {what} `{key}` in state backend `{}`: HTTP {}{}",
            self.uri,
            resp.status,
            code.map(|c| format!(" {c}")).unwrap_or_default()
        ));
        if let Some(m) = message {
            err = err.detail(m);
        }
        match resp.status {
            403 => err.hint("check the backend's credentials (`state_backend.s3.aws_access_key_id` / `aws_secret_access_key`) and their permissions on the bucket"),
            404 => err.hint(format!("check that the bucket `{}` exists", self.bucket)),
            501 => err.hint("this S3-compatible server does not support conditional writes (`If-None-Match` / `If-Match`), which dsm needs for Meltano's lock"),
            _ => err,
        }
    }
}

impl Objects for S3Objects {
    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn get(&self, key: &str) -> Result<Option<Object>> {
        let full = self.full_key(key);
        let resp = self.send("GET", &self.path(Some(&full)), &[], &[], None)?;
        match resp.status {
            200 => Ok(Some(Object {
                version: resp
                    .etag
                    .clone()
                    .unwrap_or_else(|| sigv4::sha256_hex(&resp.body)),
                body: resp.body,
            })),
            404 => {
                let text = String::from_utf8_lossy(&resp.body);
                if xml_values(&text, "Code").first().map(String::as_str) == Some("NoSuchBucket") {
                    return Err(self.error("read", &full, &resp));
                }
                Ok(None)
            }
            _ => Err(self.error("read", &full, &resp)),
        }
    }

    fn put(&self, key: &str, body: &[u8], condition: &Condition) -> Result<bool> {
        let full = self.full_key(key);
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        match condition {
            Condition::None => {}
            Condition::IfAbsent => headers.push(("if-none-match".into(), "*".into())),
            Condition::IfMatch(etag) => headers.push(("if-match".into(), etag.clone())),
        }
        let resp = self.send("PUT", &self.path(Some(&full)), &[], &headers, Some(body))?;
        match resp.status {
            200 | 201 | 204 => Ok(true),
            // 412: the condition failed; 409: another conditional write to the key was under way.
            412 | 409 if *condition != Condition::None => Ok(false),
            _ => Err(self.error("write", &full, &resp)),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key);
        let resp = self.send("DELETE", &self.path(Some(&full)), &[], &[], None)?;
        match resp.status {
            200 | 202 | 204 | 404 => Ok(()),
            _ => Err(self.error("delete", &full, &resp)),
        }
    }

    fn list(&self) -> Result<Vec<String>> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("list-type".to_owned(), "2".to_owned()),
                ("prefix".to_owned(), prefix.clone()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token".into(), t.clone()));
            }
            let resp = self.send("GET", &self.path(None), &query, &[], None)?;
            if resp.status != 200 {
                return Err(self.error("list", &prefix, &resp));
            }
            let text = String::from_utf8_lossy(&resp.body);
            keys.extend(
                xml_values(&text, "Key")
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned)),
            );
            let truncated =
                xml_values(&text, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&text, "NextContinuationToken")
                .into_iter()
                .next();
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
        Err(Error::failed(format!(
            "listing state backend `{}` did not end after {MAX_PAGES} pages",
            self.uri
        )))
    }
}

/// The text of every `<tag>…</tag>` in an S3 XML answer, entities decoded. S3's answers are
/// flat enough that this needs no XML parser.
fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else {
            break;
        };
        out.push(unescape(&after[..j]));
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_answers_are_read() {
        let text = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>p/a&amp;b/state.json</Key></Contents><Contents><Key>p/c&#58;d/lock</Key></Contents><NextContinuationToken>t&lt;1</NextContinuationToken></ListBucketResult>";
        assert_eq!(xml_values(text, "Key"), ["p/a&b/state.json", "p/c:d/lock"]);
        assert_eq!(xml_values(text, "NextContinuationToken"), ["t<1"]);
        assert_eq!(xml_values(text, "IsTruncated"), ["true"]);
        assert!(xml_values(text, "Missing").is_empty());
        assert_eq!(unescape("a & b &zz; &#x41;"), "a & b &zz; A");
    }
}
