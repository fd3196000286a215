//! The client under faults, against raw servers on 127.0.0.1: an HTTP/2 connection that stops
//! answering, a GOAWAY that keeps only some streams, REFUSED_STREAM, one stream at a time, a cold
//! burst, a poisoned `Date`, a server that always answers 401 with a skewed `Date`, and a revoke
//! whose first answer is lost. No POST is processed twice.
#![cfg(all(feature = "client", feature = "mock"))]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::h2raw::{self, Behaviour};
use http::{Method, StatusCode};
use limitless_auth::client::{Client, ClientBuilder, Error, RetryConfig};
use limitless_auth::{Credentials, HmacCredentials};

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn hmac() -> HmacCredentials {
    HmacCredentials::new("token-1", SECRET).expect("valid")
}

/// A client speaking HTTP/2 with prior knowledge to `addr`, retrying quickly.
fn h2_client(addr: std::net::SocketAddr) -> ClientBuilder {
    Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .http2_only(true)
        .retry(RetryConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..RetryConfig::default()
        })
}

/// On paused time, with the default keep-alive (a PING every 10 s, 10 s to answer) and the
/// default 30 s attempt timeout.
#[tokio::test(start_paused = true)]
async fn an_http2_connection_that_stops_answering_is_abandoned_for_a_new_one() {
    let (addr, seen) = h2raw::serve(|connection| match connection {
        0 => Behaviour::SilentAfter(3),
        _ => Behaviour::Answer,
    })
    .await;
    let client = h2_client(addr).build().expect("client");
    for _ in 0..3 {
        let resp = client
            .request(Method::GET, "/orders", None)
            .await
            .expect("answered");
        assert_eq!(resp.status, StatusCode::OK);
    }
    let started = tokio::time::Instant::now();
    let resp = client
        .request(Method::GET, "/orders", None)
        .await
        .expect("answered on a new connection");
    assert_eq!(resp.status, StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(21),
        "{took:?}: found dead by its unanswered PING (at most 10 s to the next, 10 s to answer), \
         not by the 30 s attempt timeout"
    );
    let processed = seen.processed();
    assert_eq!(processed.len(), 4);
    assert_eq!(
        processed[3].connection, 1,
        "the fourth went over a new connection"
    );
}

/// HTTP/1.1: an attempt that times out takes its connection with it. The retry goes out on a
/// new connection, and the silent one is closed by the client. (On the wall clock: the
/// timeout is the behaviour under test, and a paused clock could fire it while an answer is
/// still on its way through a busy machine's loopback.)
#[tokio::test]
async fn an_http1_attempt_that_times_out_discards_its_connection() {
    use common::raw::{self, Answer};
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    let handler: raw::Handler = std::sync::Arc::new(move |_| {
        // The handler sees each request twice (head, then whole); the third request is the
        // fifth and sixth call.
        match seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            4 | 5 => Answer::Silent,
            _ => Answer::Json(200, "{}".into()),
        }
    });
    let (addr, stats) = raw::serve(handler).await;
    let client = Client::builder()
        .base_url(format!("http://{addr}"))
        .credentials(Credentials::new().with_hmac(hmac()))
        .http2(false)
        .timeout(Some(Duration::from_secs(1)))
        .build()
        .expect("client");
    for _ in 0..2 {
        let resp = client.request(Method::GET, "/orders", None).await;
        assert_eq!(resp.expect("answered").status, StatusCode::OK);
    }
    assert_eq!(stats.accepted(), 1, "kept alive");
    let resp = client.request(Method::GET, "/orders", None).await;
    assert_eq!(resp.expect("answered on retry").status, StatusCode::OK);
    assert_eq!(stats.requests().len(), 4, "the silent one, then its retry");
    assert_eq!(
        stats.accepted(),
        2,
        "the retry went out on a new connection"
    );
    assert!(
        common::eventually(Duration::from_secs(5), || stats.open() == 1).await,
        "the silent connection was closed by the client: {} open",
        stats.open()
    );
}

/// Sends `n` POSTs at once, each with a body naming it; returns their results by name.
async fn post_burst(client: &Client, n: usize) -> HashMap<String, Result<StatusCode, Error>> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let body = Bytes::from(format!(r#"{{"order":"o-{i}"}}"#));
                let r = client
                    .request(Method::POST, "/orders", Some(body.clone()))
                    .await;
                (
                    String::from_utf8_lossy(&body).into_owned(),
                    r.map(|r| r.status),
                )
            })
        })
        .collect();
    let mut out = HashMap::new();
    for call in calls {
        let (name, result) = call.await.expect("join");
        out.insert(name, result);
    }
    out
}

