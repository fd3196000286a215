//! `AuthLayer` on the wire: what reaches a recording inner service for each kind of route,
//! caller-set headers, per-request choices, bodies and targets.

mod common;

use std::convert::Infallible;
use tower::BoxError;

use bytes::Bytes;
use common::{AUTH_HEADERS, Captured, Recorder, empty};
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{Full, StreamBody};
use limitless_auth::FixedClock;
use limitless_auth::{
    Accepts, ApiKey, AuthLayer, AuthMode, BodyError, Credentials, HmacCredentials, IdentityToken,
    PolicyError, RouteTable, SigningError,
};
use tower::util::BoxCloneService;
use tower::{Layer as _, Service as _, ServiceExt};

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TOKEN_ID: &str = "dGVzdC10b2tlbi0x";
const IDENTITY: &str = "privy-identity-token-value";
const API_KEY: &str = "lmts_legacy_key_value";
const NOW: i64 = 1_774_269_296_789;

fn hmac() -> HmacCredentials {
    HmacCredentials::new(TOKEN_ID, SECRET).expect("valid")
}
fn identity() -> IdentityToken {
    IdentityToken::new(IDENTITY).expect("valid")
}
fn api_key() -> ApiKey {
    ApiKey::new(API_KEY).expect("valid")
}
fn all() -> Credentials {
    Credentials::new()
        .with_hmac(hmac())
        .with_identity(identity())
        .with_api_key(api_key())
}

/// The layer under test: `AuthLayer` with `creds` and `table`, a fixed clock and a 1 KiB body
/// limit, over a recorder.
fn stack<B>(creds: Credentials, table: RouteTable, rec: &Recorder) -> Svc<B>
where
    B: http_body::Body<Data = Bytes> + From<Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let layer = AuthLayer::with_table(creds, table)
        .with_clock(FixedClock::new(NOW))
        .body_limit(1024);
    BoxCloneService::new(layer.layer(rec.service()))
}

type Svc<B> = BoxCloneService<Request<B>, Response<()>, BoxError>;

/// Sends `req` through [`stack`]; returns what reached the inner service and the result.
async fn send_with_table<B>(
    creds: Credentials,
    table: RouteTable,
    req: Request<B>,
) -> (Vec<Captured>, Result<(), BoxError>)
where
    B: http_body::Body<Data = Bytes> + From<Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let rec = Recorder::new();
    let res = stack(creds, table, &rec).oneshot(req).await.map(|_| ());
    (rec.taken(), res)
}

async fn send<B>(creds: Credentials, req: Request<B>) -> (Vec<Captured>, Result<(), BoxError>)
where
    B: http_body::Body<Data = Bytes> + From<Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    send_with_table(creds, RouteTable::limitless(), req).await
}

fn req(method: &str, target: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(target)
        .body(empty())
        .expect("request")
}

#[derive(Debug, PartialEq, Eq)]
enum Wire {
    Privy,
    Hmac,
    ApiKey,
    Nothing,
}

/// Which authentication reached the wire; asserts it is exactly one kind.
fn wire(c: &Captured) -> Wire {
    let h = c.headers();
    let has = |n: &str| h.contains_key(n);
    let lmts = h.keys().filter(|k| k.as_str().starts_with("lmts-")).count();
    match (has("identity"), lmts, has("x-api-key")) {
        (true, 0, false) => {
            assert_eq!(h["identity"], format!("Bearer {IDENTITY}").as_str());
            assert_eq!(h.get_all("identity").iter().count(), 1);
            Wire::Privy
        }
        (false, 3, false) => {
            assert_eq!(h["lmts-api-key"], TOKEN_ID);
            assert_eq!(h["lmts-signature"].len(), 44);
            Wire::Hmac
        }
        (false, 0, true) => {
            assert_eq!(h["x-api-key"], API_KEY);
            Wire::ApiKey
        }
        (false, 0, false) => Wire::Nothing,
        other => panic!("more than one kind of authentication: {other:?} in {h:?}"),
    }
}

