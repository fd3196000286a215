//! [`AuthLayer`]: the route policy as one tower layer.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::future::{AuthFuture, sign_then_call};
use super::{Config, authorize, refused};
use crate::BoxError;
use crate::body::DEFAULT_BODY_LIMIT;
use crate::clock::{Clock, SystemClock};
use crate::credentials::SharedCredentials;
use crate::policy::RouteTable;

/// The route policy as a tower layer: each request gets exactly the authentication its route
/// accepts, with the credentials at hand, or is refused before the inner service is called.
///
/// For every request, in its `call`, the service:
/// 1. removes every authentication header the caller set (`lmts-*`, `identity`, `x-api-key`);
/// 2. [`decide`](crate::decide)s with the route table, the request's method, path and
///    extensions, and the credentials current at that moment;
/// 3. carries the decision out: the route's stripped headers removed, then the identity token,
///    the API key, or the HMAC signature over the exact body bytes with a fresh timestamp.
///
/// A refusal ([`PolicyError`](crate::PolicyError), [`BodyError`](crate::BodyError),
/// [`SigningError`](crate::SigningError)) comes back as the service's error, and the inner
/// service's `call` never sees the request. Since the decision is made and carried out in one
/// step, any stack is safe: `AuthLayer` over `AuthLayer` puts the same authentication on the
/// wire as one.
///
/// Request bodies must implement `From<Bytes>` (to carry the signed bytes on) and `Unpin` (to
/// be read in place): `Full<Bytes>` does, and is signed without a copy; wrap any other body in
/// [`SignedBody`](crate::SignedBody). A request that is not signed passes with its body
/// untouched: not read, not limited, not rebuilt.
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
///         // A Privy-only route gets the identity token and nothing else; others are signed.
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
    config: Config<C>,
}

impl AuthLayer<SystemClock> {
    /// The policy over the default Limitless [`RouteTable`], with fixed [`Credentials`] or a
    /// [`SharedCredentials`] handle that can be swapped at run time.
    ///
    /// [`Credentials`]: crate::Credentials
    pub fn new(credentials: impl Into<SharedCredentials>) -> Self {
        Self::with_table(credentials, RouteTable::limitless())
    }

    /// The policy over a custom route table.
    pub fn with_table(credentials: impl Into<SharedCredentials>, table: RouteTable) -> Self {
        Self {
            config: Config {
                table: Arc::new(table),
                credentials: credentials.into(),
                clock: SystemClock,
                body_limit: DEFAULT_BODY_LIMIT,
            },
        }
    }
}

impl<C> AuthLayer<C> {
    /// The route table, shared with the client's own steps.
    #[cfg(feature = "client")]
    pub(crate) fn table(&self) -> &Arc<RouteTable> {
        &self.config.table
    }

    /// Signs with timestamps from `clock`, and judges identity-token expiry by it.
    pub fn with_clock<D: Clock + Clone>(self, clock: D) -> AuthLayer<D> {
        let Config {
            table,
            credentials,
            body_limit,
            ..
        } = self.config;
        AuthLayer {
            config: Config {
                table,
                credentials,
                clock,
                body_limit,
            },
        }
    }

    /// Sets the largest request body read and signed (default 1 MiB).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.config.body_limit = limit;
        self
    }
}

impl<S, C: Clone> Layer<S> for AuthLayer<C> {
    type Service = Auth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

/// The service made by [`AuthLayer`], [`HmacSigningLayer`](crate::HmacSigningLayer) and
/// [`IdentityLayer`](crate::IdentityLayer).
#[derive(Clone, Debug)]
pub struct Auth<S, C = SystemClock> {
    inner: S,
    config: Arc<Config<C>>,
}

impl<S, B, C> Service<Request<B>> for Auth<S, C>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: Clock,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AuthFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match authorize(&mut req, &self.config) {
            Ok(None) => AuthFuture::calling(self.inner.call(req)),
            Ok(Some(signer)) => sign_then_call(&mut self.inner, req, signer, &self.config),
            Err(e) => AuthFuture::failed(refused(e)),
        }
    }
}
