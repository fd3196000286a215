//! The clock-skew observer layer: the server's clock offset from each response's `Date` (kept by
//! the crate's `SkewTracker`), and the response body read within a limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxError;
use crate::body::{BodyError, Collect};
use crate::skew::SkewTracker;

/// A response body that could not be read whole: the stack's error, which the client's one
/// mapping makes [`Error::ResponseTooLarge`](super::Error::ResponseTooLarge) or a transport
/// error.
#[derive(Debug, thiserror::Error)]
#[error("the {status} response body could not be read: {error}")]
pub(crate) struct ResponseBodyError {
    pub(crate) status: http::StatusCode,
    pub(crate) limit: usize,
    #[source]
    pub(crate) error: BodyError,
}

/// A timeout for one request, overriding the client's; insert it into the request's extensions.
///
/// It bounds each attempt: sending, the response head and the whole body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

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

    /// Takes the request as the authentication layer above carried its decision out: a
    /// request signed with a timestamp is marked with the clock offset it was signed with.
    fn call(&mut self, mut req: Request<Full<Bytes>>) -> Self::Future {
        if req.headers().get(http::header::USER_AGENT).is_none() {
            req.headers_mut()
                .insert(http::header::USER_AGENT, self.user_agent.clone());
        }
        let sent = self.skew.local_now();
        let signed_with = req
            .headers()
            .contains_key(crate::headers::LMTS_TIMESTAMP)
            .then(|| SignedWith(self.skew.offset_millis()));
        Receive {
            skew: self.skew.clone(),
            sent,
            signed_with,
            limit: self.limit,
            state: ReceiveState::Head {
                fut: self.inner.call(req),
            },
        }
    }
}

/// On the response to a request signed with a timestamp (HMAC): the clock offset applied when
/// it was signed, in milliseconds. A 401 is re-signed only when there is a timestamp to
/// correct, and the offset has changed since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SignedWith(pub(crate) i64);

pin_project! {
    /// Awaits the response head, learns the clock offset from its `Date`, and reads the body.
    pub(crate) struct Receive<F, B> {
        skew: Arc<SkewTracker>,
        sent: i64,
        signed_with: Option<SignedWith>,
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
                    let (mut parts, body) = response.into_parts();
                    if let Some(signed_with) = *this.signed_with {
                        parts.extensions.insert(signed_with);
                    }
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
                    return Poll::Ready(match read {
                        Ok(bytes) => Ok(Response::from_parts(parts, bytes)),
                        Err(error) => Err(Box::new(ResponseBodyError {
                            status: parts.status,
                            limit: *this.limit,
                            error,
                        })),
                    });
                }
            }
        }
    }
}
