//! The scope-aware route policy: the route table's gaps closed, tokens that lack a scope caught
//! locally (and answered the same way by the mock when the scopes are unknown), least privilege
//! with denied scopes, and the CLI's scope variables.
#![cfg(all(feature = "client", feature = "mock"))]

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use limitless_auth::ScopeRequirement;
use limitless_auth::client::{Client, Error, RetryConfig};
use limitless_auth::mock::{
    Fault, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET,
};
use limitless_auth::{
    Accepts, ApiKey, AuthMode, Credentials, HmacCredentials, IdentityToken, PolicyError,
    RouteTable, Scope,
};

fn partner() -> HmacCredentials {
    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
}

fn client(mock: &MockServer, creds: Credentials) -> Client {
    Client::builder()
        .base_url(mock.base_url())
        .retry(RetryConfig::disabled())
        .credentials(creds)
        .build()
        .expect("client")
}

async fn post(c: &Client, path: &str, body: &'static str) -> Result<StatusCode, Error> {
    c.request(
        Method::POST,
        path,
        Some(Bytes::from_static(body.as_bytes())),
    )
    .await
    .map(|r| r.status)
}

#[test]
fn the_three_gaps_in_the_route_table_are_closed() {
    let t = RouteTable::limitless();
    assert_eq!(
        t.accepts(&Method::POST, "/portfolio/redeem"),
        Accepts::PRIVY | Accepts::HMAC
    );
    for (method, path) in [
        (Method::POST, "/auth/api-keys"),
        (Method::DELETE, "/auth/api-keys"),
        (Method::DELETE, "/auth/api-keys/lmts_old"),
    ] {
        assert_eq!(t.accepts(&method, path), Accepts::PRIVY, "{method} {path}");
    }
    assert_eq!(
        t.accepts(&Method::GET, "/auth/api-keys"),
        Accepts::DEFAULT,
        "only key management is singled out"
    );
}

#[tokio::test]
async fn redeem_and_key_management_are_refused_to_the_wrong_credentials() {
    let mock = MockServer::start().await.expect("mock");
    // Redeem: the legacy key is not accepted on server-wallet operations.
    let key_only = client(
        &mock,
        Credentials::new().with_api_key(ApiKey::new("lmts_mock_legacy_key").expect("key")),
    );
    let err = post(&key_only, "/portfolio/redeem", "{}")
        .await
        .expect_err("refused");
    assert!(
        matches!(err, Error::Policy(PolicyError::MissingCredential { .. })),
        "{err:?}"
    );
    // Legacy key management: Privy only; HMAC is refused locally, never answered 403.
    let hmac_only = client(&mock, Credentials::new().with_hmac(partner()));
    let err = post(&hmac_only, "/auth/api-keys", "{}")
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("POST /auth/api-keys accepts Privy only"),
        "{err}"
    );
    assert_eq!(mock.requests().len(), 0, "nothing was sent");
    // The mock answers HMAC as the API does, when a caller sends it anyway.
    let mut req = Request::post("/auth/api-keys")
        .body(Bytes::new())
        .expect("req");
    req.extensions_mut().insert(AuthMode::Hmac);
    let err = hmac_only
        .send(req)
        .await
        .expect_err("refused locally still");
    assert!(matches!(
        err,
        Error::Policy(PolicyError::ModeNotAccepted { .. })
    ));
    let privy = client(
        &mock,
        Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("t")),
    );
    assert_eq!(
        post(&privy, "/auth/api-keys", "{}").await.expect("sent"),
        StatusCode::OK
    );
    assert_eq!(
        post(&privy, "/portfolio/redeem", "{}").await.expect("sent"),
        StatusCode::OK
    );
}

