//! The web dashboard: plain HTML, CSS and JavaScript modules embedded in the binary with
//! `include_str!` (a handful of small text files; no build step and no crate needed for that)
//! and served from `/` and `/assets/...`. The pages use only the public `/api/...`, with the
//! session cookie of `POST /api/session`.
//!
//! The files need no token: they hold no data. Each answer carries its content type, the
//! server's strict Content-Security-Policy (the files have no inline script or style), and
//! `Cache-Control: no-cache` with an `ETag`, so a browser revalidates and an upgraded binary
//! is never shadowed by a stale copy.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest as _;

use super::problem::Problem;

/// An embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the dashboard.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("pages.js", JS),
    asset!("source.js", JS),
    asset!("wizard.js", JS),
    asset!("requests.js", JS),
];

/// Whether a path is one of the dashboard's (answered without a token).
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/" || path == "/favicon.ico" || path.starts_with("/assets/")
}

fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = sha2::Sha256::digest(a.body.as_bytes());
                format!("\"{}\"", hex::encode(&digest[..12]))
            })
            .collect()
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return Problem::not_found(format!("no dashboard file `{name}`"))
            .detail("open the dashboard at `/`")
            .into_response();
    };
    let asset = &ASSETS[index];
    let tag = &etags()[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// The dashboard's routes: `/` (the page), `/assets/{file}` and `/favicon.ico`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/favicon.ico",
            get(|headers: HeaderMap| async move { serve("favicon.svg", &headers) }),
        )
        .route(
            "/assets/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_has_inline_script_or_style() {
        let page = ASSETS[0].body;
        assert!(!page.contains("<style"), "index.html has a <style> element");
        assert!(
            !page.contains(" style="),
            "index.html has a style attribute"
        );
        for script in page.split("<script").skip(1) {
            let open = &script[..script.find('>').unwrap_or(script.len())];
            assert!(open.contains("src="), "an inline <script> in index.html");
        }
        for a in ASSETS {
            assert!(!a.body.contains("eval("), "{} calls eval", a.name);
            assert!(
                !a.body.contains("new Function"),
                "{} builds a Function",
                a.name
            );
        }
    }

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for line in a.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.split('\'').nth(1) else {
                    continue;
                };
                let name = from.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|b| b.name == name),
                    "{} imports {from}, which is not embedded",
                    a.name
                );
            }
        }
    }
}