/// Classifies `method target` with every credential held, and with each one alone.
async fn outcome(method: &str, target: &str) -> [Option<Wire>; 4] {
    let mut out = [None, None, None, None];
    let sets = [
        all(),
        Credentials::new().with_identity(identity()),
        Credentials::new().with_hmac(hmac()),
        Credentials::new().with_api_key(api_key()),
    ];
    for (slot, creds) in out.iter_mut().zip(sets) {
        let (seen, res) = send(creds, req(method, target)).await;
        *slot = match res {
            Ok(()) => {
                assert_eq!(seen.len(), 1);
                Some(wire(&seen[0]))
            }
            Err(e) => {
                assert!(seen.is_empty(), "{method} {target}: failed yet sent");
                assert!(e.downcast_ref::<PolicyError>().is_some(), "{e}");
                None
            }
        };
    }
    out
}

use Wire::{ApiKey as K, Hmac as H, Privy as P};

#[tokio::test]
async fn privy_only_routes_get_privy_and_nothing_else() {
    for (m, t) in [
        ("GET", "/auth/api-tokens/capabilities"),
        ("POST", "/auth/api-tokens/derive"),
        ("POST", "/portfolio/withdrawal-addresses"),
        (
            "DELETE",
            "/portfolio/withdrawal-addresses/0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ),
        ("DELETE", "/portfolio/withdrawal-addresses/anything-at-all"),
        // near misses that the server routes to the same handler
        ("GET", "/auth/api-tokens/capabilities/"),
        ("GET", "/auth/api-tokens/capabilities?partner=42"),
        ("GET", "/auth/api-tokens/capabilities/?x=1"),
        ("get", "/auth/api-tokens/capabilities"),
        ("GET", "/Auth/API-Tokens/Capabilities"),
        ("post", "/auth/api-tokens/derive"),
        ("DELETE", "/portfolio/withdrawal-addresses/0xabc/"),
        (
            "https://api.limitless.exchange/auth/api-tokens/capabilities",
            "",
        ),
    ] {
        let (m, t) = if t.is_empty() { ("GET", m) } else { (m, t) };
        assert_eq!(
            outcome(m, t).await,
            [Some(P), Some(P), None, None],
            "{m} {t}"
        );
    }
}

#[tokio::test]
async fn privy_or_hmac_routes_prefer_hmac() {
    for t in [
        "/amm/allowances/check",
        "/amm/allowances/approve",
        "/amm/buy",
        "/amm/sell",
        "/portfolio/withdraw",
    ] {
        assert_eq!(
            outcome("POST", t).await,
            [Some(H), Some(P), Some(H), None],
            "POST {t}"
        );
    }
}

#[tokio::test]
async fn partner_account_routes_are_hmac_only() {
    for (m, t) in [
        ("POST", "/profiles/partner-accounts"),
        ("GET", "/profiles/partner-accounts/"),
        ("GET", "/profiles/partner-accounts/123"),
        ("PATCH", "/profiles/partner-accounts/123/wallets?x=1"),
        ("DELETE", "/Profiles/Partner-Accounts/7"),
    ] {
        assert_eq!(
            outcome(m, t).await,
            [Some(H), None, Some(H), None],
            "{m} {t}"
        );
    }
}

#[tokio::test]
async fn other_routes_take_hmac_or_the_legacy_key() {
    for (m, t) in [
        ("POST", "/orders"),
        ("GET", "/orders/all/btc-100k?onBehalfOf=42"),
        ("GET", "/auth/api-tokens"),
        ("DELETE", "/auth/api-tokens/tok%2Babc"),
        // near misses of special routes
        ("GET", "/auth/api-tokens/capabilities/extra"),
        ("GET", "/auth/api-tokens/capabilitiesx"),
        ("GET", "/auth/api-tokens/derive"),
        ("POST", "/auth/api-tokens/capabilities"),
        ("DELETE", "/portfolio/withdrawal-addresses"),
        ("DELETE", "/portfolio/withdrawal-addresses/a/b"),
        ("GET", "/portfolio/withdrawal-addresses"),
        ("GET", "/amm/buy"),
        ("POST", "/amm/buy/extra"),
        ("GET", "/profiles/partner-accountsx"),
        ("GET", "/profiles"),
        ("GET", "/"),
    ] {
        assert_eq!(
            outcome(m, t).await,
            [Some(H), None, Some(H), Some(K)],
            "{m} {t}"
        );
    }
}

#[tokio::test]
async fn caller_set_auth_headers_are_stripped() {
    for (target, expected) in [("/auth/api-tokens/capabilities", P), ("/orders", H)] {
        let mut r = req("GET", target);
        let h = r.headers_mut();
        for (name, value) in [
            ("lmts-api-key", "forged"),
            ("lmts-timestamp", "forged"),
            ("lmts-signature", "forged"),
            ("lmts-something-else", "forged"),
            ("identity", "Bearer forged"),
            ("x-api-key", "forged"),
            ("Identity", "Bearer forged-again"),
        ] {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_static(value),
            );
        }
        h.insert("x-other", HeaderValue::from_static("kept"));
        let (seen, res) = send(all(), r).await;
        res.expect("sent");
        assert_eq!(wire(&seen[0]), expected, "{target}");
        assert_eq!(seen[0].headers()["x-other"], "kept");
        for v in seen[0].headers().values() {
            assert_ne!(v.to_str().ok(), Some("forged"));
        }
    }
}

