//! Retries, as a layer above the signer: every attempt goes down the stack again and is signed
//! with a fresh timestamp, and the body (`Full<Bytes>`) is shared between attempts, not copied.
//!
//! The table is in the client's module docs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower::retry::Policy;

use super::error::Error;
use super::observe::SignedWith;
use crate::clock::{Clock as _, SystemClock};
use crate::retry_after::retry_after;
use crate::skew::{AGREEMENT_MS, SkewTracker};

/// How the client retries: see the table in the [client's docs](super#retries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in all, the first included (default 3; 1 disables retries).
    pub max_attempts: u32,
    /// The first backoff delay (default 100 ms).
    pub initial_backoff: Duration,
    /// The longest backoff delay (default 2 s).
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt (default 30 s).
    pub max_elapsed: Duration,
    /// The longest server-requested wait that is slept through (default 30 s).
    pub max_retry_after: Duration,
    /// Re-sign and retry, once, a 401 to a request signed with a timestamp (HMAC) when the
    /// measured clock offset has moved since the request was signed and the old or the new
    /// offset is over the threshold (default true).
    pub retry_skewed_unauthorized: bool,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(30),
            retry_skewed_unauthorized: true,
        }
    }
}

impl RetryConfig {
    /// No retries of any kind.
    pub fn disabled() -> Self {
        Self {
            max_attempts: 1,
            retry_skewed_unauthorized: false,
            ..Self::default()
        }
    }
}

/// Whether a method may be repeated without changing the outcome (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// How an error bears on retrying.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Decided locally or after a complete response: retrying changes nothing.
    Final,
    /// Nothing reached the server.
    NotSent,
    /// The request may have reached the server.
    MaybeSent,
}

fn classify(err: &Error) -> Failure {
    match err {
        Error::Connect(_) | Error::NotProcessed(_) => Failure::NotSent,
        Error::Transport(_) | Error::Timeout(_) => Failure::MaybeSent,
        _ => Failure::Final,
    }
}

