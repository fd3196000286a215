//! Identity tokens that expire and credentials that change at run time: expiry judged on the
//! corrected clock, swaps under load, single-flight refresh from an identity source, and
//! token rotation failing at each step.
#![cfg(all(feature = "client", feature = "mock"))]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::BoxError;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use limitless_auth::FixedClock;
use limitless_auth::client::{Client, ClientBuilder, Error, RetryConfig, RotationStep};
use limitless_auth::mock::{
    Fault, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET,
};
use limitless_auth::{
    Credentials, HmacCredentials, IdentityLayer, IdentityToken, PolicyError, SharedCredentials,
};
use tower::{Layer as _, ServiceExt as _};

/// 2026-03-30T12:00:00.000Z
const T: i64 = 1_774_872_000_000;

fn partner_hmac() -> HmacCredentials {
    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
}

fn quick_retries() -> RetryConfig {
    RetryConfig {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..RetryConfig::default()
    }
}

async fn mock_at(millis: i64) -> (MockServer, FixedClock) {
    let clock = FixedClock::new(millis);
    let mock = MockServer::builder()
        .clock(clock.clone())
        .start()
        .await
        .expect("mock");
    (mock, clock)
}

fn builder(mock: &MockServer) -> ClientBuilder {
    Client::builder()
        .base_url(mock.base_url())
        .retry(quick_retries())
}

#[tokio::test]
async fn expiry_is_judged_on_the_clock_corrected_by_the_measured_offset() {
    let (mock, server_clock) = mock_at(T).await;
    let jwt = mock
        .mint_identity(PARTNER_IDENTITY, Duration::from_secs(30))
        .expect("minted");
    let token = IdentityToken::new(jwt.clone()).expect("a JWT");
    assert_eq!(
        token.expires_at().expect("exp").as_str(),
        "2026-03-30T12:00:30.000Z"
    );

    // The local clock runs five minutes ahead: by it the token has expired, by the server's
    // it has not. Once two answers agree on the offset, the client judges by the server's
    // time.
    let local = FixedClock::new(T + 300_000);
    let client = builder(&mock)
        .clock(local.clone())
        .credentials(
            Credentials::new()
                .with_hmac(partner_hmac())
                .with_identity(token.clone()),
        )
        .build()
        .expect("client");
    let err = client.capabilities().await.expect_err("looks expired");
    assert!(
        matches!(&err, Error::Policy(PolicyError::IdentityExpired { expired_at, .. })
            if expired_at == "2026-03-30T12:00:30.000Z"),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), 0, "nothing was sent");
    client
        .list_tokens()
        .await
        .expect("HMAC, measures the offset");
    assert!(client.clock_offset_millis() < -250_000);
    let err = client.capabilities().await.expect_err("one answer");
    assert!(
        matches!(&err, Error::Policy(PolicyError::IdentityExpired { .. })),
        "{err:?}"
    );
    // A second answer, a second later by both clocks, agrees.
    server_clock.advance_millis(1_000);
    local.advance_millis(1_000);
    client.list_tokens().await.expect("measures again");
    let caps = client
        .capabilities()
        .await
        .expect("valid by the server's clock");
    assert_eq!(caps.partner_profile_id, Some(42));

    // The reverse: the server's time passes the expiry while the local clock lags behind.
    server_clock.set_millis(T + 31_000);
    local.set_millis(T + 31_000 - 300_000);
    for _ in 0..2 {
        client.list_tokens().await.expect("measures again");
        server_clock.advance_millis(1_000);
        local.advance_millis(1_000);
    }
    let before = mock.requests().len();
    let err = client
        .capabilities()
        .await
        .expect_err("expired by the server's clock");
    assert!(
        matches!(err, Error::Policy(PolicyError::IdentityExpired { .. })),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), before, "nothing was sent");

    // The mock itself refuses the expired token: sent by a client whose clock is an hour
    // behind and has measured nothing yet, so that it cannot tell.
    let behind = builder(&mock)
        .retry(RetryConfig::disabled())
        .clock(FixedClock::new(T - 3_600_000))
        .credentials(Credentials::new().with_identity(IdentityToken::new(jwt).expect("jwt")))
        .build()
        .expect("client");
    let err = behind
        .capabilities()
        .await
        .expect_err("expired at the server");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(err.to_string(), "401 Unauthorized: Identity token expired");
}

