//! HMAC request signing as a tower layer.
//!
//! [`HmacSigningLayer`] reads the body of a request it signs (up to a limit), takes a fresh
//! timestamp from its [`Clock`], signs the request-target exactly as it will be sent
//! (`uri.path_and_query()`) with the exact body bytes, inserts `lmts-api-key`, `lmts-timestamp`
//! and `lmts-signature` (all marked sensitive) and passes the request on with a body of the same
//! type holding those same bytes (`B::from(bytes)`: a `Full<Bytes>` is passed on without a
//! copy). A request it does not sign passes through untouched: its body is not read, limited
//! or rebuilt.
//!
//! Which requests it signs:
//! - below an [`AuthPolicyLayer`](crate::AuthPolicyLayer): exactly those for which the policy
//!   chose HMAC, with the credentials the policy chose;
//! - on its own: every request, with its own credentials (or an [`HmacCredentials`] in the
//!   request's extensions). A request that asks for another [`AuthMode`] fails locally, and
//!   one that already carries an `identity` or `x-api-key` header (authenticated by a layer
//!   above) passes through.
//!
//! Request bodies must implement `From<Bytes>` (to carry the signed bytes on) and `Unpin` (to
//! be read in place): `Full<Bytes>` does; wrap any other body in [`SignedBody`].
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use limitless_auth::{HmacCredentials, HmacSigningLayer, clock::FixedClock};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let creds = HmacCredentials::new("token-123", "c2VjcmV0")?;
//! let svc = ServiceBuilder::new()
//!     .layer(HmacSigningLayer::new(creds).with_clock(FixedClock::new(1_774_872_000_000)))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         let h = req.headers();
//!         assert_eq!(h["lmts-api-key"], "token-123");
//!         assert_eq!(h["lmts-timestamp"], "2026-03-30T12:00:00.000Z");
//!         assert_eq!(h["lmts-signature"], "lqUdGxW7CcqHKaX99McgZb/TddUNxiFaIm5OiM/GMI0=");
//!         assert!(h["lmts-signature"].is_sensitive());
//!         Ok::<_, std::convert::Infallible>(Response::new(()))
//!     });
//! let req = Request::post("/orders").body(Full::new(Bytes::from_static(br#"{"foo":"bar"}"#)))?;
//! svc.oneshot(req).await?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::{Extensions, Method, Request, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::body::{DEFAULT_BODY_LIMIT, Gather, check_declared, get_unhashed};
use crate::clock::{Clock, SystemClock};
use crate::credentials::{HmacCredentials, SharedCredentials, sensitive_header};
use crate::headers::{IDENTITY, LMTS_API_KEY, LMTS_SIGNATURE, LMTS_TIMESTAMP, X_API_KEY};
use crate::layer::{Own, Plan, plan};
use crate::policy::{AuthMode, PolicyError, RoutePrefix, ScopeRequirement, Selected, refused};
use crate::sign::{Timestamp, TimestampError};
use std::sync::Arc;

/// A request could not be signed; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The request-target is not in origin form (authority-form `host:port`, asterisk-form `*`).
    #[error(
        "{method} {uri}: only a request-target that starts with '/' can be signed \
         (authority-form and asterisk-form URIs are refused); nothing was sent"
    )]
    InvalidTarget {
        /// The request's method.
        method: Method,
        /// The request's URI.
        uri: Uri,
    },
    /// The clock reads a time outside what the timestamp format can express.
    #[error("cannot sign: {0}; nothing was sent")]
    Clock(#[from] TimestampError),
}

/// Signs requests with HMAC credentials: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct HmacSigningLayer<C = SystemClock> {
    credentials: Own<HmacCredentials>,
    clock: C,
    body_limit: usize,
}