#[tokio::test]
async fn missing_credentials_fail_locally_naming_method_route_and_credential() {
    let (seen, res) = send(
        Credentials::new().with_hmac(hmac()).with_api_key(api_key()),
        req("GET", "/auth/api-tokens/capabilities?x=1"),
    )
    .await;
    assert!(seen.is_empty());
    let err = res.expect_err("no identity token");
    assert_eq!(
        err.to_string(),
        "GET /auth/api-tokens/capabilities accepts Privy only, but no Privy identity token \
         (LIMITLESS_IDENTITY_TOKEN) is configured; nothing was sent"
    );
    let (seen, res) = send(Credentials::new(), req("POST", "/orders")).await;
    assert!(seen.is_empty());
    assert_eq!(
        res.expect_err("nothing held").to_string(),
        "POST /orders accepts HMAC or API key, but no HMAC token (LMTS_TOKEN_ID, \
         LMTS_TOKEN_SECRET) nor API key (LIMITLESS_API_KEY) is configured; nothing was sent"
    );
    let (seen, res) = send(
        Credentials::new().with_identity(identity()),
        req("GET", "/profiles/partner-accounts/1"),
    )
    .await;
    assert!(seen.is_empty());
    assert!(matches!(
        res.expect_err("identity refused").downcast_ref::<PolicyError>(),
        Some(PolicyError::MissingCredential { accepts, .. }) if *accepts == Accepts::HMAC
    ));
}

#[tokio::test]
async fn requested_mode_cannot_force_hmac_onto_a_privy_only_route() {
    for mode in [AuthMode::Hmac, AuthMode::ApiKey, AuthMode::None] {
        let mut r = req("GET", "/auth/api-tokens/capabilities");
        r.extensions_mut().insert(mode);
        let (seen, res) = send(all(), r).await;
        assert!(seen.is_empty(), "{mode:?}");
        let err = res.expect_err("refused");
        assert!(
            matches!(
                err.downcast_ref::<PolicyError>(),
                Some(PolicyError::ModeNotAccepted { requested, .. }) if *requested == mode
            ),
            "{err}"
        );
    }
}

#[tokio::test]
async fn requested_mode_is_honoured_where_accepted() {
    let mut r = req("POST", "/amm/buy");
    r.extensions_mut().insert(AuthMode::Privy);
    let (seen, res) = send(all(), r).await;
    res.expect("sent");
    assert_eq!(wire(&seen[0]), P);

    let mut r = req("GET", "/orders");
    r.extensions_mut().insert(AuthMode::ApiKey);
    let (seen, res) = send(all(), r).await;
    res.expect("sent");
    assert_eq!(wire(&seen[0]), K);

    let mut r = req("POST", "/amm/buy");
    r.extensions_mut().insert(AuthMode::Privy);
    let (seen, res) = send(Credentials::new().with_hmac(hmac()), r).await;
    assert!(seen.is_empty());
    assert!(matches!(
        res.expect_err("no identity").downcast_ref::<PolicyError>(),
        Some(PolicyError::MissingCredential { accepts, .. }) if *accepts == Accepts::PRIVY
    ));
}

