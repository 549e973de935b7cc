//! `dsm serve`: the HTTP API over the registry, runs and credentials.
//!
//! Handlers are thin (see [`api`]): they authorize the caller, call the same library functions
//! the CLI commands call, and render JSON. Limits and headers are tower layers set in one place
//! ([`router`]); errors are RFC 9457 problem documents ([`problem`]); the OpenAPI 3.1 document
//! is generated from the handlers and their types ([`api::openapi_document`]).

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod executor;
pub mod installs;
pub mod problem;
pub mod tls;
pub mod token;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::Result;
use crate::project::{EnvironmentChoice, Project};
use crate::registry::catalog::{SourceInfo, project_sources};
use crate::store::Store;
use auth::{Caller, FailureLimiter};
use problem::Problem;

/// The address `dsm serve` listens on without `--bind`.
pub const DEFAULT_BIND: &str = "127.0.0.1:8765";
/// The largest request body accepted (larger ones get 413).
pub const MAX_BODY: usize = 1024 * 1024;
/// How often the server looks for changes of `meltano.yml`.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);

/// The Content-Security-Policy of every response: nothing inline, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The project as last loaded from disk.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The project, when it loads.
    pub project: Option<Arc<Project>>,
    /// Its extractors and loaders, as the registry describes them.
    pub sources: Arc<Vec<SourceInfo>>,
    /// The active environment's name.
    pub environment: Option<String>,
    /// Why the last load failed, if it did (the previous project stays in use).
    pub error: Option<String>,
    fingerprint: Option<(SystemTime, u64)>,
}

/// Everything a request handler may need, shared by all requests.
#[derive(Debug)]
pub struct App {
    /// The project root.
    pub root: PathBuf,
    /// Where the system store lives (an SQLite file or a PostgreSQL schema).
    pub location: crate::store::Location,
    /// The store as runs started here name it (`--database-uri`): the SQLite file's path, the
    /// PostgreSQL URI given on the command line, or none (then `DSM_DATABASE_URI`).
    pub database_uri: Option<String>,
    /// The environment flags.
    pub environment: EnvironmentChoice,
    /// The system store.
    pub store: Arc<dyn Store>,
    /// Whether state-changing requests are refused.
    pub read_only: bool,
    /// Failed attempts per address.
    pub limiter: FailureLimiter,
    /// The webhook intake's failed attempts and resolved secrets.
    pub webhooks: api::Intake,
    /// Browser sessions.
    pub sessions: auth::Sessions,
    /// Tokens whose last use was written recently.
    pub touches: auth::Touches,
    /// Whether the server speaks TLS (cookies get `Secure`, origins `https`).
    pub secure_cookies: bool,
    /// The runs this server started, and the event stream.
    pub runs: Arc<executor::Runs>,
    /// The plugin installations this server started.
    pub installs: Arc<installs::Installs>,
    /// Turns `true` when the server begins to shut down (event streams end).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    loaded: RwLock<Loaded>,
}

