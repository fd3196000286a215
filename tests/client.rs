//! The client against the embedded mock server on loopback.
#![cfg(all(feature = "client", feature = "mock"))]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use limitless_auth::Scope;
use limitless_auth::client::{Client, ClientBuilder, Error, RetryConfig};
use limitless_auth::mock::{
    Fault, LEGACY_API_KEY, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET,
    USER_IDENTITY,
};
use limitless_auth::{ApiKey, AuthMode, Credentials, HmacCredentials, IdentityToken, PolicyError};

fn partner_hmac() -> HmacCredentials {
    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
}

fn everything(identity: &str) -> Credentials {
    Credentials::new()
        .with_hmac(partner_hmac())
        .with_identity(IdentityToken::new(identity).expect("valid"))
        .with_api_key(ApiKey::new(LEGACY_API_KEY).expect("valid"))
}

fn builder(mock: &MockServer) -> ClientBuilder {
    Client::builder()
        .base_url(mock.base_url())
        .retry(RetryConfig::disabled())
        .timeout(Some(Duration::from_secs(10)))
}

fn client(mock: &MockServer, creds: Credentials) -> Client {
    builder(mock).credentials(creds).build().expect("client")
}

#[tokio::test]
async fn capabilities_as_partner_and_as_user_without_a_row() {
    let mock = MockServer::start().await.expect("mock");
    let caps = client(&mock, everything(PARTNER_IDENTITY))
        .capabilities()
        .await
        .expect("partner");
    assert_eq!(caps.partner_profile_id, Some(42));
    assert!(caps.token_management_enabled);
    for s in [
        Scope::Trading,
        Scope::AccountCreation,
        Scope::DelegatedSigning,
        Scope::Withdrawal,
    ] {
        assert!(caps.allows(&s), "{s}");
    }
    let caps = client(&mock, everything(USER_IDENTITY))
        .capabilities()
        .await
        .expect("user");
    assert_eq!(caps.partner_profile_id, Some(7));
    assert!(caps.token_management_enabled);
    assert_eq!(caps.allowed_scopes, vec![Scope::Trading]);

    let legacy = MockServer::builder()
        .legacy_no_row_default(true)
        .start()
        .await
        .expect("mock");
    let caps = client(&legacy, everything(USER_IDENTITY))
        .capabilities()
        .await
        .expect("older default");
    assert!(!caps.token_management_enabled);
    assert!(caps.allowed_scopes.is_empty());
    assert!(!caps.allows(&Scope::Trading));
}

#[tokio::test]
async fn privy_only_routes_never_see_hmac_or_api_key_headers() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, everything(PARTNER_IDENTITY));
    c.capabilities().await.expect("capabilities");
    let token = c
        .derive_token(Some("bot"), Some(&[Scope::Trading]))
        .await
        .expect("derive");
    assert_eq!(token.scopes, vec![Scope::Trading]);
    let r = c
        .request(
            Method::POST,
            "/portfolio/withdrawal-addresses",
            Some(Bytes::from_static(br#"{"address":"0xabc"}"#)),
        )
        .await
        .expect("sent");
    assert_eq!(r.status, StatusCode::CREATED);
    let r = c
        .request(
            Method::DELETE,
            "/portfolio/withdrawal-addresses/0xabc",
            None,
        )
        .await
        .expect("sent");
    assert_eq!(r.status, StatusCode::OK);
    // A caller that sets HMAC headers itself, and even asks for HMAC, gets nowhere.
    let mut req = Request::get("/auth/api-tokens/capabilities")
        .header("lmts-api-key", "forged")
        .header("x-api-key", "forged")
        .body(Bytes::new())
        .expect("request");
    req.extensions_mut().insert(AuthMode::Privy);
    assert_eq!(c.send(req).await.expect("sent").status, StatusCode::OK);

    let seen = mock.requests();
    assert_eq!(seen.len(), 5);
    for r in &seen {
        let hmac_or_key = r
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("lmts-") || k == "x-api-key");
        assert!(!hmac_or_key, "{} {}", r.method, r.target);
        assert_eq!(r.mode, Some(AuthMode::Privy));
        assert_eq!(
            r.headers["identity"],
            format!("Bearer {PARTNER_IDENTITY}").as_str()
        );
        assert!(r.status.is_some_and(|s| s.is_success()));
    }
}

