//! The reqwest front door (feature `reqwest`): [`AuthMiddleware`], a
//! [`reqwest_middleware::Middleware`] that gives each request exactly the authentication its
//! route accepts, decided by the same [`decide`] as the tower layers and carried
//! out in the same call.
//!
//! ```no_run
//! use limitless_auth::{Credentials, reqwest::AuthMiddleware};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(AuthMiddleware::new(Credentials::from_env()?))
//!     .build();
//! // A Privy-only route: the identity token, and no lmts-* header, whatever else is held.
//! let caps = client
//!     .get("https://api.limitless.exchange/auth/api-tokens/capabilities")
//!     .send()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! For every request to the API's origin (`https://api.limitless.exchange`, or the one given to
//! [`AuthMiddleware::origin`]), on every attempt, the middleware removes the authentication
//! headers the caller set (`lmts-*`, `identity`, `x-api-key`), decides with the credentials
//! current at that moment, and carries the decision out. Requests to any other origin pass
//! through untouched: one reqwest client can call other APIs without handing them a Limitless
//! credential, or a signature to replay.
//!
//! An HMAC request is signed over its request-target as reqwest will write it (the URL's path
//! and query after reqwest's own percent-encoding: `?q=a b` goes out, and is signed, as
//! `?q=a%20b`) and over `Body::as_bytes()`. A streaming body cannot be signed: on a route that is
//! signed it is refused ([`SigningError::StreamingBody`]); on a Privy route it passes untouched.
//! A refusal is `reqwest_middleware::Error::Middleware` holding the [`PolicyError`](crate::PolicyError),
//! [`SigningError`] or [`ScopeError`], and nothing is sent.
//!
//! Per request, the choices [`decide`] reads (an [`AuthMode`], a
//! [`RoutePrefix`], a credential for this request only) go in with reqwest-middleware's
//! `RequestBuilder::with_extension`.
//!
//! # What the stack must not do
//!
//! - **Change the request below the middleware.** A middleware added after it sees the request
//!   signed; one that changes its URL, query or body makes the signature wrong.
//! - **Follow redirects.** reqwest follows up to ten by default, resending the headers
//!   (it strips only `Authorization`, `Cookie` and the like on a cross-host redirect): a
//!   signature made for one target would go to another, and an identity token to another host.
//!   The Limitless API does not redirect; build the client with
//!   `.redirect(reqwest::redirect::Policy::none())`.
//! - **Set default authentication headers.** reqwest adds the client's `default_headers` after
//!   every middleware has run, so a default `identity` or `x-api-key` would reach every route;
//!   the middleware cannot remove it. Give credentials to the middleware instead.
//!
//! # With retries
//!
//! The middleware runs once per attempt of the middlewares above it, so a retry middleware
//! belongs **above** it, and every attempt is then signed afresh:
//!
//! ```no_run
//! use limitless_auth::{Credentials, reqwest::AuthMiddleware};
//! use reqwest_retry::{RetryTransientMiddleware, policies::ExponentialBackoff};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let retries = ExponentialBackoff::builder().build_with_max_retries(3);
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryTransientMiddleware::new_with_policy(retries)) // first: above
//!     .with(AuthMiddleware::new(Credentials::from_env()?))      // then: once per attempt
//!     .build();
//! # Ok(()) }
//! ```
//!
//! Added the other way round, every retry would resend the first attempt's timestamp, and the
//! server refuses a timestamp older than 30 s.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::apply::{self, SigningError, signing_target};
use crate::clock::{Clock, SystemClock};
use crate::policy::{AuthMode, Credential, RoutePrefix, RouteTable, decide};
use crate::scope_guard::ScopeGuard;
use crate::skew::SkewTracker;
use crate::{BoxError, HmacCredentials, Scope, SharedCredentials};

/// The route policy as a reqwest middleware: see the [module docs](self).
pub struct AuthMiddleware {
    table: Arc<RouteTable>,
    credentials: SharedCredentials,
    /// The clock the requests are signed with, corrected by the server's offset when learned.
    skew: Arc<SkewTracker>,
    learn_offset: bool,
    guard: Arc<ScopeGuard>,
    origin: Origin,
}

/// The scheme, host and port the middleware authenticates requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &::reqwest::Url) -> Self {
        Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port_or_known_default(),
        }
    }

    /// Whether `url` is at this origin (a URL without a host never is).
    fn holds(&self, url: &::reqwest::Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str()).filter(|h| !h.is_empty())
            && url.port_or_known_default() == self.port
    }
}