/// Each POST body of `results` processed exactly once by the server.
fn processed_once(seen: &h2raw::Seen, results: &HashMap<String, Result<StatusCode, Error>>) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for p in seen.processed() {
        *count
            .entry(String::from_utf8_lossy(&p.body).into_owned())
            .or_default() += 1;
    }
    for (name, result) in results {
        assert_eq!(
            result.as_ref().ok(),
            Some(&StatusCode::OK),
            "{name}: {result:?}"
        );
        assert_eq!(count.get(name), Some(&1), "{name} processed once");
    }
}

#[tokio::test]
async fn posts_above_a_goaways_last_stream_are_sent_again_and_processed_once() {
    // 30 POSTs on streams 1, 3, …, 59; the server keeps those up to 17 and refuses the rest.
    let (addr, seen) = h2raw::serve(|connection| match connection {
        0 => Behaviour::GoAway {
            requests: 30,
            last: 17,
        },
        _ => Behaviour::Answer,
    })
    .await;
    let client = h2_client(addr).build().expect("client");
    let results = post_burst(&client, 30).await;
    assert_eq!(results.len(), 30);
    processed_once(&seen, &results);
    let first = seen
        .processed()
        .iter()
        .filter(|p| p.connection == 0)
        .count();
    assert_eq!(
        first, 9,
        "streams 1 to 17 were processed on the first connection"
    );
}

#[tokio::test]
async fn a_refused_stream_is_sent_again_whatever_its_method() {
    let (addr, seen) = h2raw::serve(|_| Behaviour::Refuse(1)).await;
    let client = h2_client(addr).build().expect("client");
    let results = post_burst(&client, 1).await;
    processed_once(&seen, &results);
    assert_eq!(seen.streams.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn without_retries_a_refused_stream_says_it_was_not_processed() {
    let (addr, _) = h2raw::serve(|_| Behaviour::Refuse(1)).await;
    let client = h2_client(addr)
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let err = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::NotProcessed(_)), "{err:?}");
    assert!(
        err.is_local() && !err.may_have_been_sent(),
        "safe to send again"
    );
}

#[tokio::test]
async fn one_stream_at_a_time_serves_every_request_once() {
    let (addr, seen) = h2raw::serve(|_| Behaviour::OneAtATime(Duration::from_millis(5))).await;
    let client = h2_client(addr).build().expect("client");
    let results = post_burst(&client, 8).await;
    processed_once(&seen, &results);
}

/// POSTs queued behind `max_concurrent_streams = 1` that time out are reported as maybe sent,
/// not as unsent: hyper keeps one queued request and sends it when a stream frees, after its
/// caller has given up. They are not sent again, and none is processed twice.
#[tokio::test(start_paused = true)]
async fn posts_that_time_out_waiting_for_a_stream_may_have_been_sent_and_are_not_repeated() {
    let (addr, seen) = h2raw::serve(|_| Behaviour::OneAtATime(Duration::from_millis(500))).await;
    let client = h2_client(addr)
        .timeout(Some(Duration::from_millis(100)))
        .build()
        .expect("client");
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let body = Bytes::from(format!(r#"{{"order":"q-{i}"}}"#));
                client.request(Method::POST, "/orders", Some(body)).await
            })
        })
        .collect();
    for call in calls {
        let err = call.await.expect("join").expect_err("timed out");
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
        assert!(err.may_have_been_sent() && !err.is_local(), "{err:?}");
    }
    // Whatever the connection still sends is answered; nothing arrives twice.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut bodies: Vec<Vec<u8>> = seen.processed().into_iter().map(|p| p.body).collect();
    let arrived = bodies.len();
    // The first had the stream; any other that arrived was sent after its caller's timeout,
    // which is why a timeout in the queue cannot be reported as "not sent".
    assert!(
        (2..=3).contains(&arrived),
        "{arrived} processed: a request queued for a stream went out after timing out"
    );
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), arrived, "none processed twice");
}

