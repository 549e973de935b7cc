//! `--tls-cert` / `--tls-key`: serving HTTPS with rustls (PEM files).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a certificate chain and its private key (PEM) into a TLS acceptor.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::config(format!(
                "cannot read the certificate `{}`: {e}",
                cert.display()
            ))
            .hint("`--tls-cert` takes a PEM file with the server's certificate chain")
        })?;
    if certs.is_empty() {
        return Err(
            Error::config(format!("`{}` holds no certificate", cert.display()))
                .hint("`--tls-cert` takes a PEM file with `-----BEGIN CERTIFICATE-----` blocks"),
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::config(format!(
            "cannot read the private key `{}`: {e}",
            key.display()
        ))
        .hint("`--tls-key` takes a PEM file with the certificate's private key")
    })?;
    #[expect(
        deprecated,
        reason = "ring is the provider that builds without cmake; hybrid post-quantum key exchange is not needed on the loopback or behind a proxy"
    )]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::failed(format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::config(format!("the TLS certificate and key do not fit: {e}"))
                .hint("check that `--tls-key` is the private key of `--tls-cert`")
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Handshakes in progress at most; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// A listener that hands axum TLS streams. Handshakes run on their own tasks (a slow client
/// does not hold up the others); failed or slow ones are dropped and logged.
#[derive(Debug)]
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting TLS connections on `tcp`.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, addr) = match tcp.accept().await {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(error = %error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let tx = tx.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::info!(peer = %addr, error = %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
