//! Where a PostgreSQL store is and how to reach it: the `postgresql://` URI (with dsm's own
//! `schema=` and libpq's `sslmode=`), the password from the URI, `PGPASSWORD` or `.pgpass`
//! (never needed in argv), and TLS through rustls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::{Client, Config};

use crate::error::{Error, Result};

/// The schema a store's tables live in when the URI names none.
pub const DEFAULT_SCHEMA: &str = "dsm";

/// Whether `uri` names a PostgreSQL store.
pub fn is_postgres_uri(uri: &str) -> bool {
    let lower = uri.trim_start().to_ascii_lowercase();
    lower.starts_with("postgresql://") || lower.starts_with("postgres://")
}

/// How TLS is used (libpq's `sslmode`). Certificates are always verified against the system's
/// roots when TLS is used: `prefer` falls back to a plain connection only when the server offers
/// no TLS at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Disable,
    Prefer,
    Require,
}

/// A parsed PostgreSQL store URI.
#[derive(Clone)]
pub struct PgTarget {
    config: Config,
    tls: Tls,
    /// The schema name, as given (checked to be a plain identifier).
    pub schema: String,
    /// `user@host:port/db?schema=NAME`, never the password: for messages.
    pub display: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

fn uri_error(message: impl Into<String>) -> Error {
    Error::config(message.into()).hint(
        "write `postgresql://USER@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require&schema=NAME]`; \
         give the password with PGPASSWORD or ~/.pgpass rather than on the command line",
    )
}

impl PgTarget {
    /// Reads a `postgresql://` or `postgres://` URI. Nothing secret reaches an error message.
    pub fn parse(uri: &str) -> Result<PgTarget> {
        // The store's password variables are dsm's from now on, never a plugin's.
        crate::envvars::withhold_libpq_password();
        let uri = uri.trim();
        let (base, query) = match uri.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (uri, None),
        };
        let mut schema = DEFAULT_SCHEMA.to_owned();
        let mut tls = Tls::Prefer;
        let mut rest = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "schema" => schema = v.to_owned(),
                "sslmode" => {
                    tls = match v {
                        "disable" => Tls::Disable,
                        "allow" | "prefer" => Tls::Prefer,
                        "require" | "verify-ca" | "verify-full" => Tls::Require,
                        other => {
                            return Err(uri_error(format!(
                                "the database URI's `sslmode={other}` is not one of disable, prefer, require, verify-ca, verify-full"
                            )));
                        }
                    }
                }
                _ => rest.push(pair),
            }
        }
        if !valid_schema(&schema) {
            return Err(uri_error(format!(
                "the database URI's `schema={schema}` is not a plain name (letters, digits and `_`, at most 63, not starting with a digit)"
            )));
        }
        let plain = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: Config = plain.parse().map_err(|e: postgres::Error| {
            // The client library's message never repeats the password, but be sure.
            let mut text = e.to_string();
            if let Some(pw) = password_in(base) {
                text = text.replace(&pw, "***");
            }
            uri_error(format!("the database URI is not valid: {text}"))
        })?;
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .ok()
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "postgres".to_owned());
            config.user(&user);
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_password().is_none() {
            if let Some(pw) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
                config.password(pw);
            } else if let Some(pw) = pgpass_password(&config) {
                config.password(pw);
            }
        }
        config.ssl_mode(match tls {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            Tls::Require => SslMode::Require,
        });
        config.application_name("dsm");
        let display = format!("`{}?schema={schema}`", describe(&config));
        Ok(PgTarget {
            config,
            tls,
            schema,
            display,
        })
    }

    /// The database name.
    pub fn database(&self) -> String {
        self.config.get_dbname().unwrap_or_default().to_owned()
    }

    /// Opens a connection, naming the server (never the password) when it cannot.
    pub fn connect(&self) -> Result<Client> {
        let result = match self.tls {
            Tls::Disable => self.config.connect(postgres::NoTls),
            _ => self
                .config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                    rustls_config()?,
                )),
        };
        result.map_err(|e| {
            Error::failed(format!(
                "cannot connect to the PostgreSQL store {}: {}",
                self.display,
                error_text(&e)
            ))
            .hint(
                "check the host, port, user and database of `--database-uri` (or \
                 DSM_DATABASE_URI), the password in PGPASSWORD or ~/.pgpass, and `sslmode`",
            )
        })
    }
}

fn valid_schema(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The password written in a URI's user part, if any (to keep it out of messages).
fn password_in(base: &str) -> Option<String> {
    let rest = base.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty()).then(|| pw.to_owned())
}

/// `user@host:port/database`, for messages.
fn describe(pg: &Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    format!(
        "{}@{}:{}/{}",
        pg.get_user().unwrap_or_default(),
        host,
        pg.get_ports().first().copied().unwrap_or(5432),
        pg.get_dbname().unwrap_or_default()
    )
}

/// The password `.pgpass` (or the file `PGPASSFILE` names) gives this connection, read as libpq
/// does: `host:port:database:user:password` lines, `*` matching anything, `\` escaping `:` and
/// `\`; a file others can read is ignored with a warning.
fn pgpass_password(pg: &Config) -> Option<String> {
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let text = std::fs::read_to_string(&path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %path.display(), "ignoring a password file that others can read (chmod 600 it)");
            return None;
        }
    }
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432).to_string();
    let db = pg.get_dbname().unwrap_or_default();
    let user = pg.get_user().unwrap_or_default();
    let wanted = [host.as_str(), port.as_str(), db, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(f, w)| f == "*" || f == w);
            matches.then(|| fields[4].clone())
        })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(last) = fields.last_mut()
                {
                    last.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

/// A server error's message and detail, or the client error's text with its causes.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

fn rustls_config() -> Result<rustls::ClientConfig> {
    // ring, as the built-in PostgreSQL plugins use: no C toolchain or CMake needed.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::failed(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parts_schema_and_sslmode() {
        let t =
            PgTarget::parse("postgresql://al:pw@db.example:6543/team?sslmode=disable&schema=ops")
                .unwrap();
        assert_eq!(t.schema, "ops");
        assert_eq!(t.tls, Tls::Disable);
        assert_eq!(t.database(), "team");
        assert!(!t.display.contains("pw"), "{}", t.display);
        assert!(
            t.display.contains("al@db.example:6543/team"),
            "{}",
            t.display
        );
        let t = PgTarget::parse("postgres://al@h/d").unwrap();
        assert_eq!(t.schema, DEFAULT_SCHEMA);
        for bad in [
            "postgresql://al@h/d?schema=a;drop",
            "postgresql://al@h/d?schema=1x",
            "postgresql://al@h/d?sslmode=sometimes",
        ] {
            let e = PgTarget::parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        assert!(is_postgres_uri("PostgreSQL://x/y"));
        assert!(!is_postgres_uri("sqlite:///x"));
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        assert_eq!(
            split_pgpass(r"h:5432:*:u:p\:w\\d"),
            ["h", "5432", "*", "u", r"p:w\d"]
        );
        assert_eq!(split_pgpass("a:b:c:d:e:f").len(), 5);
    }
}