#[tokio::test]
async fn a_layer_refuses_an_expired_token_by_its_own_clock() {
    let token = IdentityToken::new(
        "eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjE3NzQ4NzIwMzB9.c2ln", // exp 2026-03-30T12:00:30Z
    )
    .expect("JWT");
    let svc = IdentityLayer::new(token)
        .with_clock(FixedClock::new(T + 30_000))
        .layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
            panic!("nothing may be sent");
            #[allow(unreachable_code)]
            Ok::<_, std::convert::Infallible>(())
        }));
    let req = Request::get("/auth/api-tokens/capabilities")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let err = svc.oneshot(req).await.expect_err("expired");
    assert_eq!(
        err.to_string(),
        "GET /auth/api-tokens/capabilities: the identity token expired at \
         2026-03-30T12:00:30.000Z; refresh it (LIMITLESS_IDENTITY_TOKEN); nothing was sent"
    );
}

/// A swap changes exactly the attempts signed after it: the transport swaps the credentials
/// while it handles the first attempt, which it answers 503, so the retry of that very request
/// is signed after the swap, and so is the next request.
#[tokio::test(start_paused = true)]
async fn a_swap_changes_the_attempts_signed_after_it_and_no_earlier_one() {
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner_hmac()));
    let log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let transport = {
        let (log, shared) = (log.clone(), shared.clone());
        tower::service_fn(move |req: Request<Full<Bytes>>| {
            let key = req.headers()["lmts-api-key"]
                .to_str()
                .expect("ascii")
                .to_owned();
            let mut log = log.lock().expect("lock");
            let first = log.is_empty();
            log.push(key);
            if first {
                let next = HmacCredentials::new("rotated-token", PARTNER_TOKEN_SECRET);
                shared.update(|c| c.clone().with_hmac(next.clone().expect("valid")));
                log.push("swap".to_owned());
            }
            let status = if first { 503 } else { 200 };
            let resp = http::Response::builder()
                .status(status)
                .body(Full::new(Bytes::new()))
                .expect("response");
            std::future::ready(Ok::<_, std::convert::Infallible>(resp))
        })
    };
    let client = Client::builder()
        .base_url("http://127.0.0.1:9")
        .retry(quick_retries())
        .credentials(shared)
        .build_with_transport(transport)
        .expect("client");
    for _ in 0..2 {
        let resp = client
            .send(
                Request::get("/auth/api-tokens")
                    .body(Bytes::new())
                    .expect("req"),
            )
            .await
            .expect("answered");
        assert_eq!(resp.status, StatusCode::OK);
    }
    assert_eq!(
        *log.lock().expect("lock"),
        [PARTNER_TOKEN_ID, "swap", "rotated-token", "rotated-token"]
    );
}

