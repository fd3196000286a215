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

use http::{HeaderMap, HeaderName, Request};
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::body::get_unhashed;
use crate::credentials::{CachedCredentials, Credentials};
use crate::policy::{Accepts, AuthMode, PolicyError, Selected, SelectedAuth};

/// Where a layer used on its own (without a policy above) takes its credential from.
#[derive(Clone, Debug)]
pub(crate) enum Own<T> {
    /// None: the layer only carries out a policy's decisions.
    None,
    /// A fixed credential.
    Fixed(T),
    /// The current credential of a handle that can be swapped, read through this service's
    /// own reader.
    Shared(CachedCredentials),
}

impl<T: Clone> Own<T> {
    /// The credential now: the fixed one, or `pick` of the shared credentials.
    pub(crate) fn get(
        &mut self,
        pick: impl FnOnce(&crate::Credentials) -> Option<&T>,
    ) -> Option<T> {
        match self {
            Self::Fixed(t) => Some(t.clone()),
            Self::Shared(shared) => pick(shared.current()).cloned(),
            Self::None => None,
        }
    }
}

/// What a layer that carries out one mode does with a request.
pub(crate) enum Plan<'r, T> {
    /// Pass it on untouched: it is another mode's.
    Pass,
    /// Carry out the decision of the policy above (claimed): always this layer's mode.
    Decided(&'r Selected),
    /// On its own: authenticate it with this credential.
    Own(T),
}

/// The one rule of the [`hmac`] and [`privy`] layers, for a layer carrying out `mode`:
/// - below a policy: its decision, for the request it was made for, and nothing else;
/// - on its own: every request, with a credential of `T` from the request's extensions or the
///   layer's own, unless a layer above authenticated it otherwise (it carries one of `others`),
///   and refused when it asks for another mode or no credential is at hand.
#[inline]
pub(crate) fn plan<'r, B, T>(
    req: &'r Request<B>,
    mode: AuthMode,
    others: [&HeaderName; 2],
    own: &mut Own<T>,
    pick: impl FnOnce(&Credentials) -> Option<&T>,
) -> Result<Plan<'r, T>, PolicyError>
where
    T: Clone + Send + Sync + 'static,
{
    let ext = req.extensions();
    if let Some(decision) = ext.get::<SelectedAuth>() {
        return Ok(match decision.take_up(req, |m| m == mode)? {
            Some(selected) => Plan::Decided(selected),
            None => Plan::Pass,
        });
    }
    if has_header(req.headers(), others) {
        return Ok(Plan::Pass);
    }
    if let Some(&asked) = ext.get::<AuthMode>()
        && asked != mode
    {
        return Err(PolicyError::not_this_layer(
            req.method(),
            req.uri(),
            asked,
            mode,
        ));
    }
    ext.get::<T>()
        .cloned()
        .or_else(|| own.get(pick))
        .map(Plan::Own)
        .ok_or_else(|| PolicyError::missing(req.method(), req.uri(), Accepts::only(mode)))
}

/// Whether `headers` carry one of `names` (the credential of another mode, set by a layer
/// above).
#[inline]
fn has_header(headers: &HeaderMap, names: [&HeaderName; 2]) -> bool {
    !headers.is_empty() && names.iter().any(|n| get_unhashed(headers, n).is_some())
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