impl HmacSigningLayer<SystemClock> {
    /// Signs with `credentials` (unless the request carries other ones) and the system clock.
    pub fn new(credentials: HmacCredentials) -> Self {
        Self {
            credentials: Own::Fixed(credentials),
            clock: SystemClock,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Signs with the HMAC credentials `shared` holds when each request starts: they can be
    /// swapped (rotated) while the stack runs.
    pub fn shared(shared: SharedCredentials) -> Self {
        Self {
            credentials: Own::Shared(shared.cached()),
            clock: SystemClock,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Holds no credentials of its own: signs only the requests for which an
    /// [`AuthPolicyLayer`](crate::AuthPolicyLayer) above chose HMAC, with the credentials it
    /// chose. Without a policy above, every request fails locally.
    pub fn for_policy() -> Self {
        Self {
            credentials: Own::None,
            clock: SystemClock,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

impl<C> HmacSigningLayer<C> {
    /// Takes timestamps from `clock` instead.
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> HmacSigningLayer<D> {
        HmacSigningLayer {
            credentials: self.credentials,
            clock,
            body_limit: self.body_limit,
        }
    }

    /// Sets the largest request body, in bytes, that will be read and signed (default 1 MiB).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }
}

impl<S, C: Clone> Layer<S> for HmacSigningLayer<C> {
    type Service = HmacSigning<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        HmacSigning {
            inner,
            credentials: self.credentials.clone(),
            clock: self.clock.clone(),
            body_limit: self.body_limit,
        }
    }
}

/// The service made by [`HmacSigningLayer`].
#[derive(Clone, Debug)]
pub struct HmacSigning<S, C = SystemClock> {
    inner: S,
    credentials: Own<HmacCredentials>,
    clock: C,
    body_limit: usize,
}

impl<S, C> HmacSigning<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// With which credentials to sign `req` (and the route's scope requirement when it depends on
/// the body): `Ok(None)` to pass it on untouched.
fn signer<B>(
    req: &Request<B>,
    own: &mut Own<HmacCredentials>,
) -> Result<Option<Signer>, PolicyError> {
    let plan = plan(req, AuthMode::Hmac, [&IDENTITY, &X_API_KEY], own, |c| {
        c.hmac.as_ref()
    })?;
    Ok(match plan {
        Plan::Decided(Selected::Hmac(creds, body_rule)) => Some(Signer {
            creds: creds.clone(),
            body_rule: body_rule.clone(),
        }),
        Plan::Own(creds) => Some(Signer {
            creds,
            body_rule: None,
        }),
        Plan::Pass | Plan::Decided(_) => None,
    })
}

/// What to sign a request with.
pub(crate) struct Signer {
    pub(crate) creds: HmacCredentials,
    /// The route's scope requirement, when it depends on the body.
    pub(crate) body_rule: Option<Arc<ScopeRequirement>>,
}

/// Signs `req` with `body`, after checking a body-dependent scope requirement.
fn check_and_apply<B, C: Clock>(
    req: &mut Request<B>,
    signer: &Signer,
    clock: &C,
    body: &[u8],
) -> Result<(), BoxError> {
    if let Some(rule) = &signer.body_rule
        && let Some(held) = signer.creds.scopes()
        && let Some(scope) = rule.missing_for_body(held, body)
    {
        let e = PolicyError::missing_scope(req.method(), req.uri(), scope, &signer.creds);
        return Err(refused(e));
    }
    apply(req, &signer.creds, clock, body).map_err(Into::into)
}

/// The request-target hyper will send: `path_and_query` in origin form.
fn signing_target(uri: &Uri) -> Option<&str> {
    uri.path_and_query()
        .map(|pq| pq.as_str())
        .filter(|t| t.starts_with('/'))
}

/// The request-target to sign: as sent, or without a gateway's unsigned [`RoutePrefix`].
fn target_to_sign<'a>(uri: &'a Uri, ext: &Extensions) -> Option<&'a str> {
    let target = signing_target(uri)?;
    Some(match ext.get::<RoutePrefix>() {
        Some(prefix) => prefix.signing_target(target),
        None => target,
    })
}

/// Takes a timestamp, signs `req` with `body`, and inserts the three headers.
fn apply<B, C: Clock>(
    req: &mut Request<B>,
    creds: &HmacCredentials,
    clock: &C,
    body: &[u8],
) -> Result<(), SigningError> {
    let (method, uri) = (req.method(), req.uri());
    let target =
        target_to_sign(uri, req.extensions()).ok_or_else(|| invalid_target(method, uri))?;
    let ts = Timestamp::now(clock)?;
    let sig = creds.sign_bytes(
        ts.as_bytes(),
        method.as_str().as_bytes(),
        target.as_bytes(),
        body,
    );
    let headers = req.headers_mut();
    headers.insert(LMTS_API_KEY, creds.token_id_header().clone());
    // Both are ASCII by construction (the formatted timestamp, base64).
    headers.insert(LMTS_TIMESTAMP, sensitive_header(ts.as_bytes()));
    headers.insert(LMTS_SIGNATURE, sensitive_header(sig.as_bytes()));
    Ok(())
}

fn invalid_target(method: &Method, uri: &Uri) -> SigningError {
    SigningError::InvalidTarget {
        method: method.clone(),
        uri: uri.clone(),
    }
}

impl<S, B, C> Service<Request<B>> for HmacSigning<S, C>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: Clock + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SigningFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match signer(&req, &mut self.credentials) {
            Ok(Some(signer)) => {
                sign_then_call(&mut self.inner, req, signer, &self.clock, self.body_limit)
            }
            Ok(None) => SigningFuture::calling(self.inner.call(req)),
            Err(e) => SigningFuture::failed(refused(e)),
        }
    }
}

/// Reads `req`'s body within `limit`, signs with `creds`, and calls `inner` (which `poll_ready`
/// made ready) with the signed request. A body already in memory is read and signed here, in
/// place; any other is read by the returned future first.
pub(crate) fn sign_then_call<S, B, C>(
    inner: &mut S,
    mut req: Request<B>,
    signer: Signer,
    clock: &C,
    limit: usize,
) -> SigningFuture<S, B, C>
where
    S: Service<Request<B>> + Clone,
    B: Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: Clock + Clone,
{
    // A body at its end that declares no length is the empty body: signed with nothing to
    // read, and handed on as the (empty) bytes that were signed.
    if req.body().is_end_stream()
        && get_unhashed(req.headers(), &http::header::CONTENT_LENGTH).is_none()
    {
        return match check_and_apply(&mut req, &signer, clock, b"") {
            Ok(()) => {
                *req.body_mut() = B::from(Bytes::new());
                SigningFuture::calling(inner.call(req))
            }
            Err(e) => SigningFuture::failed(e),
        };
    }
    let declared = match check_declared(req.headers(), req.body(), limit) {
        Ok(d) => d,
        Err(e) => return SigningFuture::failed(e.into()),
    };
    let mut gather = Gather::new(limit, declared);
    // An empty body or one already in memory (`Full<Bytes>`) is complete on the first poll,
    // whatever the waker: sign now.
    let noop = &mut Context::from_waker(Waker::noop());
    match gather.poll_body(Pin::new(req.body_mut()), noop) {
        Poll::Ready(Ok(bytes)) => match check_and_apply(&mut req, &signer, clock, &bytes) {
            Ok(()) => {
                *req.body_mut() = B::from(bytes);
                SigningFuture::calling(inner.call(req))
            }
            Err(e) => SigningFuture::failed(e),
        },
        Poll::Ready(Err(e)) => SigningFuture::failed(e.into()),
        Poll::Pending => {
            // Refuse an unsignable target before reading the body (an in-memory body is
            // refused by `apply` above).
            if target_to_sign(req.uri(), req.extensions()).is_none() {
                return SigningFuture::failed(invalid_target(req.method(), req.uri()).into());
            }
            // The body must be read first: take the ready service, leave a clone in its place.
            let clone = inner.clone();
            let inner = mem::replace(inner, clone);
            SigningFuture {
                state: State::Collecting {
                    reading: Box::new(Reading {
                        gather,
                        pending: Some(Pending {
                            req,
                            inner,
                            signer,
                            clock: clock.clone(),
                        }),
                    }),
                },
            }
        }
    }
}

/// What a request waits with while its body is read.
struct Pending<S, B, C> {
    req: Request<B>,
    inner: S,
    signer: Signer,
    clock: C,
}

/// A body being read, with the request it belongs to. It lives on the heap, so that the future
/// of the common request (an empty or in-memory body) stays a few words long.
struct Reading<S, B, C> {
    gather: Gather,
    pending: Option<Pending<S, B, C>>,
}

pin_project! {
    /// The future of [`HmacSigning`]: reads the body if it was not in memory, signs, then calls
    /// the inner service.
    pub struct SigningFuture<S, B, C>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, C>
    where
        S: Service<Request<B>>,
    {
        Collecting {
            reading: Box<Reading<S, B, C>>,
        },
        Calling {
            #[pin]
            fut: S::Future,
        },
        Failed {
            err: Option<BoxError>,
        },
    }
}

impl<S, B, C> SigningFuture<S, B, C>
where
    S: Service<Request<B>>,
{
    pub(crate) fn failed(err: BoxError) -> Self {
        Self {
            state: State::Failed { err: Some(err) },
        }
    }

    pub(crate) fn calling(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }
}

impl<S, B, C> Future for SigningFuture<S, B, C>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    B: Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: Clock,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Collecting { reading } => {
                    let Reading { gather, pending } = &mut **reading;
                    let Some(p) = pending.as_mut() else {
                        return Poll::Ready(Err("future polled after completion".into()));
                    };
                    let body = ready!(gather.poll_body(Pin::new(p.req.body_mut()), cx))?;
                    let Some(Pending {
                        mut req,
                        mut inner,
                        signer,
                        clock,
                    }) = pending.take()
                    else {
                        return Poll::Ready(Err("future polled after completion".into()));
                    };
                    check_and_apply(&mut req, &signer, &clock, &body)?;
                    *req.body_mut() = B::from(body);
                    let fut = inner.call(req);
                    state.set(State::Calling { fut });
                }
                StateProj::Calling { fut } => return fut.poll(cx).map_err(Into::into),
                StateProj::Failed { err } => {
                    return Poll::Ready(Err(err
                        .take()
                        .unwrap_or_else(|| "future polled after completion".into())));
                }
            }
        }
    }
}