/// The largest server clock offset trusted from one response: one hour, as for the client.
const MAX_OFFSET: Duration = Duration::from_secs(3600);

impl AuthMiddleware {
    /// The policy over the default Limitless [`RouteTable`], with fixed
    /// [`Credentials`](crate::Credentials) or a [`SharedCredentials`] handle that can be swapped
    /// at run time (a swap applies to the next attempt).
    pub fn new(credentials: impl Into<SharedCredentials>) -> Self {
        Self::with_table(credentials, RouteTable::limitless())
    }

    /// The policy over a custom route table.
    pub fn with_table(credentials: impl Into<SharedCredentials>, table: RouteTable) -> Self {
        Self {
            table: Arc::new(table),
            credentials: credentials.into(),
            skew: Arc::new(SkewTracker::new(
                Arc::new(SystemClock),
                MAX_OFFSET,
                MAX_OFFSET,
            )),
            learn_offset: false,
            guard: Arc::new(ScopeGuard::new(Vec::new())),
            origin: Origin {
                scheme: "https".into(),
                host: "api.limitless.exchange".into(),
                port: Some(443),
            },
        }
    }

    /// The origin whose requests are authenticated (default `https://api.limitless.exchange`):
    /// its scheme, host and port; the rest of `url` is ignored. Requests to any other origin
    /// pass through untouched, so one reqwest client can call other APIs without handing them
    /// a Limitless credential or a signature to replay.
    pub fn origin(mut self, url: &::reqwest::Url) -> Self {
        self.origin = Origin::of(url);
        self
    }

