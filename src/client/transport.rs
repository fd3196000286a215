//! The client's transport: hyper-util's pooled client over hyper-rustls, or any tower service
//! of the caller's, behind one boxed type.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use super::error::Error;
use crate::BoxError;

/// The connector of [`HttpsTransport`]: TCP, then TLS for `https` (rustls with the ring
/// provider), the whole of it bounded by the connect timeout.
pub type Connector =
    BoxCloneSyncService<Uri, MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, BoxError>;

/// The client's default transport: hyper-util's pooled client (HTTP/2 when the server offers
/// it by ALPN, HTTP/1.1 otherwise; idle connections reaped in the background). Built by
/// [`ClientBuilder::transport`](super::ClientBuilder::transport) from the builder's settings.
pub type HttpsTransport = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// The body of a transport's response, boxed.
pub(crate) type TransportBody = UnsyncBoxBody<Bytes, BoxError>;

/// Any transport, boxed: what the authentication stack sits on.
pub(crate) type Transport =
    BoxCloneSyncService<Request<Full<Bytes>>, Response<TransportBody>, BoxError>;

/// The transport settings of a [`ClientBuilder`](super::ClientBuilder).
#[derive(Clone, Debug)]
pub(crate) struct TransportConfig {
    pub(crate) tls: Option<rustls::ClientConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_host: usize,
    pub(crate) http2: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 128,
            http2: true,
        }
    }
}

impl TransportConfig {
    /// Builds the connector and the pooled client. The TLS crypto provider is passed
    /// explicitly, so nothing depends on (or can panic over) a process-wide default provider.
    pub(crate) fn build(&self) -> Result<HttpsTransport, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let tls = match &self.tls {
            Some(config) => {
                let mut config = config.clone();
                // The client sets ALPN itself, from `http2`.
                config.alpn_protocols.clear();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
            None => hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| Error::InvalidRequest(format!("TLS set-up failed: {e}")))?,
        };
        let tls = tls.https_or_http().enable_http1();
        let https = if self.http2 {
            tls.enable_http2().wrap_connector(http)
        } else {
            tls.wrap_connector(http)
        };
        // hyper's own connect timeout covers TCP only; this one covers the TLS handshake too.
        let connector: Connector = BoxCloneSyncService::new(
            tower::ServiceBuilder::new()
                .timeout(self.connect_timeout)
                .service(https),
        );
        Ok(
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(self.pool_idle_timeout)
                .pool_max_idle_per_host(self.pool_max_idle_per_host)
                .build(connector),
        )
    }
}

/// Boxes any tower service that sends `Request<Full<Bytes>>`.
pub(crate) fn boxed<T, B>(service: T) -> Transport
where
    T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let service = service
        .map_response(|resp: Response<B>| resp.map(|b| b.map_err(Into::into).boxed_unsync()))
        .map_err(Into::into);
    BoxCloneSyncService::new(service)
}
