//! `dsm serve`: the HTTP API over the project it is started in (see [`crate::serve`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::project::EnvironmentChoice;
use crate::serve::{self, App};

/// Arguments of `dsm serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address and port to listen on (port 0 picks a free one, printed at start).
    #[arg(long, value_name = "ADDR:PORT", default_value = serve::DEFAULT_BIND)]
    pub bind: String,
    /// Refuse every state-changing request with 403.
    #[arg(long)]
    pub read_only: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Runs `dsm serve` until SIGTERM or Ctrl-C; requests in flight finish first.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let bind: SocketAddr = args.bind.parse().map_err(|_| {
        Error::config(format!("`--bind {}` is not an address and port", args.bind))
            .hint("write `--bind 127.0.0.1:8765` (or `[::1]:8765`, `0.0.0.0:8765`)")
    })?;
    let root = ctx.project_root()?;
    let location = crate::store::locate(ctx.global.database_uri.as_deref(), &root)?;
    let database_uri = match &location {
        crate::store::Location::Sqlite(path) => Some(path.display().to_string()),
        crate::store::Location::Postgres(_) => ctx.global.database_uri.clone(),
    };
    let store = ctx.open_store()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(serve::tls::acceptor(cert, key)?),
        _ => None,
    };
    let app = Arc::new(App::new(
        root,
        location,
        database_uri,
        EnvironmentChoice {
            flag: ctx.global.environment.clone(),
            none: ctx.global.no_environment,
            use_default: true,
        },
        store,
        args.read_only,
        tls.is_some(),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dsm-serve")
        .build()?;
    runtime.block_on(async move {
        let tcp = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
            Error::config(format!("cannot listen on `{bind}`: {e}"))
                .hint("pick another port with `--bind 127.0.0.1:PORT`, or stop what uses it")
        })?;
        let local = tcp.local_addr()?;
        if !local.ip().is_loopback() && tls.is_none() {
            ctx.printer.warn(format!(
                "serving plain HTTP on `{local}`, which is not a loopback address: tokens travel unencrypted"
            ));
            ctx.printer.notice(
                "hint: put a TLS-terminating proxy in front, or pass `--tls-cert` and `--tls-key`",
            );
        }
        serve::spawn_reloader(&app);
        app.runs.spawn_progress();
        let scheme = if tls.is_some() { "https" } else { "http" };
        ctx.printer.notice(format!(
            "serving `{}` on {scheme}://{local}{}",
            app.root.display(),
            if app.read_only { " (read-only)" } else { "" }
        ));
        let service = serve::router(app.clone())
            .into_make_service_with_connect_info::<serve::Peer>();
        let served = match tls {
            Some(acceptor) => {
                let listener = serve::tls::TlsListener::new(tcp, acceptor)?;
                axum::serve(listener, service)
                    .with_graceful_shutdown(stopping(app.clone()))
                    .await
            }
            None => {
                axum::serve(tcp, service)
                    .with_graceful_shutdown(stopping(app.clone()))
                    .await
            }
        };
        // The runs this server started were asked to stop with the signal; they are recorded
        // as `killed` once their loaders flushed (or their plugins were killed).
        let runs = app.runs.clone();
        let _ = tokio::task::spawn_blocking(move || runs.stop_all()).await;
        served.map_err(|e| Error::failed(format!("the server stopped: {e}")))?;
        ctx.printer.notice("stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT, after ending the event streams and asking the runs this
/// server started to stop (requests in flight still finish).
async fn stopping(app: Arc<App>) {
    shutdown_signal().await;
    app.begin_shutdown();
    let runs = app.runs.clone();
    let _ = tokio::task::spawn_blocking(move || runs.cancel_all()).await;
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
