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
use crate::credentials::IdentityToken;
use crate::headers::{IDENTITY, LMTS_SIGNATURE, X_API_KEY};
use crate::layer::ResponseFuture;
use crate::layer::hmac::has_header;
use crate::policy::{Accepts, AuthMode, PolicyError, Selected, SelectedAuth, refused};

/// The `identity` header value to insert into `req`: `Ok(None)` to pass it on unchanged.
fn token_for<B>(
    req: &Request<B>,
    own: Option<&IdentityToken>,
) -> Result<Option<http::HeaderValue>, PolicyError> {
    let ext = req.extensions();
    if let Some(decision) = ext.get::<SelectedAuth>() {
        // Below a policy: carry out its decision, and nothing else.
        return Ok(match &decision.selected {
            Selected::Privy(token) => {
                decision.claim();
                Some(token.header_value())
            }
            _ => None,
        });
    }
    // On its own: every request carries the token, unless a layer above authenticated it
    // otherwise.
    if has_header(req.headers(), [&LMTS_SIGNATURE, &X_API_KEY]) {
        return Ok(None);
    }
    if let Some(&mode) = ext.get::<AuthMode>()
        && mode != AuthMode::Privy
    {
        return Err(PolicyError::not_this_layer(
            req.method(),
            req.uri(),
            mode,
            AuthMode::Privy,
        ));
    }
    ext.get::<IdentityToken>()
        .or(own)
        .map(|token| Some(token.header_value()))
        .ok_or_else(|| PolicyError::missing(req.method(), req.uri(), Accepts::PRIVY))
}

/// Adds the Privy identity token to Privy requests: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct IdentityLayer {
    token: Option<IdentityToken>,
}

impl IdentityLayer {
    /// Sends `token` on Privy requests (unless the request carries another one).
    pub fn new(token: IdentityToken) -> Self {
        Self { token: Some(token) }
    }

    /// Holds no token of its own: carries out the Privy decisions of an
    /// [`AuthPolicyLayer`](crate::AuthPolicyLayer) above, with the token it chose. Without a
    /// policy above, every request fails locally.
    pub fn for_policy() -> Self {
        Self { token: None }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Identity<S> {
        Identity {
            inner,
            token: self.token.clone(),
        }
    }
}

/// The service made by [`IdentityLayer`].
#[derive(Clone, Debug)]
pub struct Identity<S> {
    inner: S,
    token: Option<IdentityToken>,
}

impl<S> Identity<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for Identity<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match token_for(&req, self.token.as_ref()) {
            Ok(Some(value)) => {
                req.headers_mut().insert(IDENTITY, value);
                ResponseFuture::inner(self.inner.call(req))
            }
            Ok(None) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::error(refused(e)),
        }
    }
}