pin_project! {
    /// A request body for the signing layer when it is not a `Full<Bytes>`: any body (a
    /// stream, say) passed through untouched when the request is not signed, or the bytes that
    /// were read and signed.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt as _, Empty};
    /// use limitless_auth::layer::hmac::SignedBody;
    ///
    /// let streaming: SignedBody<Empty<Bytes>> = SignedBody::new(Empty::new());
    /// let signed: SignedBody<Empty<Bytes>> = SignedBody::from(Bytes::from_static(b"{}"));
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// assert_eq!(signed.collect().await.unwrap().to_bytes(), "{}");
    /// assert!(streaming.collect().await.unwrap().to_bytes().is_empty());
    /// # });
    /// ```
    pub struct SignedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Signed {
            #[pin]
            bytes: Full<Bytes>,
        },
        Body {
            #[pin]
            body: B,
        },
    }
}

impl<B> SignedBody<B> {
    /// Wraps `body`.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Body { body },
        }
    }

    /// Whether this holds the bytes that were read and signed (rather than the body as given).
    pub fn is_signed(&self) -> bool {
        matches!(self.kind, Kind::Signed { .. })
    }
}

impl<B> From<Bytes> for SignedBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Signed {
                bytes: Full::new(bytes),
            },
        }
    }
}

