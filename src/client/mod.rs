//! A client for the Limitless API built from this crate's layers (feature `client`).
//!
//! Each request goes down one `tower` stack, outer to inner:
//!
//! ```text
//! retry           tower::retry with the client's policy over its typed errors: attempts,
//!                 backoff with jitter, Retry-After, one re-signed retry of a 401 caused by
//!                 clock skew, the time budget
//! └ typed errors  the one place where the stack's boxed errors become client::Error
//!   └ timeout     tower::timeout, per attempt: sending, the response head and the whole body
//!     └ AuthLayer  decide and carry out: identity: Bearer … on Privy routes; lmts-* headers
//!                  on HMAC routes, signed with the corrected clock; local refusal when the
//!                  route's credential is missing
//!       └ observe  the server's clock offset from Date; the response body read within a
//!                  limit; a mark on the response when the request carried a timestamp
//!         └ transport  hyper-util's pooled client over hyper-rustls (ring, web PKI roots or your
//!                      own rustls config): HTTP/2 when the server offers it by ALPN, HTTP/1.1
//!                      otherwise, idle connections reaped in the background; or any tower
//!                      service of yours (ClientBuilder::build_with_transport)
//! ```
//!
//! The observer sits below the authentication layer, so it sees what was carried out: a 401 is
//! re-signed only when the request it answers carried a timestamp, read from the request
//! itself rather than decided again.
//!
//! Signing sits below retry, so every attempt carries a fresh timestamp and signature. With an
//! identity source or denied scopes, the client first asks [`decide`] how the request will be
//! sent, and refreshes the identity token or checks the HMAC token's scopes; the stack's
//! `AuthLayer` then carries out that same decision (its mode is pinned on the request). The
//! client is cheap to clone (one `Arc`) and clones share the connection pool, the credentials
//! and the measured clock offset.
//!
//! ```no_run
//! use limitless_auth::{Credentials, client::Client};
//!
//! # async fn run() -> Result<(), limitless_auth::client::Error> {
//! let client = Client::builder().credentials(Credentials::from_env()?).build()?;
//! let caps = client.capabilities().await?;          // Privy identity token only
//! println!("{caps:?}");
//! let tokens = client.list_tokens().await?;          // HMAC
//! # Ok(()) }
//! ```
//!
//! # Retries
//!
//! | outcome | idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) | other methods (POST, PATCH) |
//! |---|---|---|
//! | could not connect (nothing sent) | retried with backoff | retried with backoff |
//! | refused before processing: HTTP/2 `REFUSED_STREAM`, a stream above a `GOAWAY`'s last one, a request handed back unsent | retried with backoff | retried with backoff |
//! | a TLS certificate the client does not accept ([`Error::Certificate`]) | returned: it cannot change | the same |
//! | 429 Too Many Requests | after `Retry-After` / `retryAfterSeconds`, at least the backoff step; else backoff | the same |
//! | 502, 503, 504 | retried with backoff | returned: the request may have been processed |
//! | timeout, connection lost, unanswered HTTP/2 PING | retried with backoff | returned: the request may have been processed |
//! | 401 to a request signed with a timestamp (HMAC), when the measured clock offset has moved past the threshold since it was signed | re-signed with corrected time and retried once | the same |
//! | 400, 401, 403, 409, 422, any other status, any local error | returned | returned |
//!
//! Backoff is exponential with jitter (each delay drawn from the upper half of
//! `initial_backoff · 2ⁿ`, capped at `max_backoff`). No attempt starts after `max_elapsed`, and a
//! server-requested wait longer than `max_retry_after` is returned to the caller as a rate-limit
//! error instead of slept through.

mod api;
mod builder;
mod error;
mod holder;
mod observe;
mod response;
mod retry;
mod rotation;
mod transport;
mod url;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt as _;

use crate::skew::SkewTracker;
pub use builder::ClientBuilder;
pub use error::{Error, RawBody, RotationStep};
use holder::Holder;
use observe::Observe;
pub use observe::RequestTimeout;
pub use response::ApiResponse;
pub use retry::RetryConfig;
use retry::{RetryPolicy, copy_request};
pub use rotation::Rotation;
use transport::Transport;
use url::{BaseUrl, parse_target};

use crate::clock::{Clock, OffsetClock};
use crate::policy::upper;
use crate::{
    Auth, AuthMode, Credential, HmacCredentials, IdentityToken, PolicyError, RouteTable,
    SharedCredentials, decide,
};

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://api.limitless.exchange";
/// The `user-agent` the client sends unless the request has one.
pub const USER_AGENT: &str = concat!("limitless-auth/", env!("CARGO_PKG_VERSION"));
/// The default largest response body read: 8 MiB.
pub const DEFAULT_RESPONSE_LIMIT: usize = 8 * 1024 * 1024;