/// Under concurrent swaps, every attempt carries one token, whole, that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_never_give_an_attempt_a_mixed_or_invalid_token() {
    let mock = MockServer::builder()
        .record_requests(true)
        .start()
        .await
        .expect("mock");
    // A second valid token of the partner.
    let deriver = builder(&mock)
        .credentials(
            Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("t")),
        )
        .build()
        .expect("client");
    let other = deriver
        .derive_token(Some("second"), None)
        .await
        .expect("derived")
        .credentials()
        .expect("valid");
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner_hmac()));
    let client = builder(&mock)
        .retry(RetryConfig {
            max_attempts: 20,
            ..quick_retries()
        })
        .credentials(shared.clone())
        .build()
        .expect("client");
    // Every seventh request is answered 503 first, so that retries cross the swaps too.
    mock.inject_every(7, Fault::Unavailable);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (shared, done, other) = (shared.clone(), done.clone(), other.clone());
        tokio::spawn(async move {
            let mut swaps = 0u32;
            while !done.load(Ordering::SeqCst) && swaps < 100_000 {
                let next = if swaps.is_multiple_of(2) {
                    other.clone()
                } else {
                    partner_hmac()
                };
                shared.update(|c| c.clone().with_hmac(next.clone()));
                swaps += 1;
                tokio::task::yield_now().await;
            }
            swaps
        })
    };
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let req = Request::get("/auth/api-tokens")
                    .header("x-request", i.to_string())
                    .body(Bytes::new())
                    .expect("request");
                client.send(req).await
            })
        })
        .collect();
    for call in calls {
        let resp = call.await.expect("join").expect("answered");
        assert_eq!(resp.status, StatusCode::OK);
    }
    done.store(true, Ordering::SeqCst);
    let swaps = swapper.await.expect("swapper");
    assert!(
        swaps > 10,
        "the credentials changed while requests were in flight"
    );
    let mut keys_by_request: HashMap<String, Vec<String>> = HashMap::new();
    for rec in mock
        .requests()
        .iter()
        .filter(|r| r.path() == "/auth/api-tokens")
    {
        let Some(i) = rec.headers.get("x-request") else {
            continue;
        };
        if rec.status == Some(StatusCode::SERVICE_UNAVAILABLE) {
            // A faulted attempt is answered before verification; its key still counts.
        } else {
            assert_eq!(
                rec.signature_valid,
                Some(true),
                "one token, whole and valid"
            );
        }
        keys_by_request
            .entry(i.to_str().expect("ascii").to_owned())
            .or_default()
            .push(
                rec.headers["lmts-api-key"]
                    .to_str()
                    .expect("ascii")
                    .to_owned(),
            );
    }
    assert_eq!(keys_by_request.len(), 1000);
    let retried = keys_by_request.values().filter(|k| k.len() > 1).count();
    assert!(retried > 50, "{retried} requests were retried");
    let used: std::collections::HashSet<&String> = keys_by_request.values().flatten().collect();
    let expected: std::collections::HashSet<String> =
        [PARTNER_TOKEN_ID.to_owned(), other.token_id().to_owned()].into();
    assert_eq!(
        used,
        expected.iter().collect(),
        "both tokens, and only they"
    );
}

/// An identity source that counts its calls and answers the partner's identity after 50 ms:
/// under paused time, every caller reaches the refresh meanwhile, since tokio moves its clock
/// only when no task can run.
fn slow_source(builder: ClientBuilder, calls: &Arc<AtomicUsize>) -> ClientBuilder {
    let calls = calls.clone();
    builder.identity_source(move || {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(IdentityToken::new(PARTNER_IDENTITY)?)
        }
    })
}