#[tokio::test]
async fn no_identity_token_fails_locally_and_sends_nothing() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, Credentials::new().with_hmac(partner_hmac()));
    match c.capabilities().await {
        Err(Error::Policy(PolicyError::MissingCredential { method, path, .. })) => {
            assert_eq!(method, Method::GET);
            assert_eq!(path, "/auth/api-tokens/capabilities");
        }
        other => panic!("{other:?}"),
    }
    let err = c.derive_token(None, None).await.expect_err("no identity");
    assert!(err.is_local());
    // Forcing HMAC onto the Privy-only route is refused too.
    let mut req = Request::get("/auth/api-tokens/capabilities")
        .body(Bytes::new())
        .expect("request");
    req.extensions_mut().insert(AuthMode::Hmac);
    assert!(matches!(
        c.send(req).await,
        Err(Error::Policy(PolicyError::ModeNotAccepted { .. }))
    ));
    assert_eq!(mock.requests().len(), 0);
}

#[tokio::test]
async fn derive_then_list_and_revoke_with_the_derived_credentials() {
    let mock = MockServer::start().await.expect("mock");
    let privy = client(
        &mock,
        Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid")),
    );
    let mut derived = Vec::new();
    for label in ["first", "second"] {
        derived.push(
            privy
                .derive_token(
                    Some(label),
                    Some(&[Scope::Trading, Scope::DelegatedSigning]),
                )
                .await
                .expect("derive"),
        );
    }
    let token = &derived[0];
    assert_eq!(token.api_key, token.token_id);
    assert_eq!(token.profile.id, 42);
    let derive_record = &mock.requests()[0];
    assert_eq!(
        derive_record.body.as_ref(),
        br#"{"label":"first","scopes":["trading","delegated_signing"]}"#
    );
    assert_eq!(derive_record.headers["content-type"], "application/json");

    let hmac = client(
        &mock,
        Credentials::new().with_hmac(token.credentials().expect("valid secret")),
    );
    let list = hmac.list_tokens().await.expect("list");
    let ids: Vec<&str> = list.iter().map(|t| t.token_id.as_str()).collect();
    assert!(ids.contains(&derived[0].token_id.as_str()));
    assert!(ids.contains(&derived[1].token_id.as_str()));
    assert!(ids.contains(&PARTNER_TOKEN_ID));
    let first = list
        .iter()
        .find(|t| t.token_id == derived[0].token_id)
        .expect("listed");
    assert_eq!(first.label.as_deref(), Some("first"));
    assert!(first.last_used_at.is_some(), "the list call used it");
    let list_record = mock.requests().pop().expect("recorded");
    assert_eq!(list_record.signature_valid, Some(true));
    assert!(!list_record.headers.contains_key("content-type"));
    assert!(!list_record.headers.contains_key("identity"));

    // Revoke the second token with the first; the id travels percent-encoded as one segment.
    let msg = hmac
        .revoke_token(&derived[1].token_id)
        .await
        .expect("revoke");
    assert_eq!(msg, "API token revoked successfully");
    let revoke_record = mock.requests().pop().expect("recorded");
    assert_eq!(
        revoke_record.target,
        format!(
            "/auth/api-tokens/{}",
            percent_encoding::utf8_percent_encode(
                &derived[1].token_id,
                percent_encoding::NON_ALPHANUMERIC
            )
        )
    );
    assert!(revoke_record.body.is_empty());
    let again = hmac
        .revoke_token(&derived[1].token_id)
        .await
        .expect_err("already revoked");
    assert_eq!(again.status(), Some(StatusCode::BAD_REQUEST));

    // The revoked token no longer authenticates.
    let revoked = client(
        &mock,
        Credentials::new().with_hmac(derived[1].credentials().expect("valid")),
    );
    let err = revoked.list_tokens().await.expect_err("revoked");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let list = hmac.list_tokens().await.expect("list");
    assert!(!list.iter().any(|t| t.token_id == derived[1].token_id));
}