    /// Signs with timestamps from `clock`, and judges identity-token expiry by it.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.skew = Arc::new(SkewTracker::new(Arc::new(clock), MAX_OFFSET, MAX_OFFSET));
        self
    }

    /// Learns the server's clock offset from the `Date` of its responses, as the crate's client
    /// does, and signs with the corrected time (default off). An offset is trusted when it is
    /// within an hour, or when a second response agrees with it.
    pub fn learn_clock_offset(mut self, learn: bool) -> Self {
        self.learn_offset = learn;
        self
    }

    /// Least privilege, as the client's
    /// [`deny_scopes`](crate::client::ClientBuilder::deny_scopes): refuses to send any HMAC
    /// request with a token known to hold one of `scopes` ([`ScopeError::Denied`], nothing
    /// sent). When the token's scopes are unknown, the middleware learns them once
    /// (single-flight) from `GET /auth/api-tokens` on the request's origin, sent through the
    /// rest of the stack, and keeps them with the token; if it cannot, it refuses
    /// ([`ScopeError::Unknown`]: fail closed). That refusal is a middleware error, which
    /// reqwest-retry does not retry.
    ///
    /// ```no_run
    /// use limitless_auth::{Credentials, Scope, reqwest::AuthMiddleware};
    ///
    /// // A trading bot that must never be able to withdraw.
    /// let auth = AuthMiddleware::new(Credentials::from_env()?).deny_scopes([Scope::Withdrawal]);
    /// # Ok::<(), limitless_auth::CredentialError>(())
    /// ```
    pub fn deny_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.guard = Arc::new(ScopeGuard::new(scopes.into_iter().collect()));
        self
    }

    /// Carries out the decision for `req`; `Err` when it is refused (nothing is sent).
    /// `Ok(Some(token))` when, with denied scopes, the HMAC token's scopes must be learned
    /// first (the request is left unsigned); `guarded: false` skips that guard, for the request
    /// that learns them.
    fn authorize(
        &self,
        req: &mut ::reqwest::Request,
        choices: &Extensions,
        guarded: bool,
    ) -> Result<Option<HmacCredentials>, reqwest_middleware::Error> {
        apply::strip_auth_headers(req.headers_mut());
        let clock = self.skew.clock_ref();
        let decision = {
            let path = req.url().path();
            let credentials = self.credentials.current();
            let decision =
                decide(&self.table, req.method(), path, choices, &credentials).map_err(refused)?;
            apply::check_expiry(&decision, req.method(), path, clock).map_err(refused)?;
            decision
        };
        if let Credential::Hmac(hmac) = &decision.credential
            && guarded
            && self.guard.denies()
        {
            if hmac.scopes().is_none() {
                return Ok(Some(hmac.clone()));
            }
            if let Some(scope) = self.guard.denied(hmac) {
                return Err(refused(ScopeError::Denied {
                    scope: scope.clone(),
                    token: hmac.token_hint(),
                }));
            }
        }
        let Some(signer) = apply::apply(decision, req.headers_mut()) else {
            return Ok(None);
        };
        let (method, url) = (req.method(), req.url());
        let body = match req.body() {
            None => &[][..],
            Some(body) => body.as_bytes().ok_or_else(|| {
                refused(SigningError::StreamingBody {
                    method: method.clone(),
                    path: crate::policy::display_path(url.path()).into_owned(),
                })
            })?,
        };
        signer
            .check_body(method, url.path(), body)
            .map_err(refused)?;
        let target = signing_target(wire_target(url), choices.get::<RoutePrefix>());
        let signed = signer.sign(method, target, body, clock).map_err(refused)?;
        signed.insert(req.headers_mut());
        Ok(None)
    }

    /// Learns `hmac`'s scopes, then carries out the decision for `req` with them, and sends it.
    async fn send_scoped(
        &self,
        mut req: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
        mut hmac: HmacCredentials,
    ) -> reqwest_middleware::Result<::reqwest::Response> {
        // A token the caller put on this request is the caller's: its scopes are not kept, and
        // it is pinned with them for this request.
        let own = extensions.get::<HmacCredentials>().is_some();
        let url = req.url().clone();
        for _ in 0..LEARNING_ROUNDS {
            let learn = |h| self.learn_scopes(&url, extensions, h, next.clone());
            let scoped = self
                .guard
                .scoped(&self.credentials, hmac, !own, learn)
                .await
                .map_err(refused)?;
            let unknown = if own {
                let mut choices = extensions.clone();
                choices.insert(scoped);
                self.authorize(&mut req, &choices, true)?
            } else {
                // Decided again with the credentials current now, which keep the learned
                // scopes, unless a swap replaced the token meanwhile: then the new token's
                // scopes are learned in turn.
                self.authorize(&mut req, extensions, true)?
            };
            match unknown {
                None => return self.send(req, extensions, next).await,
                Some(replacement) => hmac = replacement,
            }
        }
        Err(refused(ScopeError::Unknown {
            token: hmac.token_hint(),
            source: "the token was replaced each time its scopes were learned".into(),
        }))
    }

    /// The scopes of `hmac`, from `GET /auth/api-tokens` at the origin (and gateway prefix) of
    /// `url`, sent through `next`.
    async fn learn_scopes(
        &self,
        url: &::reqwest::Url,
        choices: &Extensions,
        hmac: HmacCredentials,
        next: Next<'_>,
    ) -> Result<Vec<Scope>, ScopeError> {
        let unknown = |source: BoxError| ScopeError::Unknown {
            token: hmac.token_hint(),
            source,
        };
        let prefix = choices.get::<RoutePrefix>();
        let route = prefix.map_or(url.path(), |p| p.route(url.path()));
        let mut tokens = url.clone();
        tokens.set_path(&format!(
            "{}{TOKENS_PATH}",
            &url.path()[..url.path().len() - route.len()]
        ));
        tokens.set_query(None);
        tokens.set_fragment(None);
        let mut req = ::reqwest::Request::new(http::Method::GET, tokens);
        let mut learning = Extensions::new();
        if let Some(prefix) = prefix {
            learning.insert(prefix.clone());
        }
        learning.insert(hmac.clone());
        learning.insert(AuthMode::Hmac);
        self.authorize(&mut req, &learning, false)
            .map_err(|e| unknown(e.into()))?;
        let resp = next
            .run(req, &mut learning)
            .await
            .map_err(|e| unknown(e.into()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(unknown(
                format!("GET {TOKENS_PATH} answered {status}").into(),
            ));
        }
        let body = resp.bytes().await.map_err(|e| unknown(e.into()))?;
        scopes_of(&body, hmac.token_id()).map_err(unknown)
    }

    /// Sends `req` on, recording the server's clock offset when asked to.
    async fn send(
        &self,
        req: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<::reqwest::Response> {
        if !self.learn_offset {
            return next.run(req, extensions).await;
        }
        let sent = self.skew.local_now();
        let resp = next.run(req, extensions).await?;
        let received = self.skew.local_now();
        self.skew
            .observe(resp.status(), resp.headers(), sent, received);
        Ok(resp)
    }
}

/// How many tokens the scopes are learned of for one request, when swaps keep replacing the
/// token while its scopes are learned.
const LEARNING_ROUNDS: usize = 3;

/// The path the scopes of the profile's tokens are read from.
const TOKENS_PATH: &str = "/auth/api-tokens";

/// The scopes of the token `token_id` in a `GET /auth/api-tokens` answer: a JSON array of
/// `{"tokenId": …, "scopes": [...]}`.
fn scopes_of(body: &[u8], token_id: &str) -> Result<Vec<Scope>, BoxError> {
    let tokens: serde_json::Value = serde_json::from_slice(body)?;
    let token = tokens
        .as_array()
        .ok_or("the answer is not a JSON array")?
        .iter()
        .find(|t| t.get("tokenId").and_then(|id| id.as_str()) == Some(token_id))
        .ok_or("the token is not among the profile's active tokens")?;
    let scopes = token
        .get("scopes")
        .and_then(|s| s.as_array())
        .ok_or("the token's entry has no scopes array")?;
    scopes
        .iter()
        .map(|s| {
            s.as_str()
                .map(Scope::parse)
                .ok_or_else(|| "a scope is not a string".into())
        })
        .collect()
}

/// A refusal by the least-privilege guard ([`AuthMiddleware::deny_scopes`]); nothing was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The HMAC token holds a denied scope.
    #[error(
        "the HMAC token {token} holds the {scope} scope, which this middleware denies; nothing \
         was sent"
    )]
    Denied {
        /// The denied scope the token holds.
        scope: Scope,
        /// The token, by the last characters of its id.
        token: String,
    },
    /// The HMAC token's scopes could not be learned, so it is not used (fail closed).
    #[error(
        "the scopes of the HMAC token {token} could not be learned from GET /auth/api-tokens, \
         so nothing was sent"
    )]
    Unknown {
        /// The token, by the last characters of its id.
        token: String,
        /// Why they could not be learned.
        #[source]
        source: BoxError,
    },
}