/// Under paused time every caller reaches the refresh before the source's 50 ms pass.
#[tokio::test(start_paused = true)]
async fn identity_refresh_is_single_flight_and_errors_are_typed() {
    let mock = MockServer::start().await.expect("mock");
    let calls = Arc::new(AtomicUsize::new(0));
    let client = slow_source(builder(&mock), &calls).build().expect("client");
    let all: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.capabilities().await })
        })
        .collect();
    for call in all {
        assert_eq!(
            call.await.expect("join").expect("ok").partner_profile_id,
            Some(42)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh for 100 calls");
    assert!(client.credentials().load().identity.is_some());

    // A Privy-route 401: refreshed once, sent once more.
    mock.inject(Fault::json(
        StatusCode::UNAUTHORIZED,
        r#"{"message":"Requires Privy authentication"}"#,
    ));
    client
        .capabilities()
        .await
        .expect("answered after a refresh");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // HMAC requests never call the source.
    let failing = builder(&mock)
        .credentials(Credentials::new().with_hmac(partner_hmac()))
        .identity_source(|| async { Err::<IdentityToken, BoxError>("login failed".into()) })
        .build()
        .expect("client");
    failing.list_tokens().await.expect("HMAC");
    let before = mock.requests().len();
    let err = failing.capabilities().await.expect_err("no identity");
    assert!(matches!(err, Error::IdentitySource(_)), "{err:?}");
    assert!(err.is_local());
    assert!(err.to_string().contains("login failed"), "{err}");
    assert_eq!(mock.requests().len(), before, "nothing was sent");
}

#[tokio::test]
async fn a_token_within_the_margin_of_expiry_is_refreshed_before_sending() {
    let (mock, _) = mock_at(T).await;
    let soon = mock
        .mint_identity(PARTNER_IDENTITY, Duration::from_secs(20))
        .expect("minted");
    let fresh = mock
        .mint_identity(PARTNER_IDENTITY, Duration::from_secs(3600))
        .expect("minted");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let client = builder(&mock)
        .clock(FixedClock::new(T))
        .credentials(Credentials::new().with_identity(IdentityToken::new(soon).expect("jwt")))
        .identity_refresh_margin(Duration::from_secs(60))
        .identity_source(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let fresh = fresh.clone();
            async move { Ok(IdentityToken::new(fresh)?) }
        })
        .build()
        .expect("client");
    client.capabilities().await.expect("ok");
    client.capabilities().await.expect("ok");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refreshed once, then fresh"
    );
    let sent = mock.requests();
    let identity = |i: usize| {
        sent[i].headers["identity"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    assert_eq!(identity(0), identity(1));
    let now = client.credentials().load();
    let expires = now.identity.as_ref().and_then(IdentityToken::expires_at);
    assert!(expires.expect("a JWT with exp").unix_millis() > T + 60_000);
}

/// Twenty callers find the same token due at once: one refresh, and the others use its
/// result instead of refreshing again (the token they found is no longer the one held).
#[tokio::test(start_paused = true)]
async fn a_token_due_for_many_callers_at_once_is_refreshed_once() {
    let (mock, _) = mock_at(T).await;
    let soon = mock
        .mint_identity(PARTNER_IDENTITY, Duration::from_secs(20))
        .expect("minted");
    let calls = Arc::new(AtomicUsize::new(0));
    let client = builder(&mock)
        .clock(FixedClock::new(T))
        .credentials(Credentials::new().with_identity(IdentityToken::new(soon).expect("jwt")))
        .identity_refresh_margin(Duration::from_secs(60));
    let client = slow_source(client, &calls).build().expect("client");
    let all: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.capabilities().await })
        })
        .collect();
    for call in all {
        call.await.expect("join").expect("answered");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh for twenty");
}

/// A client holding the partner's seeded HMAC token and its identity.
fn rotating(mock: &MockServer) -> Client {
    builder(mock)
        // No bound at all: must not overflow.
        .rotation_proof_timeout(Duration::MAX)
        .credentials(
            Credentials::new()
                .with_hmac(partner_hmac())
                .with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("t")),
        )
        .build()
        .expect("client")
}

/// Whether `creds` can list the tokens.
/// The id of the HMAC token `client` signs with now.
fn token_in_use(client: &Client) -> Option<String> {
    let creds = client.credentials().load();
    creds.hmac.as_ref().map(|h| h.token_id().to_owned())
}

async fn works(mock: &MockServer, creds: HmacCredentials) -> bool {
    let client = builder(mock)
        .retry(RetryConfig::disabled())
        .credentials(Credentials::new().with_hmac(creds))
        .build()
        .expect("client");
    client.list_tokens().await.is_ok()
}

