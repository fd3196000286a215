//! The reqwest front door against the embedded mock (plain HTTP on 127.0.0.1): the same
//! decisions as the tower layers, signatures over the target reqwest sends, streams refused
//! where they would have to be signed, and every attempt below a retry middleware signed afresh.
#![cfg(all(feature = "reqwest", feature = "mock"))]

mod common;

use std::collections::HashSet;

use http::StatusCode;
use limitless_auth::mock::{
    Fault, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET, RecordedRequest,
};
use limitless_auth::reqwest::{AuthMiddleware, ScopeError};
use limitless_auth::{
    Credentials, HmacCredentials, IdentityToken, PolicyError, Scope, SharedCredentials,
    SigningError,
};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

fn partner() -> HmacCredentials {
    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
}

fn both() -> Credentials {
    Credentials::new()
        .with_hmac(partner())
        .with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid"))
}

/// The middleware, authenticating the requests to `mock`.
fn auth(mock: &MockServer, creds: impl Into<SharedCredentials>) -> AuthMiddleware {
    AuthMiddleware::new(creds).origin(&mock.base_url().parse().expect("the mock's URL"))
}

/// reqwest with no proxy: the tests' traffic stays on loopback whatever the environment says.
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

fn client(mock: &MockServer, creds: impl Into<SharedCredentials>) -> ClientWithMiddleware {
    ClientBuilder::new(plain()).with(auth(mock, creds)).build()
}

/// Whether `rec` carries a signature of the partner token that verifies, computed
/// independently of the crate.
fn verifies(rec: &RecordedRequest) -> bool {
    let text = |n: &str| rec.headers[n].to_str().unwrap_or_default().to_owned();
    rec.headers["lmts-api-key"] == PARTNER_TOKEN_ID
        && common::signature_matches(
            PARTNER_TOKEN_SECRET,
            &text("lmts-timestamp"),
            rec.method.as_str(),
            &rec.target,
            &rec.body,
            &text("lmts-signature"),
        )
}

/// The refusal a request failed with.
fn refusal(err: &reqwest_middleware::Error) -> &(dyn std::error::Error + 'static) {
    match err {
        reqwest_middleware::Error::Middleware(e) => e.as_ref(),
        other => panic!("not a refusal: {other:?}"),
    }
}

#[tokio::test]
async fn capabilities_with_both_credentials_carry_the_identity_token_only() {
    let mock = MockServer::start().await.expect("mock");
    let resp = client(&mock, both())
        .get(format!("{}/auth/api-tokens/capabilities", mock.base_url()))
        .header("lmts-signature", "set by the caller")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = mock.requests();
    let h = &seen[0].headers;
    assert_eq!(h["identity"], format!("Bearer {PARTNER_IDENTITY}").as_str());
    assert!(
        h.keys()
            .all(|k| !k.as_str().starts_with("lmts-") && k != "x-api-key")
    );
}

