//! Every exported layer, alone and stacked, on each kind of route, with each set of credentials
//! and each requested mode: the request reaches the inner service's `call` authenticated
//! exactly as the table below says (written out by hand from the route list), or it is refused
//! and the inner service is never called. The inner service records in `call` itself, before
//! any future is polled, so a request handed on and then refused would be seen.

mod common;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower::BoxError;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use limitless_auth::{
    Accepts, ApiKey, AuthLayer, AuthMode, Credentials, FixedClock, HmacCredentials,
    HmacSigningLayer, IdentityLayer, IdentityToken, PolicyError, RouteTable,
};
use tower::util::BoxCloneService;
use tower::{Layer as _, Service, ServiceBuilder, ServiceExt as _};

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// 2026-03-23T12:34:56.789Z
const NOW: i64 = 1_774_269_296_789;

fn hmac() -> HmacCredentials {
    HmacCredentials::new("token-1", SECRET).expect("valid")
}
fn identity() -> IdentityToken {
    IdentityToken::new("privy-identity").expect("valid")
}
fn api_key() -> ApiKey {
    ApiKey::new("lmts_legacy").expect("valid")
}
/// Credentials from letters: `H` HMAC, `P` Privy, `K` the legacy key.
fn creds(letters: &str) -> Credentials {
    let mut c = Credentials::new();
    for l in letters.chars() {
        c = match l {
            'H' => c.with_hmac(hmac()),
            'P' => c.with_identity(identity()),
            'K' => c.with_api_key(api_key()),
            other => panic!("{other}"),
        };
    }
    c
}

/// An inner service that records each request in its `call`, body and all (in-memory bodies
/// are read at once), and answers 200.
#[derive(Clone, Default)]
struct Eager(Arc<Mutex<Vec<Request<Bytes>>>>);

impl Eager {
    fn taken(&self) -> Vec<Request<Bytes>> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

impl Service<Request<Full<Bytes>>> for Eager {
    type Response = Response<()>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<()>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .now_or_never()
            .expect("an in-memory body")
            .expect("infallible")
            .to_bytes();
        self.0
            .lock()
            .expect("lock")
            .push(Request::from_parts(parts, body));
        std::future::ready(Ok(Response::new(())))
    }
}

/// A middleware that calls its inner service only from its future, as a buffer or a queue
/// does.
#[derive(Clone)]
struct Deferred<S>(S);

impl<S> Service<Request<Full<Bytes>>> for Deferred<S>
where
    S: Service<Request<Full<Bytes>>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.oneshot(req).await })
    }
}

type Svc = BoxCloneService<Request<Full<Bytes>>, Response<()>, BoxError>;

/// The layer (or stack) named `shape` over `inner`.
fn shape(name: &str, inner: Eager) -> Svc {
    let clock = FixedClock::new(NOW);
    let auth = |letters: &str| AuthLayer::new(creds(letters)).with_clock(clock.clone());
    let signing = || HmacSigningLayer::new(hmac()).with_clock(clock.clone());
    let id = || IdentityLayer::new(identity()).with_clock(clock.clone());
    match name {
        "AuthLayer HPK" => BoxCloneService::new(auth("HPK").layer(inner)),
        "AuthLayer H" => BoxCloneService::new(auth("H").layer(inner)),
        "AuthLayer P" => BoxCloneService::new(auth("P").layer(inner)),
        "AuthLayer K" => BoxCloneService::new(auth("K").layer(inner)),
        "AuthLayer none" => BoxCloneService::new(auth("").layer(inner)),
        "HmacSigningLayer" => BoxCloneService::new(signing().layer(inner)),
        "IdentityLayer" => BoxCloneService::new(id().layer(inner)),
        "AuthLayer HPK over AuthLayer HPK" => BoxCloneService::new(
            ServiceBuilder::new()
                .layer(auth("HPK"))
                .layer(auth("HPK"))
                .service(inner),
        ),
        "HmacSigningLayer over IdentityLayer" => BoxCloneService::new(
            ServiceBuilder::new()
                .layer(signing())
                .layer(id())
                .service(inner),
        ),
        "AuthLayer HPK over a deferring middleware" => BoxCloneService::new(
            ServiceBuilder::new()
                .layer(auth("HPK"))
                .layer_fn(Deferred)
                .service(inner),
        ),
        "a deferring middleware over AuthLayer HPK" => BoxCloneService::new(
            ServiceBuilder::new()
                .layer_fn(Deferred)
                .layer(auth("HPK"))
                .service(inner),
        ),
        other => panic!("unknown shape {other}"),
    }
}

