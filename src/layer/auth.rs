//! [`AuthLayer`]: the route policy, the identity token and HMAC signing in one service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use super::hmac::{HmacSigning, HmacSigningLayer, SigningFuture};
#[cfg(doc)]
use super::privy::IdentityLayer;
use crate::BoxError;
use crate::clock::{Clock, SystemClock};
use crate::credentials::Credentials;
use crate::headers::IDENTITY;
use crate::policy::{AuthPolicyLayer, PolicyConfig, RouteTable, SelectedAuth};

/// Policy → identity → HMAC signing in one layer, sharing one set of credentials.
///
/// It behaves exactly as stacking [`AuthPolicyLayer`], [`IdentityLayer::for_policy`] and
/// [`HmacSigningLayer::for_policy`] by hand, and does the three steps in one service: the
/// request is moved once, its future is the signing layer's own, and the common request (HMAC
/// with the stack's own token) carries its decision without a per-request extension.
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
    policy: AuthPolicyLayer,
    signing: HmacSigningLayer<C>,
}

impl AuthLayer<SystemClock> {
    /// The three layers over the default Limitless [`RouteTable`].
    pub fn new(credentials: Credentials) -> Self {
        Self::with_table(credentials, RouteTable::limitless())
    }

    /// The three layers over a custom route table.
    pub fn with_table(credentials: Credentials, table: RouteTable) -> Self {
        let signing = match &credentials.hmac {
            Some(hmac) => HmacSigningLayer::new(hmac.clone()),
            None => HmacSigningLayer::for_policy(),
        };
        Self {
            policy: AuthPolicyLayer::with_own_hmac_below(credentials, table),
            signing,
        }
    }
}

impl<C> AuthLayer<C> {
    /// Signs with timestamps from `clock`.
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> AuthLayer<D> {
        AuthLayer {
            policy: self.policy,
            signing: self.signing.with_clock(clock),
        }
    }

    /// Sets the largest request body read and signed (default 1 MiB).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.signing = self.signing.body_limit(limit);
        self
    }
}

impl<S, C: Clone> Layer<S> for AuthLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            policy: self.policy.config().clone(),
            signing: self.signing.layer(inner),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S, C = SystemClock> {
    policy: Arc<PolicyConfig>,
    signing: HmacSigning<S, C>,
}

impl<S, C> Auth<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        self.signing.get_ref()
    }
}

impl<S, B, C> Service<Request<B>> for Auth<S, C>
where
    S: Service<Request<Full<Bytes>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    C: Clock + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SigningFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.signing, cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Err(e) = self.policy.decide(&mut req) {
            #[cfg(feature = "tracing")]
            tracing::debug!(error = %e, "refused by the route policy");
            return SigningFuture::failed(e.into());
        }
        // What the identity layer does below a policy: send the token the policy selected.
        if let Some(SelectedAuth::Privy(token)) = req.extensions().get::<SelectedAuth>() {
            let value = token.header_value();
            req.headers_mut().insert(IDENTITY, value);
        }
        self.signing.call(req)
    }
}
