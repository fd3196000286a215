//! Clock skew, retries and timeouts, against the mock server on loopback.
#![cfg(all(feature = "client", feature = "mock"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use limitless_auth::Credentials;
use limitless_auth::FixedClock;
use limitless_auth::client::{Client, ClientBuilder, Error, RequestTimeout, RetryConfig};
use limitless_auth::mock::{Fault, MockServer, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::{HmacCredentials, Timestamp};

/// 2026-03-23T12:34:56.789Z
const T0: i64 = 1_774_269_296_789;

fn hmac() -> HmacCredentials {
    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
}

fn fast_retries() -> RetryConfig {
    RetryConfig {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_elapsed: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(2),
        retry_skewed_unauthorized: true,
    }
}

fn builder(mock: &MockServer) -> ClientBuilder {
    Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(hmac()))
        .retry(fast_retries())
        .timeout(Some(Duration::from_secs(10)))
}

fn timestamps(mock: &MockServer) -> Vec<String> {
    mock.requests()
        .iter()
        .filter_map(|r| r.headers.get("lmts-timestamp"))
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

// ---------------------------------------------------------------- clock skew

/// A mock whose clock reads `server_ms` and a client whose clock reads `client_ms`, both frozen.
async fn skewed(server_ms: i64, client_ms: i64, retry: RetryConfig) -> (MockServer, Client) {
    let mock = MockServer::builder()
        .clock(FixedClock::new(server_ms))
        .start()
        .await
        .expect("mock");
    let client = builder(&mock)
        .retry(retry)
        .clock(FixedClock::new(client_ms))
        .build()
        .expect("client");
    (mock, client)
}

#[tokio::test]
async fn a_skewed_401_is_re_signed_with_the_server_time_and_retried_once() {
    // Both clocks read T0; then the mock's clock is moved a minute ahead.
    let mock = MockServer::builder()
        .clock(FixedClock::new(T0))
        .start()
        .await
        .expect("mock");
    mock.set_clock_offset_millis(60_000);
    let client = Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(hmac()))
        .retry(fast_retries())
        .clock(FixedClock::new(T0))
        .build()
        .expect("client");
    let mock_now = mock.now_millis();
    assert_eq!(mock_now, T0 + 60_000);
    assert_eq!(client.clock_offset_millis(), 0);
    let tokens = client
        .list_tokens()
        .await
        .expect("succeeds after one re-signed retry");
    assert!(!tokens.is_empty());
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].status, Some(StatusCode::UNAUTHORIZED));
    assert_eq!(seen[0].signature_valid, Some(false));
    assert_eq!(seen[1].status, Some(StatusCode::OK));
    assert_eq!(seen[1].signature_valid, Some(true));
    let ts = timestamps(&mock);
    assert_eq!(
        ts[0], "2026-03-23T12:34:56.789Z",
        "signed with the local clock"
    );
    // Date says 12:35:56 (whole seconds); the offset estimate is mid-second.
    let offset = client.clock_offset_millis();
    assert!((59_000..=61_000).contains(&offset), "{offset}");
    let corrected = Timestamp::parse(&ts[1]).expect("timestamp").unix_millis();
    assert!((corrected - mock_now).abs() <= 1_000, "{}", ts[1]);

    // Later requests are signed with corrected time from the start.
    mock.clear_requests();
    client.list_tokens().await.expect("succeeds");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn the_offset_is_shared_by_clones_and_applies_to_a_server_behind_us() {
    let (mock, client) = skewed(T0 - 120_000, T0, fast_retries()).await;
    let other = client.clone();
    client.list_tokens().await.expect("succeeds");
    assert!(
        (-121_000..=-119_000).contains(&other.clock_offset_millis()),
        "{}",
        other.clock_offset_millis()
    );
    mock.clear_requests();
    other
        .list_tokens()
        .await
        .expect("signed right the first time");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_401_while_the_clocks_agree_is_returned_as_is() {
    let mock = MockServer::builder()
        .clock(FixedClock::new(T0))
        .start()
        .await
        .expect("mock");
    let wrong = HmacCredentials::new(PARTNER_TOKEN_ID, "c2VjcmV0").expect("valid");
    let client = Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(wrong))
        .retry(fast_retries())
        .clock(FixedClock::new(T0 + 300))
        .build()
        .expect("client");
    let err = client.list_tokens().await.expect_err("bad signature");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(mock.requests().len(), 1);

    // Skew under the threshold (3 s < 5 s): still no retry.
    let (mock, client) = skewed(T0, T0 - 3_000, fast_retries()).await;
    let wrong = HmacCredentials::new(PARTNER_TOKEN_ID, "c2VjcmV0").expect("valid");
    let mut req = Request::get("/auth/api-tokens")
        .body(Bytes::new())
        .expect("request");
    req.extensions_mut().insert(wrong);
    let resp = client.send(req).await.expect("answered");
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(mock.requests().len(), 1);
    assert!((2_000..=4_000).contains(&client.clock_offset_millis()));
}

