//! [`AuthLayer`]: the route policy, the identity token and HMAC signing in one service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::hmac::{Signer, SigningFuture, sign_then_call};
use super::privy::identity_value;
#[cfg(doc)]
use super::{hmac::HmacSigningLayer, privy::IdentityLayer};
use crate::BoxError;
use crate::body::DEFAULT_BODY_LIMIT;
use crate::clock::{Clock, SystemClock};
use crate::credentials::CachedCredentials;
#[cfg(doc)]
use crate::credentials::Credentials;
use crate::headers::IDENTITY;
use crate::policy::{AuthPolicyLayer, PolicyConfig, RouteTable, Selected, SelectedAuth, refused};

/// Policy → identity → HMAC signing in one layer, sharing one set of credentials.
///
/// It behaves exactly as stacking [`AuthPolicyLayer`], [`IdentityLayer::for_policy`] and
/// [`HmacSigningLayer::for_policy`] by hand: the same decision, made by the same code, carried
/// out in the same service that makes it, so the decision needs no per-request extension and
/// the request is moved once.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use limitless_auth::{AuthLayer, Credentials, HmacCredentials, IdentityToken};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let creds = Credentials::new()
///     .with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?)
///     .with_identity(IdentityToken::new("privy-identity-token")?);
/// let svc = ServiceBuilder::new()
///     .layer(AuthLayer::new(creds))
///     .service_fn(|req: Request<Full<Bytes>>| async move {
///         let privy = req.uri().path() == "/auth/api-tokens/capabilities";
///         assert_eq!(req.headers().contains_key("identity"), privy);
///         assert_eq!(req.headers().contains_key("lmts-signature"), !privy);
///         Ok::<_, std::convert::Infallible>(Response::new(()))
///     });
/// for path in ["/auth/api-tokens/capabilities", "/orders"] {
///     svc.clone().oneshot(Request::get(path).body(Full::new(Bytes::new()))?).await?;
/// }
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct AuthLayer<C = SystemClock> {
    policy: Arc<PolicyConfig>,
    clock: C,
    body_limit: usize,
}

impl AuthLayer<SystemClock> {
    /// The three layers over the default Limitless [`RouteTable`], with fixed [`Credentials`]
    /// or a [`SharedCredentials`](crate::SharedCredentials) handle that can be swapped.
    pub fn new(credentials: impl Into<crate::SharedCredentials>) -> Self {
        Self::with_table(credentials, RouteTable::limitless())
    }

    /// The three layers over a custom route table.
    pub fn with_table(credentials: impl Into<crate::SharedCredentials>, table: RouteTable) -> Self {
        Self {
            policy: AuthPolicyLayer::with_table(credentials, table)
                .config()
                .clone(),
            clock: SystemClock,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

impl<C> AuthLayer<C> {
    /// The policy's configuration (route table and credentials), shared with the client.
    #[cfg(feature = "client")]
    pub(crate) fn config(&self) -> &Arc<PolicyConfig> {
        &self.policy
    }

    /// Signs with timestamps from `clock`, and judges identity-token expiry by it.
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> AuthLayer<D> {
        AuthLayer {
            policy: self.policy,
            clock,
            body_limit: self.body_limit,
        }
    }

    /// Sets the largest request body read and signed (default 1 MiB).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }
}

impl<S, C: Clone> Layer<S> for AuthLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            policy: self.policy.clone(),
            credentials: Reading::Shared(self.policy.cached_credentials()),
            clock: self.clock.clone(),
            body_limit: self.body_limit,
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S, C = SystemClock> {
    inner: S,
    policy: Arc<PolicyConfig>,
    credentials: Reading,
    clock: C,
    body_limit: usize,
}

/// Which credentials an [`Auth`] service decides with.
#[derive(Clone, Debug)]
enum Reading {
    /// The stack's current ones, through this service's own reader.
    Shared(CachedCredentials),
    /// Fixed for this service instance: the client pins a request's credentials so that all
    /// its attempts use them.
    #[cfg(feature = "client")]
    Pinned(Arc<crate::Credentials>),
}

impl<S, C> Auth<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Decides with `credentials` rather than the stack's current ones.
    #[cfg(feature = "client")]
    pub(crate) fn pin(&mut self, credentials: Arc<crate::Credentials>) {
        self.credentials = Reading::Pinned(credentials);
    }
}

impl<S, B, C> Service<Request<B>> for Auth<S, C>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: Clock + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SigningFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The same decision the policy layer makes, carried out here rather than passed down
        // (a decision from a policy above is carried out as it is).
        let selected = match req.extensions().get::<SelectedAuth>() {
            // This layer carries out every mode.
            Some(decision) => match decision.take_up(&req, |_| true) {
                Ok(selected) => selected.cloned().unwrap_or(Selected::None),
                Err(e) => return SigningFuture::failed(refused(e)),
            },
            None => match self.policy.decide(
                &mut req,
                match &mut self.credentials {
                    Reading::Shared(cached) => cached.current(),
                    #[cfg(feature = "client")]
                    Reading::Pinned(pinned) => pinned,
                },
            ) {
                Ok(selected) => selected,
                Err(e) => return SigningFuture::failed(refused(e)),
            },
        };
        match selected {
            Selected::Hmac(creds, body_rule) => {
                let signer = Signer { creds, body_rule };
                sign_then_call(&mut self.inner, req, signer, &self.clock, self.body_limit)
            }
            Selected::Privy(token) => match identity_value(&req, &token, &self.clock) {
                Ok(value) => {
                    req.headers_mut().insert(IDENTITY, value);
                    SigningFuture::calling(self.inner.call(req))
                }
                Err(e) => SigningFuture::failed(refused(e)),
            },
            Selected::ApiKey | Selected::None => SigningFuture::calling(self.inner.call(req)),
        }
    }
}