#[tokio::test]
async fn x_on_behalf_of_is_stripped_from_the_partner_account_listing_only() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, Credentials::new().with_hmac(partner()));
    for path in ["/profiles/partner-accounts", "/profiles/partner-accounts/"] {
        let req = Request::get(path)
            .header("x-on-behalf-of", "1001")
            .body(Bytes::new())
            .expect("req");
        assert_eq!(c.send(req).await.expect("sent").status, StatusCode::OK);
        let rec = mock.requests().pop().expect("recorded");
        assert!(!rec.headers.contains_key("x-on-behalf-of"), "{path}");
        assert_eq!(rec.signature_valid, Some(true));
    }
    let req = Request::post("/orders")
        .header("x-on-behalf-of", "1001")
        .body(Bytes::from_static(br#"{"side":"BUY"}"#))
        .expect("req");
    c.send(req).await.expect("sent");
    let rec = mock.requests().pop().expect("recorded");
    assert_eq!(rec.headers["x-on-behalf-of"], "1001", "kept elsewhere");
}

/// Every scoped POST route, with a body.
/// The scoped routes, and for a token holding only `trading` and one holding only
/// `account_creation`, the scope each lacks there (`None`: it may): written out from the
/// route list, first missing scope first.
#[allow(clippy::type_complexity)]
fn scoped_cases() -> Vec<(Method, &'static str, &'static str, [Option<Scope>; 2])> {
    use Scope::{AccountCreation as C, DelegatedSigning as D, Trading as T, Withdrawal as W};
    vec![
        (
            Method::POST,
            "/portfolio/withdraw",
            "{}",
            [Some(W), Some(W)],
        ),
        (Method::POST, "/portfolio/redeem", "{}", [None, Some(T)]),
        (
            Method::POST,
            "/orders",
            r#"{"side":"BUY"}"#,
            [None, Some(T)],
        ),
        (Method::DELETE, "/orders/o-1", "", [None, Some(T)]),
        (Method::POST, "/amm/buy", "{}", [Some(D), Some(T)]),
        (
            Method::POST,
            "/amm/allowances/check",
            "{}",
            [Some(D), Some(T)],
        ),
        (
            Method::POST,
            "/profiles/partner-accounts",
            r#"{"displayName":"a"}"#,
            [Some(C), None],
        ),
        (
            Method::POST,
            "/profiles/partner-accounts/1001/allowances/retry",
            "",
            [Some(C), Some(D)],
        ),
        (
            Method::GET,
            "/profiles/partner-accounts",
            "",
            [Some(C), None],
        ),
        (
            Method::GET,
            "/profiles/partner-accounts/1001/allowances",
            "",
            [Some(C), Some(D)],
        ),
    ]
}

#[tokio::test]
async fn a_token_known_to_lack_a_scope_is_refused_locally_as_the_server_would() {
    let mock = MockServer::start().await.expect("mock");
    let privy = client(
        &mock,
        Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("t")),
    );
    for (column, scopes) in [[Scope::Trading], [Scope::AccountCreation]]
        .iter()
        .enumerate()
    {
        // One token: its scopes known to one client, unknown to the other.
        let derived = privy
            .derive_token(Some("scoped"), Some(scopes))
            .await
            .expect("derived");
        let known = derived.credentials().expect("valid");
        assert_eq!(known.scopes(), Some(&scopes[..]), "scopes from the derive");
        let unknown = {
            use secrecy::ExposeSecret as _;
            HmacCredentials::new(&derived.token_id, derived.secret().expose_secret()).expect("ok")
        };
        let local = client(&mock, Credentials::new().with_hmac(known.clone()));
        let remote = client(&mock, Credentials::new().with_hmac(unknown));
        for (method, path, body, lacks) in scoped_cases() {
            let ctx = format!("{method} {path} with {scopes:?}");
            let bytes = (!body.is_empty()).then(|| Bytes::from_static(body.as_bytes()));
            let before = mock.requests().len();
            let local_result = local.request(method.clone(), path, bytes.clone()).await;
            let remote_result = remote
                .request(method.clone(), path, bytes)
                .await
                .expect("answered");
            let Some(scope) = &lacks[column] else {
                assert!(local_result.expect("sent").status.is_success(), "{ctx}");
                assert!(remote_result.status.is_success(), "{ctx}");
                continue;
            };
            let err = local_result.expect_err("refused locally");
            let Error::Policy(PolicyError::MissingScope {
                scope: missing,
                token,
                path: shown,
                ..
            }) = &err
            else {
                panic!("{ctx}: {err:?}");
            };
            assert_eq!(missing, scope, "{ctx}");
            assert_eq!(shown, path);
            let tail = &derived.token_id[derived.token_id.len() - 4..];
            assert_eq!(token, &format!("…{tail}"));
            assert!(!err.to_string().contains(&derived.token_id), "{err}");
            // The server, asked with the same token, answers 403 naming the same scope.
            let Err(Error::Status {
                status: StatusCode::FORBIDDEN,
                message: Some(message),
                ..
            }) = remote_result.error_for_status()
            else {
                panic!("{ctx}: the server did not refuse with a message");
            };
            assert_eq!(
                message,
                format!("Requires apiToken auth with {scope} scope"),
                "{ctx}"
            );
            assert_eq!(
                mock.requests().len(),
                before + 1,
                "{ctx}: only the remote request was sent"
            );
        }
    }
}

