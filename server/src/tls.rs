//! HTTPS: a listener that completes TLS handshakes (rustls) off the accept loop, so one slow
//! client cannot hold up the others.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::net::{ClosableListener, TrackedStream};

/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Application protocols offered: HTTP/1.1 for the REST API, HTTP/2 for gRPC.
pub const HTTP1: &[u8] = b"http/1.1";
pub const HTTP2: &[u8] = b"h2";

/// Why TLS cannot be set up from the configured files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("cannot read the private key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate and key do not work together: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// Read a PEM certificate chain and private key into a rustls server config that offers
/// `protocol` through ALPN.
pub fn load_config(
    cert: &Path,
    key: &Path,
    protocol: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| TlsError::Certificates {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![protocol.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and yields them once their TLS handshake has completed.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TrackedStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Start accepting on `tcp`. Must be called within a tokio runtime; accepting stops when
    /// the listener is dropped.
    pub fn new(mut tcp: ClosableListener, config: Arc<ServerConfig>) -> Self {
        let local_addr = tcp.local_addr();
        let acceptor = TlsAcceptor::from(config);
        let (tx, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = tx.closed() => break,
                    accepted = tcp.accept() => accepted,
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self {
            handshaken,
            local_addr,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TrackedStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