#[tokio::test]
async fn the_skew_retry_can_be_switched_off() {
    let retry = RetryConfig {
        retry_skewed_unauthorized: false,
        ..fast_retries()
    };
    let (mock, client) = skewed(T0, T0 - 60_000, retry).await;
    let err = client.list_tokens().await.expect_err("stale timestamp");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(mock.requests().len(), 1);
    // The offset was still learned: the next call is signed right.
    client.list_tokens().await.expect("corrected");
}

#[tokio::test]
async fn cached_responses_and_garbage_dates_do_not_move_the_clock() {
    let (mock, client) = skewed(T0, T0, fast_retries()).await;
    for headers in [
        vec![("date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("age", "12")],
        vec![("date", "not a date")],
        vec![("date", "Sun, 06 Nov 1994 25:49:37 GMT")],
    ] {
        mock.inject(Fault::Respond {
            status: StatusCode::OK,
            headers: headers
                .iter()
                .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
                .collect(),
            body: Bytes::from_static(b"[]"),
        });
        assert!(client.list_tokens().await.expect("decodes").is_empty());
        assert_eq!(client.clock_offset_millis(), 0, "{headers:?}");
    }
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn idempotent_requests_are_retried_on_503_with_a_fresh_signature() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock).build().expect("client");
    mock.inject_times(Fault::Unavailable, 2);
    client.list_tokens().await.expect("third attempt succeeds");
    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].signature_valid, Some(true));
    let ts = timestamps(&mock);
    assert_eq!(ts.len(), 3);
    assert!(ts[0] < ts[1] && ts[1] < ts[2], "fresh timestamps: {ts:?}");
    let sigs: std::collections::HashSet<&HeaderValue> = seen
        .iter()
        .filter_map(|r| r.headers.get("lmts-signature"))
        .collect();
    assert_eq!(sigs.len(), 3, "a new signature per attempt");
}