/// A random fraction in [0, 1) for jitter.
fn jitter() -> f64 {
    (crate::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl RetryConfig {
    /// The delay before retry number `retry` (1-based): the upper half of an exponential step.
    fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .initial_backoff
            .saturating_mul(
                1u32.checked_shl(retry.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        step.mul_f64(0.5 + 0.5 * jitter())
    }
}

/// The client's retry rules as a [`tower::retry::Policy`] over the client's typed errors: see
/// the [module docs](self). Its inner service answers with buffered bodies (`Response<Bytes>`),
/// which the policy reads for `retryAfterSeconds`.
#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    config: Arc<RetryConfig>,
    skew: Option<Arc<SkewRetry>>,
    /// Retries counted against `max_attempts` so far (per request: tower clones the policy
    /// for each request).
    retries: u32,
    /// Attempts made so far.
    attempts: u32,
    skew_retry_left: bool,
    /// When the first attempt started: the time budget counts from it.
    started: Option<tokio::time::Instant>,
    /// Whether an attempt was retried after it may have been processed.
    retried_unsure: bool,
}

impl RetryPolicy {
    /// Retries per `config`; with the client's clock-skew tracking, also re-signs a 401 once
    /// while the measured skew is too large.
    pub(crate) fn new(config: RetryConfig, skew: Option<Arc<SkewRetry>>) -> Self {
        let skew_retry_left = config.retry_skewed_unauthorized && skew.is_some();
        Self {
            config: Arc::new(config),
            skew,
            retries: 0,
            attempts: 0,
            skew_retry_left,
            started: None,
            retried_unsure: false,
        }
    }

    /// The wait before the next attempt after `result`, or `None` to return it.
    fn next_wait(
        &mut self,
        req: &Request<Full<Bytes>>,
        result: &Result<Response<Bytes>, Error>,
    ) -> Option<Duration> {
        self.attempts += 1;
        let config = &*self.config;
        let skew = self.skew.as_deref().map(|s| &*s.tracker);
        // The request span is an INFO span: with INFO off there is nothing to record into.
        #[cfg(feature = "tracing")]
        if tracing::level_enabled!(tracing::Level::INFO) {
            let span = tracing::Span::current();
            if let Some(skew) = skew {
                span.record("skew_ms", skew.offset_millis());
            }
            match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    span.record("status", status);
                    tracing::trace!(attempt = self.attempts, status, "response");
                }
                Err(e) => tracing::debug!(attempt = self.attempts, error = %e, "attempt failed"),
            }
        }
        let idempotent = is_idempotent(req.method());
        let attempts_left = self.retries + 1 < config.max_attempts;
        let backoff = || config.backoff(self.retries + 1);
        // (delay, counted against max_attempts, reason)
        let next = match result {
            Ok(resp) => match resp.status() {
                StatusCode::TOO_MANY_REQUESTS if attempts_left => {
                    let now =
                        skew.map_or_else(|| SystemClock.now_millis(), SkewTracker::server_now);
                    match retry_after(resp.headers(), resp.body(), now) {
                        Some(d) if d > config.max_retry_after => None,
                        // A wait of zero, or a date in the past, gets the backoff floor.
                        Some(d) => Some((d.max(backoff()), true, Reason::RateLimited)),
                        None => Some((backoff(), true, Reason::RateLimited)),
                    }
                }
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                    if idempotent && attempts_left =>
                {
                    Some((backoff(), true, Reason::Unavailable))
                }
                StatusCode::UNAUTHORIZED
                    if self.skew_retry_left
                        && self.skew.as_deref().is_some_and(|s| s.re_signs(resp)) =>
                {
                    // Re-signed with the corrected clock. Not counted: it corrects the clock,
                    // not the network.
                    self.skew_retry_left = false;
                    Some((Duration::ZERO, false, Reason::SkewedUnauthorized))
                }
                _ => None,
            },
            Err(e) if attempts_left => match classify(e) {
                Failure::NotSent => Some((backoff(), true, Reason::NotSent)),
                Failure::MaybeSent if idempotent => Some((backoff(), true, Reason::MaybeSent)),
                _ => None,
            },
            Err(_) => None,
        };
        let started = self.started;
        let (wait, counted, reason) = next.filter(|(w, _, _)| {
            let elapsed = started.map_or(Duration::ZERO, |t| t.elapsed());
            elapsed.saturating_add(*w) <= config.max_elapsed
        })?;
        #[cfg(feature = "tracing")]
        {
            tracing::debug!(
                attempt = self.attempts,
                delay_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                reason = ?reason,
                "retrying"
            );
            tracing::Span::current().record("attempt", self.attempts + 1);
        }
        if counted {
            self.retries += 1;
        }
        if matches!(reason, Reason::MaybeSent) {
            self.retried_unsure = true;
        }
        Some(wait)
    }
}

impl Policy<Request<Full<Bytes>>, Response<Bytes>, Error> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<Bytes>, Error>,
    ) -> Option<Self::Future> {
        let wait = self.next_wait(req, result);
        if wait.is_none()
            && self.retried_unsure
            && let Ok(resp) = result
        {
            resp.extensions_mut().insert(RetriedUnsure);
        }
        wait.map(tokio::time::sleep)
    }

    /// A copy for the next attempt: headers and extensions copied, the body shared.
    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        if self.config.max_attempts <= 1 && !self.skew_retry_left {
            return None;
        }
        let copy = copy_request(req);
        // tower makes the copy for a first attempt with the service's own policy, which it then
        // clones for the request; copies for retries come from that clone, which has counted
        // an attempt. So the first attempt's start is recorded here, once per request.
        if self.attempts == 0 {
            self.started = Some(tokio::time::Instant::now());
        }
        Some(copy)
    }
}

/// On a response: an earlier attempt of its request failed after it may have been processed
/// (so a "not found" may mean "done").
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetriedUnsure;

/// What the client's re-sign of a 401 caused by clock skew needs: the skew measured.
pub(crate) struct SkewRetry {
    pub(crate) tracker: Arc<SkewTracker>,
}

