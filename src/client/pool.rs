//! The client's built-in transport: HTTP/1.1 connections to the base URL's origin (over rustls
//! for `https`), kept alive and reused.
//!
//! The client talks to one origin only, so the pool is a stack of idle connections: no pool
//! key, no per-request hashing. A request takes the most recently used idle connection that is
//! still open (or opens one), and its connection goes back on the stack when the response body
//! has been read to the end. An idle connection is checked for readiness before it is used;
//! should it still close between that check and the send, hyper hands the unsent request back
//! and it goes out on a new connection. Nothing else is retried here.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use pin_project_lite::pin_project;
use tower::ServiceExt as _;

use super::Error;
use crate::BoxError;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Sender = SendRequest<Full<Bytes>>;

/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections to one origin.
pub(crate) struct Pool {
    connector: Connector,
    /// `scheme://authority/`, what the connector dials.
    origin: Uri,
    host: HeaderValue,
    idle: Mutex<VecDeque<Idle>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Opening a connection failed: nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("could not connect to {origin}: {source}")]
pub(crate) struct ConnectError {
    origin: String,
    #[source]
    source: BoxError,
}

impl Pool {
    /// A pool for `scheme://authority`, dialling with a connect timeout. The TLS crypto provider
    /// is passed explicitly, so nothing depends on (or can panic over) a process-wide default.
    pub(crate) fn new(
        scheme: Scheme,
        authority: Authority,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::InvalidRequest(format!("TLS set-up failed: {e}")))?;
        Self::with_tls(scheme, authority, connect_timeout, tls)
    }

    /// The same, with the TLS set-up given.
    fn with_tls(
        scheme: Scheme,
        authority: Authority,
        connect_timeout: Duration,
        tls: hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsSchemes>,
    ) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| Error::InvalidRequest(format!("{authority} is not a Host value")))?;
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| Error::InvalidRequest(format!("base URL: {e}")))?;
        Ok(Self {
            connector,
            origin,
            host,
            idle: Mutex::new(VecDeque::new()),
        })
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` (whose URI the client has already put on this origin) and returns the
    /// response head; the body hands the connection back once read to the end.
    pub(crate) async fn send(
        self: Arc<Self>,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, BoxError> {
        let (mut parts, body) = req.into_parts();
        // HTTP/1.1 sends the origin form, with the authority in `Host`.
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(target);
        parts
            .headers
            .entry(http::header::HOST)
            .or_insert_with(|| self.host.clone());
        let mut req = Request::from_parts(parts, body);
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let release = if resp.body().is_end_stream() {
                        // Nothing to read: the connection is free now.
                        self.put(sender);
                        None
                    } else {
                        Some((sender, self))
                    };
                    return Ok(resp.map(|inner| PooledBody { inner, release }));
                }
                Err(mut e) => match e.take_message() {
                    // Refused before a byte was written, on a connection the server had
                    // closed while it sat idle: send it on another.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self) -> Option<Sender> {
        loop {
            let Idle { mut sender, since } = self.idle().pop_back()?;
            if since.elapsed() > IDLE_TIMEOUT || sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self) -> Result<Sender, BoxError> {
        let failed = |source: BoxError| ConnectError {
            origin: self.origin.to_string(),
            source,
        };
        // The connection runs as a task of the caller's runtime; outside one, fail rather than
        // panic.
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| failed(e.into()))?;
        let io = self
            .connector
            .clone()
            .oneshot(self.origin.clone())
            .await
            .map_err(failed)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| failed(e.into()))?;
        runtime.spawn(async move {
            // Ends when the server closes the connection or the pool drops its sender.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Keeps a connection whose exchange is complete; drops the ones that expired meanwhile.
    fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle();
        while idle
            .front()
            .is_some_and(|oldest| oldest.since.elapsed() > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle().len()
    }
}

pin_project! {
    /// A response body that hands its connection back to the pool once read to the end. A body
    /// dropped before its end takes its connection with it.
    pub(crate) struct PooledBody {
        #[pin]
        inner: Incoming,
        release: Option<(Sender, Arc<Pool>)>,
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let done = match &frame {
            None => true,
            Some(Ok(_)) => this.inner.is_end_stream(),
            Some(Err(_)) => {
                this.release.take();
                false
            }
        };
        if done && let Some((sender, pool)) = this.release.take() {
            pool.put(sender);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    type Accepted = Arc<std::sync::atomic::AtomicUsize>;

    /// A server on 127.0.0.1, over TLS when `tls` is given, that answers up to
    /// `per_connection` requests on each connection (see [`answer`]); connections accepted are
    /// counted.
    async fn server_with(
        per_connection: usize,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (std::net::SocketAddr, Accepted) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Accepted::default();
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => answer(tcp, addr, per_connection).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                answer(stream, addr, per_connection).await;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// A plain-HTTP [`server_with`].
    async fn server(per_connection: usize) -> (std::net::SocketAddr, Accepted) {
        server_with(per_connection, None).await
    }

    /// Answers up to `per_connection` requests on `io` with `200 ok`, the last announcing
    /// `connection: close`, then closes. A request whose head is not the origin form
    /// `GET /x` with `Host` set to `addr` gets `400 bad` instead.
    async fn answer<IO>(mut io: IO, addr: std::net::SocketAddr, per_connection: usize)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let expected_host = format!("\r\nhost: {addr}\r\n");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        for served in 0..per_connection {
            let end = loop {
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                match io.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end);
            let well_formed =
                head.starts_with("get /x http/1.1\r\n") && head.contains(&expected_host);
            let resp: &[u8] = match (well_formed, served + 1 == per_connection) {
                (false, _) => b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad",
                (true, true) => {
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
                }
                (true, false) => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            };
            if io.write_all(resp).await.is_err() || io.flush().await.is_err() {
                return;
            }
        }
    }

    fn pool(addr: std::net::SocketAddr) -> Arc<Pool> {
        let authority: Authority = addr.to_string().parse().expect("authority");
        Arc::new(Pool::new(Scheme::HTTP, authority, Duration::from_secs(2)).expect("pool"))
    }

    async fn get(pool: &Arc<Pool>) -> Result<Bytes, BoxError> {
        let req = Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let resp = pool.clone().send(req).await?;
        Ok(resp.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn connections_are_reused_once_a_body_is_read() {
        let (addr, accepted) = server(100).await;
        let pool = pool(addr);
        for _ in 0..5 {
            assert_eq!(get(&pool).await.expect("ok"), "ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
        // Concurrent requests each get a connection of their own.
        let (a, b, c) = tokio::join!(get(&pool), get(&pool), get(&pool));
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(pool.idle_count(), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_takes_its_connection() {
        let (addr, accepted) = server(100).await;
        let pool = pool(addr);
        let req = Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let resp = pool.clone().send(req).await.expect("head");
        drop(resp);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(get(&pool).await.expect("ok"), "ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        // One response per connection: the server closes each after answering.
        let (addr, accepted) = server(1).await;
        let pool = pool(addr);
        for _ in 0..3 {
            assert_eq!(get(&pool).await.expect("ok"), "ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connect_failures_are_typed_and_send_nothing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let err = get(&pool(addr)).await.expect_err("refused");
        assert!(err.is::<ConnectError>(), "{err}");
        assert!(super::super::retry::is_connect_error(&*err));
    }

    #[test]
    fn outside_a_runtime_connecting_fails_without_a_panic() {
        let pool = pool("127.0.0.1:9".parse().expect("addr"));
        let req = Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let mut fut = std::pin::pin!(pool.send(req));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Err(err)) => assert!(err.is::<ConnectError>(), "{err}"),
            Poll::Ready(Ok(_)) => panic!("no connection can have been made"),
            Poll::Pending => panic!("expected an immediate error outside a runtime"),
        }
    }

    /// A TLS [`server_with`] presenting the certificate in `testdata`, issued by a test CA.
    async fn tls_server() -> (std::net::SocketAddr, Accepted) {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![
            CertificateDer::from_pem_slice(include_bytes!("testdata/leaf.pem")).expect("leaf"),
        ];
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("testdata/leaf.pk8.pem")).expect("key");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        server_with(usize::MAX, Some(acceptor)).await
    }

    #[tokio::test]
    async fn https_connections_are_verified_and_reused() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let (addr, accepted) = tls_server().await;
        let authority: Authority = addr.to_string().parse().expect("authority");
        let connect = |roots: rustls::RootCertStore| {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            let tls = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config);
            Arc::new(
                Pool::with_tls(
                    Scheme::HTTPS,
                    authority.clone(),
                    Duration::from_secs(2),
                    tls,
                )
                .expect("pool"),
            )
        };
        let mut trusted = rustls::RootCertStore::empty();
        trusted
            .add(CertificateDer::from_pem_slice(include_bytes!("testdata/ca.pem")).expect("ca"))
            .expect("root");
        let pool = connect(trusted);
        for _ in 0..3 {
            assert_eq!(get(&pool).await.expect("ok over TLS"), "ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A server the roots do not vouch for is refused before anything is sent.
        let untrusting = connect(rustls::RootCertStore::empty());
        let err = get(&untrusting).await.expect_err("unknown issuer");
        assert!(err.is::<ConnectError>(), "{err}");
    }
}
