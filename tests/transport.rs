//! The client's transport and request hygiene, against raw servers on 127.0.0.1: busy
//! connections are not handed out, idle ones are reaped, the connect timeout bounds the TLS
//! handshake, HTTP/2 is used when offered, a base URL with a path keeps the route policy
//! right, methods go out in upper case and a foreign `Host` is refused.
#![cfg(all(feature = "client", feature = "mock"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{self, Answer, RawRequest};
use http::{Method, Request, StatusCode};
use limitless_auth::Credentials;
use limitless_auth::client::{Client, Error, RetryConfig};
use limitless_auth::{HmacCredentials, IdentityToken};

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn hmac() -> HmacCredentials {
    HmacCredentials::new("token-1", SECRET).expect("valid")
}

fn ok(_: &RawRequest) -> Answer {
    Answer::Json(200, "{}".into())
}

#[tokio::test]
async fn a_connection_still_writing_a_body_is_not_handed_out() {
    // The first POST is answered right after its head and its 8 MB body is never read: its
    // connection stays busy. The next POST must go out at once on another connection.
    let first = Arc::new(AtomicUsize::new(0));
    let handler: raw::Handler = Arc::new(move |req: &RawRequest| {
        if req.body.is_empty() && req.header("content-length") == Some("8388608") {
            first.fetch_add(1, Ordering::SeqCst);
            Answer::EarlyAndStall
        } else {
            Answer::Json(200, "{}".into())
        }
    });
    let (addr, stats) = raw::serve(handler).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .body_limit(16 << 20)
        .retry(RetryConfig::disabled())
        .timeout(Some(Duration::from_secs(5)))
        .build()
        .expect("client");
    let big = Bytes::from(vec![b'x'; 8 << 20]);
    let resp = client
        .request(Method::POST, "/orders", Some(big))
        .await
        .expect("answered early");
    assert_eq!(resp.status, StatusCode::OK);
    let started = Instant::now();
    let resp = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect("the small POST goes out on another connection");
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.accepted(), 2);
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_are_closed_before_any_timeout() {
    let (addr, stats) = raw::serve(Arc::new(ok)).await;
    // An idle timeout far beyond the test: only the cap can close a connection here.
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .pool_idle_timeout(Duration::from_secs(3600))
        .pool_max_idle_per_host(3)
        .build()
        .expect("client");
    burst(&client, 20).await;
    assert!(stats.accepted() > 3, "a burst opens several connections");
    assert!(
        common::eventually(Duration::from_secs(5), || stats.open() <= 3).await,
        "{} open",
        stats.open()
    );
    assert_eq!(stats.open(), 3, "three are kept idle, the others closed");
}

#[tokio::test]
async fn idle_connections_are_reaped_without_traffic() {
    let (addr, stats) = raw::serve(Arc::new(ok)).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .pool_idle_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    burst(&client, 5).await;
    assert!(stats.open() > 0, "connections are kept after the burst");
    // With no traffic at all, the idle ones are closed after the idle timeout.
    assert!(
        common::eventually(Duration::from_secs(5), || stats.open() == 0).await,
        "{} still open",
        stats.open()
    );
}

#[tokio::test]
async fn the_connect_timeout_bounds_the_tls_handshake() {
    let (addr, accepted) = raw::silent().await;
    let client = Client::builder()
        .base_url(format!("https://localhost:{}", addr.port()))
        .credentials(Credentials::new().with_hmac(hmac()))
        .tls_config(raw::client_tls())
        .connect_timeout(Duration::from_millis(300))
        .timeout(Some(Duration::from_secs(10)))
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let started = Instant::now();
    let err = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect_err("the handshake never completes");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.is_local(), "nothing was sent");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "TCP was connected");
}

#[tokio::test]
async fn the_connect_timeout_bounds_a_tcp_connect_that_gets_no_answer() {
    let (addr, _listener, _filling) = raw::unanswered().await;
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .connect_timeout(Duration::from_millis(300))
        .timeout(Some(Duration::from_secs(10)))
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let started = Instant::now();
    let err = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect_err("the connect never completes");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.is_local(), "nothing was sent");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}: bounded by the connect timeout, not the 10 s attempt timeout"
    );
}

async fn burst(client: &Client, n: usize) {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.request(Method::GET, "/markets/active", None).await })
        })
        .collect();
    for r in calls {
        assert_eq!(r.await.expect("join").expect("ok").status, StatusCode::OK);
    }
}

#[tokio::test]
async fn http2_carries_many_requests_on_one_tls_connection() {
    let (addr, accepted) = raw::tls_server(&[b"h2", b"http/1.1"]).await;
    let client = Client::builder()
        .base_url(format!("https://localhost:{}", addr.port()))
        .credentials(Credentials::new().with_hmac(hmac()))
        .tls_config(raw::client_tls())
        .build()
        .expect("client");
    burst(&client, 1).await;
    burst(&client, 256).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one HTTP/2 connection");

    // Without HTTP/2 the same burst needs many HTTP/1.1 connections.
    let (addr, accepted) = raw::tls_server(&[b"h2", b"http/1.1"]).await;
    let client = Client::builder()
        .base_url(format!("https://localhost:{}", addr.port()))
        .credentials(Credentials::new().with_hmac(hmac()))
        .tls_config(raw::client_tls())
        .http2(false)
        .build()
        .expect("client");
    burst(&client, 1).await;
    burst(&client, 64).await;
    assert!(accepted.load(Ordering::SeqCst) > 1);
}

