//! Privy identity-token injection as a tower layer.
//!
//! [`IdentityLayer`] inserts `identity: Bearer <token>` (marked sensitive):
//! - below an [`AuthPolicyLayer`](crate::AuthPolicyLayer): into exactly the requests for which
//!   the policy chose Privy, with the token it chose; every other request passes unchanged;
//! - on its own: into every request, with its own token (or an [`IdentityToken`] in the
//!   request's extensions). A request that asks for another [`AuthMode`] fails locally, and one
//!   that already carries an `lmts-signature` or `x-api-key` header (authenticated by a layer
//!   above) passes through.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use limitless_auth::{AuthMode, IdentityLayer, IdentityToken};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let svc = ServiceBuilder::new()
//!     .layer(IdentityLayer::new(IdentityToken::new("privy-identity-token")?))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         assert_eq!(req.headers()["identity"], "Bearer privy-identity-token");
//!         assert!(req.headers()["identity"].is_sensitive());
//!         Ok::<_, std::convert::Infallible>(Response::new(()))
//!     });
//! let mut req = Request::get("/auth/api-tokens/capabilities").body(Full::new(Bytes::new()))?;
//! req.extensions_mut().insert(AuthMode::Privy);
//! svc.oneshot(req).await?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::clock::{Clock, SystemClock};
use crate::credentials::{IdentityToken, SharedCredentials};
use crate::headers::{IDENTITY, LMTS_SIGNATURE, X_API_KEY};
use crate::layer::{Own, Plan, ResponseFuture, plan};
use crate::policy::{AuthMode, PolicyError, Selected, refused};

/// The `identity` header value to insert into `req`: `Ok(None)` to pass it on unchanged.
fn token_for<B>(
    req: &Request<B>,
    own: &mut Own<IdentityToken>,
    clock: &impl Clock,
) -> Result<Option<http::HeaderValue>, PolicyError> {
    let plan = plan(
        req,
        AuthMode::Privy,
        [&LMTS_SIGNATURE, &X_API_KEY],
        own,
        |c| c.identity.as_ref(),
    )?;
    match plan {
        Plan::Decided(Selected::Privy(token)) => identity_value(req, token, clock).map(Some),
        Plan::Own(token) => identity_value(req, &token, clock).map(Some),
        Plan::Pass | Plan::Decided(_) => Ok(None),
    }
}

/// The `identity` header value for `token`, refused once the token has expired by `clock`.
pub(crate) fn identity_value<B>(
    req: &Request<B>,
    token: &IdentityToken,
    clock: &impl Clock,
) -> Result<http::HeaderValue, PolicyError> {
    match PolicyError::expired(req.method(), req.uri(), token, clock.now_millis()) {
        Some(e) => Err(e),
        None => Ok(token.header_value()),
    }
}

/// Adds the Privy identity token to Privy requests: see the [module docs](self).
///
/// A token whose JWT `exp` has passed (by the layer's clock) is refused locally with
/// [`PolicyError::IdentityExpired`]; nothing is sent.
#[derive(Clone, Debug)]
pub struct IdentityLayer<C = SystemClock> {
    token: Own<IdentityToken>,
    clock: C,
}

impl IdentityLayer<SystemClock> {
    /// Sends `token` on Privy requests (unless the request carries another one).
    pub fn new(token: IdentityToken) -> Self {
        Self {
            token: Own::Fixed(token),
            clock: SystemClock,
        }
    }

    /// Sends the identity token `shared` holds when each request starts: it can be swapped
    /// (refreshed) while the stack runs.
    pub fn shared(shared: SharedCredentials) -> Self {
        Self {
            token: Own::Shared(shared.cached()),
            clock: SystemClock,
        }
    }

    /// Holds no token of its own: carries out the Privy decisions of an
    /// [`AuthPolicyLayer`](crate::AuthPolicyLayer) above, with the token it chose. Without a
    /// policy above, every request fails locally.
    pub fn for_policy() -> Self {
        Self {
            token: Own::None,
            clock: SystemClock,
        }
    }
}

impl<C> IdentityLayer<C> {
    /// Judges token expiry by `clock` instead.
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> IdentityLayer<D> {
        IdentityLayer {
            token: self.token,
            clock,
        }
    }
}

impl<S, C: Clone> Layer<S> for IdentityLayer<C> {
    type Service = Identity<S, C>;

    fn layer(&self, inner: S) -> Identity<S, C> {
        Identity {
            inner,
            token: self.token.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// The service made by [`IdentityLayer`].
#[derive(Clone, Debug)]
pub struct Identity<S, C = SystemClock> {
    inner: S,
    token: Own<IdentityToken>,
    clock: C,
}

impl<S, C> Identity<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, C> Service<Request<B>> for Identity<S, C>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    C: Clock,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match token_for(&req, &mut self.token, &self.clock) {
            Ok(Some(value)) => {
                req.headers_mut().insert(IDENTITY, value);
                ResponseFuture::inner(self.inner.call(req))
            }
            Ok(None) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::error(refused(e)),
        }
    }
}
