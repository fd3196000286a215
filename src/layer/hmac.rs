//! HMAC request signing as a tower layer.
//!
//! [`HmacSigningLayer`] reads the request body (any [`http_body::Body`], up to a limit), takes a
//! fresh timestamp from its [`Clock`], signs the request-target exactly as it will be sent
//! (`uri.path_and_query()`) with the exact body bytes, inserts `lmts-api-key`, `lmts-timestamp`
//! and `lmts-signature` (all marked sensitive) and passes the request on with a
//! `Full<Bytes>` body holding those same bytes.
//!
//! Which requests it signs:
//! - below an [`AuthPolicyLayer`](crate::AuthPolicyLayer): exactly those for which the policy
//!   selected HMAC, with the credentials the policy selected;
//! - on its own: every request, unless the request's extensions hold an [`AuthMode`] other than
//!   [`AuthMode::Hmac`]. An [`HmacCredentials`] in the extensions overrides the layer's own.
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

use std::any::Any;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::body::{BodyError, Collect, DEFAULT_BODY_LIMIT, check_declared};
use crate::clock::{Clock, SystemClock};
use crate::credentials::{HmacCredentials, sensitive_header};
use crate::headers::{LMTS_API_KEY, LMTS_SIGNATURE, LMTS_TIMESTAMP};
use crate::policy::{Accepts, AuthMode, PolicyError, RoutePrefix, SelectedAuth};
use crate::sign::{Timestamp, TimestampError};

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
    credentials: Option<HmacCredentials>,
    clock: C,
    body_limit: usize,
}

impl HmacSigningLayer<SystemClock> {
    /// Signs with `credentials` (unless the request carries other ones) and the system clock.
    pub fn new(credentials: HmacCredentials) -> Self {
        Self {
            credentials: Some(credentials),
            clock: SystemClock,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Holds no credentials of its own: signs only the requests for which an
    /// [`AuthPolicyLayer`](crate::AuthPolicyLayer) above selected HMAC, with the credentials it
    /// selected (or those in the request's extensions).
    pub fn for_policy() -> Self {
        Self {
            credentials: None,
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
    credentials: Option<HmacCredentials>,
    clock: C,
    body_limit: usize,
}

impl<S, C> HmacSigning<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The credentials to sign one request with, `Ok(None)` to pass it on unsigned, `Err(())` when
/// it should be signed and no credentials are at hand.
fn signer<'a>(
    ext: &'a Extensions,
    own: Option<&'a HmacCredentials>,
) -> Result<Option<&'a HmacCredentials>, ()> {
    match ext.get::<SelectedAuth>() {
        Some(SelectedAuth::Hmac(creds)) => Ok(Some(creds)),
        Some(_) => Ok(None),
        None => match ext.get::<AuthMode>() {
            None | Some(AuthMode::Hmac) => ext.get::<HmacCredentials>().or(own).map(Some).ok_or(()),
            Some(_) => Ok(None),
        },
    }
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

/// Takes a timestamp, signs, and inserts the three headers; refuses a target that is not in
/// origin form.
fn apply<C: Clock>(
    headers: &mut HeaderMap,
    (method, uri, ext): (&Method, &Uri, &Extensions),
    creds: &HmacCredentials,
    clock: &C,
    body: &[u8],
) -> Result<(), SigningError> {
    let target = target_to_sign(uri, ext).ok_or_else(|| invalid_target(method, uri))?;
    let ts = Timestamp::now(clock)?;
    let sig = creds.sign_bytes(
        ts.as_bytes(),
        method.as_str().as_bytes(),
        target.as_bytes(),
        body,
    );
    let value = |bytes: &[u8]| sensitive_header(Bytes::copy_from_slice(bytes));
    headers.reserve(3);
    headers.insert(LMTS_API_KEY, creds.token_id_header().clone());
    headers.insert(LMTS_TIMESTAMP, value(ts.as_bytes()));
    headers.insert(LMTS_SIGNATURE, value(sig.as_bytes()));
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
    S: Service<Request<Full<Bytes>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + 'static,
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
        let declared = match check_declared(req.headers(), req.body(), self.body_limit) {
            Ok(d) => d,
            Err(e) => return SigningFuture::failed(e.into()),
        };
        let (mut parts, mut body) = req.into_parts();
        let Ok(creds) = signer(&parts.extensions, self.credentials.as_ref()) else {
            let err = PolicyError::missing(&parts.method, &parts.uri, Accepts::HMAC);
            return SigningFuture::failed(err.into());
        };
        // An empty body, or one already in memory: sign now and call the inner service, which
        // poll_ready made ready.
        let ready = if body.is_end_stream() {
            Some(Bytes::new())
        } else {
            in_memory(&mut body)
        };
        if let Some(bytes) = ready {
            if let Err(e) = check_length(declared, bytes.len()) {
                return SigningFuture::failed(e.into());
            }
            if let Some(creds) = creds
                && let Err(e) = apply(
                    &mut parts.headers,
                    (&parts.method, &parts.uri, &parts.extensions),
                    creds,
                    &self.clock,
                    &bytes,
                )
            {
                return SigningFuture::failed(e.into());
            }
            let req = Request::from_parts(parts, Full::new(bytes));
            return SigningFuture::calling(self.inner.call(req));
        }
        // Refuse an unsignable target before reading the body.
        if creds.is_some() && signing_target(&parts.uri).is_none() {
            return SigningFuture::failed(invalid_target(&parts.method, &parts.uri).into());
        }
        let signer = creds.cloned().map(|c| (c, self.clock.clone()));
        // The body must be read first: take the ready service, leave a clone in its place.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        SigningFuture {
            state: State::Collecting {
                reading: Box::pin(Reading {
                    collect: Collect::new(body, self.body_limit, declared),
                    pending: Some(Pending {
                        parts,
                        inner,
                        signer,
                    }),
                }),
            },
        }
    }
}

/// The bytes of a body that is already in memory (`Full<Bytes>`), taken without waiting;
/// `None` for any other body, which is then read asynchronously.
fn in_memory<B: Body + 'static>(body: &mut B) -> Option<Bytes> {
    let full = (body as &mut dyn Any).downcast_mut::<Full<Bytes>>()?;
    // A `Full` yields its one data frame (or nothing) on the first poll, whatever the waker.
    match Pin::new(full).poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        Poll::Ready(None) => Some(Bytes::new()),
        Poll::Ready(Some(Err(never))) => match never {},
        Poll::Pending => None,
    }
}