/// `method path_and_query`, with `json_body` (if any) as `application/json`.
fn json_request(
    method: Method,
    path_and_query: &str,
    json_body: Option<Bytes>,
) -> Result<Request<Bytes>, Error> {
    let pq = parse_target(path_and_query)?;
    let json = json_body.as_ref().is_some_and(|b| !b.is_empty());
    let mut req = Request::new(json_body.unwrap_or_default());
    *req.method_mut() = method;
    *req.uri_mut() = Uri::from(pq);
    if json {
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(req)
}

/// The stack below the per-attempt timeout: the authentication layer over the skew observer
/// over the shared transport.
type Stack = Auth<Observe<Transport>, OffsetClock<Arc<dyn Clock>>>;

/// A Limitless API client: see the [module docs](self).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    stack: Stack,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    base: BaseUrl,
    skew: Arc<SkewTracker>,
    /// The table the stack's authentication layer decides with.
    table: Arc<RouteTable>,
    holder: Holder,
    rotation_proof: Duration,
}

/// One request through the whole stack. Boxed: the compiler cannot prove `Send` for the
/// unboxed future of an `async` block that holds it (rust-lang/rust#102211).
type Call<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Response<Bytes>, Error>> + Send + 'a>>;

/// A [`Call`] in the request's tracing span.
#[cfg(feature = "tracing")]
type Traced<'a> = tracing::instrument::Instrumented<Call<'a>>;
#[cfg(not(feature = "tracing"))]
type Traced<'a> = Call<'a>;

impl Inner {
    /// One request through the whole stack: retry, typed errors, the attempt timeout, then the
    /// stack.
    fn call(&self, req: Request<Full<Bytes>>, timeout: Option<Duration>) -> Call<'static> {
        let svc = tower::ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(self.retry.clone()))
            .map_err(move |e| Error::from_stack(e, timeout))
            .option_layer(timeout.map(tower::timeout::TimeoutLayer::new))
            .service(self.stack.clone());
        Box::pin(svc.oneshot(req))
    }
}

/// A request ready for the stack, with the timeout of its attempts and its tracing span.
struct Prepared {
    req: Request<Full<Bytes>>,
    timeout: Option<Duration>,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The server's clock minus the local clock, as measured from `Date` headers and applied
    /// when signing (0 until measured, and while under one second).
    pub fn clock_offset_millis(&self) -> i64 {
        self.inner.skew.offset_millis()
    }

    /// The client's credentials: swap them (`store`, `update`) to change what requests decided
    /// from then on use, in every clone of the client.
    pub fn credentials(&self) -> &SharedCredentials {
        &self.inner.holder.shared
    }

