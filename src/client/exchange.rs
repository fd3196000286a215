//! One attempt: send through the authentication stack, learn the clock offset from the
//! response's `Date`, read the body within a limit, all within the attempt's timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use tower_service::Service;

use super::error::Error;
use crate::BoxError;
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
pub struct SkewTracker {
    clock: OffsetClock<Arc<dyn Clock>>,
    threshold_ms: i64,
}

/// `Date` has whole seconds: an offset below this is indistinguishable from none.
const DATE_RESOLUTION_MS: i64 = 1_000;

impl SkewTracker {
    pub(crate) fn new(base: Arc<dyn Clock>, threshold: Duration) -> Self {
        Self {
            clock: OffsetClock::new(base),
            threshold_ms: i64::try_from(threshold.as_millis()).unwrap_or(i64::MAX),
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
    /// ignored.
    pub(crate) fn observe(&self, headers: &HeaderMap, sent: i64, received: i64) {
        if headers.contains_key(http::header::AGE) {
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

/// The per-attempt service: timeout, skew observation, bounded response body.
#[derive(Clone)]
pub(crate) struct Exchange<S> {
    pub(crate) inner: S,
    pub(crate) skew: SkewTracker,
    pub(crate) timeout: Option<Duration>,
    pub(crate) response_limit: usize,
}

impl<S, B> Service<Request<Full<Bytes>>> for Exchange<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Bytes>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let timeout = req
            .extensions()
            .get::<RequestTimeout>()
            .map(|t| t.0)
            .or(self.timeout);
        let skew = self.skew.clone();
        let limit = self.response_limit;
        let sent = skew.local_now();
        // Calling now (not inside the async block) signs now: the timestamp is taken as close
        // to sending as the stack allows.
        let response = self.inner.call(req);
        let work = async move {
            let response = response.await.map_err(Into::into)?;
            skew.observe(response.headers(), sent, skew.local_now());
            let (parts, body) = response.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => {
                    return Err(AttemptError::TooLarge {
                        status: parts.status,
                        limit,
                    }
                    .into());
                }
                Err(e) => return Err(AttemptError::BodyRead(e).into()),
            };
            Ok(Response::from_parts(parts, bytes))
        };
        Box::pin(async move {
            match timeout {
                Some(limit) => tokio::time::timeout(limit, work)
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::Timeout(limit).into())),
                None => work.await,
            }
        })
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
        t.observe(&cached, 0, 0);
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
            t.observe(&h, 0, 0);
            assert_eq!(t.offset_millis(), 0, "{garbage:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            http::header::DATE,
            HeaderValue::from_bytes(&[0xff, b'x']).expect("opaque header"),
        );
        t.observe(&h, 0, 0);
        assert_eq!(t.offset_millis(), 0);
    }
}
