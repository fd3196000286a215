//! A client for the Limitless API built from this crate's layers (feature `client`).
//!
//! Each request goes down one `tower` stack, outer to inner:
//!
//! ```text
//! RetryLayer      tower::retry with RetryPolicy: attempts, backoff with jitter, Retry-After,
//!                 one re-signed retry of a 401 caused by clock skew, the time budget
//! └ Timeout       tower::timeout, per attempt: sending, the response head and the whole body
//!   └ Observe     the server's clock offset from Date; the response body read within a limit
//!     └ Auth      (AuthLayer) one authentication mode per route, local refusal when credentials
//!                 are missing; identity: Bearer … on Privy routes; lmts-* headers on HMAC
//!                 routes, signed with the corrected clock
//!       └ transport  hyper-util's pooled client over hyper-rustls (ring, web PKI roots or your
//!                    own rustls config): HTTP/2 when the server offers it by ALPN, HTTP/1.1
//!                    otherwise, idle connections reaped in the background; or any tower
//!                    service of yours (ClientBuilder::build_with_transport)
//! ```
//!
//! Signing sits below retry, so every attempt carries a fresh timestamp and signature. The
//! client is cheap to clone (one `Arc`) and clones share the connection pool and the measured
//! clock offset.
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

mod error;
mod observe;
pub mod retry;
mod transport;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::Full;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt as _;
use tower_layer::Layer as _;
use tower_service::Service;

pub(crate) use error::error_message;
pub use error::{Error, RawBody, RotationStep};
pub use observe::RequestTimeout;
use observe::{Observe, SkewTracker};
use retry::copy_request;
pub use retry::{Retry, RetryConfig, RetryLayer, RetryPolicy};
pub use transport::{Connector, HttpsTransport};

use crate::clock::OffsetClock;
use crate::clock::{Clock, SystemClock};
use crate::credentials::{Credentials, HmacCredentials, IdentityToken, SharedCredentials};
use crate::policy::{AuthMode, PolicyConfig, PolicyError, RoutePrefix};
use crate::types::{ApiToken, DeriveTokenRequest, DerivedToken, PartnerCapabilities, Scope};
use crate::{AuthLayer, BoxError, DEFAULT_BODY_LIMIT, RouteTable};
use transport::{Transport, TransportConfig};

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://api.limitless.exchange";
/// The `user-agent` the client sends unless the request has one.
pub const USER_AGENT: &str = concat!("limitless-auth/", env!("CARGO_PKG_VERSION"));
/// The default largest response body read: 8 MiB.
pub const DEFAULT_RESPONSE_LIMIT: usize = 8 * 1024 * 1024;

/// The scheme, authority and path prefix requests are sent to.
#[derive(Clone, Debug)]
struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The path before the Limitless routes (`/x` in `https://gw.example/x`), if any.
    prefix: Option<RoutePrefix>,
}

/// `url` with any user-info (`user:password@`) replaced by `***@`, for error messages.
fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

impl BaseUrl {
    fn parse(url: &str, sign_prefix: bool) -> Result<Self, Error> {
        let bad =
            |why: &str| Error::InvalidRequest(format!("base URL {:?} {why}", redact_url(url)));
        let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("must be http or https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not contain credentials"));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let path = uri.path().trim_end_matches('/');
        let prefix = if path.is_empty() {
            None
        } else {
            let prefix = RoutePrefix::new(path).map_err(|e| bad(e.reason))?;
            Some(if sign_prefix {
                prefix
            } else {
                prefix.unsigned()
            })
        };
        Ok(Self {
            scheme,
            authority,
            prefix,
        })
    }

    fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    fn port(scheme: &Scheme, authority: &Authority) -> Option<u16> {
        authority.port_u16().or(if *scheme == Scheme::HTTPS {
            Some(443)
        } else if *scheme == Scheme::HTTP {
            Some(80)
        } else {
            None
        })
    }

    /// Whether `authority` (on this base's scheme) names this base's host and port.
    fn same_authority(&self, authority: &Authority) -> bool {
        authority.host().eq_ignore_ascii_case(self.authority.host())
            && Self::port(&self.scheme, authority) == Self::port(&self.scheme, &self.authority)
            && !authority.as_str().contains('@')
    }

    fn same_origin(&self, uri: &Uri) -> bool {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                *scheme == self.scheme && self.same_authority(authority)
            }
            _ => false,
        }
    }

    /// The absolute URI for a request-target given as a path (and query).
    fn join(&self, pq: PathAndQuery) -> Result<Uri, Error> {
        let target = match &self.prefix {
            None => pq,
            Some(prefix) => format!("{}{}", prefix.as_str(), pq.as_str())
                .parse()
                .map_err(|_| Error::InvalidRequest(format!("cannot join {pq} to the base URL")))?,
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(target);
        Uri::from_parts(parts).map_err(|e| Error::InvalidRequest(format!("invalid URI: {e}")))
    }

    /// Resolves a request's URI: paths join the base; absolute URIs must be on its origin.
    /// Raw non-ASCII bytes in the request-target are percent-encoded first, so that what is
    /// signed is what is sent.
    fn resolve(&self, uri: Uri) -> Result<Uri, Error> {
        match (uri.scheme(), uri.authority()) {
            (None, None) => {
                if !uri.path().starts_with('/') {
                    return Err(Error::InvalidRequest(format!(
                        "{uri} is not a path starting with '/'"
                    )));
                }
                let pq = uri
                    .into_parts()
                    .path_and_query
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                if pq.as_str().is_ascii() {
                    self.join(pq)
                } else {
                    self.join(parse_target(pq.as_str())?)
                }
            }
            (Some(_), Some(authority)) => {
                if !self.same_origin(&uri) {
                    let scheme = uri.scheme_str().unwrap_or_default();
                    return Err(Error::ForeignOrigin {
                        origin: format!("{scheme}://{}", authority.host()),
                        base: self.origin(),
                    });
                }
                match uri.path_and_query() {
                    Some(pq) if !pq.as_str().is_ascii() => Uri::builder()
                        .scheme(self.scheme.clone())
                        .authority(authority.clone())
                        .path_and_query(parse_target(pq.as_str())?)
                        .build()
                        .map_err(|e| Error::InvalidRequest(format!("invalid URI: {e}"))),
                    _ => Ok(uri),
                }
            }
            _ => Err(Error::InvalidRequest(format!(
                "{uri} is neither a path nor an absolute http(s) URL"
            ))),
        }
    }

    /// A caller-set `Host` header must name the base URL's authority: credentials go only there.
    fn check_host(&self, headers: &HeaderMap) -> Result<(), Error> {
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let Some(host) = hosts.next() else {
            return Ok(());
        };
        let same = hosts.next().is_none()
            && host
                .to_str()
                .ok()
                .and_then(|h| h.parse::<Authority>().ok())
                .is_some_and(|a| self.same_authority(&a));
        if same {
            Ok(())
        } else {
            Err(Error::ForeignOrigin {
                origin: format!(
                    "Host: {}",
                    String::from_utf8_lossy(host.as_bytes()).escape_debug()
                ),
                base: self.origin(),
            })
        }
    }
}

