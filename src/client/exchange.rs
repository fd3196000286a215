//! One attempt: send through the authentication stack, learn the clock offset from the
//! response's `Date`, read the body within a limit, all within the attempt's timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::error::Error;
use crate::BoxError;
use crate::body::{BodyError, Collect, get_unhashed};
use crate::clock::{Clock, OffsetClock};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A timeout for one request, overriding the client's; insert it into the request's extensions.
///
/// It bounds each attempt: sending, the response head and the whole body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// What went wrong within one attempt, after the authentication stack.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("the {status} response body exceeds the {limit}-byte limit")]
    TooLarge { status: StatusCode, limit: usize },
    #[error("reading the response body failed: {0}")]
    BodyRead(BoxError),
}

impl AttemptError {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Timeout(d) => Error::Timeout(d),
            Self::TooLarge { status, limit } => Error::ResponseTooLarge { status, limit },
            Self::BodyRead(e) => Error::Transport(e),
        }
    }
}

/// Learns the server's clock offset from response `Date` headers and shares it with every
/// clone (and with the signing layer, which signs with the corrected time).
#[derive(Clone)]
pub(crate) struct SkewTracker {
    clock: OffsetClock<Arc<dyn Clock>>,
    threshold_ms: i64,
    /// The local second of the last measurement: one a second is plenty.
    measured_second: Arc<AtomicI64>,
}

/// `Date` has whole seconds: an offset below this is indistinguishable from none.
const DATE_RESOLUTION_MS: i64 = 1_000;

impl SkewTracker {
    pub(crate) fn new(base: Arc<dyn Clock>, threshold: Duration) -> Self {
        Self {
            clock: OffsetClock::new(base),
            threshold_ms: i64::try_from(threshold.as_millis()).unwrap_or(i64::MAX),
            measured_second: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The corrected clock the signing layer reads.
    pub(crate) fn clock(&self) -> OffsetClock<Arc<dyn Clock>> {
        self.clock.clone()
    }

    /// The offset applied when signing, in milliseconds (server minus local).
    pub fn offset_millis(&self) -> i64 {
        self.clock.offset_millis()
    }

    /// Whether the measured offset is beyond the threshold at which a 401 is retried.
    pub fn exceeds_threshold(&self) -> bool {
        self.clock.offset_millis().saturating_abs() > self.threshold_ms
    }

    /// The local, uncorrected time.
    pub(crate) fn local_now(&self) -> i64 {
        self.clock.base_millis()
    }

    /// The server's time as best known.
    pub(crate) fn server_now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// Records the offset measured from a response's `Date`, sent at `sent` and received at
    /// `received` (local milliseconds). Cached responses (with `Age`) and unparsable dates are
    /// ignored. Once a second is enough, except for a 401, which may be the symptom of skew and
    /// is always measured.
    pub(crate) fn observe(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        sent: i64,
        received: i64,
    ) {
        let second = received.div_euclid(1000);
        if status != StatusCode::UNAUTHORIZED
            && self.measured_second.load(Ordering::Relaxed) == second
        {
            return;
        }
        if get_unhashed(headers, &http::header::AGE).is_some() {
            return;
        }
        let Some(date) = get_unhashed(headers, &http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
        else {
            return;
        };
        let Ok(since_epoch) = date.duration_since(UNIX_EPOCH) else {
            return;
        };
        let Ok(date_ms) = i64::try_from(since_epoch.as_millis()) else {
            return;
        };
        // The server stamped Date somewhere in [date, date + 1 s) while we waited.
        let server = date_ms + DATE_RESOLUTION_MS / 2;
        let midpoint = sent + (received - sent) / 2;
        let offset = server.saturating_sub(midpoint);
        let applied = if offset.saturating_abs() < DATE_RESOLUTION_MS {
            0
        } else {
            offset
        };
        self.clock.set_offset_millis(applied);
        self.measured_second.store(second, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SkewTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkewTracker")
            .field("offset_ms", &self.clock.offset_millis())
            .field("threshold_ms", &self.threshold_ms)
            .finish()
    }
}

/// The stack's response future and body.
type StackFuture = <super::Stack as Service<Request<Full<Bytes>>>>::Future;
type StackBody = http_body_util::Either<super::pool::PooledBody, super::transport::CustomBody>;

/// One attempt through `svc`, which the caller has made ready: the timeout (the request's
/// [`RequestTimeout`], else `timeout`) covers sending, the response head and the body; the
/// response's `Date` feeds `skew`; the body is read up to `limit` bytes (a single chunk is kept
/// without a copy).
///
/// Calling the stack signs the request: the timestamp is taken as close to sending as it can
/// be.
pub(crate) fn attempt<'a>(
    svc: &mut super::Stack,
    req: Request<Full<Bytes>>,
    timeout: Option<Duration>,
    skew: &'a SkewTracker,
    limit: usize,
) -> Attempt<'a> {
    let timeout = req
        .extensions()
        .get::<RequestTimeout>()
        .map(|t| t.0)
        .or(timeout);
    let sent = skew.local_now();
    let receive = Receive {
        skew,
        sent,
        limit,
        state: ReceiveState::Head { fut: svc.call(req) },
    };
    match timeout {
        Some(after) => Attempt::Timed {
            fut: tokio::time::timeout(after, receive),
            after,
        },
        None => Attempt::Untimed { fut: receive },
    }
}

pin_project! {
    /// The future of [`attempt`].
    #[project = AttemptProj]
    pub(crate) enum Attempt<'a> {
        Timed {
            #[pin]
            fut: tokio::time::Timeout<Receive<'a>>,
            after: Duration,
        },
        Untimed {
            #[pin]
            fut: Receive<'a>,
        },
    }
}

impl Future for Attempt<'_> {
    type Output = Result<Response<Bytes>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AttemptProj::Timed { fut, after } => fut
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(AttemptError::Timeout(*after).into()))),
            AttemptProj::Untimed { fut } => fut.poll(cx),
        }
    }
}