#[tokio::test]
async fn server_errors_are_typed_with_message_status_and_body() {
    let mock = MockServer::start().await.expect("mock");
    // 401: a wrong secret.
    let wrong = HmacCredentials::new(PARTNER_TOKEN_ID, "c2VjcmV0").expect("valid");
    let c = client(&mock, Credentials::new().with_hmac(wrong));
    match c.list_tokens().await {
        Err(Error::Status {
            status,
            message,
            body,
        }) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(message.as_deref(), Some("Invalid signature"));
            assert_eq!(body.0.as_ref(), br#"{"message":"Invalid signature"}"#);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.requests()[0].signature_valid, Some(false));

    // 403: a scope the user's profile may not grant.
    let user = client(&mock, everything(USER_IDENTITY));
    let err = user
        .derive_token(None, Some(&[Scope::Withdrawal]))
        .await
        .expect_err("not allowed");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    assert_eq!(
        err.to_string(),
        "403 Forbidden: Requested scopes are not allowed for this profile"
    );

    // 400 with a NestJS array message.
    let partner = client(&mock, everything(PARTNER_IDENTITY));
    mock.inject(Fault::json(
        StatusCode::BAD_REQUEST,
        r#"{"message":["label must be a string","scopes must be an array"],"error":"Bad Request","statusCode":400}"#,
    ));
    let err = partner.derive_token(None, None).await.expect_err("400");
    assert_eq!(
        err.to_string(),
        "400 Bad Request: label must be a string; scopes must be an array"
    );

    // 429 with Retry-After, retries off: the wait is reported.
    mock.inject(Fault::TooManyRequests {
        retry_after: Some("7".into()),
        body_seconds: None,
    });
    match partner.list_tokens().await {
        Err(Error::RateLimited {
            retry_after,
            message,
            ..
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert_eq!(message.as_deref(), Some("Too many requests"));
        }
        other => panic!("{other:?}"),
    }
    mock.inject(Fault::TooManyRequests {
        retry_after: None,
        body_seconds: Some(1.5),
    });
    match partner.list_tokens().await {
        Err(Error::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_millis(1500)));
        }
        other => panic!("{other:?}"),
    }

    // 503.
    mock.inject(Fault::Unavailable);
    let err = partner.list_tokens().await.expect_err("503");
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        err.to_string(),
        "503 Service Unavailable: Service unavailable"
    );

    // A non-JSON error body from a proxy.
    mock.inject(Fault::text(
        StatusCode::BAD_GATEWAY,
        "<html><body>upstream connect error</body></html>",
    ));
    let err = partner.capabilities().await.expect_err("502");
    assert_eq!(
        err.to_string(),
        "502 Bad Gateway: <html><body>upstream connect error</body></html>"
    );

    // Malformed JSON in a 200: a decode error that keeps the raw body.
    mock.inject(Fault::json(StatusCode::OK, r#"{"partnerProfileId": 42,"#));
    match partner.capabilities().await {
        Err(Error::Decode {
            status,
            expected,
            problem,
            body,
            ..
        }) => {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(expected, "PartnerCapabilities");
            assert_eq!(problem, "truncated JSON");
            assert_eq!(body.0.as_ref(), br#"{"partnerProfileId": 42,"#);
        }
        other => panic!("{other:?}"),
    }

    // An unknown scope is kept, not a failure.
    mock.inject(Fault::json(
        StatusCode::OK,
        r#"{"partnerProfileId":42,"tokenManagementEnabled":true,"allowedScopes":["trading","market_making"]}"#,
    ));
    let caps = partner.capabilities().await.expect("decodes");
    assert_eq!(caps.allowed_scopes[1], Scope::Other("market_making".into()));

    // A 2xx is never turned into an error: generic send hands back any status.
    mock.inject(Fault::json(StatusCode::ACCEPTED, "not json at all"));
    let r = partner
        .request(Method::GET, "/markets/active", None)
        .await
        .expect("sent");
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body.as_ref(), b"not json at all");
    assert!(r.clone().error_for_status().is_ok());
}

#[tokio::test]
async fn generic_send_returns_status_headers_and_body_and_guards_the_origin() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, everything(PARTNER_IDENTITY));
    let r = c
        .request(
            Method::POST,
            "/orders",
            Some(Bytes::from_static(br#"{"clientOrderId":"a-1"}"#)),
        )
        .await
        .expect("sent");
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.headers["content-type"], "application/json");
    let v: serde_json::Value = r.json().expect("json");
    assert_eq!(v["clientOrderId"], "a-1");
    let rec = mock.requests().pop().expect("recorded");
    assert_eq!(rec.mode, Some(AuthMode::Hmac));
    assert_eq!(
        rec.headers["user-agent"],
        concat!("limitless-auth/", env!("CARGO_PKG_VERSION"))
    );

    // An absolute URL on the same origin is fine; another origin fails locally.
    let same = Request::get(format!("{}/markets/active", mock.base_url()))
        .body(Bytes::new())
        .expect("request");
    assert_eq!(c.send(same).await.expect("sent").status, StatusCode::OK);
    let before = mock.requests().len();
    let foreign = Request::get("http://127.0.0.2:9/orders")
        .body(Bytes::new())
        .expect("request");
    assert!(matches!(
        c.send(foreign).await,
        Err(Error::ForeignOrigin { .. })
    ));
    let other_port = Request::get(format!("http://127.0.0.1:{}/x", mock.addr().port() + 1))
        .body(Bytes::new())
        .expect("request");
    assert!(matches!(
        c.send(other_port).await,
        Err(Error::ForeignOrigin { .. })
    ));
    assert_eq!(mock.requests().len(), before);

    // The legacy key on an ordinary route, when it is all the client holds.
    let legacy = client(
        &mock,
        Credentials::new().with_api_key(ApiKey::new(LEGACY_API_KEY).expect("valid")),
    );
    let r = legacy
        .request(Method::GET, "/auth/api-tokens", None)
        .await
        .expect("sent");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        mock.requests().pop().expect("recorded").mode,
        Some(AuthMode::ApiKey)
    );
}