impl<B> Body for SignedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Signed { bytes } => bytes
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
            KindProj::Body { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Signed { bytes } => bytes.is_end_stream(),
            Kind::Body { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Signed { bytes } => bytes.size_hint(),
            Kind::Body { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::BodyError;
    use crate::clock::FixedClock;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn creds() -> HmacCredentials {
        HmacCredentials::new(
            "dGVzdC10b2tlbi0x",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .expect("valid")
    }

    #[test]
    fn signing_targets() {
        let t = |s: &str| signing_target(&s.parse::<Uri>().expect("uri")).map(str::to_owned);
        assert_eq!(t("/orders?a=1&b=2").as_deref(), Some("/orders?a=1&b=2"));
        assert_eq!(t("https://api.example/x?y").as_deref(), Some("/x?y"));
        assert_eq!(t("https://api.example").as_deref(), Some("/"));
        assert_eq!(t("api.example:443"), None);
        assert_eq!(t("*"), None);
    }

    #[tokio::test]
    async fn poll_ready_then_call_uses_the_ready_service() {
        // A tower-test mock is ready only after poll_ready, and a clone of it starts not ready:
        // calling anything but the very service that was made ready panics inside the mock.
        let (mock, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, &'static str>();
        let mut svc = HmacSigningLayer::new(creds())
            .with_clock(FixedClock::new(1_774_269_296_789))
            .layer(mock);
        handle.allow(2);
        for body in [Bytes::new(), Bytes::from_static(b"{\"a\":1}")] {
            ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
                .await
                .expect("ready");
            let req = Request::post("/orders")
                .body(Full::new(body.clone()))
                .expect("request");
            let fut = svc.call(req);
            let server = async {
                let (req, send) = handle.next_request().await.expect("request arrives");
                assert_eq!(req.headers()["lmts-timestamp"], "2026-03-23T12:34:56.789Z");
                let got = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .map(|c| c.to_bytes());
                assert_eq!(got.ok(), Some(body.clone()), "the body arrives unchanged");
                send.send_response("ok");
            };
            let (res, ()) = tokio::join!(fut, server);
            assert_eq!(res.expect("response"), "ok");
        }
    }

    #[tokio::test]
    async fn on_its_own_another_mode_fails_locally() {
        let (inner, seen) = recorder();
        let svc = HmacSigningLayer::new(creds()).layer(inner);
        let mut req = Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("req");
        req.extensions_mut().insert(AuthMode::Privy);
        let err = svc.oneshot(req).await.expect_err("refused");
        assert!(matches!(
            err.downcast_ref::<PolicyError>(),
            Some(PolicyError::ModeNotAccepted {
                requested: AuthMode::Privy,
                ..
            })
        ));
        assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");
    }

    #[tokio::test]
    async fn a_request_authenticated_above_passes_untouched() {
        let (inner, seen) = recorder();
        let svc = HmacSigningLayer::new(creds()).layer(inner);
        let req = Request::get("/x")
            .header("identity", "Bearer t")
            .body(Full::new(Bytes::new()))
            .expect("req");
        svc.oneshot(req).await.expect("passed on");
        let seen = seen.lock().expect("lock");
        assert_eq!(seen[0].headers().len(), 1);
        assert_eq!(seen[0].headers()["identity"], "Bearer t");
    }

    #[tokio::test]
    async fn for_policy_without_a_decision_fails_locally() {
        let svc = HmacSigningLayer::for_policy().layer(tower::service_fn(
            |_req: Request<Full<Bytes>>| async move {
                panic!("inner service must not be called");
                #[allow(unreachable_code)]
                Ok::<_, Infallible>(())
            },
        ));
        let req = Request::get("/orders")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let err = svc.oneshot(req).await.expect_err("no credentials");
        let err = err.downcast::<PolicyError>().expect("policy error");
        assert_eq!(
            err.to_string(),
            "GET /orders accepts HMAC only, but no HMAC token (LMTS_TOKEN_ID, LMTS_TOKEN_SECRET) is configured; nothing was sent"
        );
    }

    #[tokio::test]
    async fn extension_credentials_override_the_layers_own() {
        let other = HmacCredentials::new("other-id", "c2VjcmV0").expect("valid");
        let svc = HmacSigningLayer::new(creds()).layer(tower::service_fn(
            |req: Request<Full<Bytes>>| async move {
                assert_eq!(req.headers()["lmts-api-key"], "other-id");
                Ok::<_, Infallible>(())
            },
        ));
        let mut req = Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("req");
        req.extensions_mut().insert(other);
        svc.oneshot(req).await.expect("signed");
    }

    #[tokio::test]
    async fn out_of_range_clock_is_an_error() {
        let svc = HmacSigningLayer::new(creds())
            .with_clock(FixedClock::new(i64::MAX))
            .layer(tower::service_fn(|_req: Request<Full<Bytes>>| async move {
                panic!("inner service must not be called");
                #[allow(unreachable_code)]
                Ok::<_, Infallible>(())
            }));
        let req = Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let err = svc.oneshot(req).await.expect_err("clock");
        assert!(matches!(
            err.downcast_ref::<SigningError>(),
            Some(SigningError::Clock(_))
        ));
    }

    type Seen<B = Full<Bytes>> = std::sync::Arc<std::sync::Mutex<Vec<Request<B>>>>;

    /// An inner service that records each request it is called with.
    fn recorder<B>() -> (
        impl Service<Request<B>, Response = (), Error = Infallible> + Clone,
        Seen<B>,
    ) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let svc = tower::service_fn(move |req: Request<B>| {
            log.lock().expect("lock").push(req);
            std::future::ready(Ok::<_, Infallible>(()))
        });
        (svc, seen)
    }

    /// Waits until `svc` is ready and calls it, without polling the call's future.
    async fn ready_call<S: Service<R>, R>(svc: &mut S, req: R) -> S::Future
    where
        S::Error: std::fmt::Debug,
    {
        std::future::poll_fn(|cx| svc.poll_ready(cx))
            .await
            .expect("ready");
        svc.call(req)
    }

    fn signature_holds<B>(req: &Request<B>, body: &[u8]) -> bool {
        let h = req.headers();
        let text = |name: &str| h[name].to_str().expect("ascii").to_owned();
        creds().verify(
            &text("lmts-timestamp"),
            req.method().as_str(),
            req.uri().path_and_query().expect("target").as_str(),
            body,
            &text("lmts-signature"),
        )
    }

    #[tokio::test]
    async fn an_in_memory_body_is_signed_when_called() {
        let (inner, seen) = recorder();
        let mut svc = HmacSigningLayer::new(creds()).layer(inner);
        let body = Bytes::from_static(br#"{"side":"BUY"}"#);
        let req = Request::post("/orders")
            .body(Full::new(body.clone()))
            .expect("req");
        let fut = ready_call(&mut svc, req).await;
        // Signed and passed on by `call` itself, before the future is polled.
        {
            let seen = seen.lock().expect("lock");
            assert_eq!(seen.len(), 1);
            assert!(signature_holds(&seen[0], &body));
        }
        fut.await.expect("ok");
        assert!(std::mem::size_of_val(&svc.call(Request::new(Full::new(Bytes::new())))) <= 64);
    }

    #[tokio::test]
    async fn an_ended_body_is_signed_empty_and_handed_on_as_signed() {
        let (inner, seen) = recorder::<SignedBody<http_body_util::Empty<Bytes>>>();
        let req = Request::delete("/orders/1")
            .body(SignedBody::new(http_body_util::Empty::new()))
            .expect("req");
        HmacSigningLayer::new(creds())
            .layer(inner)
            .oneshot(req)
            .await
            .expect("signed");
        let seen = seen.lock().expect("lock");
        assert!(signature_holds(&seen[0], b""));
        assert!(seen[0].body().is_signed());
        assert!(seen[0].body().is_end_stream());
    }

    #[tokio::test]
    async fn a_body_that_arrives_later_is_read_then_signed() {
        type Stream = http_body_util::StreamBody<
            std::pin::Pin<
                Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>,
            >,
        >;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let inner = tower::service_fn(move |req: Request<SignedBody<Stream>>| {
            log.lock().expect("lock").push(req);
            std::future::ready(Ok::<_, Infallible>(()))
        });
        let mut svc = HmacSigningLayer::new(creds()).layer(inner);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let body: Stream = http_body_util::StreamBody::new(Box::pin(stream));
        let req = Request::post("/orders?x=1")
            .body(SignedBody::new(body))
            .expect("req");
        let fut = ready_call(&mut svc, req).await;
        assert!(
            seen.lock().expect("lock").is_empty(),
            "nothing is sent before the body is read"
        );
        let feed = async move {
            for part in [&b"{\"a\":"[..], b"1}"] {
                tokio::task::yield_now().await;
                tx.send(Ok(Frame::data(Bytes::from_static(part))))
                    .await
                    .expect("send");
            }
        };
        let (res, ()) = tokio::join!(fut, feed);
        res.expect("ok");
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert!(signature_holds(&seen[0], b"{\"a\":1}"));
        assert!(seen[0].body().is_signed());
        assert_eq!(seen[0].body().size_hint().exact(), Some(7));
    }

    #[tokio::test]
    async fn content_length_must_match_the_body() {
        for (declared, body) in [("5", &b"abc"[..]), ("3", b""), ("0", b"abc")] {
            let (inner, seen) = recorder();
            let svc = HmacSigningLayer::new(creds()).layer(inner);
            let req = Request::post("/orders")
                .header(http::header::CONTENT_LENGTH, declared)
                .body(Full::new(Bytes::from_static(body)))
                .expect("req");
            let err = svc.oneshot(req).await.expect_err("mismatch");
            assert!(
                matches!(
                    err.downcast_ref::<BodyError>(),
                    Some(BodyError::LengthMismatch { .. })
                ),
                "{declared} vs {} bytes: {err}",
                body.len()
            );
            assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");
        }
        let (inner, seen) = recorder();
        let req = Request::post("/orders")
            .header(http::header::CONTENT_LENGTH, "3")
            .body(Full::new(Bytes::from_static(b"abc")))
            .expect("req");
        HmacSigningLayer::new(creds())
            .layer(inner)
            .oneshot(req)
            .await
            .expect("a matching length is sent");
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }
}
