//! [`ClientBuilder`]: the client's settings.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_layer::Layer as _;
use tower_service::Service;

use super::holder::{Holder, IdentityFuture, IdentitySource};
use super::observe::Observe;
use super::retry::{RetryConfig, RetryPolicy, SkewRetry};
use super::transport::{Transport, TransportConfig};
use super::url::{BaseUrl, redact_url};
use super::{Client, DEFAULT_BASE_URL, DEFAULT_RESPONSE_LIMIT, Error, Inner, USER_AGENT};
use crate::skew::SkewTracker;
use crate::{
    AuthLayer, BoxError, Clock, Credentials, DEFAULT_BODY_LIMIT, IdentityToken, RouteTable, Scope,
    SharedCredentials, SystemClock,
};

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
    max_clock_offset: Duration,
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
            max_clock_offset: Duration::from_secs(3600),
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
    /// use limitless_auth::{IdentityToken, client::Client};
    /// use tower::BoxError;
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
    /// `None` waits forever). A [`RequestTimeout`](super::RequestTimeout) in a request's extensions overrides it.
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

    /// How long an idle pooled connection is kept (default 90 s). One idle for longer is never
    /// handed out; hyper-util's reaper, which wakes every `timeout`, closes it in the
    /// background, so the socket itself can stay open up to twice `timeout`.
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
    ///
    /// The client learns that an origin speaks HTTP/2 from the first TLS handshake, so a burst
    /// of requests to an origin not yet connected opens a connection for each before they
    /// settle on one; [`http2_only`](Self::http2_only) avoids that for an origin known to
    /// speak HTTP/2.
    pub fn http2(mut self, enabled: bool) -> Self {
        self.transport.http2 = enabled;
        self
    }

    /// Speaks only HTTP/2 (default off): for an origin known to, such as the Limitless API.
    /// Requests then wait for the one connection being opened instead of each opening its own,
    /// cold bursts included; over plain `http` it is HTTP/2 with prior knowledge. Over `https`
    /// only `h2` is offered by ALPN, so an origin that does not speak HTTP/2 and says so by
    /// ALPN fails the TLS handshake ([`Error::Connect`], nothing sent); one that ignores ALPN
    /// fails when HTTP/2 is spoken to it.
    pub fn http2_only(mut self, only: bool) -> Self {
        self.transport.http2_only = only;
        self
    }

    /// HTTP/2 keep-alive: a PING every `interval`, on connections in use or idle (`None`: no
    /// pings), and a connection whose PING is not answered within `timeout` is dropped; its
    /// requests fail (retried when they are idempotent) and the next ones open a new
    /// connection. Default: every 10 s, 10 s to answer.
    pub fn http2_keep_alive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.transport.keep_alive = interval.map(|i| (i, timeout));
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

    /// The largest server clock offset trusted from one response's `Date` (default one hour).
    /// A larger one is applied only once a second response agrees with it (within 2 s), so a
    /// single wild `Date` cannot date signatures years off. Identity-token expiry is judged
    /// only by an offset two responses agreed on, whatever its size.
    pub fn max_clock_offset(mut self, max: Duration) -> Self {
        self.max_clock_offset = max;
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

    /// Builds the client over the default transport: hyper-util's pooled client over
    /// hyper-rustls, with this builder's transport settings.
    pub fn build(self) -> Result<Client, Error> {
        let transport = self.transport.build()?;
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
        let skew = Arc::new(SkewTracker::new(
            self.clock,
            self.skew_threshold,
            self.max_clock_offset,
        ));
        let layer = AuthLayer::with_table(self.credentials.clone(), self.routes)
            .with_clock(skew.clock())
            .body_limit(self.body_limit);
        let table = layer.table().clone();
        let stack = layer.layer(Observe::new(
            transport,
            skew.clone(),
            self.response_limit,
            user_agent,
        ));
        let holder = Holder::new(
            self.credentials,
            self.identity_source,
            self.identity_margin,
            self.deny_scopes,
        );
        Ok(Client {
            inner: Arc::new(Inner {
                stack,
                retry: RetryPolicy::new(
                    self.retry,
                    Some(Arc::new(SkewRetry {
                        tracker: skew.clone(),
                    })),
                ),
                timeout: self.timeout,
                base,
                skew,
                table,
                holder,
                rotation_proof: self.rotation_proof,
            }),
        })
    }
}
