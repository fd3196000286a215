//! A raw HTTP/1.1 server on 127.0.0.1 (plain or TLS) for transport tests: it records every
//! request as it arrived on the wire, counts the connections it accepted and those still open,
//! and answers through a handler. Each connection is served in keep-alive until the peer
//! closes it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as received.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// `GET /x HTTP/1.1`
    pub line: String,
    /// Header names lower-cased, values as text.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> &str {
        self.line.split(' ').next().unwrap_or_default()
    }

    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or_default()
    }
}

/// What a handler does with a request.
pub enum Answer {
    /// Status and JSON body, keep-alive.
    Json(u16, String),
    /// The same, with these headers.
    JsonWith(u16, Vec<(&'static str, String)>, String),
    /// Answers 200 right after the head, without reading the body, then never reads again.
    EarlyAndStall,
    /// Reads the request whole and never answers; the connection is held until the peer
    /// closes it.
    Silent,
}

pub type Handler = Arc<dyn Fn(&RawRequest) -> Answer + Send + Sync>;

#[derive(Clone, Default)]
pub struct Stats {
    pub accepted: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<RawRequest>>>,
}

impl Stats {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Starts a plain server with `handler`.
pub async fn serve(handler: Handler) -> (SocketAddr, Stats) {
    serve_with(handler, None).await
}

/// Starts a server, over TLS when `tls` is given.
pub async fn serve_with(
    handler: Handler,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Stats) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stats = Stats::default();
    let s = stats.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // No write waits for the peer's delayed ACK (idle time, to tests on paused time).
            let _ = tcp.set_nodelay(true);
            s.accepted.fetch_add(1, Ordering::SeqCst);
            s.open.fetch_add(1, Ordering::SeqCst);
            let (s, handler, tls) = (s.clone(), handler.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(tcp).await {
                            connection(stream, &handler, &s).await;
                        }
                    }
                    None => connection(tcp, &handler, &s).await,
                }
                s.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, stats)
}

/// A server that accepts TCP connections and never says anything (a TLS handshake to it never
/// completes). Returns its address and the count of connections accepted.
pub async fn silent() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    (addr, accepted)
}

/// A listener whose accept queue is full and never drained: a further TCP connect to it gets
/// no answer to its SYN, as with a host that has gone away. Returns its address and the
/// connections that fill the queue (kept open while the test runs).
pub async fn unanswered() -> (
    SocketAddr,
    tokio::net::TcpListener,
    Vec<tokio::net::TcpStream>,
) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut filling = Vec::new();
    // The kernel completes a few handshakes beyond the backlog; then connects hang.
    for _ in 0..16 {
        let attempt = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(std::time::Duration::from_millis(200), attempt).await {
            Ok(Ok(tcp)) => filling.push(tcp),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            Err(_) => return (addr, listener, filling),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: &Handler,
    stats: &Stats,
) {
    let mut buf = Vec::new();
    loop {
        // The head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut req = RawRequest {
            line,
            headers,
            body: Vec::new(),
        };
        let answer = handler(&req);
        if let Answer::EarlyAndStall = answer {
            stats.requests.lock().expect("lock").push(req);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            // Never read again; hold the connection until the peer goes away.
            std::future::pending::<()>().await;
            return;
        }
        while buf.len() < length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        req.body = buf.drain(..length).collect();
        let (status, headers, body) = match handler(&req) {
            Answer::Json(status, body) => (status, Vec::new(), body),
            Answer::JsonWith(status, headers, body) => (status, headers, body),
            Answer::EarlyAndStall => return,
            Answer::Silent => {
                stats.requests.lock().expect("lock").push(req);
                let mut chunk = [0u8; 1024];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
        };
        stats.requests.lock().expect("lock").push(req);
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The TLS server configuration for the test certificate (`localhost`, 127.0.0.1), issued by
/// the test CA in `fixtures/tls`, with these ALPN protocols.
pub fn server_tls(alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![
        CertificateDer::from_pem_slice(include_bytes!("../fixtures/tls/leaf.pem")).expect("leaf"),
    ];
    let key =
        PrivateKeyDer::from_pem_slice(include_bytes!("../fixtures/tls/leaf.pk8.pem")).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client TLS configuration that trusts only the test CA.
pub fn client_tls() -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(include_bytes!("../fixtures/tls/ca.pem")).expect("ca"))
        .expect("root");
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A TLS server (hyper) offering `alpn` that serves HTTP/2 when negotiated, HTTP/1.1 otherwise,
/// answers every request 200 `{}`, and counts its connections.
pub async fn tls_server(alpn: &[&[u8]]) -> (SocketAddr, Arc<AtomicUsize>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls(alpn));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                    ))
                });
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    (addr, accepted)
}
