//! Signing a tower request once its body is at hand, then calling the inner service.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Config;
use crate::BoxError;
use crate::apply::{Signer, SigningError, signing_target};
use crate::body::{Gather, check_declared};
use crate::clock::Clock;
use crate::policy::RoutePrefix;

/// Checks the body against the signer's scope rule, signs `req` with `body`, and inserts the
/// three headers.
fn sign<B, C: Clock>(
    req: &mut Request<B>,
    signer: &Signer,
    body: &[u8],
    clock: &C,
) -> Result<(), BoxError> {
    let (method, uri) = (req.method(), req.uri());
    let target = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|t| t.starts_with('/'))
        .ok_or_else(|| SigningError::invalid_target(method, uri))?;
    signer
        .check_body(method, uri.path(), body)
        .map_err(super::refused)?;
    let target = signing_target(target, req.extensions().get::<RoutePrefix>());
    let signed = signer.sign(method, target, body, clock)?;
    signed.insert(req.headers_mut());
    Ok(())
}

/// Reads `req`'s body within the limit, signs it, and calls `inner` (which `poll_ready` made
/// ready) with the signed request. A body already in memory (or ended) is read and signed here,
/// in place; any other is read by the returned future first.
pub(crate) fn sign_then_call<S, B, C>(
    inner: &mut S,
    mut req: Request<B>,
    signer: Signer,
    config: &Arc<Config<C>>,
) -> AuthFuture<S, B, C>
where
    S: Service<Request<B>> + Clone,
    B: Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: Clock,
{
    // A body at its end that declares no length is the empty body: signed with nothing to
    // read, and handed on as the (empty) bytes that were signed.
    if req.body().is_end_stream() && req.headers().get(http::header::CONTENT_LENGTH).is_none() {
        return match sign(&mut req, &signer, b"", &config.clock) {
            Ok(()) => {
                *req.body_mut() = B::from(Bytes::new());
                AuthFuture::calling(inner.call(req))
            }
            Err(e) => AuthFuture::failed(e),
        };
    }
    let declared = match check_declared(req.headers(), req.body(), config.body_limit) {
        Ok(d) => d,
        Err(e) => return AuthFuture::failed(e.into()),
    };
    let mut gather = Gather::new(config.body_limit, declared);
    // A body already in memory (`Full<Bytes>`) is complete on the first poll, whatever the
    // waker: sign now.
    let noop = &mut Context::from_waker(Waker::noop());
    match gather.poll_body(Pin::new(req.body_mut()), noop) {
        Poll::Ready(Ok(bytes)) => match sign(&mut req, &signer, &bytes, &config.clock) {
            Ok(()) => {
                *req.body_mut() = B::from(bytes);
                AuthFuture::calling(inner.call(req))
            }
            Err(e) => AuthFuture::failed(e),
        },
        Poll::Ready(Err(e)) => AuthFuture::failed(e.into()),
        Poll::Pending => {
            // Refuse an unsignable target before reading the body.
            if !req
                .uri()
                .path_and_query()
                .is_some_and(|pq| pq.as_str().starts_with('/'))
            {
                let e = SigningError::invalid_target(req.method(), req.uri());
                return AuthFuture::failed(e.into());
            }
            // The body must be read first: take the ready service, leave a clone in its place.
            let clone = inner.clone();
            let inner = mem::replace(inner, clone);
            AuthFuture {
                state: State::Reading {
                    reading: Box::new(Reading {
                        gather,
                        pending: Some(Pending {
                            req,
                            inner,
                            signer,
                            config: config.clone(),
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
    config: Arc<Config<C>>,
}

/// A body being read, with the request it belongs to. It lives on the heap, so that the future
/// of the common request (an empty or in-memory body) stays a few words long.
struct Reading<S, B, C> {
    gather: Gather,
    pending: Option<Pending<S, B, C>>,
}

pin_project! {
    /// The future of [`Auth`](crate::Auth): reads the body if it was not in memory, signs, then
    /// calls the inner service; or the refusal, decided before the inner service was called.
    pub struct AuthFuture<S, B, C>
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
        Reading {
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

impl<S, B, C> AuthFuture<S, B, C>
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

impl<S, B, C> Future for AuthFuture<S, B, C>
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
                StateProj::Reading { reading } => {
                    let Reading { gather, pending } = &mut **reading;
                    let Some(p) = pending.as_mut() else {
                        return Poll::Ready(Err("future polled after completion".into()));
                    };
                    let body = ready!(gather.poll_body(Pin::new(p.req.body_mut()), cx))?;
                    let Some(Pending {
                        mut req,
                        mut inner,
                        signer,
                        config,
                    }) = pending.take()
                    else {
                        return Poll::Ready(Err("future polled after completion".into()));
                    };
                    sign(&mut req, &signer, &body, &config.clock)?;
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
