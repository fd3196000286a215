//! Every stack shape the crate documents, with every mix of credentials, on every kind of
//! route: each request is either authenticated as its route requires (one mode, verified on
//! the wire) or refused locally with nothing sent. Never sent without authentication.

mod common;

use bytes::Bytes;
use common::{Captured, Recorder};
use http::{Method, Request, Response};
use http_body_util::Full;
use limitless_auth::clock::FixedClock;
use limitless_auth::{
    Accepts, ApiKey, AuthLayer, AuthMode, AuthPolicyLayer, BoxError, Credentials, HmacCredentials,
    HmacSigningLayer, IdentityLayer, IdentityToken, PolicyError, RouteTable,
};
use tower::util::BoxService;
use tower::{Layer as _, ServiceBuilder, ServiceExt as _};

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// 2026-03-23T12:34:56.789Z
const NOW: i64 = 1_774_269_296_789;

fn hmac() -> HmacCredentials {
    HmacCredentials::new("token-1", SECRET).expect("valid")
}
fn identity() -> IdentityToken {
    IdentityToken::new("privy-identity").expect("valid")
}
/// An HMAC token and an identity token: every mode but the legacy key.
fn hmac_and_identity() -> Credentials {
    Credentials::new()
        .with_hmac(hmac())
        .with_identity(identity())
}

fn api_key() -> ApiKey {
    ApiKey::new("lmts_legacy").expect("valid")
}

type Svc = BoxService<Request<Full<Bytes>>, Response<()>, BoxError>;

/// Whether a shape has a route policy on top (and so must follow the route table).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Route-aware: the policy decides.
    Policy,
    /// The signing layer alone (or on top): every request HMAC.
    Hmac,
    /// The identity layer alone (or on top): every request Privy.
    Privy,
}

/// Every documented shape: with a policy on top (route-aware), or layers on their own.
const SHAPES: [(&str, Kind); 15] = [
    ("AuthLayer", Kind::Policy),
    ("policy → identity → signing", Kind::Policy),
    ("policy → signing → identity", Kind::Policy),
    ("policy → a middleware → identity → signing", Kind::Policy),
    ("policy → signing (no identity)", Kind::Policy),
    ("policy → identity (no signing)", Kind::Policy),
    ("policy alone", Kind::Policy),
    ("policy → AuthLayer", Kind::Policy),
    ("AuthLayer → signing with its own token", Kind::Policy),
    ("signing alone", Kind::Hmac),
    ("signing for a policy, alone", Kind::Hmac),
    ("identity alone", Kind::Privy),
    ("identity for a policy, alone", Kind::Privy),
    ("identity → signing", Kind::Privy),
    ("signing → identity", Kind::Hmac),
];

/// The single mode a request on the wire carries, checking its credential; `None` when it
/// carries no authentication at all.
fn wire_mode(req: &Captured) -> Result<Option<AuthMode>, String> {
    let h = req.headers();
    let has = |n: &str| h.contains_key(n);
    let lmts = ["lmts-api-key", "lmts-timestamp", "lmts-signature"];
    let modes: Vec<AuthMode> = [
        (lmts.iter().any(|n| has(n)), AuthMode::Hmac),
        (has("identity"), AuthMode::Privy),
        (has("x-api-key"), AuthMode::ApiKey),
    ]
    .into_iter()
    .filter_map(|(on, m)| on.then_some(m))
    .collect();
    match modes.as_slice() {
        [] => Ok(None),
        [AuthMode::Hmac] => {
            let text = |n: &str| h[n].to_str().map_err(|e| e.to_string());
            let ok = lmts.iter().all(|n| has(n))
                && h["lmts-api-key"] == "token-1"
                && hmac().verify(
                    text("lmts-timestamp")?,
                    req.method().as_str(),
                    req.uri().path_and_query().map_or("/", |p| p.as_str()),
                    req.body(),
                    text("lmts-signature")?,
                );
            ok.then_some(Some(AuthMode::Hmac))
                .ok_or_else(|| "an HMAC request that does not verify".to_owned())
        }
        [AuthMode::Privy] => (h["identity"] == "Bearer privy-identity")
            .then_some(Some(AuthMode::Privy))
            .ok_or_else(|| "a wrong identity header".to_owned()),
        [AuthMode::ApiKey] => (h["x-api-key"] == "lmts_legacy")
            .then_some(Some(AuthMode::ApiKey))
            .ok_or_else(|| "a wrong API key".to_owned()),
        more => Err(format!("several modes at once: {more:?}")),
    }
}

