//! The connection settings shared by the built-in `tap-postgres` and `target-postgres`, named as
//! MeltanoLabs' variants name them, and the TLS that `ssl_mode` asks for.

use std::sync::Arc;

use dsm::singer::plugin_kit::PluginError;
use postgres::config::SslMode;
use postgres::{Client, Config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde_json::{Map, Value, json};

/// The JSON Schema of the connection settings, for `--about`.
pub fn settings_schema() -> Map<String, Value> {
    let v = json!({
        "host": {"type": "string", "description": "Server host name or address (default localhost)."},
        "port": {"type": "integer", "default": 5432, "description": "Server port."},
        "user": {"type": "string", "description": "User name."},
        "password": {"type": "string", "secret": true, "writeOnly": true, "description": "Password."},
        "database": {"type": "string", "description": "Database name (`dbname` is accepted too)."},
        "sqlalchemy_url": {
            "type": "string", "secret": true, "writeOnly": true,
            "description": "A connection URL (postgresql://user:password@host:port/database); replaces the other connection settings."
        },
        "ssl_mode": {
            "type": "string",
            "enum": ["disable", "prefer", "require", "verify-ca", "verify-full"],
            "default": "prefer",
            "description": "TLS as libpq's sslmode: `verify-ca` checks the server certificate against `ssl_certificate_authority`, `verify-full` also checks the host name."
        },
        "ssl_enable": {
            "type": "boolean",
            "description": "MeltanoLabs' switch for `ssl_mode`: when true, `ssl_mode` applies and defaults to `verify-full`; when false, `ssl_mode` may only be `disable`, `allow` or `prefer`. Unset: `ssl_mode` applies as given."
        },
        "ssl_certificate_authority": {
            "type": "string",
            "description": "PEM file (or PEM text) of the certificate authority for `verify-ca` and `verify-full` (default ~/.postgresql/root.crt)."
        }
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

fn text<'a>(config: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    config
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The TLS wanted by `ssl_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Disable,
    /// Encrypt when the server can, without checking its certificate (libpq's `prefer`).
    Prefer,
    /// Encrypt, without checking the certificate (libpq's `require`).
    Require,
    VerifyCa,
    VerifyFull,
}

/// How the connection is made, from the plugin's settings.
struct Plan {
    pg: Config,
    tls: Tls,
    /// `ssl_certificate_authority` (or a URL's `sslrootcert`): a PEM file or PEM text.
    ca: Option<String>,
}

/// A boolean setting given as a JSON boolean or as the text `true`/`false`.
fn flag(config: &Map<String, Value>, key: &str) -> Result<Option<bool>, PluginError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(PluginError::config(format!(
            "setting `{key}` must be true or false, not {v}"
        ))),
    }
}

/// `%XX` escapes of a URL query value decoded (`+` stays as it is, as libpq reads it).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits libpq's TLS parameters (`sslmode`, `sslrootcert`) off a connection URL's query:
/// the client library reads the rest, these two are applied here.
fn split_tls_params(url: &str) -> Result<(String, Option<String>, Option<String>), PluginError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut mode, mut root) = (None, None);
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_decode(v).ok_or_else(|| {
                PluginError::config(format!(
                    "setting `sqlalchemy_url`: the value of `{k}` is not valid percent-encoded UTF-8"
                ))
            })
        };
        match k {
            "sslmode" => mode = Some(decoded()?),
            "sslrootcert" => root = Some(decoded()?),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, mode, root))
}

/// Builds the client configuration from the plugin's settings. Nothing secret reaches an
/// error message.
fn client_config(config: &Map<String, Value>) -> Result<Plan, PluginError> {
    let mut ssl_mode = text(config, "ssl_mode").map(str::to_owned);
    let mut ca = text(config, "ssl_certificate_authority").map(str::to_owned);
    let mut pg = if let Some(url) = text(config, "sqlalchemy_url") {
        // `postgresql+psycopg2://…` names a Python driver: the URL after the scheme is the same.
        let rest = url
            .split_once("://")
            .map(|(_, r)| r)
            .ok_or_else(|| PluginError::config("setting `sqlalchemy_url` is not a URL"))?;
        // As with MeltanoLabs' plugins, TLS parameters in the URL win over the settings.
        let (rest, url_mode, url_root) = split_tls_params(rest)?;
        if url_mode.is_some() {
            ssl_mode = url_mode;
        }
        if url_root.is_some() {
            ca = url_root;
        }
        format!("postgresql://{rest}")
            .parse::<Config>()
            .map_err(|_| {
                PluginError::config_hint(
                    "setting `sqlalchemy_url` is not a PostgreSQL connection URL",
                    "write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
                )
            })?
    } else {
        let mut c = Config::new();
        c.host(text(config, "host").unwrap_or("localhost"));
        let port = match config.get("port") {
            None | Some(Value::Null) => 5432,
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| PluginError::config(format!("setting `port` is not a port: {v}")))?,
        };
        c.port(port);
        if let Some(u) = text(config, "user").or_else(|| text(config, "username")) {
            c.user(u);
        }
        if let Some(p) = text(config, "password") {
            c.password(p);
        }
        if let Some(d) = text(config, "database").or_else(|| text(config, "dbname")) {
            c.dbname(d);
        }
        c
    };
    if pg.get_user().is_none() {
        return Err(PluginError::config_hint(
            "setting `user` is missing",
            "set `user` (and `password`, `host`, `database`), or `sqlalchemy_url`",
        ));
    }
    // MeltanoLabs' `ssl_enable` switches `ssl_mode` on (with their default `verify-full`);
    // switched off, a mode that promises encryption would be a silent downgrade: refused.
    let mode = match (flag(config, "ssl_enable")?, ssl_mode.as_deref()) {
        (Some(true), None) => "verify-full",
        (Some(false), Some(m @ ("require" | "verify-ca" | "verify-full"))) => {
            return Err(PluginError::config_hint(
                format!("setting `ssl_mode` is `{m}` but `ssl_enable` is false"),
                "set `ssl_enable` to true, or remove `ssl_enable` (dsm applies `ssl_mode` as given)",
            ));
        }
        (_, Some(m)) => m,
        (_, None) => "prefer",
    };
    let tls = match mode {
        "disable" => Tls::Disable,
        "prefer" | "allow" => Tls::Prefer,
        "require" => Tls::Require,
        "verify-ca" => Tls::VerifyCa,
        "verify-full" => Tls::VerifyFull,
        other => {
            return Err(PluginError::config_hint(
                format!("setting `ssl_mode` is `{other}`"),
                "use one of disable, prefer, require, verify-ca, verify-full",
            ));
        }
    };
    pg.ssl_mode(match tls {
        Tls::Disable => SslMode::Disable,
        Tls::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    pg.application_name("dsm");
    Ok(Plan { pg, tls, ca })
}

/// Connects with the plugin's settings, naming the server (never the password) on failure.
pub fn connect(config: &Map<String, Value>) -> Result<Client, PluginError> {
    let Plan { pg, tls, ca } = client_config(config)?;
    let where_ = describe(&pg);
    let result = match tls {
        Tls::Disable => pg.connect(postgres::NoTls),
        _ => pg.connect(tokio_postgres_rustls::MakeRustlsConnect::new(
            rustls_config(ca.as_deref(), tls)?,
        )),
    };
    result.map_err(|e| {
        let text = error_text(&e);
        let hint = if text.contains("not valid for name") {
            "the server's certificate does not name the host connected to: use a host name the \
             certificate names, or `ssl_mode: verify-ca` to check only that the certificate \
             authority signed it"
        } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
            "the server's certificate is not signed by the authority in \
             `ssl_certificate_authority`: give that setting the PEM file of the authority that \
             signed it"
        } else {
            "check `host`, `port`, `user`, `password`, `database` and `ssl_mode`"
        };
        PluginError::data_hint(
            format!("cannot connect to PostgreSQL at {where_}: {text}"),
            hint,
        )
    })
}

/// `user@host:port/database`, for messages.
fn describe(pg: &Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    format!(
        "`{}@{}:{}/{}`",
        pg.get_user().unwrap_or_default(),
        host,
        pg.get_ports().first().copied().unwrap_or(5432),
        pg.get_dbname().unwrap_or_default()
    )
}

/// A server error's message and detail, or the client error's text.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            // Where in a COPY the bad value was (`COPY items, line 2, column id: "x"`).
            if let Some(w) = db.where_().filter(|w| w.starts_with("COPY")) {
                s.push_str(" (");
                s.push_str(w);
                s.push(')');
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

fn rustls_config(ca: Option<&str>, tls: Tls) -> Result<rustls::ClientConfig, PluginError> {
    // ring's provider is deprecated only for lacking post-quantum key exchange; the other
    // provider (aws-lc-rs) needs a C toolchain and CMake to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PluginError::config(format!("TLS setup failed: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls {
        Tls::VerifyCa | Tls::VerifyFull => {
            let roots = Arc::new(root_store(ca)?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| PluginError::config(format!("TLS setup failed: {e}")))?;
            if tls == Tls::VerifyFull {
                webpki
            } else {
                Arc::new(IgnoreHostName(webpki))
            }
        }
        _ => Arc::new(NoVerification(provider)),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn root_store(ca: Option<&str>) -> Result<rustls::RootCertStore, PluginError> {
    let home = || std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let pem: Vec<u8> = match ca {
        Some(s) if s.contains("-----BEGIN") => s.as_bytes().to_vec(),
        Some(path) => {
            let file = match path.strip_prefix("~/") {
                Some(rest) => home().join(rest),
                None => std::path::PathBuf::from(path),
            };
            std::fs::read(&file).map_err(|e| {
                PluginError::config(format!(
                    "cannot read `ssl_certificate_authority` file `{path}`: {e}"
                ))
            })?
        }
        None => std::fs::read(home().join(".postgresql/root.crt")).map_err(|_| {
            PluginError::config_hint(
                "`ssl_mode` verify-ca/verify-full needs the server's certificate authority",
                "set `ssl_certificate_authority` to its PEM file",
            )
        })?,
    };
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            PluginError::config(format!(
                "`ssl_certificate_authority` is not a PEM certificate: {e}"
            ))
        })?;
        store.add(cert).map_err(|e| {
            PluginError::config(format!(
                "`ssl_certificate_authority` holds an unusable certificate: {e}"
            ))
        })?;
    }
    if store.is_empty() {
        return Err(PluginError::config(
            "`ssl_certificate_authority` holds no certificate",
        ));
    }
    Ok(store)
}

/// libpq's `require`/`prefer`: encrypted, the certificate unchecked (signatures still are).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must lead to the given authority; the host name is not checked.
#[derive(Debug)]
struct IgnoreHostName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `name` quoted as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` quoted as an SQL string literal (standard_conforming_strings is on since 9.1).
#[allow(dead_code, reason = "only tap-postgres writes literals")]
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_come_off_a_url_and_the_rest_stays() {
        let (url, mode, root) = split_tls_params(
            "u:p@h:5/db?application_name=x&sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.crt",
        )
        .unwrap();
        assert_eq!(url, "u:p@h:5/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/tmp/ca.crt"));
        let (url, mode, root) = split_tls_params("u:p@h/db").unwrap();
        assert_eq!((url.as_str(), mode, root), ("u:p@h/db", None, None));
        assert!(split_tls_params("h/db?sslrootcert=%zz").is_err());
    }

    #[test]
    fn ssl_enable_follows_meltanolabs_and_refuses_a_silent_downgrade() {
        let plan = |v: Value| client_config(v.as_object().unwrap());
        let tls = |v: Value| plan(v).map(|p| p.tls);
        assert_eq!(tls(json!({"user": "u"})).unwrap(), Tls::Prefer);
        assert_eq!(
            tls(json!({"user": "u", "ssl_enable": true})).unwrap(),
            Tls::VerifyFull
        );
        assert_eq!(
            tls(json!({"user": "u", "ssl_enable": "true", "ssl_mode": "require"})).unwrap(),
            Tls::Require
        );
        assert_eq!(
            tls(json!({"user": "u", "ssl_enable": false, "ssl_mode": "disable"})).unwrap(),
            Tls::Disable
        );
        assert!(tls(json!({"user": "u", "ssl_enable": false, "ssl_mode": "verify-ca"})).is_err());
        // A URL's `sslmode` wins over the setting.
        let url = json!({"sqlalchemy_url": "postgresql://u:p@h/db?sslmode=disable", "ssl_mode": "require"});
        assert_eq!(tls(url).unwrap(), Tls::Disable);
    }
}