/// The method as it goes on the wire: upper case (`get` is sent as `GET`, as it is signed).
fn normalize_method(method: Method) -> Result<Method, Error> {
    let text = method.as_str();
    if !text.bytes().any(|b| b.is_ascii_lowercase()) {
        return Ok(method);
    }
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| Error::InvalidRequest(format!("{text:?} is not a valid method")))
}

/// Parses a path-and-query argument. Raw non-ASCII characters are percent-encoded as UTF-8
/// (`/markets/é` is sent and signed as `/markets/%C3%A9`); anything else that cannot stand in
/// a request-target (spaces, control characters, a fragment) is refused.
fn parse_target(text: &str) -> Result<PathAndQuery, Error> {
    use percent_encoding::{AsciiSet, utf8_percent_encode};
    // Only bytes outside ASCII are encoded.
    let target: std::borrow::Cow<'_, str> = if text.is_ascii() {
        text.into()
    } else {
        utf8_percent_encode(text, &AsciiSet::EMPTY).into()
    };
    target
        .parse::<PathAndQuery>()
        .ok()
        .filter(|pq| target.starts_with('/') && pq.as_str() == target)
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "{text:?} is not a request-target (a path starting with '/'; spaces, control \
                 characters and fragments must be percent-encoded)"
            ))
        })
}

/// A response: status, headers and the whole body.
#[derive(Clone)]
pub struct ApiResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &RawBody(self.body.clone()))
            .finish()
    }
}

impl ApiResponse {
    fn from_response(resp: Response<Bytes>) -> Self {
        let (parts, body) = resp.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// `Ok(self)` for 2xx; otherwise [`Error::RateLimited`] for 429 and [`Error::Status`] for
    /// the rest, with the server's message.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.status.is_success() {
            return Ok(self);
        }
        let message = error_message(&self.body);
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            // An HTTP-date Retry-After is compared with the server's own Date when it sent one.
            let now = self
                .headers
                .get(http::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| httpdate::parse_http_date(s).ok())
                .map_or_else(
                    || SystemClock.now_millis(),
                    crate::clock::system_time_millis,
                );
            return Err(Error::RateLimited {
                retry_after: retry::retry_after(&self.headers, &self.body, now),
                message,
                body: RawBody(self.body),
            });
        }
        Err(Error::Status {
            status: self.status,
            message,
            body: RawBody(self.body),
        })
    }

    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let expected = short_type_name(std::any::type_name::<T>());
            Error::decode(self.status, expected, &e, self.body.clone())
        })
    }
}

/// `alloc::vec::Vec<limitless_auth::types::ApiToken>` → `Vec<ApiToken>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut path = String::new();
    let flush = |path: &mut String, out: &mut String| {
        out.push_str(path.rsplit("::").next().unwrap_or_default());
        path.clear();
    };
    for c in full.replace("{{closure}}::", "").chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else {
            flush(&mut path, &mut out);
            out.push(c);
        }
    }
    flush(&mut path, &mut out);
    out
}