/// A refusal as reqwest-middleware carries it (logged, with the `tracing` feature, as the
/// tower layers log theirs): nothing was sent.
fn refused(e: impl std::error::Error + Send + Sync + 'static) -> reqwest_middleware::Error {
    #[cfg(feature = "tracing")]
    tracing::debug!(error = %e, "refused by the route policy");
    reqwest_middleware::Error::middleware(e)
}

/// The request-target reqwest writes for `url`: its path and query, as the URL holds them
/// (already percent-encoded).
fn wire_target(url: &::reqwest::Url) -> &str {
    &url[url::Position::BeforePath..url::Position::AfterQuery]
}

/// Written out rather than with `#[async_trait]`: the decision is carried out before the
/// future exists, and, unless something is left to do, the future returned is the one the rest
/// of the stack returns, not a box around it (one allocation fewer per request).
impl Middleware for AuthMiddleware {
    fn handle<'s, 'e, 'n, 'f>(
        &'s self,
        mut req: ::reqwest::Request,
        extensions: &'e mut Extensions,
        next: Next<'n>,
    ) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<::reqwest::Response>> + Send + 'f>>
    where
        's: 'f,
        'e: 'f,
        'n: 'f,
        Self: 'f,
    {
        // Both lifetimes shortened to the future's.
        let (next, extensions): (Next<'f>, &'f mut Extensions) = (next, extensions);
        if !self.origin.holds(req.url()) {
            // Another API's request, with its own headers: credentials never go there.
            #[cfg(feature = "tracing")]
            tracing::debug!(
                origin = %req.url().origin().ascii_serialization(),
                "not the API's origin: passed on without authentication"
            );
            return next.run(req, extensions);
        }
        match self.authorize(&mut req, extensions, true) {
            Err(refusal) => Box::pin(std::future::ready(Err(refusal))),
            Ok(Some(hmac)) => Box::pin(self.send_scoped(req, extensions, next, hmac)),
            Ok(None) if !self.learn_offset => next.run(req, extensions),
            Ok(None) => Box::pin(self.send(req, extensions, next)),
        }
    }
}

impl fmt::Debug for AuthMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthMiddleware")
            .field("credentials", &self.credentials)
            .field("learn_clock_offset", &self.learn_offset)
            .field("clock_offset_ms", &self.skew.offset_millis())
            .finish_non_exhaustive()
    }
}