#[tokio::test]
async fn a_server_the_roots_do_not_vouch_for_is_refused() {
    let (addr, accepted) = raw::tls_server(&[b"h2", b"http/1.1"]).await;
    // The default roots (web PKI) do not include the test CA.
    let client = Client::builder()
        .base_url(format!("https://localhost:{}", addr.port()))
        .credentials(Credentials::new().with_hmac(hmac()))
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let err = client
        .request(Method::GET, "/markets/active", None)
        .await
        .expect_err("unknown issuer");
    assert!(matches!(err, Error::Certificate(_)), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

fn capabilities_or_tokens(req: &RawRequest) -> Answer {
    if req.target().ends_with("/capabilities") {
        Answer::Json(
            200,
            r#"{"partnerProfileId":42,"tokenManagementEnabled":true,"allowedScopes":["trading"]}"#
                .into(),
        )
    } else {
        Answer::Json(200, "[]".into())
    }
}

/// Whether `req` carries a valid signature over `target`.
fn signed_over(req: &RawRequest, target: &str) -> bool {
    let (Some(ts), Some(sig)) = (req.header("lmts-timestamp"), req.header("lmts-signature")) else {
        return false;
    };
    common::signature_matches(SECRET, ts, req.method(), target, &req.body, sig)
}

#[tokio::test]
async fn a_base_url_with_a_path_keeps_the_route_policy_and_signs_as_sent() {
    let (addr, stats) = raw::serve(Arc::new(capabilities_or_tokens)).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}/x/"))
        .credentials(
            Credentials::new()
                .with_hmac(hmac())
                .with_identity(IdentityToken::new("privy-identity").expect("token")),
        )
        .build()
        .expect("client");
    let caps = client.capabilities().await.expect("Privy route");
    assert_eq!(caps.partner_profile_id, Some(42));
    client.list_tokens().await.expect("HMAC route");
    let seen = stats.requests();
    assert_eq!(seen[0].line, "GET /x/auth/api-tokens/capabilities HTTP/1.1");
    assert_eq!(seen[0].header("identity"), Some("Bearer privy-identity"));
    assert!(seen[0].header("lmts-signature").is_none());
    assert!(seen[0].header("lmts-api-key").is_none());
    assert_eq!(seen[1].line, "GET /x/auth/api-tokens HTTP/1.1");
    assert!(seen[1].header("identity").is_none());
    assert!(signed_over(&seen[1], "/x/auth/api-tokens"));
    assert!(!signed_over(&seen[1], "/auth/api-tokens"));
}

#[tokio::test]
async fn the_prefix_can_be_left_out_of_the_signature() {
    let (addr, stats) = raw::serve(Arc::new(capabilities_or_tokens)).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}/gw/v1"))
        .sign_route_without_prefix(true)
        .credentials(Credentials::new().with_hmac(hmac()))
        .build()
        .expect("client");
    client.list_tokens().await.expect("HMAC route");
    let seen = stats.requests();
    assert_eq!(seen[0].target(), "/gw/v1/auth/api-tokens");
    assert!(signed_over(&seen[0], "/auth/api-tokens"));
    assert!(!signed_over(&seen[0], "/gw/v1/auth/api-tokens"));
    // Without an identity token, the Privy-only route still fails locally behind the prefix.
    let err = client.capabilities().await.expect_err("Privy only");
    assert!(matches!(err, Error::Policy(_)), "{err:?}");
    assert_eq!(stats.requests().len(), 1, "nothing more was sent");
}

#[tokio::test]
async fn methods_go_on_the_wire_in_upper_case() {
    let (addr, stats) = raw::serve(Arc::new(ok)).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .build()
        .expect("client");
    for method in ["get", "Post", "delete"] {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri("/orders/abc")
            .body(Bytes::new())
            .expect("request");
        client.send(req).await.expect("sent");
    }
    let seen = stats.requests();
    let methods: Vec<&str> = seen.iter().map(RawRequest::method).collect();
    assert_eq!(methods, ["GET", "POST", "DELETE"]);
    for req in &seen {
        assert!(signed_over(req, "/orders/abc"), "{}", req.line);
    }
}

#[tokio::test]
async fn a_foreign_host_header_is_refused_locally() {
    let (addr, stats) = raw::serve(Arc::new(ok)).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .build()
        .expect("client");
    let req = Request::get("/orders")
        .header(http::header::HOST, "evil.example")
        .body(Bytes::new())
        .expect("request");
    let err = client.send(req).await.expect_err("foreign Host");
    assert!(matches!(err, Error::ForeignOrigin { .. }), "{err:?}");
    assert!(err.is_local());
    // The base URL's own authority is fine.
    let req = Request::get("/orders")
        .header(http::header::HOST, addr.to_string())
        .body(Bytes::new())
        .expect("request");
    client.send(req).await.expect("own Host");
    assert_eq!(stats.requests().len(), 1);
    assert_eq!(stats.requests()[0].header("host"), Some(&*addr.to_string()));
}

#[tokio::test]
async fn non_ascii_targets_are_percent_encoded_before_signing() {
    let (addr, stats) = raw::serve(Arc::new(ok)).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .build()
        .expect("client");
    client
        .request(Method::GET, "/markets/é?q=ü", None)
        .await
        .expect("sent");
    let req = Request::get("/markets/ü").body(Bytes::new()).expect("req");
    client.send(req).await.expect("sent");
    let seen = stats.requests();
    assert_eq!(seen[0].target(), "/markets/%C3%A9?q=%C3%BC");
    assert!(signed_over(&seen[0], "/markets/%C3%A9?q=%C3%BC"));
    assert_eq!(seen[1].target(), "/markets/%C3%BC");
    assert!(signed_over(&seen[1], "/markets/%C3%BC"));
}