/// The routes, in the order of the expectation strings: a Privy-only route, an ordinary one
/// (HMAC or the legacy key), a Privy-or-HMAC one, and an HMAC-only one that strips
/// `x-on-behalf-of`.
const ROUTES: [(&str, &str, &[u8]); 4] = [
    ("GET", "/auth/api-tokens/capabilities", b""),
    ("POST", "/orders?x=1", br#"{"side":"BUY"}"#),
    ("POST", "/amm/buy", b"{}"),
    ("GET", "/profiles/partner-accounts", b""),
];

/// For each shape and requested mode (none, HMAC, Privy), what each route in [`ROUTES`] gets:
/// `H` signed with `token-1`, `P` the identity token, `K` the legacy key, `-` refused.
const EXPECTED: [(&str, [&str; 3]); 11] = [
    ("AuthLayer HPK", ["PHHH", "-HHH", "P-P-"]),
    ("AuthLayer H", ["-HHH", "-HHH", "----"]),
    ("AuthLayer P", ["P-P-", "----", "P-P-"]),
    ("AuthLayer K", ["-K--", "----", "----"]),
    ("AuthLayer none", ["----", "----", "----"]),
    ("HmacSigningLayer", ["-HHH", "-HHH", "----"]),
    ("IdentityLayer", ["P-P-", "----", "P-P-"]),
    ("AuthLayer HPK over AuthLayer HPK", ["PHHH", "-HHH", "P-P-"]),
    // The outer layer signs; the inner one strips that and applies its own decision.
    (
        "HmacSigningLayer over IdentityLayer",
        ["--P-", "----", "----"],
    ),
    (
        "AuthLayer HPK over a deferring middleware",
        ["PHHH", "-HHH", "P-P-"],
    ),
    (
        "a deferring middleware over AuthLayer HPK",
        ["PHHH", "-HHH", "P-P-"],
    ),
];

/// The one kind of authentication `req` carries on the wire, checked: `H` (a signature that
/// verifies, computed independently of the crate), `P`, `K`; or why it is wrong.
fn wire(req: &Request<Bytes>) -> Result<char, String> {
    let h = req.headers();
    let lmts = h.keys().filter(|k| k.as_str().starts_with("lmts-")).count();
    let kinds = (
        lmts > 0,
        h.contains_key("identity"),
        h.contains_key("x-api-key"),
    );
    let text = |n: &str| h[n].to_str().unwrap_or_default().to_owned();
    let target = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    match kinds {
        (true, false, false) => {
            let ok = lmts == 3
                && text("lmts-api-key") == "token-1"
                && common::signature_matches(
                    SECRET,
                    &text("lmts-timestamp"),
                    req.method().as_str(),
                    target,
                    req.body(),
                    &text("lmts-signature"),
                );
            ok.then_some('H')
                .ok_or_else(|| format!("an HMAC request that does not verify: {h:?}"))
        }
        (false, true, false) if text("identity") == "Bearer privy-identity" => Ok('P'),
        (false, false, true) if text("x-api-key") == "lmts_legacy" => Ok('K'),
        (false, false, false) => Err("no authentication at all".to_owned()),
        _ => Err(format!("a wrong or mixed authentication: {h:?}")),
    }
}

#[tokio::test]
async fn every_layer_authenticates_as_its_route_requires_or_never_calls_the_inner_service() {
    let mut calls = [0usize; 2]; // sent, refused
    for (name, by_mode) in EXPECTED {
        for (asked, expected) in [None, Some(AuthMode::Hmac), Some(AuthMode::Privy)]
            .into_iter()
            .zip(by_mode)
        {
            for ((method, target, body), want) in ROUTES.iter().zip(expected.chars()) {
                let inner = Eager::default();
                let svc = shape(name, inner.clone());
                let mut req = Request::builder()
                    .method(*method)
                    .uri(*target)
                    .header("lmts-signature", "junk")
                    .header("identity", "Bearer caller-set")
                    .header("x-api-key", "junk")
                    .header("x-on-behalf-of", "7")
                    .body(Full::new(Bytes::from_static(body)))
                    .expect("request");
                if let Some(mode) = asked {
                    req.extensions_mut().insert(mode);
                }
                let ctx = format!("{name} / {method} {target} / asked {asked:?}");
                let res = svc.oneshot(req).await;
                tokio::task::yield_now().await;
                let seen = inner.taken();
                if want == '-' {
                    calls[1] += 1;
                    let err = res.expect_err(&ctx);
                    assert!(
                        err.downcast_ref::<PolicyError>().is_some(),
                        "{ctx}: not a policy refusal: {err}"
                    );
                    assert!(
                        seen.is_empty(),
                        "{ctx}: refused, yet the inner service was called"
                    );
                    continue;
                }
                calls[0] += 1;
                res.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(seen.len(), 1, "{ctx}: called once");
                assert_eq!(wire(&seen[0]), Ok(want), "{ctx}");
                let on_behalf = seen[0].headers().contains_key("x-on-behalf-of");
                assert_eq!(on_behalf, *target != "/profiles/partner-accounts", "{ctx}");
                assert_eq!(seen[0].body().as_ref(), *body, "{ctx}: the body as given");
            }
        }
    }
    assert_eq!(calls, [58, 74], "every case ran");
}

#[tokio::test]
async fn bodies_of_requests_not_signed_pass_untouched_and_unlimited() {
    // A 2 MiB upload on a Privy route, with a 1 KiB signing limit: the body is neither read,
    // nor limited, nor rebuilt.
    let table = RouteTable::limitless()
        .with_route(Some(Method::POST), "/uploads", Accepts::PRIVY)
        .expect("route");
    let inner = Eager::default();
    let svc = AuthLayer::with_table(creds("HP"), table)
        .body_limit(1024)
        .layer(inner.clone());
    let big = Bytes::from(vec![b'x'; 2 << 20]);
    let req = Request::post("/uploads")
        .body(Full::new(big.clone()))
        .expect("request");
    svc.oneshot(req).await.expect("sent");
    let seen = inner.taken();
    assert_eq!(seen[0].body().len(), 2 << 20);
    assert_eq!(seen[0].body().as_ptr(), big.as_ptr(), "the same bytes");
    assert_eq!(seen[0].headers()["identity"], "Bearer privy-identity");
}

#[tokio::test]
async fn a_middleware_below_the_layer_sees_what_the_layer_decided_for_the_request_it_got() {
    // A middleware below may change the request; the layer above decided and signed for the
    // request it was given, and nothing below it can make it carry another route's credential.
    let inner = Eager::default();
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(creds("HP")).with_clock(FixedClock::new(NOW)))
        .map_request(|mut r: Request<Full<Bytes>>| {
            r.headers_mut()
                .insert("x-trace", HeaderValue::from_static("1"));
            r
        })
        .service(inner.clone());
    let req = Request::post("/orders")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request");
    svc.oneshot(req).await.expect("sent");
    let seen = inner.taken();
    assert_eq!(wire(&seen[0]), Ok('H'));
    assert_eq!(seen[0].headers()["x-trace"], "1");
}

#[tokio::test]
async fn auth_layer_over_auth_layer_puts_the_same_request_on_the_wire_as_one() {
    for (method, target, body) in ROUTES {
        let mut seen = Vec::new();
        for name in ["AuthLayer HPK", "AuthLayer HPK over AuthLayer HPK"] {
            let inner = Eager::default();
            let req = Request::builder()
                .method(method)
                .uri(target)
                .header("x-api-key", "junk")
                .body(Full::new(Bytes::from_static(body)))
                .expect("request");
            shape(name, inner.clone()).oneshot(req).await.expect("sent");
            let mut got = inner.taken();
            assert_eq!(got.len(), 1, "{name} {target}");
            seen.push(got.remove(0));
        }
        let (one, two) = (&seen[0], &seen[1]);
        assert_eq!(one.method(), two.method());
        assert_eq!(one.uri(), two.uri());
        assert_eq!(one.headers(), two.headers(), "{method} {target}");
        assert_eq!(one.body(), two.body());
    }
}