#[tokio::test]
async fn a_server_wallet_needs_delegated_signing_read_from_the_body() {
    let mock = MockServer::start().await.expect("mock");
    let creation_only = partner().with_scopes([Scope::AccountCreation]);
    let c = client(&mock, Credentials::new().with_hmac(creation_only));
    let plain = post(&c, "/profiles/partner-accounts", r#"{"displayName":"eoa"}"#).await;
    assert_eq!(plain.expect("sent"), StatusCode::CREATED);
    let before = mock.requests().len();
    let err = post(
        &c,
        "/profiles/partner-accounts",
        r#"{"displayName":"sw","createServerWallet":true}"#,
    )
    .await
    .expect_err("needs delegated_signing");
    assert!(
        matches!(&err, Error::Policy(PolicyError::MissingScope { scope, .. }) if *scope == Scope::DelegatedSigning),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), before, "nothing was sent");
    // The partner's seeded token does hold it: the mock agrees.
    let full = client(&mock, Credentials::new().with_hmac(partner()));
    let status = post(
        &full,
        "/profiles/partner-accounts",
        r#"{"displayName":"sw","createServerWallet":true}"#,
    )
    .await
    .expect("sent");
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn custom_routes_declare_their_own_scopes() {
    let mock = MockServer::start().await.expect("mock");
    let routes = RouteTable::limitless()
        .with_scopes(
            Some(Method::POST),
            "/vaults/{id}/sweep",
            ScopeRequirement::all([Scope::Withdrawal]),
        )
        .expect("pattern");
    let c = Client::builder()
        .base_url(mock.base_url())
        .routes(routes)
        .credentials(Credentials::new().with_hmac(partner().with_scopes([Scope::Trading])))
        .build()
        .expect("client");
    let err = post(&c, "/vaults/7/sweep", "{}")
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "POST /vaults/7/sweep needs the withdrawal scope, which the HMAC token …oken does not \
         hold; nothing was sent"
    );
    // Unknown scopes: behaviour as before (sent; the mock has no such route).
    let unknown = Client::builder()
        .base_url(mock.base_url())
        .routes(
            RouteTable::limitless()
                .with_scopes(
                    None,
                    "/vaults/**",
                    ScopeRequirement::all([Scope::Withdrawal]),
                )
                .expect("pattern"),
        )
        .credentials(Credentials::new().with_hmac(partner()))
        .build()
        .expect("client");
    assert_eq!(
        post(&unknown, "/vaults/7/sweep", "{}").await.expect("sent"),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn denied_scopes_are_learned_once_and_fail_closed() {
    let mock = MockServer::start().await.expect("mock");
    // The seeded token holds trading, account_creation and delegated_signing.
    let bot = Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(partner()))
        .deny_scopes([Scope::Withdrawal])
        .build()
        .expect("client");
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let bot = bot.clone();
            tokio::spawn(async move { bot.list_tokens().await })
        })
        .collect();
    for call in calls {
        call.await.expect("join").expect("allowed");
    }
    let learned = mock
        .requests()
        .iter()
        .filter(|r| r.path() == "/auth/api-tokens")
        .count();
    assert_eq!(learned, 21, "one request learns the scopes, then 20 calls");
    assert_eq!(
        bot.credentials()
            .load()
            .hmac
            .as_ref()
            .and_then(|h| h.scopes().map(<[Scope]>::len)),
        Some(3),
        "the scopes are kept"
    );

    // A token that holds a denied scope sends nothing.
    let strict = Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(partner()))
        .deny_scopes([Scope::DelegatedSigning])
        .build()
        .expect("client");
    let before = mock.requests().len();
    let err = strict.list_tokens().await.expect_err("denied");
    assert!(
        matches!(&err, Error::ScopeDenied { scope, .. } if *scope == Scope::DelegatedSigning),
        "{err:?}"
    );
    assert!(err.is_local());
    assert_eq!(
        mock.requests().len(),
        before + 1,
        "only the learning request"
    );
    let err = strict.list_tokens().await.expect_err("denied");
    assert!(matches!(err, Error::ScopeDenied { .. }));
    assert_eq!(mock.requests().len(), before + 1, "learned once");

    // Privy requests are not HMAC requests: not guarded.
    let mixed = Client::builder()
        .base_url(mock.base_url())
        .credentials(
            Credentials::new()
                .with_hmac(partner())
                .with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("t")),
        )
        .deny_scopes([Scope::DelegatedSigning])
        .build()
        .expect("client");
    mixed.capabilities().await.expect("Privy");

    // Scopes that cannot be learned: fail closed.
    let blind = Client::builder()
        .base_url(mock.base_url())
        .retry(RetryConfig::disabled())
        .credentials(Credentials::new().with_hmac(partner()))
        .deny_scopes([Scope::Withdrawal])
        .build()
        .expect("client");
    mock.inject(Fault::json(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"message":"boom"}"#,
    ));
    let before = mock.requests().len();
    let err = post(&blind, "/orders", r#"{"side":"BUY"}"#)
        .await
        .expect_err("closed");
    assert!(matches!(err, Error::ScopesUnknown(_)), "{err:?}");
    assert!(err.is_local());
    assert_eq!(
        mock.requests().len(),
        before + 1,
        "only the failed learning request"
    );
}

