//! A client for the Limitless API built from this crate's layers (feature `client`).
//!
//! Requests go down this stack, outer to inner:
//!
//! ```text
//! retry loop     attempts, backoff, Retry-After, one re-signed retry of a skewed 401
//! └ attempt      per-attempt timeout, clock offset from Date, bounded response body
//!   └ Auth       (AuthLayer) one authentication mode per route, local refusal when credentials
//!                are missing; identity: Bearer … on Privy routes; lmts-* headers on HMAC
//!                routes, signed with the corrected clock
//!     └ transport  HTTP/1.1 keep-alive connections to the base URL's origin (hyper), over
//!                  rustls (ring) with web PKI roots for https; or any tower service of yours
//! ```
//!
//! The retry loop is the same logic as [`RetryLayer`], run inside the request's own future.
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
mod exchange;
mod pool;
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
use tower_layer::Layer as _;
use tower_service::Service;

pub use error::{Error, RawBody, error_message};
pub use exchange::RequestTimeout;
use exchange::SkewTracker;
pub use retry::{Retry, RetryConfig, RetryLayer};

use crate::clock::OffsetClock;
use crate::clock::{Clock, SystemClock};
use crate::credentials::{ApiKey, Credentials, HmacCredentials, IdentityToken};
use crate::types::{ApiToken, DeriveTokenRequest, DerivedToken, PartnerCapabilities, Scope};
use crate::{AuthLayer, BoxError, DEFAULT_BODY_LIMIT, RouteTable};
use transport::Transport;

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://api.limitless.exchange";
/// The `user-agent` the client sends unless the request has one.
pub const USER_AGENT: &str = concat!("limitless-auth/", env!("CARGO_PKG_VERSION"));
/// The default largest response body read: 8 MiB.
pub const DEFAULT_RESPONSE_LIMIT: usize = 8 * 1024 * 1024;

/// hyper-util's pooled client over rustls (ring provider, web PKI roots), HTTP/1.1 and HTTP/2,
/// plain HTTP allowed (for loopback): a ready transport for
/// [`ClientBuilder::build_with_transport`] when HTTP/2 or hyper-util's pool is wanted. The
/// client's own default ([`ClientBuilder::build`]) is a leaner HTTP/1.1 pool for its one origin.
pub type HttpsTransport = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Builds an [`HttpsTransport`]. The TLS crypto provider is passed explicitly, so nothing
/// depends on (or can panic over) a process-wide default provider.
pub fn https_transport(connect_timeout: Duration) -> Result<HttpsTransport, Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| Error::InvalidRequest(format!("TLS set-up failed: {e}")))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https),
    )
}

/// The scheme, authority and path prefix requests are sent to.
#[derive(Clone, Debug)]
struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    prefix: String,
}

impl BaseUrl {
    fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidRequest(format!("base URL {url:?} {why}"));
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
        Ok(Self {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
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

    fn same_origin(&self, uri: &Uri) -> bool {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                *scheme == self.scheme
                    && authority.host().eq_ignore_ascii_case(self.authority.host())
                    && Self::port(scheme, authority) == Self::port(&self.scheme, &self.authority)
                    && !authority.as_str().contains('@')
            }
            _ => false,
        }
    }

    /// The absolute URI for a request-target given as a path (and query).
    fn join(&self, pq: &PathAndQuery) -> Result<Uri, Error> {
        let target = if self.prefix.is_empty() {
            pq.clone()
        } else {
            format!("{}{}", self.prefix, pq.as_str())
                .parse()
                .map_err(|_| Error::InvalidRequest(format!("cannot join {pq} to the base URL")))?
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|e| Error::InvalidRequest(format!("invalid URI: {e}")))
    }

    /// Resolves a request's URI: paths join the base; absolute URIs must be on its origin.
    fn resolve(&self, uri: &Uri) -> Result<Uri, Error> {
        match (uri.scheme(), uri.authority()) {
            (None, None) => {
                let pq = uri
                    .path_and_query()
                    .filter(|pq| pq.as_str().starts_with('/'))
                    .ok_or_else(|| {
                        Error::InvalidRequest(format!("{uri} is not a path starting with '/'"))
                    })?;
                self.join(pq)
            }
            (Some(_), Some(authority)) => {
                if self.same_origin(uri) {
                    Ok(uri.clone())
                } else {
                    let scheme = uri.scheme_str().unwrap_or_default();
                    Err(Error::ForeignOrigin {
                        origin: format!("{scheme}://{}", authority.host()),
                        base: self.origin(),
                    })
                }
            }
            _ => Err(Error::InvalidRequest(format!(
                "{uri} is neither a path nor an absolute http(s) URL"
            ))),
        }
    }
}