/// A client of the TLS test server at `addr`, trusting the test CA.
fn tls_client(addr: std::net::SocketAddr) -> ClientBuilder {
    Client::builder()
        .base_url(format!("https://localhost:{}", addr.port()))
        .credentials(Credentials::new().with_hmac(hmac()))
        .tls_config(common::raw::client_tls())
}

#[tokio::test]
async fn a_cold_burst_to_an_http2_only_origin_opens_one_connection() {
    let (addr, accepted) = common::raw::tls_server(&[b"h2"]).await;
    let client = tls_client(addr).http2_only(true).build().expect("client");
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.request(Method::GET, "/orders", None).await })
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await.expect("join").expect("ok").status,
            StatusCode::OK
        );
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one TLS handshake for a hundred requests, none of them warmed up"
    );
}

#[tokio::test]
async fn an_http2_only_client_refuses_an_origin_that_speaks_only_http1_before_sending() {
    let (addr, accepted) = common::raw::tls_server(&[b"http/1.1"]).await;
    let client = tls_client(addr)
        .http2_only(true)
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let err = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect_err("no common protocol");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.is_local() && !err.may_have_been_sent(), "{err:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Offering both, the same origin is spoken to over HTTP/1.1.
    let both = tls_client(addr).build().expect("client");
    let resp = both.request(Method::GET, "/orders", None).await;
    assert_eq!(resp.expect("answered").status, StatusCode::OK);
}

#[tokio::test]
async fn a_certificate_the_client_does_not_trust_is_not_tried_again() {
    let (addr, accepted) = common::raw::tls_server(&[b"h2", b"http/1.1"]).await;
    // The web PKI roots: the test CA is not among them.
    let client = Client::builder()
        .base_url(format!("https://localhost:{}", addr.port()))
        .credentials(Credentials::new().with_hmac(hmac()))
        .build()
        .expect("client");
    let err = client
        .request(Method::GET, "/orders", None)
        .await
        .expect_err("untrusted");
    assert!(matches!(err, Error::Certificate(_)), "{err:?}");
    assert!(err.is_local());
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one attempt"
    );
}

mod against_the_mock {
    use super::*;
    use limitless_auth::mock::{
        Fault, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET,
    };
    use limitless_auth::{FixedClock, IdentityToken};

    /// 2026-03-30T12:00:00.000Z
    const T: i64 = 1_774_872_000_000;

    fn partner() -> HmacCredentials {
        HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
    }

    /// A mock and a client on one clock standing at `T`, the client holding the partner's
    /// HMAC token and an identity token the mock minted to expire `ttl` from then.
    async fn at_t_with_identity(ttl: Duration) -> (MockServer, Client) {
        let clock = FixedClock::new(T);
        let mock = MockServer::builder()
            .clock(clock.clone())
            .start()
            .await
            .expect("mock");
        let token = mock.mint_identity(PARTNER_IDENTITY, ttl).expect("minted");
        let client = Client::builder()
            .base_url(mock.base_url())
            .clock(clock)
            .credentials(
                Credentials::new()
                    .with_hmac(partner())
                    .with_identity(IdentityToken::new(token).expect("valid")),
            )
            .build()
            .expect("client");
        (mock, client)
    }

    fn date(text: &'static str) -> Fault {
        Fault::Respond {
            status: StatusCode::OK,
            headers: vec![
                (http::header::DATE, http::HeaderValue::from_static(text)),
                (
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                ),
            ],
            body: Bytes::from_static(b"[]"),
        }
    }

    #[tokio::test]
    async fn one_wild_date_neither_redates_signatures_nor_expires_a_valid_identity_token() {
        // An identity token valid for the next hour.
        let (mock, client) = at_t_with_identity(Duration::from_secs(3600)).await;
        mock.inject(date("Fri, 01 Jan 2100 00:00:00 GMT"));
        client.list_tokens().await.expect("answered");
        assert_eq!(
            client.clock_offset_millis(),
            0,
            "one wild Date is not believed"
        );
        client
            .capabilities()
            .await
            .expect("the identity token is still valid");
        client
            .list_tokens()
            .await
            .expect("signed with the right time");
        let seen = mock.requests();
        assert!(
            seen[1..].iter().all(|r| r.status == Some(StatusCode::OK)),
            "{seen:?}"
        );
    }

