//! [`IdentityLayer`]: the Privy identity token, on the routes that accept it.

use tower_layer::Layer;

use super::auth::{Auth, AuthLayer};
use crate::clock::{Clock, SystemClock};
use crate::credentials::{Credentials, IdentityToken};

/// Adds one Privy identity token, `identity: Bearer <token>` (marked sensitive).
///
/// It is the route policy holding one credential: [`AuthLayer`] with only this token. So it
/// removes any authentication header the caller set, sends the token on every route that
/// accepts Privy, and refuses locally, before the inner service is called, a route that does
/// not (`POST /orders` accepts HMAC or the legacy key: it fails with
/// [`PolicyError::MissingCredential`](crate::PolicyError) naming both). A token whose JWT `exp`
/// has passed by the layer's clock is refused with
/// [`PolicyError::IdentityExpired`](crate::PolicyError). Credentials in a request's extensions
/// apply as they do for [`AuthLayer`].
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use limitless_auth::{IdentityLayer, IdentityToken};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let svc = ServiceBuilder::new()
///     .layer(IdentityLayer::new(IdentityToken::new("privy-identity-token")?))
///     .service_fn(|req: Request<Full<Bytes>>| async move {
///         assert_eq!(req.headers()["identity"], "Bearer privy-identity-token");
///         assert!(req.headers()["identity"].is_sensitive());
///         Ok::<_, std::convert::Infallible>(Response::new(()))
///     });
/// let req = Request::get("/auth/api-tokens/capabilities")
///     .header("lmts-signature", "set by the caller, removed")
///     .body(Full::new(Bytes::new()))?;
/// svc.oneshot(req).await?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct IdentityLayer<C = SystemClock>(AuthLayer<C>);

impl IdentityLayer<SystemClock> {
    /// Sends `token` over the default Limitless [`RouteTable`](crate::RouteTable) (for a custom
    /// table: [`AuthLayer::with_table`] with only this credential).
    pub fn new(token: IdentityToken) -> Self {
        Self(AuthLayer::new(Credentials::new().with_identity(token)))
    }
}

impl<C> IdentityLayer<C> {
    /// Judges token expiry by `clock` instead.
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> IdentityLayer<D> {
        IdentityLayer(self.0.with_clock(clock))
    }
}

impl<S, C: Clone> Layer<S> for IdentityLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        self.0.layer(inner)
    }
}
