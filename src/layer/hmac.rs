//! [`HmacSigningLayer`]: HMAC signing, on the routes that accept it.

use tower_layer::Layer;

use super::auth::{Auth, AuthLayer};
use crate::clock::{Clock, SystemClock};
use crate::credentials::{Credentials, HmacCredentials};

/// Signs requests with one HMAC token: `lmts-api-key`, `lmts-timestamp` and `lmts-signature`
/// (all marked sensitive) over the request-target as sent and the exact body bytes, with a
/// fresh timestamp from its clock.
///
/// It is the route policy holding one credential: [`AuthLayer`] with only this token. So it
/// removes any authentication header the caller set, signs every route that accepts HMAC, and
/// refuses locally, before the inner service is called, a route that does not: a Privy-only
/// route such as `GET /auth/api-tokens/capabilities` fails with
/// [`PolicyError::MissingCredential`](crate::PolicyError) naming the route and the identity
/// token it needs. Credentials in a request's extensions apply as they do for [`AuthLayer`].
///
/// Bodies are read and passed on as for [`AuthLayer`]: `Full<Bytes>` as it is, anything else
/// in a [`SignedBody`](crate::SignedBody).
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use limitless_auth::{FixedClock, HmacCredentials, HmacSigningLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let creds = HmacCredentials::new("token-123", "c2VjcmV0")?;
/// let svc = ServiceBuilder::new()
///     .layer(HmacSigningLayer::new(creds).with_clock(FixedClock::new(1_774_872_000_000)))
///     .service_fn(|req: Request<Full<Bytes>>| async move {
///         let h = req.headers();
///         assert_eq!(h["lmts-api-key"], "token-123");
///         assert_eq!(h["lmts-timestamp"], "2026-03-30T12:00:00.000Z");
///         assert_eq!(h["lmts-signature"], "lqUdGxW7CcqHKaX99McgZb/TddUNxiFaIm5OiM/GMI0=");
///         assert!(h["lmts-signature"].is_sensitive());
///         Ok::<_, std::convert::Infallible>(Response::new(()))
///     });
/// let req = Request::post("/orders").body(Full::new(Bytes::from_static(br#"{"foo":"bar"}"#)))?;
/// svc.clone().oneshot(req).await?;
///
/// // A route that accepts only the Privy identity token is refused, with nothing sent.
/// let req = Request::get("/auth/api-tokens/capabilities").body(Full::new(Bytes::new()))?;
/// assert!(svc.oneshot(req).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct HmacSigningLayer<C = SystemClock>(AuthLayer<C>);

impl HmacSigningLayer<SystemClock> {
    /// Signs with `credentials` over the default Limitless [`RouteTable`](crate::RouteTable)
    /// (for a custom table: [`AuthLayer::with_table`] with only this credential).
    pub fn new(credentials: HmacCredentials) -> Self {
        Self(AuthLayer::new(Credentials::new().with_hmac(credentials)))
    }
}

impl<C> HmacSigningLayer<C> {
    /// Takes timestamps from `clock` instead.
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> HmacSigningLayer<D> {
        HmacSigningLayer(self.0.with_clock(clock))
    }

    /// Sets the largest request body, in bytes, that will be read and signed (default 1 MiB).
    pub fn body_limit(self, limit: usize) -> Self {
        Self(self.0.body_limit(limit))
    }
}

impl<S, C: Clone> Layer<S> for HmacSigningLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        self.0.layer(inner)
    }
}