#[tokio::test]
async fn positions_and_a_512_byte_order_verify() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, both());
    let resp = c
        .get(format!("{}/portfolio/positions", mock.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let order = format!(r#"{{"order":"{}"}}"#, "x".repeat(500));
    assert_eq!(order.len(), 512);
    let resp = c
        .post(format!("{}/orders", mock.base_url()))
        .header("content-type", "application/json")
        .body(order.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    for rec in &seen {
        assert_eq!(
            rec.signature_valid,
            Some(true),
            "{} {}",
            rec.method,
            rec.target
        );
        assert!(verifies(rec));
    }
    assert_eq!(seen[1].body.as_ref(), order.as_bytes());
}

#[tokio::test]
async fn a_query_is_signed_as_reqwest_encodes_it_on_the_wire() {
    let mock = MockServer::start().await.expect("mock");
    let resp = client(&mock, both())
        .get(format!(
            "{}/portfolio/positions?q=a b&name=é",
            mock.base_url()
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = mock.requests();
    assert_eq!(seen[0].target, "/portfolio/positions?q=a%20b&name=%C3%A9");
    assert_eq!(seen[0].signature_valid, Some(true));
    assert!(verifies(&seen[0]));
}

#[tokio::test]
async fn a_stream_is_refused_where_it_would_be_signed_and_passes_where_not() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, both());
    let err = c
        .post(format!("{}/orders", mock.base_url()))
        .body(reqwest::Body::wrap(String::from(r#"{"side":"BUY"}"#)))
        .send()
        .await
        .expect_err("refused");
    assert!(
        matches!(
            refusal(&err).downcast_ref::<SigningError>(),
            Some(SigningError::StreamingBody { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("buffer it"), "{err}");
    assert_eq!(mock.arrivals(), 0, "nothing was sent");
    // A Privy route is not signed: the stream goes as it is.
    let resp = c
        .post(format!(
            "{}/portfolio/withdrawal-addresses",
            mock.base_url()
        ))
        .body(reqwest::Body::wrap(String::from(r#"{"address":"0xab"}"#)))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body.as_ref(), br#"{"address":"0xab"}"#);
}

#[tokio::test]
async fn a_missing_identity_is_refused_with_nothing_sent() {
    let mock = MockServer::start().await.expect("mock");
    let err = client(&mock, Credentials::new().with_hmac(partner()))
        .get(format!("{}/auth/api-tokens/capabilities", mock.base_url()))
        .send()
        .await
        .expect_err("refused");
    assert!(matches!(
        refusal(&err).downcast_ref::<PolicyError>(),
        Some(PolicyError::MissingCredential { .. })
    ));
    assert_eq!(
        err.to_string(),
        "GET /auth/api-tokens/capabilities accepts Privy only, but no Privy identity token \
         (LIMITLESS_IDENTITY_TOKEN) is configured; nothing was sent"
    );
    assert_eq!(mock.arrivals(), 0);
}

#[tokio::test]
async fn a_token_known_to_lack_a_scope_is_refused_as_by_the_client() {
    let mock = MockServer::start().await.expect("mock");
    let no_trading = partner().with_scopes([Scope::AccountCreation]);
    let err = client(&mock, Credentials::new().with_hmac(no_trading))
        .post(format!("{}/orders", mock.base_url()))
        .body(r#"{"side":"BUY"}"#)
        .send()
        .await
        .expect_err("refused");
    assert!(matches!(
        refusal(&err).downcast_ref::<PolicyError>(),
        Some(PolicyError::MissingScope {
            scope: Scope::Trading,
            ..
        })
    ));
    assert_eq!(mock.arrivals(), 0);
}

fn guarded(
    mock: &MockServer,
    creds: impl Into<SharedCredentials>,
    deny: Scope,
) -> ClientWithMiddleware {
    ClientBuilder::new(plain())
        .with(auth(mock, creds).deny_scopes([deny]))
        .build()
}

/// How many requests reached `path` on the mock.
fn count(mock: &MockServer, path: &str) -> usize {
    mock.requests().iter().filter(|r| r.path() == path).count()
}

#[tokio::test]
async fn denied_scopes_are_learned_once_single_flight_and_kept() {
    let mock = MockServer::start().await.expect("mock");
    // The seeded token holds trading, account_creation and delegated_signing.
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner()));
    let bot = guarded(&mock, shared.clone(), Scope::Withdrawal);
    let url = format!("{}/portfolio/positions", mock.base_url());
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (bot, url) = (bot.clone(), url.clone());
            tokio::spawn(async move { bot.get(url).send().await })
        })
        .collect();
    for call in calls {
        let resp = call.await.expect("join").expect("allowed");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(count(&mock, "/auth/api-tokens"), 1, "learned once");
    assert_eq!(count(&mock, "/portfolio/positions"), 20);
    assert!(
        mock.requests().iter().all(verifies),
        "learning request included"
    );
    let mut kept = shared
        .load()
        .hmac
        .as_ref()
        .and_then(|h| h.scopes())
        .map(<[Scope]>::to_vec);
    if let Some(k) = kept.as_mut() {
        k.sort();
    }
    assert_eq!(
        kept,
        Some(vec![
            Scope::Trading,
            Scope::AccountCreation,
            Scope::DelegatedSigning
        ]),
        "the scopes are kept with the token"
    );
}

#[tokio::test]
async fn a_token_holding_a_denied_scope_sends_nothing_but_the_learning_request() {
    let mock = MockServer::start().await.expect("mock");
    let strict = guarded(
        &mock,
        Credentials::new().with_hmac(partner()),
        Scope::DelegatedSigning,
    );
    for _ in 0..2 {
        let err = strict
            .post(format!("{}/orders", mock.base_url()))
            .body(r#"{"side":"BUY"}"#)
            .send()
            .await
            .expect_err("denied");
        assert_eq!(
            refusal(&err).to_string(),
            format!(
                "the HMAC token …{} holds the delegated_signing scope, which this middleware \
                 denies; nothing was sent",
                &PARTNER_TOKEN_ID[PARTNER_TOKEN_ID.len() - 4..]
            )
        );
        assert!(matches!(
            refusal(&err).downcast_ref::<ScopeError>(),
            Some(ScopeError::Denied {
                scope: Scope::DelegatedSigning,
                ..
            })
        ));
    }
    assert_eq!(mock.arrivals(), 1, "only the learning request, once");

    // Privy requests are not HMAC requests: not guarded.
    let mixed = guarded(&mock, both(), Scope::DelegatedSigning);
    let resp = mixed
        .get(format!("{}/auth/api-tokens/capabilities", mock.base_url()))
        .send()
        .await
        .expect("Privy");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(mock.arrivals(), 2);
}

#[tokio::test]
async fn scopes_that_cannot_be_learned_fail_closed() {
    let mock = MockServer::start().await.expect("mock");
    let blind = guarded(
        &mock,
        Credentials::new().with_hmac(partner()),
        Scope::Withdrawal,
    );
    mock.inject(Fault::json(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"message":"boom"}"#,
    ));
    let err = blind
        .post(format!("{}/orders", mock.base_url()))
        .body(r#"{"side":"BUY"}"#)
        .send()
        .await
        .expect_err("closed");
    let Some(ScopeError::Unknown { source, .. }) = refusal(&err).downcast_ref::<ScopeError>()
    else {
        panic!("not Unknown: {err:?}");
    };
    assert_eq!(
        source.to_string(),
        "GET /auth/api-tokens answered 500 Internal Server Error"
    );
    assert_eq!(mock.arrivals(), 1, "only the failed learning request");

    // A token the profile does not list.
    let stranger = HmacCredentials::new("not-a-token", PARTNER_TOKEN_SECRET).expect("valid");
    let err = guarded(
        &mock,
        Credentials::new().with_hmac(stranger),
        Scope::Withdrawal,
    )
    .get(format!("{}/portfolio/positions", mock.base_url()))
    .send()
    .await
    .expect_err("closed");
    assert!(matches!(
        refusal(&err).downcast_ref::<ScopeError>(),
        Some(ScopeError::Unknown { .. })
    ));
    assert_eq!(count(&mock, "/portfolio/positions"), 0);

    // Scopes declared with the token: nothing to learn.
    let declared = partner().with_scopes([Scope::Trading]);
    let resp = guarded(
        &mock,
        Credentials::new().with_hmac(declared),
        Scope::Withdrawal,
    )
    .get(format!("{}/portfolio/positions", mock.base_url()))
    .send()
    .await
    .expect("allowed");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        count(&mock, "/auth/api-tokens"),
        2,
        "no third learning request"
    );
}

#[tokio::test]
async fn caller_set_authentication_headers_are_stripped() {
    let mock = MockServer::start().await.expect("mock");
    let resp = client(&mock, Credentials::new().with_hmac(partner()))
        .get(format!("{}/auth/api-tokens", mock.base_url()))
        .header("lmts-api-key", "forged")
        .header("lmts-timestamp", "forged")
        .header("lmts-whatever", "forged")
        .header("identity", "Bearer forged")
        .header("x-api-key", "forged")
        .header("x-kept", "kept")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = mock.requests();
    let h = &seen[0].headers;
    assert!(
        h.values()
            .all(|v| v.as_bytes() != b"forged" && v.as_bytes() != b"Bearer forged")
    );
    assert!(!h.contains_key("identity") && !h.contains_key("x-api-key"));
    assert_eq!(h["x-kept"], "kept");
    assert!(verifies(&seen[0]));
}

/// A second token of the partner, derived through the middleware on the Privy-only route.
async fn derive(mock: &MockServer) -> HmacCredentials {
    let derived = client(mock, both())
        .post(format!("{}/auth/api-tokens/derive", mock.base_url()))
        .body(r#"{"label":"second"}"#)
        .send()
        .await
        .expect("sent")
        .bytes()
        .await
        .expect("body");
    let derived: serde_json::Value = serde_json::from_slice(&derived).expect("JSON");
    HmacCredentials::new(
        derived["tokenId"].as_str().expect("tokenId"),
        derived["secret"].as_str().expect("secret"),
    )
    .expect("valid")
}

#[tokio::test]
async fn a_credential_swap_takes_effect_on_the_next_request() {
    let mock = MockServer::start().await.expect("mock");
    let second = derive(&mock).await;
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner()));
    let c = client(&mock, shared.clone());
    let list = || c.get(format!("{}/auth/api-tokens", mock.base_url())).send();
    assert_eq!(list().await.expect("sent").status(), StatusCode::OK);
    shared.store(Credentials::new().with_hmac(second.clone()));
    assert_eq!(list().await.expect("sent").status(), StatusCode::OK);
    let keys: Vec<_> = mock
        .requests()
        .iter()
        .filter(|r| r.path() == "/auth/api-tokens")
        .map(|r| {
            r.headers["lmts-api-key"]
                .to_str()
                .expect("ascii")
                .to_owned()
        })
        .collect();
    assert_eq!(keys, [PARTNER_TOKEN_ID, second.token_id()]);
}

/// A middleware below the front door that records whether each authentication header it sees
/// is marked sensitive, then sends the request on.
#[derive(Clone, Default)]
struct Inspect(std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Inspect {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        for (name, value) in req.headers() {
            if name.as_str().starts_with("lmts-") || name == "identity" {
                let seen = (name.as_str().to_owned(), value.is_sensitive());
                self.0.lock().expect("lock").push(seen);
            }
        }
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn every_authentication_header_is_marked_sensitive() {
    let mock = MockServer::start().await.expect("mock");
    let inspect = Inspect::default();
    let c = ClientBuilder::new(plain())
        .with(auth(&mock, both()))
        .with(inspect.clone())
        .build();
    for path in ["/auth/api-tokens/capabilities", "/auth/api-tokens"] {
        c.get(format!("{}{path}", mock.base_url()))
            .send()
            .await
            .expect("sent");
    }
    let seen = inspect.0.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        4,
        "identity, then the three lmts-* headers: {seen:?}"
    );
    assert!(seen.iter().all(|(_, sensitive)| *sensitive), "{seen:?}");
}

#[test]
fn debug_shows_no_secret() {
    let m = AuthMiddleware::new(both());
    let shown = format!("{m:?} {m:#?}");
    for secret in [PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET, PARTNER_IDENTITY] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

/// A clock that moves a second forward each time it is read.
#[derive(Clone)]
struct Stepping(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl limitless_auth::Clock for Stepping {
    fn now_millis(&self) -> i64 {
        self.0.fetch_add(1_000, std::sync::atomic::Ordering::SeqCst)
    }
}

/// A client whose middlewares are `retry` then `auth`, or the other way round.
fn with_retries(mock: &MockServer, retry_above: bool) -> ClientWithMiddleware {
    use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
    let policy = ExponentialBackoff::builder()
        .retry_bounds(
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(20),
        )
        .build_with_max_retries(3);
    let retry = RetryTransientMiddleware::new_with_policy(policy);
    // A clock a second later at every reading: attempts signed afresh carry distinct
    // timestamps, however fast they follow each other.
    let stepping = Stepping(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
        limitless_auth::Clock::now_millis(&limitless_auth::SystemClock),
    )));
    let auth = auth(mock, Credentials::new().with_hmac(partner())).with_clock(stepping);
    let builder = ClientBuilder::new(plain());
    if retry_above {
        builder.with(retry).with(auth).build()
    } else {
        builder.with(auth).with(retry).build()
    }
}

#[tokio::test]
async fn below_a_retry_middleware_every_attempt_is_signed_afresh() {
    let mock = MockServer::start().await.expect("mock");
    mock.inject_times(Fault::Unavailable, 2);
    let resp = with_retries(&mock, true)
        .get(format!("{}/auth/api-tokens", mock.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = mock.requests();
    assert_eq!(seen.len(), 3, "503, 503, 200");
    assert!(seen.iter().all(verifies), "every attempt verifies");
    let stamps: HashSet<_> = seen
        .iter()
        .map(|r| r.headers["lmts-timestamp"].clone())
        .collect();
    assert_eq!(stamps.len(), 3, "three distinct timestamps");

    // The wrong order: every attempt resends the first one's headers.
    mock.clear_requests();
    mock.inject_times(Fault::Unavailable, 2);
    with_retries(&mock, false)
        .get(format!("{}/auth/api-tokens", mock.base_url()))
        .send()
        .await
        .expect("sent");
    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    let stamps: HashSet<_> = seen
        .iter()
        .map(|r| r.headers["lmts-timestamp"].clone())
        .collect();
    assert_eq!(stamps.len(), 1, "the same timestamp three times, ageing");
}

#[tokio::test]
async fn an_offset_learned_from_date_applies_when_asked_for() {
    let mock = MockServer::start().await.expect("mock");
    // The server's clock is 90 s ahead: outside the 30 s window.
    mock.set_clock_offset_millis(90_000);
    let learning = ClientBuilder::new(plain())
        .with(auth(&mock, Credentials::new().with_hmac(partner())).learn_clock_offset(true))
        .build();
    let list = || {
        learning
            .get(format!("{}/auth/api-tokens", mock.base_url()))
            .send()
    };
    assert_eq!(
        list().await.expect("sent").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        list().await.expect("sent").status(),
        StatusCode::OK,
        "signed with the server's time"
    );
    let fixed = client(&mock, Credentials::new().with_hmac(partner()));
    let resp = fixed
        .get(format!("{}/auth/api-tokens", mock.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "not learned unless asked"
    );
}

#[tokio::test]
async fn requests_to_another_origin_pass_through_untouched() {
    let limitless = MockServer::start().await.expect("mock");
    // Same host, another port: another origin.
    let other = MockServer::start().await.expect("mock");
    let c = client(&limitless, both());
    for mock in [&limitless, &other] {
        c.get(format!("{}/auth/api-tokens", mock.base_url()))
            .header("lmts-api-key", "the caller's own")
            .send()
            .await
            .expect("sent");
    }
    let ours = &limitless.requests()[0].headers;
    assert!(verifies(&limitless.requests()[0]), "{ours:?}");
    let theirs = &other.requests()[0].headers;
    assert_eq!(theirs["lmts-api-key"], "the caller's own");
    assert!(
        ["lmts-timestamp", "lmts-signature", "identity", "x-api-key"]
            .iter()
            .all(|h| !theirs.contains_key(*h)),
        "{theirs:?}"
    );

    // The default origin is the real API's: the mock is another origin.
    ClientBuilder::new(plain())
        .with(AuthMiddleware::new(both()))
        .build()
        .get(format!("{}/auth/api-tokens/capabilities", other.base_url()))
        .send()
        .await
        .expect("sent");
    let seen = &other.requests()[1].headers;
    assert!(!seen.contains_key("identity") && !seen.contains_key("lmts-api-key"));
}

/// A gateway below the middleware that removes the prefix `/x` from the path before the
/// request goes on to the API.
struct Gateway;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Gateway {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let path = req.url().path().strip_prefix("/x").map(str::to_owned);
        if let Some(path) = path {
            req.url_mut().set_path(&path);
        }
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn a_gateway_prefix_is_classified_signed_as_asked_and_used_to_learn_scopes() {
    let mock = MockServer::start().await.expect("mock");
    let unsigned = limitless_auth::RoutePrefix::new("/x")
        .expect("valid")
        .unsigned();
    let c = ClientBuilder::new(plain())
        .with(auth(&mock, both()).deny_scopes([Scope::Withdrawal]))
        .with(Gateway)
        .build();
    // Classified by the route after the prefix: Privy only.
    let resp = c
        .get(format!(
            "{}/x/auth/api-tokens/capabilities",
            mock.base_url()
        ))
        .with_extension(unsigned.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    // Signed without the prefix, which the gateway strips; the scopes learned through it too.
    let resp = c
        .get(format!("{}/x/portfolio/positions", mock.base_url()))
        .with_extension(unsigned)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = mock.requests();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/auth/api-tokens/capabilities",
            "/auth/api-tokens",
            "/portfolio/positions"
        ]
    );
    assert!(seen[0].headers.contains_key("identity"));
    assert!(seen[1..].iter().all(verifies));

    // A signed prefix (the default) covers what the gateway strips: the API refuses it.
    let resp = c
        .get(format!("{}/x/portfolio/positions", mock.base_url()))
        .with_extension(limitless_auth::RoutePrefix::new("/x").expect("valid"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_custom_table_decides() {
    let mock = MockServer::start().await.expect("mock");
    let table = limitless_auth::RouteTable::limitless()
        .with_route(
            Some(http::Method::GET),
            "/portfolio/positions",
            limitless_auth::Accepts::PRIVY,
        )
        .expect("valid");
    let c = ClientBuilder::new(plain())
        .with(
            AuthMiddleware::with_table(both(), table)
                .origin(&mock.base_url().parse().expect("url")),
        )
        .build();
    c.get(format!("{}/portfolio/positions", mock.base_url()))
        .send()
        .await
        .expect("sent");
    let h = &mock.requests()[0].headers;
    assert_eq!(h["identity"], format!("Bearer {PARTNER_IDENTITY}").as_str());
    assert!(!h.contains_key("lmts-api-key"));
}

#[tokio::test]
async fn an_expired_identity_token_and_a_flagged_body_are_refused_with_nothing_sent() {
    let mock = MockServer::start().await.expect("mock");
    let token = mock
        .mint_identity(PARTNER_IDENTITY, std::time::Duration::from_secs(60))
        .expect("minted");
    let later = limitless_auth::FixedClock::new(mock.now_millis() + 120_000);
    let c = ClientBuilder::new(plain())
        .with(
            auth(
                &mock,
                Credentials::new().with_identity(IdentityToken::new(token).expect("valid")),
            )
            .with_clock(later),
        )
        .build();
    let err = c
        .get(format!("{}/auth/api-tokens/capabilities", mock.base_url()))
        .send()
        .await
        .expect_err("expired");
    assert!(matches!(
        refusal(&err).downcast_ref::<PolicyError>(),
        Some(PolicyError::IdentityExpired { .. })
    ));

    // A body field that needs a scope the token lacks.
    let creation_only = partner().with_scopes([Scope::AccountCreation]);
    let err = client(&mock, Credentials::new().with_hmac(creation_only))
        .post(format!("{}/profiles/partner-accounts", mock.base_url()))
        .body(r#"{"displayName":"bot","createServerWallet":true}"#)
        .send()
        .await
        .expect_err("flagged");
    assert!(matches!(
        refusal(&err).downcast_ref::<PolicyError>(),
        Some(PolicyError::MissingScope {
            scope: Scope::DelegatedSigning,
            ..
        })
    ));
    assert_eq!(mock.arrivals(), 0);
}

#[tokio::test]
async fn an_empty_query_is_signed_as_sent() {
    let mock = MockServer::start().await.expect("mock");
    let resp = client(&mock, Credentials::new().with_hmac(partner()))
        .get(format!("{}/portfolio/positions?", mock.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = mock.requests();
    assert_eq!(seen[0].target, "/portfolio/positions?");
    assert!(verifies(&seen[0]));
}

/// Below the middleware: stores `to` into `shared` when the first scope-learning request
/// passes, as a rotation might while the scopes are learned.
struct SwapWhileLearning {
    shared: SharedCredentials,
    to: std::sync::Mutex<Option<Credentials>>,
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for SwapWhileLearning {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if req.url().path() == "/auth/api-tokens"
            && let Some(to) = self.to.lock().expect("lock").take()
        {
            self.shared.store(to);
        }
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn a_swap_while_the_scopes_are_learned_applies_to_the_request() {
    let mock = MockServer::start().await.expect("mock");
    let second = derive(&mock).await;
    mock.clear_requests();
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner()));
    let swap = SwapWhileLearning {
        shared: shared.clone(),
        to: std::sync::Mutex::new(Some(Credentials::new().with_hmac(second.clone()))),
    };
    let c = ClientBuilder::new(plain())
        .with(auth(&mock, shared.clone()).deny_scopes([Scope::Withdrawal]))
        .with(swap)
        .build();
    let resp = c
        .get(format!("{}/portfolio/positions", mock.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let seen: Vec<(String, String)> = mock
        .requests()
        .iter()
        .map(|r| {
            let key = r.headers["lmts-api-key"]
                .to_str()
                .expect("ascii")
                .to_owned();
            (r.path().to_owned(), key)
        })
        .collect();
    let (first, second) = (PARTNER_TOKEN_ID.to_owned(), second.token_id().to_owned());
    assert_eq!(
        seen,
        [
            ("/auth/api-tokens".to_owned(), first),
            ("/auth/api-tokens".to_owned(), second.clone()),
            ("/portfolio/positions".to_owned(), second),
        ],
        "the new token's scopes learned, and the request sent with it"
    );
}