    /// A plausible but wrong `Date` (50 minutes ahead, within the one-hour bound) is used to
    /// sign until the next answer corrects it, but never to judge an identity token expired:
    /// only an offset two answers agreed on does that.
    #[tokio::test]
    async fn one_plausible_wrong_date_expires_no_token_and_is_corrected_by_the_next_answer() {
        let (mock, client) = at_t_with_identity(Duration::from_secs(30 * 60)).await;
        // 2026-03-30T12:50:00Z
        mock.inject(date("Mon, 30 Mar 2026 12:50:00 GMT"));
        client.list_tokens().await.expect("answered");
        assert!(
            client.clock_offset_millis() > 49 * 60_000,
            "applied to signing"
        );
        client
            .capabilities()
            .await
            .expect("30 minutes left by every clock two answers agree on");
        // Signed 50 minutes ahead: refused, then re-signed with the offset the 401 measured.
        client.list_tokens().await.expect("re-signed once");
        let statuses: Vec<_> = mock.requests().iter().map(|r| r.status).collect();
        let ok = Some(StatusCode::OK);
        assert_eq!(
            statuses,
            [ok, ok, Some(StatusCode::UNAUTHORIZED), ok],
            "one refusal, corrected"
        );
        assert_eq!(client.clock_offset_millis(), 0);
    }

    #[tokio::test]
    async fn a_revoke_whose_answer_was_lost_is_done_not_failed() {
        let mock = MockServer::start().await.expect("mock");
        let privy = Client::builder()
            .base_url(mock.base_url())
            .credentials(
                Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("t")),
            )
            .build()
            .expect("client");
        let doomed = privy
            .derive_token(Some("doomed"), None)
            .await
            .expect("derived");
        let client = Client::builder()
            .base_url(mock.base_url())
            .credentials(Credentials::new().with_hmac(partner()))
            .retry(RetryConfig {
                initial_backoff: Duration::from_millis(1),
                ..RetryConfig::default()
            })
            .build()
            .expect("client");
        // The first DELETE is processed; its answer never comes.
        mock.inject(Fault::ProcessThenDrop);
        let message = client
            .revoke_token(&doomed.token_id)
            .await
            .expect("revoked, whatever became of the first answer");
        assert_eq!(message, Client::ALREADY_REVOKED);
        let deletes: Vec<_> = mock
            .requests()
            .into_iter()
            .filter(|r| r.method == Method::DELETE)
            .collect();
        assert_eq!(deletes.len(), 2);
        assert_eq!(
            deletes[0].status,
            Some(StatusCode::OK),
            "the first was processed"
        );
        assert_eq!(deletes[1].status, Some(StatusCode::BAD_REQUEST));
        // A token that never existed is still an error.
        let err = client.revoke_token("never-was").await.expect_err("unknown");
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    }

    #[tokio::test]
    async fn a_server_that_always_answers_401_with_a_skewed_date_costs_one_re_sign() {
        let ahead =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
        let handler: common::raw::Handler = std::sync::Arc::new(move |_req| {
            common::raw::Answer::JsonWith(
                401,
                vec![("date", ahead.clone())],
                r#"{"message":"Invalid signature"}"#.into(),
            )
        });
        let (addr, stats) = common::raw::serve(handler).await;
        let client = Client::builder()
            .base_url(format!("http://{addr}"))
            .credentials(Credentials::new().with_hmac(partner()))
            .build()
            .expect("client");
        let post = || client.request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")));
        assert_eq!(
            post().await.expect("answered").status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            stats.requests().len(),
            2,
            "signed once more with the measured offset"
        );
        assert_eq!(
            post().await.expect("answered").status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            stats.requests().len(),
            3,
            "already signed with that offset: not sent again"
        );
    }

    #[tokio::test]
    async fn a_privy_request_refused_401_is_sent_again_once_with_a_fresh_token() {
        let ahead =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
        let handler: common::raw::Handler = std::sync::Arc::new(move |_req| {
            common::raw::Answer::JsonWith(
                401,
                vec![("date", ahead.clone())],
                r#"{"message":"Requires Privy authentication"}"#.into(),
            )
        });
        let (addr, stats) = common::raw::serve(handler).await;
        let client = Client::builder()
            .base_url(format!("http://{addr}"))
            .identity_source(|| async { Ok(IdentityToken::new("fresh")?) })
            .build()
            .expect("client");
        let err = client.capabilities().await.expect_err("refused");
        assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(
            stats.requests().len(),
            2,
            "no timestamp to re-sign: one more send, after one refresh"
        );
    }
}