/// Parses a path-and-query argument.
fn parse_target(text: &str) -> Result<PathAndQuery, Error> {
    text.parse::<PathAndQuery>()
        .ok()
        .filter(|pq| text.starts_with('/') && pq.as_str() == text)
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "{text:?} is not a request-target (a path starting with '/', percent-encoded)"
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
    for c in full.chars() {
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
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    credentials: Credentials,
    timeout: Option<Duration>,
    connect_timeout: Duration,
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
            credentials: Credentials::new(),
            timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(10),
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
            .field("base_url", &self.base_url)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The API's base URL (default `https://api.limitless.exchange`); a path prefix is kept.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// All credentials at once.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// HMAC token credentials.
    pub fn hmac(mut self, hmac: HmacCredentials) -> Self {
        self.credentials.hmac = Some(hmac);
        self
    }

    /// The Privy identity token.
    pub fn identity(mut self, identity: IdentityToken) -> Self {
        self.credentials.identity = Some(identity);
        self
    }

    /// A legacy API key.
    pub fn api_key(mut self, key: ApiKey) -> Self {
        self.credentials.api_key = Some(key);
        self
    }

    /// Per-attempt timeout covering sending, the response head and the body (default 30 s;
    /// `None` waits forever). A [`RequestTimeout`] in a request's extensions overrides it.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout for establishing a connection (default 10 s; default transport only).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
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

    /// Builds the client over its own transport: HTTP/1.1 keep-alive connections to the base
    /// URL's origin, over rustls (ring provider, web PKI roots) for `https`.
    pub fn build(self) -> Result<Client, Error> {
        let base = BaseUrl::parse(&self.base_url)?;
        let pool = pool::Pool::new(
            base.scheme.clone(),
            base.authority.clone(),
            self.connect_timeout,
        )?;
        self.build_over(base, Transport::Pooled(Arc::new(pool)))
    }

    /// Builds the client over any tower service that sends `Request<Full<Bytes>>`.
    pub fn build_with_transport<T, B>(self, transport: T) -> Result<Client, Error>
    where
        T: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let base = BaseUrl::parse(&self.base_url)?;
        self.build_over(base, Transport::custom(transport))
    }

    fn build_over(self, base: BaseUrl, transport: Transport) -> Result<Client, Error> {
        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| Error::InvalidRequest("the user agent is not a header value".into()))?;
        let skew = SkewTracker::new(self.clock, self.skew_threshold);
        let stack = AuthLayer::with_table(self.credentials, self.routes)
            .with_clock(skew.clock())
            .body_limit(self.body_limit)
            .layer(transport);
        Ok(Client {
            inner: Arc::new(Inner {
                stack,
                retry: self.retry,
                timeout: self.timeout,
                response_limit: self.response_limit,
                base,
                user_agent,
                skew,
            }),
        })
    }
}

/// A request on the base URL, with its tracing span.
struct Started {
    req: Request<Full<Bytes>>,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Started {
    #[cfg(feature = "tracing")]
    fn into_parts(self) -> (Request<Full<Bytes>>, tracing::Span) {
        (self.req, self.span)
    }

    #[cfg(not(feature = "tracing"))]
    fn into_parts(self) -> (Request<Full<Bytes>>, ()) {
        (self.req, ())
    }
}

/// Sends the request `state` holds through the stack, attempting again as the retry policy
/// allows.
async fn run(
    inner: &Inner,
    state: &mut retry::RetryState<'_>,
) -> Result<Response<Bytes>, BoxError> {
    let mut stack = inner.stack.clone();
    loop {
        // Scoped so that the result is not kept in the future while it pauses.
        let wait = {
            let result = match std::future::poll_fn(|cx| {
                Service::<Request<Full<Bytes>>>::poll_ready(&mut stack, cx)
            })
            .await
            {
                // The request is built once the stack is ready, so it is not kept across a wait.
                Ok(()) => {
                    exchange::attempt(
                        &mut stack,
                        with_user_agent(state.next_request(), &inner.user_agent),
                        inner.timeout,
                        &inner.skew,
                        inner.response_limit,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match state.after(&result) {
                Some(wait) => wait,
                None => break result,
            }
        };
        retry::pause(wait).await;
    }
}

/// Adds the client's `user-agent` unless the request has its own. Added per attempt rather than
/// to the request kept for retries, whose headers are then usually empty and cost nothing to
/// copy.
fn with_user_agent(
    mut req: Request<Full<Bytes>>,
    user_agent: &HeaderValue,
) -> Request<Full<Bytes>> {
    if !req.headers().contains_key(http::header::USER_AGENT) {
        req.headers_mut()
            .insert(http::header::USER_AGENT, user_agent.clone());
    }
    req
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

/// The authentication stack over the transport.
pub(crate) type Stack = crate::layer::Auth<Transport, OffsetClock<Arc<dyn Clock>>>;

/// A Limitless API client: see the [module docs](self).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    stack: Stack,
    retry: RetryConfig,
    timeout: Option<Duration>,
    response_limit: usize,
    base: BaseUrl,
    user_agent: HeaderValue,
    skew: SkewTracker,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base.origin())
            .field("clock_offset_ms", &self.inner.skew.offset_millis())
            .finish_non_exhaustive()
    }
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

    /// Sends any request. A URI that is a path is joined to the base URL; an absolute URI must
    /// be on the base URL's origin, or the request fails locally with [`Error::ForeignOrigin`].
    /// Extensions ([`crate::AuthMode`], credentials, [`RequestTimeout`]) apply to this request
    /// only. Any status the server answers with is `Ok`: see [`ApiResponse::error_for_status`].
    ///
    /// The request is checked and prepared when `send` is called; it is signed and sent when the
    /// returned future is first polled. The future borrows only the client.
    pub fn send<'a>(
        &'a self,
        req: Request<Bytes>,
    ) -> impl Future<Output = Result<ApiResponse, Error>> + Send + use<'a> {
        self.start(Ok(req))
    }