#[tokio::test]
async fn attempts_are_bounded() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock).build().expect("client");
    mock.inject_times(Fault::Unavailable, 5);
    let err = client.list_tokens().await.expect_err("gives up");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(mock.requests().len(), 3);

    // No retry would start after max_elapsed.
    mock.clear_faults();
    mock.clear_requests();
    let client = builder(&mock)
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(400),
            max_elapsed: Duration::from_millis(50),
            ..fast_retries()
        })
        .build()
        .expect("client");
    mock.inject(Fault::Unavailable);
    assert!(client.list_tokens().await.is_err());
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried_after_they_may_have_been_processed() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock).build().expect("client");
    let order = || Some(Bytes::from_static(br#"{"clientOrderId":"o-1"}"#));
    for fault in [
        Fault::Unavailable,
        Fault::json(StatusCode::BAD_GATEWAY, "{}"),
        Fault::json(StatusCode::GATEWAY_TIMEOUT, "{}"),
    ] {
        mock.clear_requests();
        mock.inject(fault);
        let resp = client
            .request(Method::POST, "/orders", order())
            .await
            .expect("answered");
        assert!(resp.status.is_server_error());
        assert_eq!(mock.requests().len(), 1, "POST not repeated");
    }
    mock.clear_requests();
    mock.inject(Fault::DropConnection);
    let err = client
        .request(Method::POST, "/orders", order())
        .await
        .expect_err("connection lost");
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(mock.requests().len(), 1);

    // The same loss on a GET is retried.
    mock.clear_requests();
    mock.inject(Fault::DropConnection);
    client.list_tokens().await.expect("retried");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn rate_limits_are_retried_for_any_method_after_the_requested_wait() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock).build().expect("client");
    mock.inject(Fault::TooManyRequests {
        retry_after: Some("0".into()),
        body_seconds: None,
    });
    let started = std::time::Instant::now();
    let resp = client
        .request(
            Method::POST,
            "/orders",
            Some(Bytes::from_static(br#"{"clientOrderId":"r-1"}"#)),
        )
        .await
        .expect("answered");
    assert_eq!(resp.status, StatusCode::CREATED);
    assert_eq!(mock.requests().len(), 2);

    // retryAfterSeconds in the body when there is no header.
    mock.inject(Fault::TooManyRequests {
        retry_after: None,
        body_seconds: Some(0.15),
    });
    let started_body = std::time::Instant::now();
    client.list_tokens().await.expect("retried");
    assert!(started_body.elapsed() >= Duration::from_millis(150));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A wait beyond the cap is handed back instead of slept through.
    mock.clear_requests();
    mock.inject(Fault::TooManyRequests {
        retry_after: Some("3600".into()),
        body_seconds: None,
    });
    match client.list_tokens().await {
        Err(Error::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.requests().len(), 1);

    // Garbage Retry-After: ignored, backoff applies.
    mock.clear_requests();
    mock.inject(Fault::TooManyRequests {
        retry_after: Some("soon-ish".into()),
        body_seconds: None,
    });
    client.list_tokens().await.expect("retried after backoff");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock).build().expect("client");
    for status in [
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::CONFLICT,
        StatusCode::UNPROCESSABLE_ENTITY,
    ] {
        mock.clear_requests();
        mock.inject(Fault::json(status, r#"{"message":"no"}"#));
        let err = client.list_tokens().await.expect_err("error status");
        assert_eq!(err.status(), Some(status));
        assert_eq!(mock.requests().len(), 1, "{status}");
    }
}

#[tokio::test]
async fn retries_can_be_switched_off() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock)
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    mock.inject(Fault::Unavailable);
    assert!(client.list_tokens().await.is_err());
    mock.inject(Fault::TooManyRequests {
        retry_after: Some("0".into()),
        body_seconds: None,
    });
    assert!(matches!(
        client.list_tokens().await,
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(mock.requests().len(), 2);
}

/// hyper-util's client over plain TCP.
fn plain_http() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// A transport over the real hyper-util client that records each attempt's body allocation.
#[derive(Clone)]
struct Spy {
    inner: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    calls: Arc<AtomicUsize>,
    bodies: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl tower::Service<Request<Full<Bytes>>> for Spy {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Peek at the body's bytes without consuming the request's body.
        let body = req.body().clone();
        let ptr = futures_util::FutureExt::now_or_never(body.collect())
            .and_then(Result::ok)
            .map_or(0, |c| c.to_bytes().as_ptr() as usize);
        self.bodies.lock().expect("lock").push(ptr);
        tower::Service::call(&mut self.inner, req)
    }
}

#[tokio::test]
async fn retries_share_the_body_and_connect_errors_retry_even_posts() {
    let mock = MockServer::start().await.expect("mock");
    let spy = Spy {
        inner: plain_http(),
        calls: Arc::default(),
        bodies: Arc::default(),
    };
    let client = builder(&mock)
        .build_with_transport(spy.clone())
        .expect("client");
    mock.inject(Fault::TooManyRequests {
        retry_after: Some("0".into()),
        body_seconds: None,
    });
    let body = Bytes::from(vec![b' '; 2048]);
    let resp = client
        .request(Method::POST, "/orders", Some(body.clone()))
        .await
        .expect("answered");
    // The mock refuses the whitespace body as an order, but the point is the body's identity.
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    let ptrs = spy.bodies.lock().expect("lock").clone();
    assert_eq!(ptrs.len(), 2);
    assert_eq!(
        ptrs[0],
        body.as_ptr() as usize,
        "not copied into the first attempt"
    );
    assert_eq!(ptrs[0], ptrs[1], "the retry reuses the same bytes");

    // Nothing listens here: a POST never reached a server, so it is retried.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let spy = Spy {
        inner: plain_http(),
        calls: Arc::default(),
        bodies: Arc::default(),
    };
    let client = Client::builder()
        .base_url(format!("http://{closed}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .retry(fast_retries())
        .build_with_transport(spy.clone())
        .expect("client");
    let err = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert_eq!(spy.calls.load(Ordering::SeqCst), 3);
}

// ---------------------------------------------------------------- timeouts

#[tokio::test]
async fn client_and_per_request_timeouts() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock)
        .retry(RetryConfig::disabled())
        .timeout(Some(Duration::from_millis(100)))
        .build()
        .expect("client");
    mock.inject(Fault::Delay(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    assert!(matches!(
        client.list_tokens().await,
        Err(Error::Timeout(d)) if d == Duration::from_millis(100)
    ));
    assert!(started.elapsed() < Duration::from_secs(2));

    // Per request, overriding a generous client timeout.
    let client = builder(&mock)
        .retry(RetryConfig::disabled())
        .timeout(Some(Duration::from_secs(30)))
        .build()
        .expect("client");
    mock.inject(Fault::Delay(Duration::from_secs(3)));
    let mut req = Request::get("/auth/api-tokens")
        .body(Bytes::new())
        .expect("request");
    req.extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(50)));
    let started = std::time::Instant::now();
    assert!(matches!(
        client.send(req).await,
        Err(Error::Timeout(d)) if d == Duration::from_millis(50)
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_timed_out_post_is_not_retried_but_a_get_is() {
    let mock = MockServer::start().await.expect("mock");
    let client = builder(&mock)
        .timeout(Some(Duration::from_millis(100)))
        .build()
        .expect("client");
    mock.inject(Fault::Delay(Duration::from_secs(3)));
    let err = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect_err("timed out");
    assert!(matches!(err, Error::Timeout(_)));
    assert_eq!(mock.arrivals(), 1);

    mock.inject(Fault::Delay(Duration::from_secs(3)));
    client.list_tokens().await.expect("second attempt answers");
    assert_eq!(mock.arrivals(), 3);
}

/// A transport that never becomes ready, counting the calls it gets (none should come).
#[derive(Clone, Default)]
struct NeverReady {
    calls: Arc<AtomicUsize>,
}

impl tower::Service<Request<Full<Bytes>>> for NeverReady {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Pending
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::new()))))
    }
}

#[tokio::test(start_paused = true)]
async fn a_transport_that_never_gets_ready_times_out_each_attempt() {
    let transport = NeverReady::default();
    let client = Client::builder()
        .base_url("http://127.0.0.1:9")
        .credentials(Credentials::new().with_hmac(hmac()))
        .retry(RetryConfig {
            max_attempts: 1,
            ..fast_retries()
        })
        .timeout(Some(Duration::from_secs(2)))
        .build_with_transport(transport.clone())
        .expect("client");
    let started = tokio::time::Instant::now();
    // Bounded from outside too, so that waiting for readiness without a timeout fails here
    // rather than hanging.
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        client.request(Method::GET, "/orders", None),
    )
    .await
    .expect("the attempt's timeout covers waiting for the transport")
    .expect_err("timed out");
    assert!(
        matches!(err, Error::Timeout(t) if t == Duration::from_secs(2)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(
        transport.calls.load(Ordering::SeqCst),
        0,
        "nothing was sent"
    );
}
