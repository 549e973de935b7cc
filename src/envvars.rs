//! Every environment variable dsm itself reads, as documented constants.
//!
//! Plugin settings are read from variables named after the plugin (see `settings`); those names
//! are built, not listed here. Meltano's spellings are honoured next to dsm's own.

/// The project root, like Meltano's `MELTANO_PROJECT_ROOT`.
pub const PROJECT_ROOT: &str = "DSM_PROJECT_ROOT";
/// Meltano's spelling of [`PROJECT_ROOT`], read after it.
pub const MELTANO_PROJECT_ROOT: &str = "MELTANO_PROJECT_ROOT";
/// The active environment.
pub const ENVIRONMENT: &str = "DSM_ENVIRONMENT";
/// Meltano's spelling of [`ENVIRONMENT`], read after it.
pub const MELTANO_ENVIRONMENT: &str = "MELTANO_ENVIRONMENT";
/// Where the system store lives (a path, `sqlite:///path` or `postgresql://...`).
pub const DATABASE_URI: &str = "DSM_DATABASE_URI";
/// How long a PostgreSQL store keeps trying to get its lost connection back before the call
/// fails (a duration; default 30s).
pub const STORE_RECONNECT: &str = "DSM_STORE_RECONNECT";
/// How often a run renews its flow's lease in a PostgreSQL store (a duration; default 10s).
pub const LEASE_HEARTBEAT: &str = "DSM_LEASE_HEARTBEAT";
/// How long an unrenewed lease lasts, on the database's clock (a duration; default 60s).
pub const LEASE_EXPIRY: &str = "DSM_LEASE_EXPIRY";
/// Log level: `debug`, `info`, `warning`, `error`, `critical`.
pub const LOG_LEVEL: &str = "DSM_LOG_LEVEL";
/// Log format: `text` or `json`.
pub const LOG_FORMAT: &str = "DSM_LOG_FORMAT";
/// The master key for the encrypted secret store, base64.
pub const MASTER_KEY: &str = "DSM_MASTER_KEY";
/// A file holding the master key (must be readable by its owner only).
pub const MASTER_KEY_FILE: &str = "DSM_MASTER_KEY_FILE";
/// An API token for `dsm serve` clients.
pub const TOKEN: &str = "DSM_TOKEN";

/// libpq's password variables: they grant access to a PostgreSQL system store, so once dsm
/// uses one (see [`withhold_libpq_password`]) they are withheld from plugins too.
pub const LIBPQ_PASSWORD: &[&str] = &["PGPASSWORD", "PGPASSFILE"];

static STORE_USES_LIBPQ_PASSWORD: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Called when this process's system store is a PostgreSQL database: from then on
/// [`grants_access`] counts [`LIBPQ_PASSWORD`] among the variables no plugin gets.
pub fn withhold_libpq_password() {
    STORE_USES_LIBPQ_PASSWORD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// dsm's variables that grant access to the store, its key or its API. None of them ever
/// reaches a plugin, whatever the project file or the shell says (see [`grants_access`]).
pub const ACCESS: &[&str] = &[MASTER_KEY, MASTER_KEY_FILE, TOKEN, DATABASE_URI];

/// Whether a variable is one of dsm's that grants access: those in [`ACCESS`], and any other
/// `DSM_` variable whose name speaks of a key, token, password, secret, credential or database,
/// so that a variable added later is withheld from plugins without a second list to keep.
pub fn grants_access(name: &str) -> bool {
    if ACCESS.contains(&name) {
        return true;
    }
    if STORE_USES_LIBPQ_PASSWORD.load(std::sync::atomic::Ordering::Relaxed)
        && LIBPQ_PASSWORD.contains(&name)
    {
        return true;
    }
    let Some(rest) = name.strip_prefix("DSM_") else {
        return false;
    };
    let upper = rest.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "PASSWORD",
        "PASSPHRASE",
        "SECRET",
        "CREDENTIAL",
        "DATABASE",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

/// The names of the variables in dsm's own environment that must not reach a plugin.
pub fn access_vars_present() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| grants_access(k))
        .collect()
}
/// Directory for private per-run plugin config files (falls back to `XDG_RUNTIME_DIR`).
pub const RUNTIME_DIR: &str = "DSM_RUNTIME_DIR";
/// The XDG runtime directory, used for private per-run files when set.
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";
/// Where dsm looks for its built-in plugin executables (defaults to the directory of `dsm`).
pub const BUILTIN_BIN_DIR: &str = "DSM_BUILTIN_BIN_DIR";
/// `true` makes `dsm run` and `dsm el` install missing Python plugins first (over the project's
/// `auto_install:`).
pub const AUTO_INSTALL: &str = "DSM_AUTO_INSTALL";
/// Meltano's name for [`AUTO_INSTALL`], read after it.
pub const MELTANO_AUTO_INSTALL: &str = "MELTANO_AUTO_INSTALL";
/// Prefix of the variables that set `dsm run` / `dsm el` flags (`DSM_RUN_FULL_REFRESH`,
/// `DSM_RUN_STATE_ID_SUFFIX`, `DSM_RUN_TIMEOUT` ...); the flag wins over the variable.
pub const RUN_PREFIX: &str = "DSM_RUN_";
/// Meltano's prefix for the same variables (`MELTANO_RUN_FULL_REFRESH` ...), read after dsm's.
pub const MELTANO_RUN_PREFIX: &str = "MELTANO_RUN_";
/// Meltano's variable for `--run-id` (`DSM_RUN_RUN_ID` is dsm's).
pub const MELTANO_RUN_ID: &str = "MELTANO_RUN_ID";
/// Meltano's variable for `dsm el --state-id`.
pub const MELTANO_STATE_ID: &str = "MELTANO_STATE_ID";