#[tokio::test]
async fn rotation_switches_and_revokes_the_old_token() {
    let mock = MockServer::start().await.expect("mock");
    let client = rotating(&mock);
    let clone = client.clone();
    // The new token is not valid everywhere at once: two 401s before it is.
    mock.inject(Fault::Delay(Duration::ZERO)); // the derive
    mock.inject_times(
        Fault::json(StatusCode::UNAUTHORIZED, r#"{"message":"Unauthorized"}"#),
        2,
    );
    let rotation = client
        .rotate_token(Some("rotated"), None)
        .await
        .expect("rotated");
    assert!(rotation.revoke_error.is_none());
    assert_eq!(
        rotation.previous_token_id.as_deref(),
        Some(PARTNER_TOKEN_ID)
    );
    let new = rotation.token.credentials().expect("valid");
    // Every clone uses the new token.
    assert_eq!(token_in_use(&clone), Some(rotation.token.token_id.clone()));
    let listed = clone.list_tokens().await.expect("the new token works");
    assert!(listed.iter().all(|t| t.token_id != PARTNER_TOKEN_ID));
    assert!(works(&mock, new).await);
    assert!(
        !works(&mock, partner_hmac()).await,
        "the old token is revoked"
    );
}

/// The old token's revoke is processed but its answer is lost: the retry meets "already
/// revoked", which is the revoke done, not a failed one.
#[tokio::test]
async fn rotation_whose_revoke_answer_was_lost_reports_no_revoke_error() {
    let mock = MockServer::start().await.expect("mock");
    let client = rotating(&mock);
    mock.inject_times(Fault::Delay(Duration::ZERO), 2); // the derive, the proof
    mock.inject(Fault::ProcessThenDrop); // the revoke
    let rotation = client
        .rotate_token(Some("rotated"), None)
        .await
        .expect("rotated");
    assert!(
        rotation.revoke_error.is_none(),
        "{:?}",
        rotation.revoke_error
    );
    let deletes: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::DELETE)
        .map(|r| r.status)
        .collect();
    assert_eq!(
        deletes,
        [Some(StatusCode::OK), Some(StatusCode::BAD_REQUEST)],
        "processed, then found revoked"
    );
    assert!(!works(&mock, partner_hmac()).await, "the old token is gone");
}