/// `Content-Length`, when the request has one, must match the body.
fn check_length(declared: Option<u64>, actual: usize) -> Result<(), BodyError> {
    match declared {
        Some(declared) if declared != actual as u64 => Err(BodyError::LengthMismatch {
            declared,
            actual: actual as u64,
        }),
        _ => Ok(()),
    }
}

/// What a request waits with while its body is read.
struct Pending<S, C> {
    parts: Parts,
    inner: S,
    signer: Option<(HmacCredentials, C)>,
}

pin_project! {
    /// A body being read, with the request it belongs to. It lives on the heap, so that the
    /// future of the common request (an empty or in-memory body) stays a few words long.
    struct Reading<S, B, C> {
        #[pin]
        collect: Collect<B>,
        pending: Option<Pending<S, C>>,
    }
}

pin_project! {
    /// The future of [`HmacSigning`]: reads the body if it was not in memory, signs, then calls
    /// the inner service.
    pub struct SigningFuture<S, B, C>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        #[pin]
        state: State<S, B, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, C>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        Collecting {
            reading: Pin<Box<Reading<S, B, C>>>,
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
    S: Service<Request<Full<Bytes>>>,
{
    pub(crate) fn failed(err: BoxError) -> Self {
        Self {
            state: State::Failed { err: Some(err) },
        }
    }

    fn calling(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }
}

impl<S, B, C> Future for SigningFuture<S, B, C>
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
    C: Clock,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Collecting { reading } => {
                    let reading = reading.as_mut().project();
                    let body = ready!(reading.collect.poll(cx))?;
                    let Some(Pending {
                        mut parts,
                        mut inner,
                        signer,
                    }) = reading.pending.take()
                    else {
                        return Poll::Ready(Err("future polled after completion".into()));
                    };
                    if let Some((creds, clock)) = &signer {
                        apply(
                            &mut parts.headers,
                            (&parts.method, &parts.uri, &parts.extensions),
                            creds,
                            clock,
                            &body,
                        )?;
                    }
                    let fut = inner.call(Request::from_parts(parts, Full::new(body)));
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

#[cfg(test)]
mod tests {
    use super::*;
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
    async fn pass_through_when_another_mode_is_requested() {
        let svc = HmacSigningLayer::new(creds()).layer(tower::service_fn(
            |req: Request<Full<Bytes>>| async move {
                assert!(req.headers().is_empty());
                Ok::<_, Infallible>(())
            },
        ));
        let mut req = Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("req");
        req.extensions_mut().insert(AuthMode::Privy);
        svc.oneshot(req).await.expect("passed through");
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

    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Request<Full<Bytes>>>>>;

    /// An inner service that records each request it is called with.
    fn recorder() -> (
        impl Service<Request<Full<Bytes>>, Response = (), Error = Infallible> + Clone,
        Seen,
    ) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let svc = tower::service_fn(move |req: Request<Full<Bytes>>| {
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

    fn signature_holds(req: &Request<Full<Bytes>>, body: &[u8]) -> bool {
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
    async fn a_body_that_arrives_later_is_read_then_signed() {
        let (inner, seen) = recorder();
        let mut svc = HmacSigningLayer::new(creds()).layer(inner);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let req = Request::post("/orders?x=1")
            .body(http_body_util::StreamBody::new(stream))
            .expect("req");
        let fut = ready_call(&mut svc, req).await;
        assert!(
            seen.lock().expect("lock").is_empty(),
            "nothing is sent before the body is read"
        );
        let feed = async move {
            for part in [&b"{\"a\":"[..], b"1}"] {
                tokio::task::yield_now().await;
                tx.send(Ok(http_body::Frame::data(Bytes::from_static(part))))
                    .await
                    .expect("send");
            }
        };
        let (res, ()) = tokio::join!(fut, feed);
        res.expect("ok");
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert!(signature_holds(&seen[0], b"{\"a\":1}"));
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