fn fingerprint(root: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(root.join(crate::project::PROJECT_FILE)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl App {
    /// Loads the project at `root` and wraps the store.
    pub fn new(
        root: PathBuf,
        location: crate::store::Location,
        database_uri: Option<String>,
        environment: EnvironmentChoice,
        store: Arc<dyn Store>,
        read_only: bool,
        tls: bool,
    ) -> Result<Self> {
        let app = App {
            root,
            location,
            database_uri,
            environment,
            runs: Arc::new(executor::Runs::new(store.clone())),
            installs: Arc::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            store,
            read_only,
            limiter: FailureLimiter::default(),
            webhooks: api::Intake::default(),
            sessions: auth::Sessions::default(),
            touches: auth::Touches::default(),
            secure_cookies: tls,
            loaded: RwLock::new(Loaded {
                project: None,
                sources: Arc::new(Vec::new()),
                environment: None,
                error: None,
                fingerprint: None,
            }),
        };
        app.reload_if_changed()?;
        Ok(app)
    }

    /// Shutdown begins: event streams end, new runs are refused and the runs this server
    /// started are asked to stop (see [`executor::Runs::stop_all`] for waiting on them).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The project as last loaded.
    pub fn loaded(&self) -> Loaded {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The loaded project, or 503 when it never loaded.
    pub fn project(&self) -> std::result::Result<(Arc<Project>, Loaded), Problem> {
        let loaded = self.loaded();
        match &loaded.project {
            Some(p) => Ok((p.clone(), loaded)),
            None => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the project could not be loaded",
            )
            .detail(loaded.error.clone().unwrap_or_default())),
        }
    }

    /// Reads `meltano.yml` again when it changed on disk. A project that no longer loads is
    /// reported (and kept out of `/readyz`), and the last good one stays in use. Returns the
    /// load error of the first load.
    pub fn reload_if_changed(&self) -> Result<()> {
        let now = fingerprint(&self.root);
        if self.loaded().fingerprint == now && now.is_some() {
            return Ok(());
        }
        let result = Project::load(&self.root).and_then(|project| {
            let env = project
                .active_environment(&self.environment)?
                .map(|e| e.name.clone());
            let mut sources = project_sources(&project);
            sources.sort_by(|a, b| a.name.cmp(&b.name).then(a.plugin_type.cmp(&b.plugin_type)));
            Ok((project, sources, env))
        });
        let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
        loaded.fingerprint = now;
        match result {
            Ok((project, sources, env)) => {
                if loaded.project.is_some() {
                    tracing::warn!("meltano.yml changed on disk; reloaded");
                }
                loaded.project = Some(Arc::new(project));
                loaded.sources = Arc::new(sources);
                loaded.environment = env;
                loaded.error = None;
                Ok(())
            }
            Err(error) => {
                tracing::warn!(error = %error.message(), "meltano.yml does not load; keeping the last good project");
                loaded.error = Some(error.message().to_owned());
                if loaded.project.is_none() {
                    return Err(error);
                }
                Ok(())
            }
        }
    }
}

/// The address a connection comes from (plain TCP or TLS).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// How many requests do their store and file work at once. The others wait their turn in
/// arrival order: with one thread per waiting request, a burst of 50 requests on 2 cores
/// spread the CPU over 50 threads, and an unlucky request waited for many scheduler rounds
/// (`GET /api/sources` p99 over 400 ms at a p50 of 14 ms). Runs and installs have threads of
/// their own and do not take a turn.
const STORE_TURNS: usize = 4;
static STORE_QUEUE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(STORE_TURNS);

/// Waits for a request's turn at the store (first come, first served); the turn ends when the
/// permit is dropped.
pub async fn store_turn() -> std::result::Result<tokio::sync::SemaphorePermit<'static>, Problem> {
    STORE_QUEUE.acquire().await.map_err(|_| Problem::internal())
}

/// Runs `f` (short work that blocks on the store or the file system) off the async workers,
/// in its turn (see [`store_turn`]).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, Problem> + Send + 'static,
) -> std::result::Result<T, Problem> {
    let _turn = store_turn().await?;
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(Problem::internal()))
}

/// The access log: one line per request with the peer, method, path (never the query, which
/// could carry a cursor or search text), status, time taken and the token's name (never the
/// token).
async fn access_log(
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let caller = response
        .extensions()
        .get::<Caller>()
        .map_or("-", |c| c.name.as_str())
        .to_owned();
    tracing::info!(
        target: "dsm::access",
        peer = %peer,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        token = %caller,
        "request"
    );
    response
}

/// Bodies announced as larger than [`MAX_BODY`] get 413 before they are read; a body that
/// turns out larger while it is read gets the same answer from the JSON extractor.
async fn body_limit(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large().into_response();
    }
    next.run(request).await
}

/// The 413 answer.
pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is too large",
    )
    .detail(format!("send at most {MAX_BODY} bytes"))
}

async fn not_found(request: Request) -> Problem {
    Problem::not_found(format!("no endpoint `{}`", request.uri().path()))
        .detail("GET /api/openapi.json lists every endpoint")
}

async fn method_not_allowed(request: Request) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "`{}` does not accept {}",
            request.uri().path(),
            request.method()
        ),
    )
    .detail("GET /api/openapi.json lists the methods of every endpoint")
}

fn panic_answer(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::internal().into_response()
}

/// The whole HTTP service: the API routes with authentication, limits, security headers, the
/// access log and problem documents for unknown paths and methods.
pub fn router(app: Arc<App>) -> Router {
    let (routes, _) = api::routes().split_for_parts();
    let fixed = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    routes
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_answer,
        ))
        .layer(fixed(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(fixed(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(fixed(header::X_FRAME_OPTIONS, "DENY"))
        .layer(fixed(header::REFERRER_POLICY, "no-referrer"))
        // The dashboard's files set their own (`no-cache` with an `ETag`).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
}

/// Polls `meltano.yml` and reloads the project when it changes, until the app is dropped.
pub fn spawn_reloader(app: &Arc<App>) {
    let weak = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        loop {
            tick.tick().await;
            let Some(app) = weak.upgrade() else { return };
            let _ = tokio::task::spawn_blocking(move || app.reload_if_changed()).await;
        }
    });
}
