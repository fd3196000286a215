//! Privy identity-token injection as a tower layer.
//!
//! [`IdentityLayer`] inserts `identity: Bearer <token>` (marked sensitive) into requests whose
//! mode is Privy: those for which an [`AuthPolicyLayer`](crate::AuthPolicyLayer) above selected
//! Privy, or, without a policy, those whose extensions hold [`AuthMode::Privy`]. Every other
//! request passes unchanged. An [`IdentityToken`] in a request's extensions overrides the
//! layer's own.
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
use crate::headers::IDENTITY;
use crate::layer::ResponseFuture;
use crate::policy::{Accepts, AuthMode, PolicyError, SelectedAuth};

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

    /// Holds no token of its own: uses the token an
    /// [`AuthPolicyLayer`](crate::AuthPolicyLayer) above selected.
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
        let ext = req.extensions();
        let value = match ext.get::<SelectedAuth>() {
            Some(SelectedAuth::Privy(token)) => Some(token.header_value()),
            Some(_) => None,
            None if ext.get::<AuthMode>() == Some(&AuthMode::Privy) => {
                match ext.get::<IdentityToken>().or(self.token.as_ref()) {
                    Some(token) => Some(token.header_value()),
                    None => {
                        return ResponseFuture::error(
                            PolicyError::missing(req.method(), req.uri(), Accepts::PRIVY).into(),
                        );
                    }
                }
            }
            None => None,
        };
        if let Some(value) = value {
            req.headers_mut().insert(IDENTITY, value);
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}
