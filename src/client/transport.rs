//! The client's transport: hyper-util's pooled client over hyper-rustls, or any tower service
//! of the caller's, behind one shared type.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Either, Full};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use super::error::Error;
use crate::BoxError;

/// The connector of [`HttpsTransport`]: TCP, then TLS for `https` (rustls with the ring
/// provider), the whole of it bounded by the connect timeout.
pub(crate) type Connector =
    BoxCloneSyncService<Uri, MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, BoxError>;

/// The client's default transport: hyper-util's pooled client (HTTP/2 when the server offers
/// it by ALPN, HTTP/1.1 otherwise; idle connections reaped in the background), built from the
/// builder's settings.
pub(crate) type HttpsTransport = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// Any transport, shared: what the authentication stack sits on. Cloning it (the retry layer
/// does, for each request) costs one reference count, whatever the transport.
#[derive(Clone)]
pub(crate) struct Transport(Arc<dyn Dispatch>);

/// Sends one request from a shared reference.
pub(crate) trait Dispatch: Send + Sync + 'static {
    fn dispatch(&self, req: Request<Full<Bytes>>) -> TransportFuture;
}

/// hyper-util's client, called directly (its `request` clones its own parts for the request),
/// with its future and body going up the stack as they are.
impl Dispatch for HttpsTransport {
    fn dispatch(&self, req: Request<Full<Bytes>>) -> TransportFuture {
        TransportFuture::Hyper {
            fut: self.request(req),
        }
    }
}

/// A caller's service: a clone of it, made ready, for each request (tower's rule for a shared
/// service), so one request waiting for readiness holds up no other.
pub(crate) struct Cloned<T>(T);

impl<T, B> Dispatch for Cloned<T>
where
    T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn dispatch(&self, req: Request<Full<Bytes>>) -> TransportFuture {
        let fut = self.0.clone().oneshot(req);
        TransportFuture::Boxed {
            fut: Box::pin(async move {
                match fut.await {
                    Ok(resp) => {
                        Ok(resp.map(|body| Either::Right(body.map_err(Into::into).boxed_unsync())))
                    }
                    Err(e) => Err(e.into()),
                }
            }),
        }
    }
}

impl Transport {
    /// The default transport, called directly.
    pub(crate) fn https(client: HttpsTransport) -> Self {
        Self(Arc::new(client))
    }

    /// Any tower service that sends `Request<Full<Bytes>>`.
    pub(crate) fn service<T>(service: T) -> Self
    where
        Cloned<T>: Dispatch,
    {
        Self(Arc::new(Cloned(service)))
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transport")
    }
}

/// Always ready: a request waits for the transport's readiness inside its own future, under
/// the attempt's timeout.
impl Service<Request<Full<Bytes>>> for Transport {
    type Response = Response<TransportBody>;
    type Error = BoxError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> TransportFuture {
        self.0.dispatch(req)
    }
}

pin_project! {
    /// The future of one exchange through a [`Transport`].
    #[project = TransportFutureProj]
    pub(crate) enum TransportFuture {
        Hyper { #[pin] fut: hyper_util::client::legacy::ResponseFuture },
        Boxed { fut: Pin<Box<dyn Future<Output = Result<Response<TransportBody>, BoxError>> + Send>> },
    }
}

impl Future for TransportFuture {
    type Output = Result<Response<TransportBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TransportFutureProj::Hyper { fut } => fut.poll(cx).map(|r| match r {
                Ok(resp) => Ok(resp.map(Either::Left)),
                Err(e) => Err(e.into()),
            }),
            TransportFutureProj::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// The body of a transport's response: hyper's own, or a caller's transport's, boxed.
pub(crate) type TransportBody = Either<hyper::body::Incoming, UnsyncBoxBody<Bytes, BoxError>>;

/// How often an HTTP/2 connection is pinged, in use or idle.
pub(crate) const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long an unanswered ping is waited for before the connection is dropped.
pub(crate) const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport settings of a [`ClientBuilder`](super::ClientBuilder).
#[derive(Clone, Debug)]
pub(crate) struct TransportConfig {
    pub(crate) tls: Option<rustls::ClientConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_host: usize,
    pub(crate) http2: bool,
    pub(crate) http2_only: bool,
    /// HTTP/2 PING interval and how long an unanswered one is waited for; `None`: no pings.
    pub(crate) keep_alive: Option<(Duration, Duration)>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            tls: None,
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 128,
            http2: true,
            http2_only: false,
            keep_alive: Some((DEFAULT_KEEP_ALIVE_INTERVAL, DEFAULT_KEEP_ALIVE_TIMEOUT)),
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
        let tls = tls.https_or_http();
        // ALPN offers what the client will speak: an origin that cannot speak HTTP/2 to an
        // HTTP/2-only client then fails the TLS handshake, before anything is sent.
        let https = if self.http2_only {
            tls.enable_http2().wrap_connector(http)
        } else if self.http2 {
            tls.enable_http1().enable_http2().wrap_connector(http)
        } else {
            tls.enable_http1().wrap_connector(http)
        };
        // hyper's own connect timeout covers TCP only; this one covers the TLS handshake too.
        let connector: Connector = BoxCloneSyncService::new(
            tower::ServiceBuilder::new()
                .timeout(self.connect_timeout)
                .service(https),
        );
        let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            // Also the timer of HTTP/2 keep-alive pings.
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .http2_only(self.http2_only);
        if let Some((interval, timeout)) = self.keep_alive {
            builder
                .http2_keep_alive_interval(interval)
                .http2_keep_alive_timeout(timeout)
                .http2_keep_alive_while_idle(true);
        }
        Ok(builder.build(connector))
    }
}