/// Configures and builds a [`Client`].
///
/// ```
/// use std::time::Duration;
/// use limitless_auth::{Credentials, client::Client};
///
/// let client = Client::builder()
///     .base_url("https://api.limitless.exchange")
///     .credentials(Credentials::new())
///     .timeout(Some(Duration::from_secs(10)))
///     .connect_timeout(Duration::from_secs(3))
///     .pool_idle_timeout(Duration::from_secs(30))
///     .pool_max_idle_per_host(16)
///     .build()?;
/// # Ok::<(), limitless_auth::client::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    sign_prefix: bool,
    credentials: SharedCredentials,
    identity_source: Option<IdentitySource>,
    identity_margin: Duration,
    rotation_proof: Duration,
    deny_scopes: Vec<Scope>,
    timeout: Option<Duration>,
    transport: TransportConfig,
    user_agent: String,
    retry: RetryConfig,
    skew_threshold: Duration,
    clock: Arc<dyn Clock>,
    body_limit: usize,
    response_limit: usize,
    routes: RouteTable,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            sign_prefix: true,
            credentials: SharedCredentials::new(Credentials::new()),
            identity_source: None,
            identity_margin: Duration::from_secs(60),
            rotation_proof: Duration::from_secs(120),
            deny_scopes: Vec::new(),
            timeout: Some(Duration::from_secs(30)),
            transport: TransportConfig::default(),
            user_agent: USER_AGENT.to_owned(),
            retry: RetryConfig::default(),
            skew_threshold: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            body_limit: DEFAULT_BODY_LIMIT,
            response_limit: DEFAULT_RESPONSE_LIMIT,
            routes: RouteTable::limitless(),
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &redact_url(&self.base_url))
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.transport.connect_timeout)
            .field("http2", &self.transport.http2)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The API's base URL (default `https://api.limitless.exchange`).
    ///
    /// A path is kept as a prefix, for a gateway that mounts the API below a path: with
    /// `https://gw.example/x`, `list_tokens()` sends `GET /x/auth/api-tokens`. The route policy
    /// classifies the Limitless route (the path after the prefix), and the HMAC signature
    /// covers the request-target as sent, prefix included, unless
    /// [`sign_route_without_prefix`](Self::sign_route_without_prefix) says otherwise.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Signs the route without the base URL's path prefix (`/auth/api-tokens` rather than
    /// `/x/auth/api-tokens`), for a gateway that strips the prefix before the API sees the
    /// request. Default `false`: the signature covers the request-target as sent.
    pub fn sign_route_without_prefix(mut self, without: bool) -> Self {
        self.sign_prefix = !without;
        self
    }

    /// The credentials: any of HMAC, Privy identity token and legacy API key (the one way to
    /// set them). Fixed [`Credentials`], or a [`SharedCredentials`] handle through which a
    /// long-running service swaps them while the client runs (see [`Client::credentials`]).
    pub fn credentials(mut self, credentials: impl Into<SharedCredentials>) -> Self {
        self.credentials = credentials.into();
        self
    }

    /// An async source of fresh Privy identity tokens. The client calls it before a request the
    /// route policy would send with the identity token when the token is missing, expired or
    /// within [`identity_refresh_margin`](Self::identity_refresh_margin) of expiry, and once
    /// after such a request is answered 401. Calls are single-flight: requests that need a
    /// refresh at the same time wait for one call. Its errors come back as
    /// [`Error::IdentitySource`].
    ///
    /// ```no_run
    /// use limitless_auth::{BoxError, IdentityToken, client::Client};
    ///
    /// async fn privy_login() -> Result<String, BoxError> { todo!() }
    ///
    /// let client = Client::builder()
    ///     .identity_source(|| async { Ok(IdentityToken::new(privy_login().await?)?) })
    ///     .build()?;
    /// # Ok::<(), limitless_auth::client::Error>(())
    /// ```
    pub fn identity_source<F, Fut>(mut self, source: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<IdentityToken, BoxError>> + Send + 'static,
    {
        self.identity_source = Some(Arc::new(move || Box::pin(source()) as IdentityFuture));
        self
    }

    /// How long before its expiry an identity token is refreshed (default 60 s).
    pub fn identity_refresh_margin(mut self, margin: Duration) -> Self {
        self.identity_margin = margin;
        self
    }

    /// Least privilege: refuses to send any HMAC request with a token known to hold one of
    /// `scopes` ([`Error::ScopeDenied`], nothing sent). When the token's scopes are unknown,
    /// the client learns them once (single-flight) from `GET /auth/api-tokens` before its first
    /// HMAC request, and fails closed ([`Error::ScopesUnknown`]) if it cannot.
    ///
    /// ```no_run
    /// use limitless_auth::{Credentials, Scope, client::Client};
    ///
    /// // A trading bot that must never be able to withdraw.
    /// let bot = Client::builder()
    ///     .credentials(Credentials::from_env()?)
    ///     .deny_scopes([Scope::Withdrawal])
    ///     .build()?;
    /// # Ok::<(), limitless_auth::client::Error>(())
    /// ```
    pub fn deny_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.deny_scopes = scopes.into_iter().collect();
        self
    }

    /// How long [`Client::rotate_token`] keeps trying a new token that the API does not accept
    /// yet (answers 401) before giving up (default 2 minutes: a new credential can take a while
    /// to become valid everywhere).
    pub fn rotation_proof_timeout(mut self, timeout: Duration) -> Self {
        self.rotation_proof = timeout;
        self
    }

    /// Per-attempt timeout covering sending, the response head and the body (default 30 s;
    /// `None` waits forever). A [`RequestTimeout`] in a request's extensions overrides it.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout for opening a connection: the TCP connect and, for `https`, the TLS handshake
    /// (default 10 s; the default transport only).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.transport.connect_timeout = timeout;
        self
    }

    /// The TLS configuration: custom roots, client certificates. The client sets its ALPN
    /// (`h2` and `http/1.1`, or `http/1.1` alone without [`http2`](Self::http2)). Default: the
    /// web PKI roots with the ring provider.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.transport.tls = Some(config);
        self
    }

    /// How long an idle pooled connection is kept (default 90 s). Idle connections are closed
    /// in the background when it passes, whether or not more requests come.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.transport.pool_idle_timeout = timeout;
        self
    }

    /// The most idle connections kept to the API (default 128); more are closed once idle.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.transport.pool_max_idle_per_host = max;
        self
    }

    /// Offers HTTP/2 by ALPN on `https` (default on): when the server takes it, every request
    /// shares one connection. Off, only HTTP/1.1 is used.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.transport.http2 = enabled;
        self
    }

    /// The `user-agent` header (default `limitless-auth/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Retry behaviour; [`RetryConfig::disabled`] turns retries off.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// The measured clock skew beyond which a 401 is re-signed and retried once (default 5 s).
    pub fn skew_threshold(mut self, threshold: Duration) -> Self {
        self.skew_threshold = threshold;
        self
    }

    /// The local clock (default the system clock); tests inject a fixed one.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The largest request body signed and sent (default 1 MiB).
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The largest response body read (default 8 MiB).
    pub fn response_limit(mut self, limit: usize) -> Self {
        self.response_limit = limit;
        self
    }

    /// The route table (default [`RouteTable::limitless`]).
    pub fn routes(mut self, routes: RouteTable) -> Self {
        self.routes = routes;
        self
    }

    /// The default transport this builder's settings describe: hyper-util's pooled client over
    /// hyper-rustls. For wrapping it in a service of your own before
    /// [`build_with_transport`](Self::build_with_transport).
    pub fn transport(&self) -> Result<HttpsTransport, Error> {
        self.transport.build()
    }

    /// Builds the client over the default transport ([`ClientBuilder::transport`]).
    pub fn build(self) -> Result<Client, Error> {
        let transport = self.transport()?;
        self.build_on(Transport::https(transport))
    }

    /// Builds the client over any tower service that sends `Request<Full<Bytes>>`; the
    /// transport settings of this builder are then not used.
    pub fn build_with_transport<T, B>(self, transport: T) -> Result<Client, Error>
    where
        T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.build_on(Transport::service(transport))
    }

    fn build_on(self, transport: Transport) -> Result<Client, Error> {
        let base = BaseUrl::parse(&self.base_url, self.sign_prefix)?;
        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| Error::InvalidRequest("the user agent is not a header value".into()))?;
        let skew = Arc::new(SkewTracker::new(self.clock, self.skew_threshold));
        let layer = AuthLayer::with_table(self.credentials.clone(), self.routes)
            .with_clock(skew.clock())
            .body_limit(self.body_limit);
        let policy = layer.config().clone();
        let stack = Observe::new(
            layer.layer(transport),
            skew.clone(),
            self.response_limit,
            user_agent,
        );
        Ok(Client {
            inner: Arc::new(Inner {
                stack,
                retry: RetryPolicy::with_skew(self.retry, skew.clone()),
                timeout: self.timeout,
                base,
                skew,
                policy,
                credentials: self.credentials,
                identity_source: self.identity_source,
                identity_margin: self.identity_margin,
                refresh: tokio::sync::Mutex::new(()),
                rotation_proof: self.rotation_proof,
                deny_scopes: self.deny_scopes,
                learning: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

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

/// The stack below the per-attempt timeout: the skew observer over the authentication layer
/// over the shared transport.
type Stack = Observe<crate::layer::Auth<Transport, OffsetClock<Arc<dyn Clock>>>>;

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
    /// The same configuration the authentication layer decides with.
    policy: Arc<PolicyConfig>,
    credentials: SharedCredentials,
    identity_source: Option<IdentitySource>,
    identity_margin: Duration,
    /// Held while the identity source runs: refreshes are single-flight.
    refresh: tokio::sync::Mutex<()>,
    rotation_proof: Duration,
    deny_scopes: Vec<Scope>,
    /// Held while the token's scopes are learned: single-flight.
    learning: tokio::sync::Mutex<()>,
}

/// The future of an identity source.
type IdentityFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<IdentityToken, BoxError>> + Send>>;

/// An async source of identity tokens.
type IdentitySource = Arc<dyn Fn() -> IdentityFuture + Send + Sync>;

impl Inner {
    /// Keeps `scopes` with the client's HMAC token, if it is still `hmac` (a rotation may have
    /// replaced it meanwhile).
    fn keep_scopes(&self, hmac: &HmacCredentials, scopes: &[Scope]) {
        let scoped = hmac.with_scopes(scopes.iter().cloned());
        self.credentials.update(|c| match &c.hmac {
            Some(h) if h.token_id() == hmac.token_id() => c.clone().with_hmac(scoped.clone()),
            _ => c.clone(),
        });
    }

    /// Calls the identity source, unless the token has changed since `stale` was read (another
    /// request refreshed it while this one waited), and stores what it returns. Returns the
    /// credentials to use.
    async fn refresh_identity(
        &self,
        stale: Option<&IdentityToken>,
    ) -> Result<Arc<Credentials>, Error> {
        let Some(source) = &self.identity_source else {
            return Ok(self.credentials.load());
        };
        let _single_flight = self.refresh.lock().await;
        let current = self.credentials.load();
        let changed = match (&current.identity, stale) {
            (Some(now), Some(stale)) => !now.same_as(stale),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if changed {
            return Ok(current);
        }
        let token = source().await.map_err(Error::IdentitySource)?;
        #[cfg(feature = "tracing")]
        tracing::debug!("identity token refreshed");
        self.credentials
            .update(|c| c.clone().with_identity(token.clone()));
        Ok(self.credentials.load())
    }

    /// Whether `req` would go out with the identity token of `creds`, and that token (none when
    /// it is missing), as the route policy would decide it.
    fn privy_token<'a>(
        &self,
        req: &'a Request<Full<Bytes>>,
        creds: &'a Credentials,
    ) -> Option<Option<&'a IdentityToken>> {
        // A token the caller put on this request is the caller's to keep fresh.
        if req.extensions().get::<IdentityToken>().is_some() {
            return None;
        }
        match self.policy.choose(req, creds) {
            Ok(AuthMode::Privy) => Some(creds.identity.as_ref()),
            Err(PolicyError::MissingCredential { accepts, .. })
                if accepts.contains(AuthMode::Privy) =>
            {
                Some(None)
            }
            _ => None,
        }
    }
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
    /// One request through the whole stack, all its attempts decided with `creds`.
    fn call(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Option<Duration>,
        creds: Arc<Credentials>,
    ) -> Call<'static> {
        let mut stack = self.stack.clone();
        stack.get_mut().pin(creds);
        let svc = tower::ServiceBuilder::new()
            .map_err(move |e| Error::from_stack(e, timeout))
            .layer(RetryLayer::new(self.retry.clone()))
            .option_layer(timeout.map(tower::timeout::TimeoutLayer::new))
            .service(stack);
        Box::pin(svc.oneshot(req))
    }
}

impl Inner {
    /// Sends `req` with `creds` for all its attempts; with an identity source, refreshes the
    /// identity token first when the request needs it and it is missing or about to expire,
    /// and once more after a 401.
    async fn send_refreshing(
        &self,
        req: Request<Full<Bytes>>,
        mut creds: Arc<Credentials>,
        timeout: Option<Duration>,
    ) -> Result<Response<Bytes>, Error> {
        let mut privy = false;
        if self.identity_source.is_some()
            && let Some(token) = self.privy_token(&req, &creds)
        {
            privy = true;
            let now = self.skew.server_now();
            if token.is_none_or(|t| t.expires_within(now, self.identity_margin)) {
                let stale = token.cloned();
                creds = self.refresh_identity(stale.as_ref()).await?;
            }
        }
        // A copy to send again after a 401, when the identity token may be what was refused.
        let again = privy.then(|| copy_request(&req));
        let resp = self.call(req, timeout, creds.clone()).await?;
        match again {
            Some(again) if resp.status() == StatusCode::UNAUTHORIZED => {
                let used = creds.identity.clone();
                let creds = self.refresh_identity(used.as_ref()).await?;
                self.call(again, timeout, creds).await
            }
            _ => Ok(resp),
        }
    }
}

impl Client {
    /// Least privilege: refuses an HMAC request whose token holds a denied scope, learning the
    /// token's scopes first when they are unknown. Returns the credentials to send with (with
    /// the scopes, once learned).
    async fn guard_scopes_of(
        &self,
        req: &Request<Full<Bytes>>,
        mut creds: Arc<Credentials>,
    ) -> Result<Arc<Credentials>, Error> {
        let inner = &*self.inner;
        if !matches!(inner.policy.choose(req, &creds), Ok(AuthMode::Hmac)) {
            return Ok(creds);
        }
        let overridden = req.extensions().get::<HmacCredentials>().cloned();
        let Some(hmac) = overridden.clone().or_else(|| creds.hmac.clone()) else {
            return Ok(creds);
        };
        let scopes = match hmac.scopes() {
            Some(known) => known.to_vec(),
            None => {
                let _single_flight = inner.learning.lock().await;
                // Learned by another request while this one waited?
                let current = inner.credentials.load();
                let learned = current
                    .hmac
                    .as_ref()
                    .filter(|h| overridden.is_none() && h.token_id() == hmac.token_id())
                    .and_then(|h| h.scopes().map(<[Scope]>::to_vec));
                match learned {
                    Some(scopes) => {
                        creds = current;
                        scopes
                    }
                    None => {
                        let scopes = self
                            .learn_scopes(&hmac)
                            .await
                            .map_err(|e| Error::ScopesUnknown(Box::new(e)))?;
                        if overridden.is_none() {
                            inner.keep_scopes(&hmac, &scopes);
                            creds = inner.credentials.load();
                        }
                        scopes
                    }
                }
            }
        };
        match inner.deny_scopes.iter().find(|d| scopes.contains(d)) {
            Some(denied) => Err(Error::ScopeDenied {
                scope: denied.clone(),
                token: hmac.token_hint(),
            }),
            None => Ok(creds),
        }
    }

    /// The scopes of `hmac`, from `GET /auth/api-tokens` signed with it.
    async fn learn_scopes(&self, hmac: &HmacCredentials) -> Result<Vec<Scope>, Error> {
        let mut req = json_request(Method::GET, "/auth/api-tokens", None)?;
        req.extensions_mut().insert(hmac.clone());
        req.extensions_mut().insert(AuthMode::Hmac);
        // Straight down the stack: not through `send`, whose scope guard would wait on this.
        let prepared = self.prepare(req)?;
        let timeout = prepared.timeout;
        let resp = self
            .inner
            .call(prepared.req, timeout, prepared.creds)
            .await?;
        let tokens: Vec<ApiToken> = ApiResponse::from_response(resp)
            .error_for_status()?
            .json()?;
        tokens
            .into_iter()
            .find(|t| t.token_id == hmac.token_id())
            .map(|t| t.scopes)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "the token {} is not among the profile's active tokens",
                    hmac.token_hint()
                ))
            })
    }

    /// Learns the scopes of the client's HMAC token from `GET /auth/api-tokens` and keeps
    /// them with it, so that the route policy refuses locally what the token may not do.
    pub async fn refresh_token_scopes(&self) -> Result<Vec<Scope>, Error> {
        let Some(hmac) = self.inner.credentials.load().hmac.clone() else {
            return Err(Error::Policy(PolicyError::MissingCredential {
                method: Method::GET,
                path: "/auth/api-tokens".to_owned(),
                accepts: crate::Accepts::HMAC,
            }));
        };
        let scopes = self.learn_scopes(&hmac).await?;
        self.inner.keep_scopes(&hmac, &scopes);
        Ok(scopes)
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

/// A request ready for the stack, with the timeout of its attempts and its tracing span.
struct Prepared {
    req: Request<Full<Bytes>>,
    /// The credentials all its attempts use.
    creds: Arc<Credentials>,
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

    /// The client's credentials: swap them (`store`, `update`) to change what requests started
    /// from then on use, in every clone of the client. A request in flight keeps the
    /// credentials it started with, for all its attempts.
    pub fn credentials(&self) -> &SharedCredentials {
        &self.inner.credentials
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

    /// The future of [`Client::send`]: the request goes through `RetryLayer` and a per-attempt
    /// `Timeout` over the client's stack.
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

    /// The future of one prepared request, in its tracing span (the stack is called, and the
    /// request decided and signed, when the future is first polled).
    fn dispatch(&self, p: Prepared) -> Traced<'_> {
        let call = self.call_stack(p.req, p.creds, p.timeout);
        #[cfg(feature = "tracing")]
        return tracing::Instrument::instrument(call, p.span);
        #[cfg(not(feature = "tracing"))]
        call
    }

    /// Straight down the stack, unless the client guards scopes or refreshes identity tokens:
    /// then through those steps first (kept out of the common path, and out of the size of its
    /// future).
    fn call_stack(
        &self,
        req: Request<Full<Bytes>>,
        creds: Arc<Credentials>,
        timeout: Option<Duration>,
    ) -> Call<'_> {
        let inner = &*self.inner;
        if inner.deny_scopes.is_empty() && inner.identity_source.is_none() {
            inner.call(req, timeout, creds)
        } else {
            Box::pin(self.send_guarded(req, creds, timeout))
        }
    }

    /// The scope guard, then the request with identity-token refresh.
    async fn send_guarded(
        &self,
        req: Request<Full<Bytes>>,
        mut creds: Arc<Credentials>,
        timeout: Option<Duration>,
    ) -> Result<Response<Bytes>, Error> {
        if !self.inner.deny_scopes.is_empty() {
            creds = self.guard_scopes_of(&req, creds).await?;
        }
        self.inner.send_refreshing(req, creds, timeout).await
    }

    /// The request as the stack takes it: on the base URL, its method in upper case, the route
    /// prefix, and its tracing span (the `user-agent` is added to each attempt).
    fn prepare(&self, req: Request<Bytes>) -> Result<Prepared, Error> {
        let base = &self.inner.base;
        let (mut parts, body) = req.into_parts();
        parts.uri = base.resolve(std::mem::take(&mut parts.uri))?;
        parts.method = normalize_method(parts.method)?;
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
            creds: self.inner.credentials.load(),
            timeout,
            #[cfg(feature = "tracing")]
            span,
        })
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

    /// `GET /auth/api-tokens/capabilities` (Privy identity token only).
    pub async fn capabilities(&self) -> Result<PartnerCapabilities, Error> {
        self.json(Method::GET, "/auth/api-tokens/capabilities", None::<&()>)
            .await
    }

    /// `POST /auth/api-tokens/derive` (Privy identity token only): a new token with `scopes`
    /// (the server's default, `["trading"]`, when `None`). The label (at most 128 characters)
    /// and the scope dependencies are checked before anything is sent.
    pub async fn derive_token(
        &self,
        label: Option<&str>,
        scopes: Option<&[Scope]>,
    ) -> Result<DerivedToken, Error> {
        self.derive_token_with(&DeriveTokenRequest {
            label: label.map(str::to_owned),
            scopes: scopes.map(<[Scope]>::to_vec),
        })
        .await
    }

    /// [`Client::derive_token`] with a prepared request body.
    pub async fn derive_token_with(&self, req: &DeriveTokenRequest) -> Result<DerivedToken, Error> {
        req.validate()?;
        self.json(Method::POST, "/auth/api-tokens/derive", Some(req))
            .await
    }

    /// `GET /auth/api-tokens` (HMAC): the profile's active tokens, without secrets.
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, Error> {
        self.json(Method::GET, "/auth/api-tokens", None::<&()>)
            .await
    }

    /// Rotates the client's HMAC token, in four steps:
    ///
    /// 1. derive a new token (Privy) with `label` and `scopes`;
    /// 2. prove that it works: a `GET /auth/api-tokens` signed with it, retried while the API
    ///    answers 401 (a new credential can take a while to become valid everywhere) for at
    ///    most [`rotation_proof_timeout`](ClientBuilder::rotation_proof_timeout);
    /// 3. switch the client (and every clone) to it: requests started from then on use it;
    /// 4. revoke the old token.
    ///
    /// If a step before the switch fails, the old token stays in use, nothing is revoked, and
    /// the error ([`Error::Rotation`]) names the step (and the new token, if it was derived). A
    /// failure to revoke the old token comes back in [`Rotation::revoke_error`]: by then the new
    /// token is in use, and its secret, which the API shows only once, is in the result.
    pub async fn rotate_token(
        &self,
        label: Option<&str>,
        scopes: Option<&[Scope]>,
    ) -> Result<Rotation, Error> {
        let mut rotation = self.switch_to_new_token(label, scopes).await?;
        if let Some(old) = &rotation.previous_token_id
            && *old != rotation.token.token_id
        {
            rotation.revoke_error = self.revoke_token(old).await.err();
        }
        Ok(rotation)
    }

    /// Steps 1 to 3 of [`Client::rotate_token`]: derive, prove and switch, leaving the previous
    /// token valid (revoke it with [`Client::revoke_token`] once the new secret is stored).
    pub async fn switch_to_new_token(
        &self,
        label: Option<&str>,
        scopes: Option<&[Scope]>,
    ) -> Result<Rotation, Error> {
        let failed = |step, new_token_id: Option<&str>| {
            let new_token_id = new_token_id.map(str::to_owned);
            move |e: Error| Error::Rotation {
                step,
                new_token_id,
                source: Box::new(e),
            }
        };
        let old = self.inner.credentials.load().hmac.clone();
        let token = self
            .derive_token(label, scopes)
            .await
            .map_err(failed(RotationStep::Derive, None))?;
        let prove = failed(RotationStep::Prove, Some(&token.token_id));
        let new = match token.credentials() {
            Ok(new) => new,
            Err(e) => return Err(prove(e.into())),
        };
        if let Err(e) = self.prove(&new).await {
            return Err(prove(e));
        }
        self.inner
            .credentials
            .update(|c| c.clone().with_hmac(new.clone()));
        Ok(Rotation {
            token,
            previous_token_id: old.map(|old| old.token_id().to_owned()),
            revoke_error: None,
        })
    }

    /// A signed `GET /auth/api-tokens` with `creds`, repeated with backoff while it is answered
    /// 401, within the rotation's proof timeout.
    async fn prove(&self, creds: &HmacCredentials) -> Result<(), Error> {
        let now = tokio::time::Instant::now();
        // A timeout too long to add is as good as none.
        let deadline = now.checked_add(self.inner.rotation_proof);
        let mut wait = Duration::from_millis(100);
        loop {
            let mut req = json_request(Method::GET, "/auth/api-tokens", None)?;
            req.extensions_mut().insert(creds.clone());
            req.extensions_mut().insert(AuthMode::Hmac);
            match self.send(req).await?.error_for_status() {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.status() == Some(StatusCode::UNAUTHORIZED)
                        && deadline.is_none_or(|d| tokio::time::Instant::now() + wait < d) =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `DELETE /auth/api-tokens/{tokenId}` (HMAC), the id percent-encoded as one path segment.
    /// Returns the server's confirmation message.
    pub async fn revoke_token(&self, token_id: &str) -> Result<String, Error> {
        if token_id.is_empty() {
            return Err(Error::InvalidRequest("the token id is empty".into()));
        }
        let path = format!("/auth/api-tokens/{}", encode_segment(token_id));
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = Method::DELETE;
        *req.uri_mut() = Uri::from(parse_target(&path)?);
        let resp = self.send(req).await?.error_for_status()?;
        Ok(resp.json::<RevokeResponse>()?.message)
    }
}

/// The outcome of [`Client::rotate_token`]: the new token is in use.
pub struct Rotation {
    /// The new token, with its secret (shown only this once by the API).
    pub token: DerivedToken,
    /// The token it replaced, if the client had one.
    pub previous_token_id: Option<String>,
    /// Why revoking the previous token failed, if it did (it still works until revoked:
    /// `lmts tokens revoke <id>`).
    pub revoke_error: Option<Error>,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotation")
            .field("token", &self.token)
            .field("previous_token_id", &"<redacted>")
            .field("revoke_error", &self.revoke_error)
            .finish()
    }
}

/// The body of a revoke answer.
#[derive(serde::Deserialize)]
struct RevokeResponse {
    message: String,
}

/// Percent-encodes `segment` as one path segment: everything but unreserved characters, and the
/// dots of a segment that is `.` or `..` (which a proxy would resolve as a relative path), so
/// that no argument can make a request reach another route.
pub(crate) fn encode_segment(segment: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    if segment == "." || segment == ".." {
        return segment.replace('.', "%2E");
    }
    utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded_whole() {
        assert_eq!(encode_segment("tok+abc/="), "tok%2Babc%2F%3D");
        assert_eq!(encode_segment("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(encode_segment("Az09-._~"), "Az09-._~");
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(encode_segment("."), "%2E");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(encode_segment("..."), "...");
        assert_eq!(
            encode_segment("%2E"),
            "%252E",
            "never decodes to a dot segment"
        );
    }

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://api.limitless.exchange", true).expect("valid");
        let pq: PathAndQuery = "/orders?x=1".parse().expect("pq");
        assert_eq!(
            b.join(pq.clone()).expect("join").to_string(),
            "https://api.limitless.exchange/orders?x=1"
        );
        let p = BaseUrl::parse("http://127.0.0.1:8080/api/", true).expect("valid");
        assert_eq!(
            p.join(pq.clone()).expect("join").to_string(),
            "http://127.0.0.1:8080/api/orders?x=1"
        );
        for bad in [
            "ftp://x",
            "api.limitless.exchange",
            "/path",
            "https://u:p@host",
            "https://h?q=1",
            "",
        ] {
            assert!(BaseUrl::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_base_origin_is_accepted() {
        let b = BaseUrl::parse("https://api.limitless.exchange", true).expect("valid");
        let ok = |s: &str| b.resolve(s.parse().expect("uri")).is_ok();
        assert!(ok("/orders"));
        assert!(ok("https://api.limitless.exchange/orders"));
        assert!(ok("https://API.Limitless.Exchange:443/orders"));
        assert!(!ok("http://api.limitless.exchange/orders"));
        assert!(!ok("https://api.limitless.exchange:8443/orders"));
        assert!(!ok("https://evil.example/orders"));
        assert!(!ok("https://api.limitless.exchange.evil.example/orders"));
        assert!(!ok("https://user@api.limitless.exchange/orders"));
        assert!(!ok("api.limitless.exchange:443"));
        assert!(!ok("*"));
        match b.resolve("https://evil.example/x".parse().expect("uri")) {
            Err(Error::ForeignOrigin { origin, base }) => {
                assert_eq!(origin, "https://evil.example");
                assert_eq!(base, "https://api.limitless.exchange");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn type_names_are_shortened() {
        assert_eq!(
            short_type_name("alloc::vec::Vec<limitless_auth::types::ApiToken>"),
            "Vec<ApiToken>"
        );
        assert_eq!(
            short_type_name("PartnerCapabilities"),
            "PartnerCapabilities"
        );
        assert_eq!(
            short_type_name("limitless_auth::client::Client::revoke::{{closure}}::RevokeResponse"),
            "RevokeResponse"
        );
    }

    #[test]
    fn request_targets_are_checked() {
        assert!(parse_target("/orders?x=1").is_ok());
        for bad in [
            "orders",
            "/a b",
            "",
            "https://x/y",
            "/a#frag",
            "/a\r\nb",
            "/é b",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_target("/markets/é?q=ü").expect("encoded").as_str(),
            "/markets/%C3%A9?q=%C3%BC"
        );
    }

    #[test]
    fn methods_go_out_in_upper_case() {
        let m = |s: &str| normalize_method(Method::from_bytes(s.as_bytes()).expect("method"));
        assert_eq!(m("get").expect("get"), Method::GET);
        assert_eq!(m("Delete").expect("delete"), Method::DELETE);
        assert_eq!(m("purge").expect("extension").as_str(), "PURGE");
        assert_eq!(m("POST").expect("post"), Method::POST);
    }

    #[test]
    fn foreign_host_headers_are_refused() {
        let b = BaseUrl::parse("https://api.limitless.exchange", true).expect("valid");
        let host = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::HOST, HeaderValue::from_static(v));
            b.check_host(&h)
        };
        assert!(b.check_host(&HeaderMap::new()).is_ok());
        assert!(host("api.limitless.exchange").is_ok());
        assert!(host("API.limitless.exchange:443").is_ok());
        assert!(matches!(
            host("evil.example"),
            Err(Error::ForeignOrigin { .. })
        ));
        assert!(host("api.limitless.exchange:8443").is_err());
        assert!(host("user@api.limitless.exchange").is_err());
        let mut two = HeaderMap::new();
        two.append(
            http::header::HOST,
            HeaderValue::from_static("api.limitless.exchange"),
        );
        two.append(http::header::HOST, HeaderValue::from_static("evil.example"));
        assert!(b.check_host(&two).is_err());
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(redact_url("https://user:pw@host/x"), "https://***@host/x");
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
        let err = BaseUrl::parse("https://user:hunter2@host", true).expect_err("refused");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
