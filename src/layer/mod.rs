//! The tower layers: [`hmac`] signs, [`privy`] adds the identity token, and [`auth`] does both
//! with the route policy ([`AuthPolicyLayer`](crate::AuthPolicyLayer)) in one service, which
//! decides per route which of them acts.

pub mod auth;
pub mod hmac;
pub mod privy;

pub use auth::{Auth, AuthLayer};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::BoxError;
use crate::credentials::SharedCredentials;

/// Where a layer used on its own (without a policy above) takes its credential from.
#[derive(Clone, Debug)]
pub(crate) enum Own<T> {
    /// None: the layer only carries out a policy's decisions.
    None,
    /// A fixed credential.
    Fixed(T),
    /// The current credential of a handle that can be swapped.
    Shared(SharedCredentials),
}

impl<T: Clone> Own<T> {
    /// The credential now: the fixed one, or `pick` of the shared credentials.
    pub(crate) fn get(&self, pick: impl FnOnce(&crate::Credentials) -> Option<&T>) -> Option<T> {
        match self {
            Self::Fixed(t) => Some(t.clone()),
            Self::Shared(shared) => pick(&shared.guard()).cloned(),
            Self::None => None,
        }
    }
}

pin_project! {
    /// The future of the synchronous layers ([`AuthPolicy`](crate::AuthPolicy),
    /// [`Identity`](privy::Identity)): the inner service's future, or an error decided before
    /// the inner service was called.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] fut: F },
        Failed { err: Option<BoxError> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F) -> Self {
        Self {
            kind: Kind::Inner { fut },
        }
    }

    pub(crate) fn error(err: BoxError) -> Self {
        Self {
            kind: Kind::Failed { err: Some(err) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx).map_err(Into::into),
            KindProj::Failed { err } => Poll::Ready(Err(err
                .take()
                .unwrap_or_else(|| "future polled after completion".into()))),
        }
    }
}