#[tokio::test]
async fn token_scopes_can_be_refreshed_from_the_api() {
    let mock = MockServer::start().await.expect("mock");
    let c = client(&mock, Credentials::new().with_hmac(partner()));
    assert!(
        c.credentials()
            .load()
            .hmac
            .as_ref()
            .expect("hmac")
            .scopes()
            .is_none()
    );
    let scopes = c.refresh_token_scopes().await.expect("learned");
    assert_eq!(
        scopes,
        [
            Scope::Trading,
            Scope::AccountCreation,
            Scope::DelegatedSigning
        ]
    );
    // Now the policy knows: withdrawing is refused locally.
    let before = mock.requests().len();
    let err = post(&c, "/portfolio/withdraw", "{}")
        .await
        .expect_err("no withdrawal");
    assert!(matches!(
        err,
        Error::Policy(PolicyError::MissingScope { .. })
    ));
    assert_eq!(mock.requests().len(), before);
}

/// The client decides once, before its checks, and the stack carries out that decision on every
/// attempt: a token holding a denied scope, swapped in between two attempts, is not used.
#[tokio::test(start_paused = true)]
async fn a_token_swapped_in_between_attempts_does_not_skip_the_scope_check() {
    use std::sync::{Arc, Mutex};
    type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;
    let seen: Seen = Arc::default();
    let swap: Arc<Mutex<Option<limitless_auth::SharedCredentials>>> = Arc::default();
    let transport = {
        let (seen, swap) = (seen.clone(), swap.clone());
        tower::service_fn(move |req: Request<http_body_util::Full<Bytes>>| {
            let (seen, swap) = (seen.clone(), swap.clone());
            async move {
                let first = {
                    let mut seen = seen.lock().expect("lock");
                    seen.push(req.headers().clone());
                    seen.len() == 1
                };
                if first {
                    // Between the attempts, an HMAC token known to hold `withdrawal` arrives.
                    let shared = swap.lock().expect("lock").clone().expect("set");
                    let token = partner().with_scopes([Scope::Trading, Scope::Withdrawal]);
                    shared.update(|c| c.clone().with_hmac(token.clone()));
                }
                let status = if first { 429 } else { 200 };
                let resp = http::Response::builder()
                    .status(status)
                    .header("retry-after", "0")
                    .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
                    .expect("response");
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let bot = Client::builder()
        .base_url("https://api.limitless.exchange")
        .credentials(
            Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("t")),
        )
        .deny_scopes([Scope::Withdrawal])
        .build_with_transport(transport)
        .expect("client");
    *swap.lock().expect("lock") = Some(bot.credentials().clone());
    let status = post(&bot, "/portfolio/withdraw", r#"{"amount":"1"}"#)
        .await
        .expect("sent");
    assert_eq!(status, StatusCode::OK);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "the 429 was retried");
    for (attempt, headers) in seen.iter().enumerate() {
        assert!(headers.contains_key("identity"), "attempt {attempt}");
        assert!(!headers.contains_key("lmts-signature"), "attempt {attempt}");
    }
    // A request decided after the swap uses the new token, and so meets the check.
    let err = post(&bot, "/portfolio/withdraw", r#"{"amount":"1"}"#)
        .await
        .expect_err("denied");
    assert!(
        matches!(&err, Error::ScopeDenied { scope, .. } if *scope == Scope::Withdrawal),
        "{err:?}"
    );
}