#[tokio::test]
async fn per_request_credentials_apply_to_their_request_only() {
    // One service, several requests: an override must not leak into the next request.
    let rec = Recorder::new();
    let mut svc = stack(all(), RouteTable::limitless(), &rec);
    let other_identity = IdentityToken::new("someone-else").expect("valid");
    let other = HmacCredentials::new("other-token", "c2VjcmV0").expect("valid");
    let mut first = req("GET", "/auth/api-tokens/capabilities");
    first.extensions_mut().insert(other_identity);
    let mut third = req("GET", "/orders");
    third.extensions_mut().insert(other.clone());
    for r in [
        first,
        req("GET", "/auth/api-tokens/capabilities"),
        third,
        req("GET", "/orders"),
    ] {
        svc.ready().await.expect("ready");
        svc.call(r).await.expect("sent");
    }
    let seen = rec.taken();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].headers()["identity"], "Bearer someone-else");
    assert_eq!(
        seen[1].headers()["identity"],
        format!("Bearer {IDENTITY}").as_str()
    );
    let h = seen[2].headers();
    assert_eq!(h["lmts-api-key"], "other-token");
    let ts = h["lmts-timestamp"].to_str().expect("ascii");
    let sig = h["lmts-signature"].to_str().expect("ascii");
    assert!(common::signature_matches(
        "c2VjcmV0", ts, "GET", "/orders", b"", sig
    ));
    assert_eq!(seen[3].headers()["lmts-api-key"], TOKEN_ID);
}

#[tokio::test]
async fn custom_routes_and_anonymous_fallback() {
    let table = RouteTable::limitless()
        .with_route(Some(Method::POST), "/future/privy/{id}", Accepts::PRIVY)
        .expect("valid pattern")
        .with_route(None, "/public/**", Accepts::DEFAULT | Accepts::ANONYMOUS)
        .expect("valid pattern");
    let (seen, res) = send_with_table(all(), table.clone(), req("POST", "/future/privy/9")).await;
    res.expect("sent");
    assert_eq!(wire(&seen[0]), P);
    let (seen, res) =
        send_with_table(Credentials::new(), table.clone(), req("GET", "/public/x")).await;
    res.expect("sent");
    assert_eq!(wire(&seen[0]), Wire::Nothing);
    let (seen, res) = send_with_table(all(), table, req("GET", "/public/x")).await;
    res.expect("sent");
    assert_eq!(wire(&seen[0]), H);

    for bad in ["no-slash", "/a//b", "/a/**/b", "/a/b**", "/{}", "/a*"] {
        assert!(
            RouteTable::limitless()
                .with_route(None, bad, Accepts::HMAC)
                .is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn body_over_the_limit_fails_with_nothing_sent() {
    // By Content-Length, before reading.
    let mut r = Request::post("/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from_static("5000"),
    );
    let (seen, res) = send(all(), r).await;
    assert!(seen.is_empty());
    assert!(matches!(
        res.expect_err("too large").downcast_ref::<BodyError>(),
        Some(BodyError::TooLargeDeclared {
            declared: 5000,
            limit: 1024
        })
    ));

    // By streaming, with no length announced.
    let chunks =
        (0..5).map(|_| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(vec![b'x'; 300]))));
    let r = Request::post("/orders")
        .body(limitless_auth::SignedBody::new(StreamBody::new(
            futures_util::stream::iter(chunks),
        )))
        .expect("request");
    let (seen, res) = send(all(), r).await;
    assert!(seen.is_empty());
    assert!(matches!(
        res.expect_err("too large").downcast_ref::<BodyError>(),
        Some(BodyError::TooLarge { limit: 1024 })
    ));

    // A stream that fails midway.
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
        Ok(http_body::Frame::data(Bytes::from_static(b"{\"a\":"))),
        Err(std::io::Error::other("upstream closed")),
    ];
    let r = Request::post("/orders")
        .body(limitless_auth::SignedBody::new(StreamBody::new(
            futures_util::stream::iter(chunks),
        )))
        .expect("request");
    let (seen, res) = send(all(), r).await;
    assert!(seen.is_empty());
    assert!(matches!(
        res.expect_err("stream error").downcast_ref::<BodyError>(),
        Some(BodyError::Stream(_))
    ));
}

