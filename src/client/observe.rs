//! The clock-skew observer layer: the server's clock offset from each response's `Date`, and the
//! response body read within a limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::error::Error;
use crate::BoxError;
use crate::body::{BodyError, Collect};
use crate::clock::{Clock, OffsetClock};

/// A timeout for one request, overriding the client's; insert it into the request's extensions.
///
/// It bounds each attempt: sending, the response head and the whole body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

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
    pub(crate) fn offset_millis(&self) -> i64 {
        self.clock.offset_millis()
    }

    /// Whether the measured offset is beyond the threshold at which a 401 is retried.
    pub(crate) fn exceeds_threshold(&self) -> bool {
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
        if headers.get(http::header::AGE).is_some() {
            return;
        }
        let Some(date) = headers
            .get(http::header::DATE)
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

/// The clock-skew observer: learns the server's clock offset from each response's `Date` and
/// reads the response body within a limit, so that the attempt timeout above it covers the
/// whole exchange and the retry policy can read the body (`retryAfterSeconds`).
#[derive(Clone, Debug)]
pub(crate) struct Observe<S> {
    inner: S,
    skew: Arc<SkewTracker>,
    limit: usize,
    /// Added to each attempt that has none: per attempt, below the retry layer, so that the
    /// copy of the request kept for retries has no headers to clone in the common case.
    user_agent: http::HeaderValue,
}

impl<S> Observe<S> {
    pub(crate) fn new(
        inner: S,
        skew: Arc<SkewTracker>,
        limit: usize,
        user_agent: http::HeaderValue,
    ) -> Self {
        Self {
            inner,
            skew,
            limit,
            user_agent,
        }
    }
}

impl<S, B> Service<Request<Full<Bytes>>> for Observe<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = Receive<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    /// Calling the stack below signs the request: the timestamp is taken as close to sending
    /// as it can be.
    fn call(&mut self, mut req: Request<Full<Bytes>>) -> Self::Future {
        if req.headers().get(http::header::USER_AGENT).is_none() {
            req.headers_mut()
                .insert(http::header::USER_AGENT, self.user_agent.clone());
        }
        let sent = self.skew.local_now();
        Receive {
            skew: self.skew.clone(),
            sent,
            limit: self.limit,
            state: ReceiveState::Head {
                fut: self.inner.call(req),
            },
        }
    }
}

pin_project! {
    /// Awaits the response head, learns the clock offset from its `Date`, and reads the body.
    pub(crate) struct Receive<F, B> {
        skew: Arc<SkewTracker>,
        sent: i64,
        limit: usize,
        #[pin]
        state: ReceiveState<F, B>,
    }
}

pin_project! {
    #[project = ReceiveProj]
    enum ReceiveState<F, B> {
        Head {
            #[pin]
            fut: F,
        },
        Body {
            #[pin]
            collect: Collect<B>,
            parts: Option<http::response::Parts>,
        },
    }
}

impl<F, B> Future for Receive<F, B>
where
    F: Future<Output = Result<Response<B>, BoxError>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Bytes>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ReceiveProj::Head { fut } => {
                    let response = ready!(fut.poll(cx))?;
                    let received = this.skew.local_now();
                    this.skew
                        .observe(response.status(), response.headers(), *this.sent, received);
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
                    let failed = |e: Error| -> BoxError { Box::new(e) };
                    return Poll::Ready(match read {
                        Ok(bytes) => Ok(Response::from_parts(parts, bytes)),
                        Err(BodyError::TooLarge { .. } | BodyError::TooLargeDeclared { .. }) => {
                            Err(failed(Error::ResponseTooLarge {
                                status: parts.status,
                                limit,
                            }))
                        }
                        Err(BodyError::Stream(e)) => Err(failed(Error::Transport(e))),
                        Err(other) => Err(failed(Error::Transport(Box::new(other)))),
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