#[tokio::test]
async fn local_argument_checks_send_nothing() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, everything(PARTNER_IDENTITY));
    let long = "x".repeat(129);
    assert!(matches!(
        c.derive_token(Some(&long), None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.derive_token(None, Some(&[Scope::DelegatedSigning])).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        c.revoke_token("").await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        c.request(Method::GET, "no-slash", None).await,
        Err(Error::InvalidRequest(_))
    ));
    assert_eq!(mock.requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_futures_outlive_their_arguments_and_run_only_when_awaited() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, everything(PARTNER_IDENTITY));
    // The path is read when the future is made; the future borrows only the client.
    let pending = {
        let path = String::from("/markets/active");
        c.request(Method::GET, &path, None)
    };
    let sent = {
        let req = Request::get("/markets/active")
            .body(Bytes::new())
            .expect("request");
        c.send(req)
    };
    // A request spawned after them runs on another worker and reaches the server: work a
    // future started on its own would have had the same time to arrive.
    let control = tokio::spawn({
        let c = c.clone();
        async move { c.request(Method::GET, "/markets/active", None).await }
    });
    assert!(
        control
            .await
            .expect("join")
            .expect("response")
            .status
            .is_success()
    );
    tokio::task::yield_now().await;
    assert_eq!(
        mock.arrivals(),
        1,
        "only the spawned request arrived: nothing is sent before a poll"
    );
    let (a, b) = tokio::join!(pending, sent);
    assert!(a.expect("response").status.is_success());
    assert!(b.expect("response").status.is_success());
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn clones_share_one_client_across_tasks() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, everything(PARTNER_IDENTITY));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"clientOrderId":"c-{i}"}}"#);
            c.request(Method::POST, "/orders", Some(Bytes::from(body)))
                .await
                .map(|r| r.status)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("sent"), StatusCode::CREATED);
    }
    let seen = mock.requests();
    assert_eq!(seen.len(), 16);
    assert!(seen.iter().all(|r| r.signature_valid == Some(true)));
}

/// Every client future can be spawned onto a multi-threaded runtime.
#[test]
fn client_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let c = Client::builder()
        .base_url("http://127.0.0.1:9")
        .build()
        .expect("client");
    send(&c.capabilities());
    send(&c.derive_token(Some("l"), Some(&[Scope::Trading])));
    send(&c.list_tokens());
    send(&c.revoke_token("t"));
    send(&c.request(Method::GET, "/x", None));
    send(&c.send(Request::new(Bytes::new())));
    send(&c.json::<serde_json::Value>(Method::POST, "/x", Some(&1)));
}