#[tokio::test]
async fn streamed_bodies_sign_like_full_ones() {
    let parts: Vec<&'static [u8]> = vec![b"{\"or", b"der\":", b"1}"];
    let chunks = parts
        .into_iter()
        .map(|p| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(p))));
    let r = Request::post("/orders")
        .body(limitless_auth::SignedBody::new(StreamBody::new(
            futures_util::stream::iter(chunks),
        )))
        .expect("request");
    let (seen, res) = send(all(), r).await;
    res.expect("sent");
    let h = seen[0].headers();
    assert_eq!(seen[0].body().as_ref(), b"{\"order\":1}");
    let ts = h["lmts-timestamp"].to_str().expect("ascii");
    assert_eq!(ts, "2026-03-23T12:34:56.789Z");
    let sig = h["lmts-signature"].to_str().expect("ascii");
    assert!(common::signature_matches(
        SECRET,
        ts,
        "POST",
        "/orders",
        b"{\"order\":1}",
        sig
    ));
}

#[tokio::test]
async fn non_utf8_body_signs_as_its_bytes() {
    let body: &[u8] = &[0xff, 0xfe, 0x00, b'\n', 0x80, 0xc3, 0x28];
    let r = Request::post("/orders")
        .body(Full::new(Bytes::from_static(body)))
        .expect("request");
    let (seen, res) = send(all(), r).await;
    res.expect("sent");
    assert_eq!(seen[0].body().as_ref(), body);
    let lossy = String::from_utf8_lossy(body);
    let h = seen[0].headers();
    let ts = h["lmts-timestamp"].to_str().expect("ascii");
    let sig = h["lmts-signature"].to_str().expect("ascii");
    assert!(common::signature_matches(
        SECRET, ts, "POST", "/orders", body, sig
    ));
    assert!(!common::signature_matches(
        SECRET,
        ts,
        "POST",
        "/orders",
        lossy.as_bytes(),
        sig
    ));
}

#[tokio::test]
async fn authority_and_asterisk_form_targets_are_refused() {
    for target in ["api.limitless.exchange:443", "*"] {
        let (seen, res) = send(all(), req("OPTIONS", target)).await;
        assert!(seen.is_empty(), "{target}");
        let err = res.expect_err("refused");
        assert!(
            matches!(
                err.downcast_ref::<SigningError>(),
                Some(SigningError::InvalidTarget { .. })
            ),
            "{target}: {err}"
        );
    }
}

#[tokio::test]
async fn every_auth_header_is_sensitive_and_nothing_secret_is_debug_printed() {
    let mut printed = String::new();
    for (target, creds) in [
        ("/auth/api-tokens/capabilities", all()),
        ("/orders", all()),
        ("/orders", Credentials::new().with_api_key(api_key())),
    ] {
        let (seen, res) = send(creds, req("GET", target)).await;
        res.expect("sent");
        let h = seen[0].headers();
        let mut auth = 0;
        for name in AUTH_HEADERS {
            if let Some(v) = h.get(name) {
                assert!(v.is_sensitive(), "{name} on {target}");
                auth += 1;
            }
        }
        assert!(auth >= 1);
        printed.push_str(&format!("{:?}\n{:#?}\n{:?}\n", seen[0], seen[0], h));
        if let Some(sig) = h.get("lmts-signature") {
            assert!(!printed.contains(sig.to_str().expect("ascii")));
        }
    }
    printed.push_str(&format!("{:?}{:#?}", all(), all()));
    for secret in [SECRET, TOKEN_ID, IDENTITY, API_KEY] {
        assert!(!printed.contains(secret), "{secret} printed in {printed}");
    }
}
