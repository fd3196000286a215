//! The client's transport: the built-in connection pool, or any tower service, behind one
//! concrete type.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Either, Full};
use pin_project_lite::pin_project;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use super::exchange::BoxFuture;
use super::pool::{Pool, PooledBody};
use crate::BoxError;

pub(crate) type CustomBody = UnsyncBoxBody<Bytes, BoxError>;
type Custom = BoxCloneSyncService<Request<Full<Bytes>>, Response<CustomBody>, BoxError>;

/// The built-in pool, or a caller's service, boxed.
///
/// The pool sits behind an `Arc`: cloning the transport for a request is one reference-count
/// increment.
#[derive(Clone)]
pub(crate) enum Transport {
    Pooled(Arc<Pool>),
    Custom(Custom),
}

impl Transport {
    /// Wraps any tower service that sends `Request<Full<Bytes>>`.
    pub(crate) fn custom<T, B>(service: T) -> Self
    where
        T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = service
            .map_response(|resp: Response<B>| resp.map(|b| b.map_err(Into::into).boxed_unsync()))
            .map_err(Into::into);
        Self::Custom(BoxCloneSyncService::new(service))
    }
}

pin_project! {
    #[project = TransportFutureProj]
    pub(crate) enum TransportFuture {
        Pooled { fut: BoxFuture<Result<Response<PooledBody>, BoxError>> },
        Custom { fut: BoxFuture<Result<Response<CustomBody>, BoxError>> },
    }
}

impl Future for TransportFuture {
    type Output = Result<Response<Either<PooledBody, CustomBody>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            TransportFutureProj::Pooled { fut } => {
                fut.as_mut().poll(cx).map_ok(|r| r.map(Either::Left))
            }
            TransportFutureProj::Custom { fut } => {
                fut.as_mut().poll(cx).map_ok(|r| r.map(Either::Right))
            }
        }
    }
}

impl Service<Request<Full<Bytes>>> for Transport {
    type Response = Response<Either<PooledBody, CustomBody>>;
    type Error = BoxError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Pooled(_) => Poll::Ready(Ok(())),
            Self::Custom(c) => c.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> TransportFuture {
        match self {
            Self::Pooled(pool) => TransportFuture::Pooled {
                fut: Box::pin(pool.clone().send(req)),
            },
            Self::Custom(c) => TransportFuture::Custom { fut: c.call(req) },
        }
    }
}