/// Sends one request through `svc`.
async fn send(svc: &mut Svc, req: Request<Full<Bytes>>) -> Result<(), BoxError> {
    svc.ready().await?;
    tower::Service::call(svc, req).await.map(|_| ())
}

#[tokio::test]
async fn every_stack_shape_authenticates_as_required_or_fails_locally() {
    let table = RouteTable::limitless();
    let credential_sets: Vec<(&str, Credentials)> = vec![
        ("all", hmac_and_identity().with_api_key(api_key())),
        ("HMAC only", Credentials::new().with_hmac(hmac())),
        (
            "identity only",
            Credentials::new().with_identity(identity()),
        ),
        ("API key only", Credentials::new().with_api_key(api_key())),
        ("none", Credentials::new()),
    ];
    let routes = [
        (Method::GET, "/auth/api-tokens/capabilities", None),
        (Method::GET, "/profiles/partner-accounts", None),
        (Method::POST, "/orders", Some(&br#"{"side":"BUY"}"#[..])),
        (Method::POST, "/amm/buy", Some(&b"{}"[..])),
        (Method::GET, "/orders", Some(&b""[..])),
    ];
    let mut checked = 0;
    let mut sent_count = 0;
    let mut refused_count = 0;
    for (creds_name, creds) in &credential_sets {
        for (shape, kind) in SHAPES {
            for (method, path, body) in &routes {
                for asked in [None, Some(AuthMode::Hmac), Some(AuthMode::Privy)] {
                    let rec = Recorder::new();
                    let mut svc = rebuild(shape, creds, &rec);
                    let mut req = Request::builder()
                        .method(method.clone())
                        .uri(*path)
                        .header("identity", "Bearer caller-set")
                        .body(Full::new(Bytes::from_static(body.unwrap_or(b""))))
                        .expect("request");
                    if let Some(mode) = asked {
                        req.extensions_mut().insert(mode);
                    }
                    // A stack with a policy strips the caller's header; without one, a
                    // caller-set header means "authenticated above": leave it out there.
                    if kind != Kind::Policy {
                        req.headers_mut().remove("identity");
                    }
                    let res = send(&mut svc, req).await;
                    let seen = rec.taken();
                    let ctx = format!("{shape} / {creds_name} / {method} {path} / asked {asked:?}");
                    checked += 1;
                    match res {
                        Ok(()) => {
                            sent_count += 1;
                            assert_eq!(seen.len(), 1, "{ctx}");
                            let mode = wire_mode(&seen[0]).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                            let Some(mode) = mode else {
                                panic!("{ctx}: sent without authentication");
                            };
                            match kind {
                                Kind::Policy => {
                                    let accepts = table.classify(method, path).accepts;
                                    assert!(accepts.contains(mode), "{ctx}: {mode} not accepted");
                                    if let Some(asked) = asked {
                                        assert_eq!(mode, asked, "{ctx}");
                                    }
                                }
                                Kind::Hmac => assert_eq!(mode, AuthMode::Hmac, "{ctx}"),
                                Kind::Privy => assert_eq!(mode, AuthMode::Privy, "{ctx}"),
                            }
                        }
                        Err(e) => {
                            refused_count += 1;
                            assert!(seen.is_empty(), "{ctx}: refused after sending");
                            assert!(
                                e.downcast_ref::<PolicyError>().is_some(),
                                "{ctx}: not a local refusal: {e}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    assert!(
        sent_count > 100 && refused_count > 100,
        "{sent_count} / {refused_count}"
    );
}

/// `shape` over `rec`.
fn rebuild(shape: &str, creds: &Credentials, rec: &Recorder) -> Svc {
    let clock = FixedClock::new(NOW);
    let signing = || HmacSigningLayer::for_policy().with_clock(clock.clone());
    let own_signing = || HmacSigningLayer::new(hmac()).with_clock(clock.clone());
    let policy = || AuthPolicyLayer::new(creds.clone());
    let auth = || AuthLayer::new(creds.clone()).with_clock(clock.clone());
    let inner = rec.service();
    match shape {
        "AuthLayer" => BoxService::new(auth().layer(inner)),
        "policy → identity → signing" => BoxService::new(
            ServiceBuilder::new()
                .layer(policy())
                .layer(IdentityLayer::for_policy())
                .layer(signing())
                .service(inner),
        ),
        "policy → signing → identity" => BoxService::new(
            ServiceBuilder::new()
                .layer(policy())
                .layer(signing())
                .layer(IdentityLayer::for_policy())
                .service(inner),
        ),
        "policy → a middleware → identity → signing" => BoxService::new(
            ServiceBuilder::new()
                .layer(policy())
                .map_request(|mut r: Request<Full<Bytes>>| {
                    r.headers_mut()
                        .insert("x-trace", http::HeaderValue::from_static("1"));
                    r
                })
                .layer(IdentityLayer::for_policy())
                .layer(signing())
                .service(inner),
        ),
        "policy → signing (no identity)" => BoxService::new(
            ServiceBuilder::new()
                .layer(policy())
                .layer(signing())
                .service(inner),
        ),
        "policy → identity (no signing)" => BoxService::new(
            ServiceBuilder::new()
                .layer(policy())
                .layer(IdentityLayer::for_policy())
                .service(inner),
        ),
        "policy alone" => BoxService::new(policy().layer(inner)),
        "policy → AuthLayer" => BoxService::new(
            ServiceBuilder::new()
                .layer(policy())
                .layer(auth())
                .service(inner),
        ),
        "AuthLayer → signing with its own token" => BoxService::new(
            ServiceBuilder::new()
                .layer(auth())
                .layer(own_signing())
                .service(inner),
        ),
        "signing alone" => BoxService::new(own_signing().layer(inner)),
        "signing for a policy, alone" => BoxService::new(signing().layer(inner)),
        "identity alone" => BoxService::new(IdentityLayer::new(identity()).layer(inner)),
        "identity for a policy, alone" => BoxService::new(IdentityLayer::for_policy().layer(inner)),
        "identity → signing" => BoxService::new(
            ServiceBuilder::new()
                .layer(IdentityLayer::new(identity()))
                .layer(own_signing())
                .service(inner),
        ),
        "signing → identity" => BoxService::new(
            ServiceBuilder::new()
                .layer(own_signing())
                .layer(IdentityLayer::new(identity()))
                .service(inner),
        ),
        other => panic!("unknown shape {other}"),
    }
}

#[tokio::test]
async fn policy_without_signing_refuses_hmac_routes_naming_the_missing_layer() {
    let rec = Recorder::new();
    let svc = ServiceBuilder::new()
        .layer(AuthPolicyLayer::new(Credentials::new().with_hmac(hmac())))
        .layer(IdentityLayer::for_policy())
        .service(rec.service());
    let req = Request::post("/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    let err = svc.oneshot(req).await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        "POST /orders: the route policy chose HMAC authentication, but no HmacSigningLayer \
         below it took the request; nothing was sent"
    );
    assert_eq!(rec.count(), 0);
    let rec = Recorder::new();
    let svc = ServiceBuilder::new()
        .layer(AuthPolicyLayer::new(
            Credentials::new().with_identity(identity()),
        ))
        .layer(HmacSigningLayer::for_policy())
        .service(rec.service());
    let req = Request::get("/auth/api-tokens/capabilities")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let err = svc.oneshot(req).await.expect_err("refused");
    assert!(matches!(
        err.downcast_ref::<PolicyError>(),
        Some(PolicyError::NotCarriedOut {
            mode: AuthMode::Privy,
            ..
        })
    ));
    assert!(err.to_string().contains("no IdentityLayer below it"));
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn bodies_of_requests_not_signed_pass_untouched_and_unlimited() {
    // A 2 MiB upload on a Privy route, through the whole stack with a 1 KiB signing limit: the
    // body is neither read, nor limited, nor rebuilt.
    let rec = Recorder::new();
    let svc = ServiceBuilder::new()
        .layer(AuthPolicyLayer::with_table(
            hmac_and_identity(),
            RouteTable::limitless()
                .with_route(Some(Method::POST), "/uploads", Accepts::PRIVY)
                .expect("route"),
        ))
        .layer(IdentityLayer::for_policy())
        .layer(HmacSigningLayer::for_policy().body_limit(1024))
        .service(rec.service());
    let big = Bytes::from(vec![b'x'; 2 << 20]);
    let req = Request::post("/uploads")
        .body(Full::new(big.clone()))
        .expect("request");
    svc.oneshot(req).await.expect("sent");
    let seen = rec.taken();
    assert_eq!(seen[0].body().len(), 2 << 20);
    assert_eq!(seen[0].body().as_ptr(), big.as_ptr(), "the same bytes");
    assert_eq!(seen[0].headers()["identity"], "Bearer privy-identity");
}

/// A middleware that forwards each request only when its future is polled (as a buffer or a
/// queue does), so the layers below it are not reached during the policy's `call`.
#[derive(Clone)]
struct Deferred<S>(S);

impl<S> tower::Service<Request<Full<Bytes>>> for Deferred<S>
where
    S: tower::Service<Request<Full<Bytes>>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.oneshot(req).await })
    }
}

#[tokio::test]
async fn layers_reached_only_later_are_refused_never_bypassed() {
    let rec = Recorder::new();
    let creds = hmac_and_identity();
    let svc = ServiceBuilder::new()
        .layer(AuthPolicyLayer::new(creds))
        .layer_fn(Deferred)
        .layer(IdentityLayer::for_policy())
        .layer(HmacSigningLayer::for_policy())
        .service(rec.service());
    for (method, path) in [
        (Method::GET, "/auth/api-tokens/capabilities"),
        (Method::POST, "/orders"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let err = svc.clone().oneshot(req).await.expect_err("refused");
        assert!(
            matches!(
                err.downcast_ref::<PolicyError>(),
                Some(PolicyError::NotCarriedOut { .. })
            ),
            "{path}: {err}"
        );
    }
    tokio::task::yield_now().await;
    assert_eq!(rec.count(), 0, "nothing was sent, authenticated or not");
}

#[tokio::test]
async fn a_middleware_that_changes_the_target_is_refused_never_bypassed() {
    let rec = Recorder::new();
    let creds = hmac_and_identity();
    let svc = ServiceBuilder::new()
        .layer(AuthPolicyLayer::new(creds))
        .map_request(|mut r: Request<Full<Bytes>>| {
            // The policy decided HMAC for the route it saw; this is a Privy-only one.
            *r.method_mut() = Method::GET;
            *r.uri_mut() = "/auth/api-tokens/capabilities".parse().expect("uri");
            r
        })
        .layer(IdentityLayer::for_policy())
        .layer(HmacSigningLayer::for_policy())
        .service(rec.service());
    let req = Request::post("/orders")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let err = svc.oneshot(req).await.expect_err("refused");
    assert!(
        matches!(
            err.downcast_ref::<PolicyError>(),
            Some(PolicyError::DecidedForAnother { .. })
        ),
        "{err}"
    );
    assert_eq!(rec.count(), 0, "nothing was sent, authenticated or not");
}

/// A middleware that sends each request twice: once from its `call`, and once more (a copy)
/// from its future, as a retry does.
#[derive(Clone)]
struct Twice<S>(S);

impl<S> tower::Service<Request<Full<Bytes>>> for Twice<S>
where
    S: tower::Service<Request<Full<Bytes>>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let mut again = Request::new(req.body().clone());
        *again.method_mut() = req.method().clone();
        *again.uri_mut() = req.uri().clone();
        *again.headers_mut() = req.headers().clone();
        *again.extensions_mut() = req.extensions().clone();
        let first = self.0.call(req);
        let inner = self.0.clone();
        Box::pin(async move {
            first.await?;
            inner.oneshot(again).await
        })
    }
}

#[tokio::test]
async fn a_request_sent_again_from_below_the_policy_keeps_its_decision() {
    // Layers on their own below the policy: each would apply its own mode to every request,
    // but a request the policy decided carries the decision, also when sent again later.
    let clock = FixedClock::new(NOW);
    for (method, path, expected) in [
        (
            Method::GET,
            "/auth/api-tokens/capabilities",
            AuthMode::Privy,
        ),
        (Method::POST, "/orders", AuthMode::Hmac),
    ] {
        let rec = Recorder::new();
        let svc = ServiceBuilder::new()
            .layer(AuthPolicyLayer::new(hmac_and_identity()))
            .layer_fn(Twice)
            .layer(HmacSigningLayer::new(hmac()).with_clock(clock.clone()))
            .layer(IdentityLayer::new(identity()))
            .service(rec.service());
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::new()))
            .expect("request");
        svc.oneshot(req).await.expect("sent twice");
        let seen = rec.taken();
        assert_eq!(seen.len(), 2, "{path}");
        for sent in &seen {
            assert_eq!(wire_mode(sent), Ok(Some(expected)), "{path}");
        }
    }
}

/// A middleware that, inside its `call`, first sends another request of its own (to a
/// Privy-only route) through a signing layer for a policy that has no policy above it.
#[derive(Clone)]
struct SideRequest<S, T> {
    inner: S,
    side: T,
    side_result: std::sync::Arc<std::sync::Mutex<Option<Result<(), String>>>>,
}

impl<S, T> tower::Service<Request<Full<Bytes>>> for SideRequest<S, T>
where
    S: tower::Service<Request<Full<Bytes>>>,
    T: tower::Service<Request<Full<Bytes>>, Response = Response<()>, Error = BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        use std::future::Future as _;
        let side = Request::get("/auth/api-tokens/capabilities")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let result = match self.side.poll_ready(&mut cx) {
            std::task::Poll::Ready(Ok(())) => {
                let mut fut = std::pin::pin!(self.side.call(side));
                match fut.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(r) => r.map(drop).map_err(|e| e.to_string()),
                    std::task::Poll::Pending => Err("pending".to_owned()),
                }
            }
            _ => Err("not ready".to_owned()),
        };
        *self.side_result.lock().expect("lock") = Some(result);
        self.inner.call(req)
    }
}