pin_project! {
    /// Awaits the response head, learns the clock offset from its `Date`, and reads the body.
    pub(crate) struct Receive<'a> {
        skew: &'a SkewTracker,
        sent: i64,
        limit: usize,
        #[pin]
        state: ReceiveState,
    }
}

pin_project! {
    #[project = ReceiveProj]
    enum ReceiveState {
        Head {
            #[pin]
            fut: StackFuture,
        },
        Body {
            #[pin]
            collect: Collect<StackBody>,
            parts: Option<http::response::Parts>,
        },
    }
}

impl Future for Receive<'_> {
    type Output = Result<Response<Bytes>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ReceiveProj::Head { fut } => {
                    let response = ready!(fut.poll(cx))?;
                    let skew = *this.skew;
                    let received = skew.local_now();
                    skew.observe(response.status(), response.headers(), *this.sent, received);
                    let (parts, body) = response.into_parts();
                    this.state.set(ReceiveState::Body {
                        collect: Collect::new(body, *this.limit, None),
                        parts: Some(parts),
                    });
                }
                ReceiveProj::Body { collect, parts } => {
                    let read = ready!(collect.poll(cx));
                    let Some(parts) = parts.take() else {
                        return Poll::Ready(Err("future polled after completion".into()));
                    };
                    let limit = *this.limit;
                    return Poll::Ready(match read {
                        Ok(bytes) => Ok(Response::from_parts(parts, bytes)),
                        Err(BodyError::TooLarge { .. } | BodyError::TooLargeDeclared { .. }) => {
                            Err(Box::new(AttemptError::TooLarge {
                                status: parts.status,
                                limit,
                            }))
                        }
                        Err(BodyError::Stream(e)) => Err(Box::new(AttemptError::BodyRead(e))),
                        Err(other) => Err(Box::new(AttemptError::BodyRead(Box::new(other)))),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use http::HeaderValue;

    fn tracker(local: i64) -> (SkewTracker, FixedClock) {
        let base = FixedClock::new(local);
        (
            SkewTracker::new(Arc::new(base.clone()), Duration::from_secs(5)),
            base,
        )
    }

    fn date(text: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::DATE, HeaderValue::from_static(text));
        h
    }

    // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s
    const DATE_MS: i64 = 784_111_777_000;

    #[test]
    fn learns_offset_from_date_at_the_midpoint() {
        let (t, _) = tracker(DATE_MS - 60_000);
        t.observe(
            StatusCode::OK,
            &date("Sun, 06 Nov 1994 08:49:37 GMT"),
            DATE_MS - 60_200,
            DATE_MS - 59_800,
        );
        assert_eq!(t.offset_millis(), 60_500);
        assert!(t.exceeds_threshold());
        assert_eq!(t.server_now(), DATE_MS + 500);
    }

    #[test]
    fn agreeing_clocks_apply_no_offset() {
        let (t, _) = tracker(DATE_MS);
        t.observe(
            StatusCode::OK,
            &date("Sun, 06 Nov 1994 08:49:37 GMT"),
            DATE_MS,
            DATE_MS + 40,
        );
        assert_eq!(t.offset_millis(), 0);
        assert!(!t.exceeds_threshold());
    }

    #[test]
    fn cached_and_garbage_dates_are_ignored() {
        let (t, _) = tracker(0);
        let mut cached = date("Sun, 06 Nov 1994 08:49:37 GMT");
        cached.insert(http::header::AGE, HeaderValue::from_static("30"));
        t.observe(StatusCode::OK, &cached, 0, 0);
        assert_eq!(t.offset_millis(), 0);
        for garbage in [
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37",
            "",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "\u{0}",
        ] {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(garbage) {
                h.insert(http::header::DATE, v);
            }
            t.observe(StatusCode::OK, &h, 0, 0);
            assert_eq!(t.offset_millis(), 0, "{garbage:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            http::header::DATE,
            HeaderValue::from_bytes(&[0xff, b'x']).expect("opaque header"),
        );
        t.observe(StatusCode::OK, &h, 0, 0);
        assert_eq!(t.offset_millis(), 0);
    }

    #[test]
    fn measures_once_a_second_but_every_401() {
        let (t, _) = tracker(0);
        let ok = date("Sun, 06 Nov 1994 08:49:37 GMT");
        t.observe(StatusCode::OK, &ok, DATE_MS - 10_000, DATE_MS - 10_000);
        assert_eq!(t.offset_millis(), 10_500);
        // Same local second: not measured again.
        t.observe(StatusCode::OK, &ok, DATE_MS - 20_000, DATE_MS - 9_999);
        assert_eq!(t.offset_millis(), 10_500);
        // A 401 always is.
        t.observe(
            StatusCode::UNAUTHORIZED,
            &ok,
            DATE_MS - 9_500,
            DATE_MS - 9_500,
        );
        assert_eq!(t.offset_millis(), 10_000);
        // The next second is.
        t.observe(StatusCode::OK, &ok, DATE_MS - 30_000, DATE_MS - 8_500);
        assert_ne!(t.offset_millis(), 10_000);
    }
}