    /// Sends any request. A URI that is a path is joined to the base URL; an absolute URI must
    /// be on the base URL's origin, or the request fails locally with [`Error::ForeignOrigin`]
    /// (so does a `Host` header naming another authority). The method goes on the wire in
    /// upper case, and raw non-ASCII characters in the request-target are percent-encoded
    /// before it is signed. Extensions ([`crate::AuthMode`], credentials, [`RequestTimeout`])
    /// apply to this request only. Any status the server answers with is `Ok`: see
    /// [`ApiResponse::error_for_status`].
    ///
    /// The request is checked and prepared when `send` is called; it is signed and sent when the
    /// returned future is first polled. The future borrows only the client.
    pub fn send<'a>(
        &'a self,
        req: Request<Bytes>,
    ) -> impl Future<Output = Result<ApiResponse, Error>> + Send + use<'a> {
        self.start(Ok(req))
    }

    /// Sends `method path_and_query` with an optional JSON body (sent with
    /// `content-type: application/json`). As with [`Client::send`], the arguments are read
    /// when it is called and nothing is sent until the future is polled.
    pub fn request<'a>(
        &'a self,
        method: Method,
        path_and_query: &str,
        json_body: Option<Bytes>,
    ) -> impl Future<Output = Result<ApiResponse, Error>> + Send + use<'a> {
        self.start(json_request(method, path_and_query, json_body))
    }

    /// Sends a request with `body` serialized once as compact JSON (those exact bytes are
    /// signed and sent) and decodes a 2xx response as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Error> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::InvalidRequest(format!("the body cannot be serialized: {e}")))?
            .map(Bytes::from);
        self.request(method, path_and_query, bytes)
            .await?
            .error_for_status()?
            .json()
    }

    /// [`Client::send`], answering with the whole response, extensions included.
    pub(crate) async fn send_response(
        &self,
        req: Request<Bytes>,
    ) -> Result<Response<Bytes>, Error> {
        let prepared = self.prepare(req)?;
        self.dispatch(prepared).await
    }

    /// The future of [`Client::send`].
    fn start<'a>(
        &'a self,
        req: Result<Request<Bytes>, Error>,
    ) -> impl Future<Output = Result<ApiResponse, Error>> + Send + use<'a> {
        let prepared = req.and_then(|req| self.prepare(req));
        async move {
            let call = match prepared {
                Ok(p) => self.dispatch(p),
                Err(e) => return Err(e),
            };
            call.await.map(ApiResponse::from_response)
        }
    }

    /// The future of one prepared request, in its tracing span: straight down the stack, or,
    /// with an identity source or denied scopes, through the holder's steps first (kept out of
    /// the common path and out of the size of its future).
    fn dispatch(&self, p: Prepared) -> Traced<'_> {
        let call = if self.inner.holder.has_steps() {
            Box::pin(self.send_with_steps(p.req, p.timeout))
        } else {
            self.inner.call(p.req, p.timeout)
        };
        #[cfg(feature = "tracing")]
        return tracing::Instrument::instrument(call, p.span);
        #[cfg(not(feature = "tracing"))]
        call
    }

    /// Asks [`decide`] how `req` will be sent, and before sending it: for HMAC with denied
    /// scopes, learns the token's scopes if unknown and refuses a token holding a denied one;
    /// for Privy with an identity source, refreshes a token that is missing or about to expire,
    /// and once more after the request is answered 401. The mode decided here is pinned on the
    /// request, so the stack carries out this decision on every attempt, whatever the
    /// credentials become meanwhile: a token swapped in later cannot skip these checks.
    async fn send_with_steps(
        &self,
        mut req: Request<Full<Bytes>>,
        timeout: Option<Duration>,
    ) -> Result<Response<Bytes>, Error> {
        let inner = &*self.inner;
        let holder = &inner.holder;
        let creds = holder.shared.load();
        let decided = decide(
            &inner.table,
            req.method(),
            req.uri().path(),
            req.extensions(),
            &creds,
        );
        // A credential the caller put on this request is the caller's to keep fresh.
        let own_identity = req.extensions().get::<IdentityToken>().is_some();
        let mode = match decided {
            Ok(d) => match d.credential {
                Credential::Hmac(hmac) if holder.denies() => {
                    let own = req.extensions().get::<HmacCredentials>().is_some();
                    let hmac = holder.scoped(hmac, !own, |h| self.learn_scopes(h)).await?;
                    holder.check_denied(&hmac)?;
                    // The token checked is the token the stack signs with.
                    req.extensions_mut().insert(hmac);
                    AuthMode::Hmac
                }
                Credential::Privy(token) if holder.refreshes() && !own_identity => {
                    if holder.due(Some(&token), inner.skew.confirmed_server_now()) {
                        holder.refresh_identity(Some(&token)).await?;
                    }
                    AuthMode::Privy
                }
                other => other.mode(),
            },
            Err(PolicyError::MissingCredential { accepts, .. })
                if holder.refreshes() && !own_identity && accepts.contains(AuthMode::Privy) =>
            {
                holder.refresh_identity(None).await?;
                AuthMode::Privy
            }
            Err(refused) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(error = %refused, "refused by the route policy");
                return Err(refused.into());
            }
        };
        drop(creds);
        req.extensions_mut().insert(mode);
        if mode != AuthMode::Privy || !holder.refreshes() || own_identity {
            return inner.call(req, timeout).await;
        }
        // A copy to send again after a 401, when the identity token may be what was refused.
        let again = copy_request(&req);
        let used = holder.shared.load().identity.clone();
        let resp = inner.call(req, timeout).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        holder.refresh_identity(used.as_ref()).await?;
        inner.call(again, timeout).await
    }

    /// The request as the stack takes it: on the base URL, its method in upper case, the route
    /// prefix, and its tracing span (the `user-agent` is added to each attempt).
    fn prepare(&self, req: Request<Bytes>) -> Result<Prepared, Error> {
        let base = &self.inner.base;
        let (mut parts, body) = req.into_parts();
        parts.uri = base.resolve(std::mem::take(&mut parts.uri))?;
        parts.method = upper(parts.method);
        base.check_host(&parts.headers)?;
        if let Some(prefix) = &base.prefix {
            parts.extensions.insert(prefix.clone());
        }
        let timeout = parts
            .extensions
            .get::<RequestTimeout>()
            .map(|t| t.0)
            .or(self.inner.timeout);
        #[cfg(feature = "tracing")]
        let span = tracing::info_span!(
            "limitless.request",
            method = %parts.method,
            path = &*crate::policy::display_path(parts.uri.path()),
            mode = tracing::field::Empty,
            attempt = 1,
            status = tracing::field::Empty,
            skew_ms = tracing::field::Empty,
        );
        Ok(Prepared {
            req: Request::from_parts(parts, Full::new(body)),
            timeout,
            #[cfg(feature = "tracing")]
            span,
        })
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.origin())
            .field("clock_offset_ms", &self.inner.skew.offset_millis())
            .finish_non_exhaustive()
    }
}
