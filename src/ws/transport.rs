//! The byte stream under a socket: TCP, and for `wss` TLS through tokio-rustls (ring, the web
//! PKI roots unless a configuration is given).

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Target, WsError};
use crate::BoxError;

/// A connected byte stream.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach the socket: plain TCP, or TLS to a server name.
#[derive(Clone)]
pub(crate) enum Transport {
    Plain,
    Tls(TlsConnector, ServerName<'static>),
}

impl Transport {
    /// For `target`; `config` replaces the default TLS configuration (its ALPN is set to
    /// HTTP/1.1, the protocol a WebSocket upgrade speaks).
    pub(crate) fn new(
        target: &Target,
        config: Option<rustls::ClientConfig>,
    ) -> Result<Self, WsError> {
        if !target.tls {
            return Ok(Self::Plain);
        }
        let mut config = match config {
            Some(config) => config,
            None => default_config()?,
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| WsError::Tls(format!("{:?} is not a valid server name", target.host)))?;
        Ok(Self::Tls(TlsConnector::from(Arc::new(config)), name))
    }

    /// Opens the stream to `target`.
    pub(crate) async fn connect(&self, target: &Target) -> Result<Box<dyn Io>, BoxError> {
        let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.set_nodelay(true)?;
        match self {
            Self::Plain => Ok(Box::new(tcp)),
            Self::Tls(connector, name) => Ok(Box::new(connector.connect(name.clone(), tcp).await?)),
        }
    }
}

/// The ring provider with its safe defaults, and the web PKI roots: as the REST client.
fn default_config() -> Result<rustls::ClientConfig, WsError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WsError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
