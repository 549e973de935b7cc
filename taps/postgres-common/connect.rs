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

/// Builds the client configuration from the plugin's settings. Nothing secret reaches an
/// error message.
fn client_config(config: &Map<String, Value>) -> Result<(Config, Tls), PluginError> {
    let mut pg = if let Some(url) = text(config, "sqlalchemy_url") {
        // `postgresql+psycopg2://…` names a Python driver: the URL after the scheme is the same.
        let rest = url
            .split_once("://")
            .map(|(_, r)| r)
            .ok_or_else(|| PluginError::config("setting `sqlalchemy_url` is not a URL"))?;
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
    let tls = match text(config, "ssl_mode").unwrap_or("prefer") {
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
    Ok((pg, tls))
}

/// Connects with the plugin's settings, naming the server (never the password) on failure.
pub fn connect(config: &Map<String, Value>) -> Result<Client, PluginError> {
    let (pg, tls) = client_config(config)?;
    let where_ = describe(&pg);
    let result = match tls {
        Tls::Disable => pg.connect(postgres::NoTls),
        _ => pg.connect(tokio_postgres_rustls::MakeRustlsConnect::new(
            rustls_config(config, tls)?,
        )),
    };
    result.map_err(|e| {
        PluginError::data_hint(
            format!(
                "cannot connect to PostgreSQL at {where_}: {}",
                error_text(&e)
            ),
            "check `host`, `port`, `user`, `password`, `database` and `ssl_mode`",
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

fn rustls_config(
    config: &Map<String, Value>,
    tls: Tls,
) -> Result<rustls::ClientConfig, PluginError> {
    // ring's provider is deprecated only for lacking post-quantum key exchange; the other
    // provider (aws-lc-rs) needs a C toolchain and CMake to build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PluginError::config(format!("TLS setup failed: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match tls {
        Tls::VerifyCa | Tls::VerifyFull => {
            let roots = Arc::new(root_store(config)?);
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

fn root_store(config: &Map<String, Value>) -> Result<rustls::RootCertStore, PluginError> {
    let setting = text(config, "ssl_certificate_authority");
    let pem: Vec<u8> = match setting {
        Some(s) if s.contains("-----BEGIN") => s.as_bytes().to_vec(),
        Some(path) => std::fs::read(path).map_err(|e| {
            PluginError::config(format!(
                "cannot read `ssl_certificate_authority` file `{path}`: {e}"
            ))
        })?,
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            let path = std::path::Path::new(&home).join(".postgresql/root.crt");
            std::fs::read(&path).map_err(|_| {
                PluginError::config_hint(
                    "`ssl_mode` verify-ca/verify-full needs the server's certificate authority",
                    "set `ssl_certificate_authority` to its PEM file",
                )
            })?
        }
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