impl SkewRetry {
    /// Whether `resp`, a 401, is worth one re-signed retry: it answers a request signed with a
    /// timestamp (HMAC; Privy requests carry none) under an offset that has changed since (by
    /// more than two offsets measured alike differ), and that offset or the one now measured
    /// is over the threshold.
    fn re_signs(&self, resp: &Response<Bytes>) -> bool {
        let Some(SignedWith(signed)) = resp.extensions().get::<SignedWith>().copied() else {
            return false;
        };
        let now = self.tracker.offset_millis();
        // Offsets measured from `Date` differ by a little from one response to the next.
        signed.abs_diff(now) > AGREEMENT_MS.unsigned_abs()
            && (self.tracker.exceeds_threshold() || self.tracker.beyond_threshold(signed))
    }
}

impl std::fmt::Debug for SkewRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkewRetry")
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

/// A copy of `req` for another attempt: headers and extensions copied, the body shared.
pub(crate) fn copy_request(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

/// Why an attempt is repeated (for tracing).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
enum Reason {
    RateLimited,
    Unavailable,
    SkewedUnauthorized,
    NotSent,
    MaybeSent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let c = RetryConfig::default();
        for retry in 1..40 {
            let d = c.backoff(retry);
            let step = (c.initial_backoff * 2u32.saturating_pow(retry - 1)).min(c.max_backoff);
            assert!(d >= step / 2 && d <= step, "{retry}: {d:?}");
        }
        let draws: std::collections::HashSet<u128> =
            (0..50).map(|_| c.backoff(3).as_nanos()).collect();
        assert!(draws.len() > 40, "jitter varies");
    }

    #[test]
    fn idempotency() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(is_idempotent(&m));
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m));
        }
    }

    mod layer {
        use super::*;
        use tower::ServiceExt as _;
        use tower_layer::Layer as _;
        use tower_test::mock;

        use crate::BoxError;
        use crate::body::BodyError;

        type Mock = mock::Mock<Request<Full<Bytes>>, Response<Bytes>>;
        type Handle = mock::Handle<Request<Full<Bytes>>, Response<Bytes>>;
        type Typed = tower::util::MapErr<Mock, fn(BoxError) -> Error>;
        type Stack = tower::retry::Retry<RetryPolicy, Typed>;

        fn typed(e: BoxError) -> Error {
            Error::from_stack(e, None)
        }

        /// The retry layer over the mock, as the client stacks it: over the typed errors.
        fn stack(policy: RetryPolicy) -> (Stack, Handle) {
            let (svc, handle) = mock::pair();
            let svc: Typed = svc.map_err(typed as fn(BoxError) -> Error);
            (tower::retry::RetryLayer::new(policy).layer(svc), handle)
        }

        fn pair(config: RetryConfig) -> (Stack, Handle) {
            stack(RetryPolicy::new(config, None))
        }

        fn req(method: Method) -> Request<Full<Bytes>> {
            let mut req = Request::new(Full::new(Bytes::from_static(b"{}")));
            *req.method_mut() = method;
            *req.uri_mut() = "/orders".parse().expect("uri");
            req
        }

        fn status(code: u16) -> Response<Bytes> {
            let mut resp = Response::new(Bytes::new());
            *resp.status_mut() = StatusCode::from_u16(code).expect("status");
            resp
        }

        fn rate_limited(retry_after: &'static str) -> Response<Bytes> {
            let mut resp = status(429);
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static(retry_after),
            );
            resp
        }

        /// Runs one request, answering its attempts in turn; returns the outcome, the number
        /// of attempts and the (paused, auto-advanced) time it took.
        async fn run(
            config: RetryConfig,
            method: Method,
            answers: Vec<Result<Response<Bytes>, BoxError>>,
        ) -> (Result<Response<Bytes>, Error>, usize, Duration) {
            let (svc, mut handle) = pair(config);
            let started = tokio::time::Instant::now();
            let call = tokio::spawn(svc.oneshot(req(method)));
            let mut attempts = 0;
            for answer in answers {
                let next = tokio::time::timeout(Duration::from_secs(3600), handle.next_request());
                let Ok(Some((req, send))) = next.await else {
                    break;
                };
                assert_eq!(req.body().clone().into_inner_bytes(), b"{}".as_slice());
                attempts += 1;
                match answer {
                    Ok(resp) => send.send_response(resp),
                    Err(e) => send.send_error(e),
                }
            }
            let out = call.await.expect("join");
            (out, attempts, started.elapsed())
        }

        trait IntoBytes {
            fn into_inner_bytes(self) -> Bytes;
        }
        impl IntoBytes for Full<Bytes> {
            fn into_inner_bytes(self) -> Bytes {
                use http_body_util::BodyExt as _;
                futures_util::FutureExt::now_or_never(self.collect())
                    .and_then(Result::ok)
                    .map(|c| c.to_bytes())
                    .unwrap_or_default()
            }
        }

        fn refused() -> BoxError {
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
        }

        fn reset() -> BoxError {
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
        }

        #[tokio::test(start_paused = true)]
        async fn unavailable_is_retried_for_idempotent_methods_only() {
            let answers = || vec![Ok(status(503)), Ok(status(502)), Ok(status(200))];
            let (out, attempts, _) = run(RetryConfig::default(), Method::GET, answers()).await;
            assert_eq!(out.expect("ok").status(), StatusCode::OK);
            assert_eq!(attempts, 3);
            let (out, attempts, _) = run(RetryConfig::default(), Method::POST, answers()).await;
            assert_eq!(out.expect("503").status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(attempts, 1);
        }

        #[tokio::test(start_paused = true)]
        async fn max_attempts_bounds_the_retries() {
            let answers = vec![
                Ok(status(503)),
                Ok(status(503)),
                Ok(status(503)),
                Ok(status(200)),
            ];
            let (out, attempts, _) = run(RetryConfig::default(), Method::GET, answers).await;
            assert_eq!(out.expect("503").status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(attempts, 3);
            let answers = vec![Ok(status(503)), Ok(status(200))];
            let (out, attempts, _) = run(RetryConfig::disabled(), Method::GET, answers).await;
            assert_eq!(out.expect("503").status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(attempts, 1);
        }

        #[tokio::test(start_paused = true)]
        async fn rate_limits_wait_as_asked_even_for_posts() {
            let answers = vec![Ok(rate_limited("7")), Ok(status(201))];
            let (out, attempts, took) = run(RetryConfig::default(), Method::POST, answers).await;
            assert_eq!(out.expect("ok").status(), StatusCode::CREATED);
            assert_eq!(attempts, 2);
            assert!(
                took >= Duration::from_secs(7) && took < Duration::from_secs(8),
                "{took:?}"
            );
            // A body's retryAfterSeconds, when there is no header.
            let mut body_says = status(429);
            *body_says.body_mut() = Bytes::from_static(br#"{"retryAfterSeconds":2}"#);
            let answers = vec![Ok(body_says), Ok(status(200))];
            let (_, attempts, took) = run(RetryConfig::default(), Method::GET, answers).await;
            assert_eq!(attempts, 2);
            assert!(
                took >= Duration::from_secs(2) && took < Duration::from_secs(3),
                "{took:?}"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_wait_of_zero_or_in_the_past_gets_the_backoff_floor() {
            for asked in ["0", "Thu, 01 Jan 1970 00:00:01 GMT"] {
                let answers = vec![Ok(rate_limited(asked)), Ok(status(200))];
                let (out, attempts, took) =
                    run(RetryConfig::default(), Method::POST, answers).await;
                assert_eq!(out.expect("ok").status(), StatusCode::OK);
                assert_eq!(attempts, 2);
                // The upper half of the first backoff step, 100 ms.
                assert!(
                    took >= Duration::from_millis(50) && took <= Duration::from_millis(100),
                    "{asked}: {took:?}"
                );
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_wait_longer_than_allowed_is_returned() {
            let answers = vec![Ok(rate_limited("600")), Ok(status(200))];
            let (out, attempts, took) = run(RetryConfig::default(), Method::GET, answers).await;
            assert_eq!(out.expect("429").status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(attempts, 1);
            assert!(took < Duration::from_secs(1));
        }

        #[tokio::test(start_paused = true)]
        async fn no_retry_starts_after_the_time_budget() {
            let config = RetryConfig {
                max_elapsed: Duration::from_secs(30),
                max_attempts: 10,
                ..RetryConfig::default()
            };
            let answers = vec![
                Ok(rate_limited("20")),
                Ok(rate_limited("20")),
                Ok(status(200)),
            ];
            let (out, attempts, took) = run(config, Method::GET, answers).await;
            assert_eq!(out.expect("429").status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(attempts, 2, "20 s + 20 s is past the 30 s budget");
            assert!(took >= Duration::from_secs(20) && took < Duration::from_secs(21));
        }

        #[tokio::test(start_paused = true)]
        async fn a_service_reused_later_gives_each_request_its_own_time_budget() {
            let config = RetryConfig {
                max_elapsed: Duration::from_secs(30),
                ..RetryConfig::default()
            };
            let (mut svc, mut handle) = pair(config);
            for round in 0..2 {
                tower::ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
                    .await
                    .expect("ready");
                let call = tower::Service::call(&mut svc, req(Method::GET));
                let serve = async {
                    let mut attempts = 0;
                    for answer in [status(503), status(200)] {
                        let next =
                            tokio::time::timeout(Duration::from_secs(60), handle.next_request());
                        let Ok(Some((_, send))) = next.await else {
                            break;
                        };
                        attempts += 1;
                        send.send_response(answer);
                    }
                    attempts
                };
                let (out, attempts) = tokio::join!(call, serve);
                assert_eq!(out.expect("ok").status(), StatusCode::OK, "round {round}");
                assert_eq!(attempts, 2, "round {round}: retried");
                // Far past the first request's budget.
                tokio::time::advance(Duration::from_secs(600)).await;
            }
        }

        #[test]
        fn unbounded_limits_do_not_overflow() {
            let config = RetryConfig {
                max_elapsed: Duration::MAX,
                max_retry_after: Duration::MAX,
                max_backoff: Duration::MAX,
                ..RetryConfig::default()
            };
            let mut policy = RetryPolicy::new(config, None);
            let mut first = req(Method::GET);
            // The first copy records when the request started.
            first = policy.clone_request(&first).expect("a copy to retry with");
            // Started seconds ago: seconds elapsed plus u64::MAX seconds would overflow.
            policy.started = Some(tokio::time::Instant::now() - Duration::from_secs(5));
            let wait = policy.next_wait(&first, &Ok(rate_limited("18446744073709551615")));
            assert_eq!(
                wait,
                Some(Duration::from_secs(u64::MAX)),
                "allowed, not overflowed"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn connect_failures_are_retried_even_for_posts_lost_connections_are_not() {
            let answers = vec![Err(refused()), Err(refused()), Ok(status(201))];
            let (out, attempts, took) = run(RetryConfig::default(), Method::POST, answers).await;
            assert_eq!(out.expect("ok").status(), StatusCode::CREATED);
            assert_eq!(attempts, 3);
            // Backoff with jitter: the upper half of 100 ms, then of 200 ms.
            assert!(took >= Duration::from_millis(150) && took <= Duration::from_millis(300));
            let answers = vec![Err(reset()), Ok(status(201))];
            let (out, attempts, _) = run(RetryConfig::default(), Method::POST, answers).await;
            assert!(out.is_err());
            assert_eq!(
                attempts, 1,
                "a POST that may have been processed is not repeated"
            );
            let answers = vec![Err(reset()), Ok(status(200))];
            let (out, attempts, _) = run(RetryConfig::default(), Method::GET, answers).await;
            assert_eq!(out.expect("ok").status(), StatusCode::OK);
            assert_eq!(attempts, 2);
        }

        #[tokio::test(start_paused = true)]
        async fn client_errors_and_local_errors_are_final() {
            for code in [400, 401, 403, 409, 422] {
                let answers = vec![Ok(status(code)), Ok(status(200))];
                let (out, attempts, _) = run(RetryConfig::default(), Method::GET, answers).await;
                assert_eq!(out.expect("status").status().as_u16(), code);
                assert_eq!(attempts, 1, "{code}");
            }
            let local: BoxError = Box::new(BodyError::TooLarge { limit: 1 });
            let (out, attempts, _) = run(
                RetryConfig::default(),
                Method::GET,
                vec![Err(local), Ok(status(200))],
            )
            .await;
            assert!(out.is_err());
            assert_eq!(attempts, 1);
        }

        /// The client's skew re-sign, over a tracker that measured the server 60 s ahead.
        fn skewed() -> Arc<SkewRetry> {
            use crate::FixedClock;
            let tracker = Arc::new(SkewTracker::new(
                Arc::new(FixedClock::new(0)),
                Duration::from_secs(5),
                Duration::from_secs(3600),
            ));
            let mut date = HeaderMap::new();
            date.insert(
                http::header::DATE,
                http::HeaderValue::from_static("Thu, 01 Jan 1970 00:01:00 GMT"),
            );
            tracker.observe(StatusCode::OK, &date, 0, 0);
            assert!(tracker.exceeds_threshold());
            Arc::new(SkewRetry { tracker })
        }

        /// A 401 to a request signed with the offset `signed_with`.
        fn unauthorized(signed_with: i64) -> Response<Bytes> {
            let mut resp = status(401);
            resp.extensions_mut().insert(SignedWith(signed_with));
            resp
        }

        /// The attempts `policy` makes for `req`, each answered `answer()`.
        async fn attempts_with(
            policy: RetryPolicy,
            req: Request<Full<Bytes>>,
            answer: impl Fn() -> Response<Bytes>,
        ) -> usize {
            let (svc, mut handle) = stack(policy);
            let call = tokio::spawn(svc.oneshot(req));
            let mut attempts = 0;
            for _ in 0..3 {
                let next = tokio::time::timeout(Duration::from_secs(60), handle.next_request());
                let Ok(Some((_, send))) = next.await else {
                    break;
                };
                attempts += 1;
                send.send_response(answer());
            }
            let out = call.await.expect("join").expect("response");
            assert_eq!(out.status(), StatusCode::UNAUTHORIZED);
            attempts
        }

        #[tokio::test(start_paused = true)]
        async fn a_skewed_401_is_re_signed_once_when_the_offset_moved_and_there_is_a_timestamp() {
            // Without skew tracking a 401 is final.
            let (_, attempts, _) =
                run(RetryConfig::default(), Method::GET, vec![Ok(status(401))]).await;
            assert_eq!(attempts, 1);
            let policy = || RetryPolicy::new(RetryConfig::default(), Some(skewed()));
            // An HMAC POST signed before the offset was measured: re-signed once.
            assert_eq!(
                attempts_with(policy(), req(Method::POST), || unauthorized(0)).await,
                2
            );
            // Signed with the offset measured since: the clock is not the problem.
            let same = || unauthorized(60_500);
            assert_eq!(attempts_with(policy(), req(Method::POST), same).await, 1);
            // A request sent without a timestamp (Privy) has no mark: a corrected clock cannot
            // help it.
            assert_eq!(
                attempts_with(policy(), req(Method::POST), || status(401)).await,
                1
            );
        }
    }

    #[test]
    fn classification_of_the_typed_errors() {
        use crate::BoxError;
        let local = Error::Body(crate::BodyError::TooLarge { limit: 1 });
        assert_eq!(classify(&local), Failure::Final);
        let typed = |e: BoxError| Error::from_stack(e, None);
        let refused = typed(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(matches!(refused, Error::Connect(_)));
        assert_eq!(classify(&refused), Failure::NotSent);
        let reset = typed(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(matches!(reset, Error::Transport(_)));
        assert_eq!(classify(&reset), Failure::MaybeSent);
        let timeout = Error::from_stack(
            Box::new(tower::timeout::error::Elapsed::new()),
            Some(Duration::from_secs(3)),
        );
        assert!(matches!(timeout, Error::Timeout(d) if d == Duration::from_secs(3)));
        assert_eq!(classify(&timeout), Failure::MaybeSent);
        let policy = typed(Box::new(crate::PolicyError::missing(
            &Method::GET,
            "/x",
            crate::Accepts::PRIVY,
        )));
        assert!(matches!(policy, Error::Policy(_)));
        assert_eq!(classify(&policy), Failure::Final);
    }
}