#[tokio::test]
async fn rotation_failing_before_the_switch_leaves_the_old_token_working() {
    // Deriving fails (no identity token): nothing derived, nothing revoked.
    let mock = MockServer::start().await.expect("mock");
    let no_identity = builder(&mock)
        .credentials(Credentials::new().with_hmac(partner_hmac()))
        .build()
        .expect("client");
    let err = no_identity
        .rotate_token(None, None)
        .await
        .expect_err("no identity");
    assert!(
        matches!(
            &err,
            Error::Rotation {
                step: RotationStep::Derive,
                new_token_id: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_local());
    assert!(works(&mock, partner_hmac()).await);

    // The API refuses the derive.
    let client = rotating(&mock);
    mock.inject(Fault::json(
        StatusCode::FORBIDDEN,
        r#"{"message":"Token management is not enabled"}"#,
    ));
    let err = client.rotate_token(None, None).await.expect_err("refused");
    assert!(
        matches!(
            err,
            Error::Rotation {
                step: RotationStep::Derive,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(token_in_use(&client).as_deref(), Some(PARTNER_TOKEN_ID));
    assert!(works(&mock, partner_hmac()).await);

    // Proving fails (the API refuses the new token for good): still the old token.
    mock.inject(Fault::Delay(Duration::ZERO)); // the derive
    mock.inject(Fault::json(
        StatusCode::FORBIDDEN,
        r#"{"message":"Forbidden"}"#,
    ));
    let err = client
        .rotate_token(None, None)
        .await
        .expect_err("not proven");
    let Error::Rotation {
        step: RotationStep::Prove,
        new_token_id: Some(new_id),
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(err.to_string().contains(new_id.as_str()), "{err}");
    assert!(!err.is_local(), "the derive was sent");
    assert_eq!(token_in_use(&client).as_deref(), Some(PARTNER_TOKEN_ID));
    assert!(works(&mock, partner_hmac()).await);

    // 401s past the proof timeout: still the old token.
    let impatient = builder(&mock)
        .rotation_proof_timeout(Duration::from_millis(250))
        .credentials(client.credentials().load().as_ref().clone())
        .build()
        .expect("client");
    mock.inject(Fault::Delay(Duration::ZERO));
    mock.inject_times(
        Fault::json(StatusCode::UNAUTHORIZED, r#"{"message":"Unauthorized"}"#),
        100,
    );
    let err = impatient
        .rotate_token(None, None)
        .await
        .expect_err("timed out");
    assert!(
        matches!(
            err,
            Error::Rotation {
                step: RotationStep::Prove,
                ..
            }
        ),
        "{err:?}"
    );
    mock.clear_faults();
    assert!(works(&mock, partner_hmac()).await);
}

#[tokio::test]
async fn a_failed_revoke_keeps_the_new_token_in_use_and_reports_the_old_one() {
    let mock = MockServer::start().await.expect("mock");
    let client = rotating(&mock);
    mock.inject(Fault::Delay(Duration::ZERO)); // derive
    mock.inject(Fault::Delay(Duration::ZERO)); // prove
    mock.inject(Fault::json(
        StatusCode::BAD_REQUEST,
        r#"{"message":"API token not found or already revoked"}"#,
    ));
    let rotation = client.rotate_token(None, None).await.expect("switched");
    let err = rotation.revoke_error.as_ref().expect("the revoke failed");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(token_in_use(&client), Some(rotation.token.token_id.clone()));
    assert!(
        works(&mock, partner_hmac()).await,
        "the old token was not revoked"
    );
    assert!(works(&mock, rotation.token.credentials().expect("valid")).await);
}

/// `AuthLayer` reads swapped credentials on the next request through the very same service
/// instance, and through clones made before the swap.
#[tokio::test]
async fn the_layer_reads_swapped_credentials_on_the_next_request() {
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner_hmac()));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let sink = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let key = req
            .headers()
            .get("lmts-api-key")
            .map(|v| v.as_bytes().to_vec());
        log.lock().expect("lock").push(key);
        std::future::ready(Ok::<_, std::convert::Infallible>(()))
    });
    let mut auth = limitless_auth::AuthLayer::new(shared.clone()).layer(sink);
    let mut auth_clone = auth.clone();
    one_get(&mut auth).await;
    let other = HmacCredentials::new("rotated-token", PARTNER_TOKEN_SECRET).expect("valid");
    shared.store(Credentials::new().with_hmac(other));
    one_get(&mut auth).await;
    one_get(&mut auth_clone).await;
    let seen = seen.lock().expect("lock").clone();
    let old = Some(PARTNER_TOKEN_ID.as_bytes().to_vec());
    let new = Some(b"rotated-token".to_vec());
    assert_eq!(seen, [old, new.clone(), new]);
}

/// `GET /orders` through `svc`, which must succeed.
async fn one_get<S>(svc: &mut S)
where
    S: tower::Service<Request<Full<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    let req = Request::get("/orders")
        .body(Full::new(Bytes::new()))
        .expect("request");
    svc.ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("signed");
}

/// The client's own steps decide with the table its stack decides with: a route a custom table
/// makes Privy-only gets a token from the identity source.
#[tokio::test]
async fn the_identity_source_follows_a_custom_route_table() {
    let mock = MockServer::start().await.expect("mock");
    let table = limitless_auth::RouteTable::limitless()
        .with_route(
            Some(http::Method::GET),
            "/markets/active",
            limitless_auth::Accepts::PRIVY,
        )
        .expect("valid");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let client = builder(&mock)
        .routes(table)
        .identity_source(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok(IdentityToken::new(PARTNER_IDENTITY)?) }
        })
        .build()
        .expect("client");
    let resp = client
        .request(http::Method::GET, "/markets/active", None)
        .await
        .expect("sent");
    assert!(resp.status.is_success());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let seen = mock.requests();
    assert_eq!(
        seen[0].headers["identity"],
        format!("Bearer {PARTNER_IDENTITY}").as_str()
    );
}