/// Set by dsm in every plugin process of a run to the run's id: after a `kill -9` of dsm, the
/// run that takes the flow over finds the plugins' leftover processes by it and stops them. It
/// grants nothing.
pub const OWNER_RUN: &str = "DSM_OWNER_RUN";

/// Test-only: the time `dsm schedule run-due` takes as now (RFC 3339), so tests can move the
/// clock. Not for production use.
pub const NOW: &str = "DSM_NOW";

/// Automatic pruning of the run history after each run: remove runs older than this age
/// (`30d`, `12h`). Unset: no age limit. See `dsm runs prune`.
pub const RUNS_RETENTION_MAX_AGE: &str = "DSM_RUNS_RETENTION_MAX_AGE";
/// Automatic pruning of the run history after each run: keep the newest N runs of each flow.
/// With [`RUNS_RETENTION_MAX_AGE`] too, a run goes only when both let it go.
pub const RUNS_RETENTION_KEEP: &str = "DSM_RUNS_RETENTION_KEEP";

/// Meltano's `state_backend.uri` (`systemdb`, `file:///path`, `s3://bucket/prefix`); wins over
/// meltano.yml, as in Meltano. See `dsm::state_backend`.
pub const MELTANO_STATE_BACKEND_URI: &str = "MELTANO_STATE_BACKEND_URI";
/// Meltano's `state_backend.lock_timeout_seconds`: a lock older than this is stale.
pub const MELTANO_STATE_BACKEND_LOCK_TIMEOUT: &str = "MELTANO_STATE_BACKEND_LOCK_TIMEOUT_SECONDS";
/// Meltano's `state_backend.lock_retry_seconds`: the wait between looks at a held lock.
pub const MELTANO_STATE_BACKEND_LOCK_RETRY: &str = "MELTANO_STATE_BACKEND_LOCK_RETRY_SECONDS";
/// Meltano's `state_backend.s3.endpoint_url`.
pub const MELTANO_STATE_BACKEND_S3_ENDPOINT: &str = "MELTANO_STATE_BACKEND_S3_ENDPOINT_URL";
/// Meltano's `state_backend.s3.aws_access_key_id`.
pub const MELTANO_STATE_BACKEND_S3_KEY_ID: &str = "MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID";
/// Meltano's `state_backend.s3.aws_secret_access_key`.
pub const MELTANO_STATE_BACKEND_S3_SECRET: &str = "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY";
/// AWS's own credential and region variables, read by the `s3://` state backend when the
/// `state_backend.s3.*` settings leave them out.
pub const AWS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
];