#[tokio::test]
async fn a_decision_goes_to_its_own_request_only() {
    let rec = Recorder::new();
    let side_rec = Recorder::new();
    let side_result = std::sync::Arc::new(std::sync::Mutex::new(None));
    let side = HmacSigningLayer::for_policy()
        .with_clock(FixedClock::new(NOW))
        .layer(side_rec.service());
    let side_result2 = side_result.clone();
    let svc = ServiceBuilder::new()
        .layer(AuthPolicyLayer::new(Credentials::new().with_hmac(hmac())))
        .layer_fn(move |inner| SideRequest {
            inner,
            side: side.clone(),
            side_result: side_result2.clone(),
        })
        .layer(HmacSigningLayer::for_policy().with_clock(FixedClock::new(NOW)))
        .service(rec.service());
    let req = Request::post("/orders")
        .body(Full::new(Bytes::new()))
        .expect("request");
    svc.oneshot(req)
        .await
        .expect("the policy's own request is signed");
    let seen = rec.taken();
    assert_eq!(seen.len(), 1);
    assert_eq!(wire_mode(&seen[0]), Ok(Some(AuthMode::Hmac)));
    // The side request, to a Privy-only route, did not take the HMAC decision made for
    // `POST /orders`: with no policy of its own and no token, it was refused.
    let side = side_result
        .lock()
        .expect("lock")
        .take()
        .expect("side request made");
    let err = side.expect_err("refused");
    assert!(err.contains("nothing was sent"), "{err}");
    assert_eq!(side_rec.count(), 0);
}