    /// The future of [`Client::send`]. The request is prepared here, before the future is
    /// first polled, and the future holds it once: in the retry state it is sent from.
    fn start<'a>(
        &'a self,
        req: Result<Request<Bytes>, Error>,
    ) -> impl Future<Output = Result<ApiResponse, Error>> + Send + use<'a> {
        let inner = &*self.inner;
        let prepared = req.and_then(|req| self.prepare(req)).map(|started| {
            let (req, span) = started.into_parts();
            (
                retry::RetryState::new(&inner.retry, Some(&inner.skew), req),
                span,
            )
        });
        async move {
            let mut prepared = prepared;
            let (state, _span) = match prepared {
                Err(e) => return Err(e),
                Ok(ref mut started) => started,
            };
            #[cfg(feature = "tracing")]
            let resp = tracing::Instrument::instrument(run(inner, state), _span.clone()).await;
            #[cfg(not(feature = "tracing"))]
            let resp = run(inner, state).await;
            Ok(ApiResponse::from_response(resp.map_err(Error::from_stack)?))
        }
    }

    /// The request as the stack takes it: on the base URL, with its tracing span.
    fn prepare(&self, req: Request<Bytes>) -> Result<Started, Error> {
        let (mut parts, body) = req.into_parts();
        parts.uri = self.inner.base.resolve(&parts.uri)?;
        #[cfg(feature = "tracing")]
        let span = tracing::info_span!(
            "limitless.request",
            method = %parts.method,
            path = parts
                .extensions
                .get::<RouteLabel>()
                .map_or(parts.uri.path(), |r| r.0),
            mode = tracing::field::Empty,
            attempt = tracing::field::Empty,
            status = tracing::field::Empty,
            skew_ms = tracing::field::Empty,
        );
        Ok(Started {
            req: Request::from_parts(parts, Full::new(body)),
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
        // Traces name the route, not the token id.
        req.extensions_mut()
            .insert(RouteLabel("/auth/api-tokens/{tokenId}"));
        let resp = self.send(req).await?.error_for_status()?;
        #[derive(serde::Deserialize)]
        struct RevokeResponse {
            message: String,
        }
        Ok(resp.json::<RevokeResponse>()?.message)
    }
}

/// The route to name in traces instead of a path that carries an identifier.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
struct RouteLabel(&'static str);

/// Percent-encodes `segment` as one path segment: everything but unreserved characters.
pub fn encode_segment(segment: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
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
    }

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://api.limitless.exchange").expect("valid");
        let pq: PathAndQuery = "/orders?x=1".parse().expect("pq");
        assert_eq!(
            b.join(&pq).expect("join").to_string(),
            "https://api.limitless.exchange/orders?x=1"
        );
        let p = BaseUrl::parse("http://127.0.0.1:8080/api/").expect("valid");
        assert_eq!(
            p.join(&pq).expect("join").to_string(),
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
            assert!(BaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_base_origin_is_accepted() {
        let b = BaseUrl::parse("https://api.limitless.exchange").expect("valid");
        let ok = |s: &str| b.resolve(&s.parse().expect("uri")).is_ok();
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
        match b.resolve(&"https://evil.example/x".parse().expect("uri")) {
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
    }

    #[test]
    fn request_targets_are_checked() {
        assert!(parse_target("/orders?x=1").is_ok());
        for bad in ["orders", "/a b", "", "https://x/y"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }
}
