//! The route policy: which authentication each Limitless route accepts, and the layer that
//! applies exactly one of them to every request.
//!
//! [`AuthPolicyLayer`] classifies each request with a [`RouteTable`], removes every
//! authentication header the caller set (`lmts-*`, `identity`, `x-api-key`), chooses one
//! [`AuthMode`] from the credentials it holds, and records the choice in the request's
//! extensions as a [`SelectedAuth`]: the one decision that the
//! [`IdentityLayer`](crate::IdentityLayer) and [`HmacSigningLayer`](crate::HmacSigningLayer)
//! below it carry out. When the route's modes have no credentials it fails locally with a
//! [`PolicyError`] and the inner service is never called.
//!
//! It fails closed whatever the stack: a decision for HMAC (or Privy) that no signing (or
//! identity) layer below takes up fails locally with [`PolicyError::NotCarriedOut`] before
//! anything is sent. The layers below must be reached synchronously from the policy's `call`
//! (as with any ordinary middleware); a request to layers reached only later, from a future (as
//! behind `tower::buffer`), is refused, never sent unauthenticated.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use limitless_auth::{
//!     AuthPolicyLayer, Credentials, HmacCredentials, HmacSigningLayer, IdentityLayer,
//!     IdentityToken, PolicyError,
//! };
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio_test_block_on(async {
//! let creds = Credentials::new()
//!     .with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?)
//!     .with_identity(IdentityToken::new("privy-identity-token")?);
//! let svc = ServiceBuilder::new()
//!     .layer(AuthPolicyLayer::new(creds))
//!     .layer(IdentityLayer::for_policy())
//!     .layer(HmacSigningLayer::for_policy())
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         // A Privy-only route: identity header, no HMAC headers.
//!         assert!(req.headers().contains_key("identity"));
//!         assert!(!req.headers().contains_key("lmts-signature"));
//!         Ok::<_, std::convert::Infallible>(Response::new(()))
//!     });
//! let req = Request::get("/auth/api-tokens/capabilities").body(Full::new(Bytes::new()))?;
//! svc.oneshot(req).await?;
//!
//! // Without an identity token the same request fails before anything is sent.
//! let svc = ServiceBuilder::new()
//!     .layer(AuthPolicyLayer::new(Credentials::new()))
//!     .service_fn(|_req: Request<Full<Bytes>>| async move {
//!         unreachable!("never called");
//!         #[allow(unreachable_code)]
//!         Ok::<_, std::convert::Infallible>(Response::new(()))
//!     });
//! let req = Request::get("/auth/api-tokens/capabilities").body(Full::new(Bytes::new()))?;
//! let err = svc.oneshot(req).await.unwrap_err();
//! assert!(err.downcast_ref::<PolicyError>().is_some());
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::fmt;
use std::ops::BitOr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Method, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::credentials::{
    ApiKey, CachedCredentials, Credentials, HmacCredentials, IdentityToken, SharedCredentials,
};
use crate::headers::{IDENTITY, X_API_KEY};
use crate::layer::ResponseFuture;
use crate::scope::Scope;

/// How a request is authenticated.
///
/// Inserted into a request's extensions by a caller, it asks the policy for that mode (the
/// policy refuses it on routes that do not accept it); standalone signing and identity layers
/// read it as the request's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// HMAC scoped token: `lmts-api-key`, `lmts-timestamp`, `lmts-signature`.
    Hmac,
    /// Privy identity token: `identity: Bearer <token>`.
    Privy,
    /// Legacy API key: `x-api-key`.
    ApiKey,
    /// No authentication headers.
    None,
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hmac => "HMAC",
            Self::Privy => "Privy",
            Self::ApiKey => "API key",
            Self::None => "no",
        })
    }
}

/// The set of authentication modes a route accepts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Accepts(u8);

impl Accepts {
    /// HMAC scoped tokens.
    pub const HMAC: Self = Self(1);
    /// Privy identity tokens.
    pub const PRIVY: Self = Self(2);
    /// Legacy API keys.
    pub const API_KEY: Self = Self(4);
    /// No authentication (used when none of the other accepted credentials is held).
    pub const ANONYMOUS: Self = Self(8);
    /// What the Limitless API accepts on routes it does not single out: HMAC or the legacy key.
    pub const DEFAULT: Self = Self(Self::HMAC.0 | Self::API_KEY.0);

    /// Preference order when several accepted modes have credentials.
    const PREFERENCE: [AuthMode; 4] = [
        AuthMode::Hmac,
        AuthMode::Privy,
        AuthMode::ApiKey,
        AuthMode::None,
    ];

    /// The set holding only `mode`.
    pub const fn only(mode: AuthMode) -> Self {
        match mode {
            AuthMode::Hmac => Self::HMAC,
            AuthMode::Privy => Self::PRIVY,
            AuthMode::ApiKey => Self::API_KEY,
            AuthMode::None => Self::ANONYMOUS,
        }
    }

    /// Whether `mode` is accepted.
    pub fn contains(self, mode: AuthMode) -> bool {
        self.0 & Self::only(mode).0 != 0
    }

    /// The accepted modes, most preferred first.
    pub fn modes(self) -> impl Iterator<Item = AuthMode> {
        Self::PREFERENCE
            .into_iter()
            .filter(move |mode| self.contains(*mode))
    }
}

impl BitOr for Accepts {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Display for Accepts {
    /// `Privy only`, `Privy or HMAC`, `HMAC or API key`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = [AuthMode::Privy, AuthMode::Hmac, AuthMode::ApiKey];
        let count = named.iter().filter(|m| self.contains(**m)).count();
        if count == 0 {
            return f.write_str("no authentication");
        }
        for (i, mode) in named.iter().filter(|m| self.contains(**m)).enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            write!(f, "{mode}")?;
        }
        if count == 1 {
            f.write_str(" only")?;
        }
        if self.contains(AuthMode::None) {
            f.write_str(" (or none)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Accepts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Accepts({self})")
    }
}

/// A route pattern could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route pattern {pattern:?}: {reason}")]
pub struct RouteError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

#[derive(Clone, Debug)]
enum Segment {
    /// Matched ASCII case-insensitively, as Express routes match by default.
    Literal(Box<str>),
    /// `{name}`: exactly one non-empty segment.
    Param,
}

/// A path pattern: `/literal/{param}/…`, optionally ending in `/**` (this path and everything
/// below it).
#[derive(Clone, Debug)]
struct RoutePattern {
    text: Box<str>,
    segments: Box<[Segment]>,
    rest: bool,
    /// The first byte (lower case) a matching path has after its leading '/', when the pattern
    /// starts with a literal: most rules are ruled out by it alone.
    lead: Option<u8>,
}

impl RoutePattern {
    fn parse(pattern: &str) -> Result<Self, RouteError> {
        let err = |reason| RouteError {
            pattern: pattern.to_owned(),
            reason,
        };
        let body = pattern
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/'"))?;
        let (body, rest) = match body.strip_suffix("**") {
            Some(b) if b.is_empty() || b.ends_with('/') => (b.strip_suffix('/').unwrap_or(b), true),
            Some(_) => return Err(err("'**' must be a whole final segment")),
            None => (body, false),
        };
        let mut segments = Vec::new();
        if !body.is_empty() {
            for seg in body.split('/') {
                if seg.is_empty() {
                    return Err(err("empty segment"));
                }
                if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 {
                    segments.push(Segment::Param);
                } else if seg.contains(['{', '}', '*', '?', '#']) {
                    return Err(err("segments are literals, '{name}' or a final '**'"));
                } else {
                    segments.push(Segment::Literal(seg.into()));
                }
            }
        }
        let lead = match segments.first() {
            Some(Segment::Literal(lit)) => lit.bytes().next().map(|b| b.to_ascii_lowercase()),
            _ => None,
        };
        Ok(Self {
            text: pattern.into(),
            segments: segments.into(),
            rest,
            lead,
        })
    }

    /// Matches a request path (no query). One trailing slash is ignored and literals compare
    /// ASCII case-insensitively: the server's router treats those as the same route.
    fn matches(&self, path: &str) -> bool {
        let Some(p) = path.as_bytes().strip_prefix(b"/") else {
            return false;
        };
        if let Some(lead) = self.lead
            && p.first().map(u8::to_ascii_lowercase) != Some(lead)
        {
            return false;
        }
        let p = p.strip_suffix(b"/").unwrap_or(p);
        // Where the next segment starts, as `split('/')` would give them ("" has none).
        let mut next = (!p.is_empty()).then_some(0);
        for seg in self.segments.iter() {
            let Some(start) = next else {
                return false;
            };
            let rest = &p[start..];
            let len = match seg {
                Segment::Literal(lit) => {
                    let lit = lit.as_bytes();
                    let fits = rest.len() >= lit.len()
                        && rest[..lit.len()].eq_ignore_ascii_case(lit)
                        && rest.get(lit.len()).is_none_or(|c| *c == b'/');
                    if !fits {
                        return false;
                    }
                    lit.len()
                }
                Segment::Param => match rest.iter().position(|c| *c == b'/') {
                    Some(0) => return false,
                    Some(n) => n,
                    None if rest.is_empty() => return false,
                    None => rest.len(),
                },
            };
            next = (start + len < p.len()).then_some(start + len + 1);
        }
        self.rest || next.is_none()
    }
}

#[derive(Clone, Debug)]
struct Rule {
    /// `None` matches any method.
    method: Option<MethodKey>,
    pattern: RoutePattern,
    accepts: Accepts,
}

/// A method compared ASCII case-insensitively: `get` is `GET` (the signer upper-cases it too).
#[derive(Clone, Debug, PartialEq, Eq)]
enum MethodKey {
    /// A standard method, by its position in [`STANDARD_METHODS`].
    Standard(u8),
    /// Any other method, upper-cased.
    Other(Box<str>),
}

const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::HEAD,
    Method::OPTIONS,
    Method::CONNECT,
    Method::TRACE,
];

impl MethodKey {
    /// The key of a method; allocates only for a non-standard method.
    fn of(method: &Method) -> Self {
        if let Some(i) = STANDARD_METHODS.iter().position(|m| m == method) {
            return Self::Standard(i as u8);
        }
        let text = method.as_str();
        match STANDARD_METHODS
            .iter()
            .position(|m| m.as_str().eq_ignore_ascii_case(text))
        {
            Some(i) => Self::Standard(i as u8),
            None => Self::Other(text.to_ascii_uppercase().into()),
        }
    }
}

/// The token scopes a route requires of an HMAC token: all of a list, plus one more when a
/// JSON body field is `true` (creating a partner account with a server wallet needs
/// `delegated_signing` on top of `account_creation`).
///
/// ```
/// use limitless_auth::{Scope, policy::ScopeRequirement};
///
/// let create = ScopeRequirement::all([Scope::AccountCreation])
///     .when_body_flag("createServerWallet", Scope::DelegatedSigning);
/// assert_eq!(create.scopes(), &[Scope::AccountCreation]);
/// assert_eq!(create.body_flag(), Some(("createServerWallet", &Scope::DelegatedSigning)));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeRequirement {
    scopes: Vec<Scope>,
    body_flag: Option<(Box<str>, Scope)>,
}

impl ScopeRequirement {
    /// Every scope in `scopes`.
    pub fn all(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            scopes: scopes.into_iter().collect(),
            body_flag: None,
        }
    }

    /// Also `scope` when the request's JSON body has `field: true`.
    pub fn when_body_flag(mut self, field: &str, scope: Scope) -> Self {
        self.body_flag = Some((field.into(), scope));
        self
    }

    /// The scopes always required.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The body field and the scope it adds, if any.
    pub fn body_flag(&self) -> Option<(&str, &Scope)> {
        self.body_flag.as_ref().map(|(f, s)| (&**f, s))
    }

    /// The first required scope `held` lacks, leaving the body flag out.
    fn missing_always(&self, held: &[Scope]) -> Option<&Scope> {
        self.scopes.iter().find(|s| !held.contains(s))
    }

    /// The scope the body flag adds when `body` sets it and `held` lacks it.
    pub(crate) fn missing_for_body(&self, held: &[Scope], body: &[u8]) -> Option<&Scope> {
        let (field, scope) = self.body_flag.as_ref()?;
        if held.contains(scope) {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        (value.get(&**field) == Some(&serde_json::Value::Bool(true))).then_some(scope)
    }
}

/// How one request was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The modes the route accepts.
    pub accepts: Accepts,
    /// The pattern that matched, or `None` for the fallback.
    pub pattern: Option<&'a str>,
}

/// Which authentication modes each route accepts.
///
/// Rules match a method (or any method) and a path pattern; a rule added later takes precedence
/// over an earlier one that matches the same request; requests no rule matches get the fallback.
/// Methods and path literals match ASCII case-insensitively and one trailing slash is ignored,
/// because the server routes those variants to the same handler.
///
/// ```
/// use http::Method;
/// use limitless_auth::{Accepts, AuthMode, RouteTable};
///
/// let table = RouteTable::limitless()
///     .with_route(Some(Method::GET), "/markets/**", Accepts::DEFAULT | Accepts::ANONYMOUS)?;
/// let m = table.classify(&Method::GET, "/auth/api-tokens/capabilities");
/// assert_eq!(m.accepts, Accepts::PRIVY);
/// assert!(table.classify(&Method::GET, "/markets/active").accepts.contains(AuthMode::None));
/// assert_eq!(table.classify(&Method::POST, "/orders").pattern, None);
/// # Ok::<(), limitless_auth::policy::RouteError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RouteTable {
    rules: Vec<Rule>,
    /// Scope requirements of HMAC requests, most recent last.
    scope_rules: Vec<(Option<MethodKey>, RoutePattern, Arc<ScopeRequirement>)>,
    /// Headers never sent to a route, most recent last.
    strip_rules: Vec<(Option<MethodKey>, RoutePattern, HeaderName)>,
    /// For each standard method, the rules that can match it (its own and those for any
    /// method), most recent first: a request checks only these.
    by_method: [Vec<u16>; STANDARD_METHODS.len()],
    fallback: Accepts,
}

impl RouteTable {
    /// An empty table whose every route accepts `fallback`.
    pub fn new(fallback: Accepts) -> Self {
        Self {
            rules: Vec::new(),
            scope_rules: Vec::new(),
            strip_rules: Vec::new(),
            by_method: Default::default(),
            fallback,
        }
    }

    /// The Limitless API's routes (SPEC §3):
    ///
    /// | accepts | routes |
    /// |---|---|
    /// | Privy only | `GET /auth/api-tokens/capabilities`, `POST /auth/api-tokens/derive`, `POST /portfolio/withdrawal-addresses`, `DELETE /portfolio/withdrawal-addresses/{address}`, `POST` and `DELETE /auth/api-keys/**` (legacy key management: the API refuses HMAC and keys there) |
    /// | Privy or HMAC | `POST /amm/allowances/check`, `POST /amm/allowances/approve`, `POST /amm/buy`, `POST /amm/sell`, `POST /portfolio/withdraw`, `POST /portfolio/redeem` (legacy keys are not supported on server-wallet operations) |
    /// | HMAC only | any method on `/profiles/partner-accounts/**` |
    /// | HMAC or API key | everything else |
    ///
    /// Scopes an HMAC token needs ([`RouteTable::required_scopes`]):
    ///
    /// | scopes | routes |
    /// |---|---|
    /// | `trading` | `POST` and `DELETE /orders/**`, `POST /portfolio/redeem` |
    /// | `withdrawal` | `POST /portfolio/withdraw` |
    /// | `trading` + `delegated_signing` | any method on `/amm/**` |
    /// | `account_creation` | `GET /profiles/partner-accounts`; `POST /profiles/partner-accounts` (+ `delegated_signing` when the body has `"createServerWallet": true`) |
    /// | `account_creation` + `delegated_signing` | `GET /profiles/partner-accounts/{id}/allowances`, `POST /profiles/partner-accounts/{id}/allowances/retry` |
    ///
    /// `x-on-behalf-of` is removed from `GET /profiles/partner-accounts`: the API's docs say not
    /// to send it there (the listing is always scoped to the authenticated partner).
    pub fn limitless() -> Self {
        let privy_or_hmac = Accepts::PRIVY | Accepts::HMAC;
        let rules: [(Option<Method>, &str, Accepts); 13] = [
            (None, "/profiles/partner-accounts/**", Accepts::HMAC),
            (Some(Method::POST), "/portfolio/redeem", privy_or_hmac),
            (Some(Method::POST), "/auth/api-keys/**", Accepts::PRIVY),
            (Some(Method::DELETE), "/auth/api-keys/**", Accepts::PRIVY),
            (Some(Method::POST), "/amm/allowances/check", privy_or_hmac),
            (Some(Method::POST), "/amm/allowances/approve", privy_or_hmac),
            (Some(Method::POST), "/amm/buy", privy_or_hmac),
            (Some(Method::POST), "/amm/sell", privy_or_hmac),
            (Some(Method::POST), "/portfolio/withdraw", privy_or_hmac),
            (
                Some(Method::GET),
                "/auth/api-tokens/capabilities",
                Accepts::PRIVY,
            ),
            (
                Some(Method::POST),
                "/auth/api-tokens/derive",
                Accepts::PRIVY,
            ),
            (
                Some(Method::POST),
                "/portfolio/withdrawal-addresses",
                Accepts::PRIVY,
            ),
            (
                Some(Method::DELETE),
                "/portfolio/withdrawal-addresses/{address}",
                Accepts::PRIVY,
            ),
        ];
        let mut table = Self::new(Accepts::DEFAULT);
        for (method, pattern, accepts) in rules {
            table
                .add_route(method, pattern, accepts)
                .expect("built-in patterns are valid");
        }
        let (trading, creation, delegated, withdrawal) = (
            Scope::Trading,
            Scope::AccountCreation,
            Scope::DelegatedSigning,
            Scope::Withdrawal,
        );
        let scoped: [(Option<Method>, &str, ScopeRequirement); 9] = [
            (
                Some(Method::POST),
                "/orders/**",
                ScopeRequirement::all([trading.clone()]),
            ),
            (
                Some(Method::DELETE),
                "/orders/**",
                ScopeRequirement::all([trading.clone()]),
            ),
            (
                Some(Method::POST),
                "/portfolio/redeem",
                ScopeRequirement::all([trading.clone()]),
            ),
            (
                Some(Method::POST),
                "/portfolio/withdraw",
                ScopeRequirement::all([withdrawal]),
            ),
            (
                None,
                "/amm/**",
                ScopeRequirement::all([trading, delegated.clone()]),
            ),
            (
                Some(Method::GET),
                "/profiles/partner-accounts",
                ScopeRequirement::all([creation.clone()]),
            ),
            (
                Some(Method::POST),
                "/profiles/partner-accounts",
                ScopeRequirement::all([creation.clone()])
                    .when_body_flag("createServerWallet", delegated.clone()),
            ),
            (
                Some(Method::GET),
                "/profiles/partner-accounts/{id}/allowances",
                ScopeRequirement::all([creation.clone(), delegated.clone()]),
            ),
            (
                Some(Method::POST),
                "/profiles/partner-accounts/{id}/allowances/retry",
                ScopeRequirement::all([creation, delegated]),
            ),
        ];
        for (method, pattern, scopes) in scoped {
            table
                .require_scopes(method, pattern, scopes)
                .expect("built-in patterns are valid");
        }
        table
            .strip_header(
                Some(Method::GET),
                "/profiles/partner-accounts",
                HeaderName::from_static("x-on-behalf-of"),
            )
            .expect("built-in patterns are valid")
    }

    /// Adds a rule; it takes precedence over rules added before it.
    pub fn add_route(
        &mut self,
        method: Option<Method>,
        pattern: &str,
        accepts: Accepts,
    ) -> Result<&mut Self, RouteError> {
        let pattern = RoutePattern::parse(pattern)?;
        let index = u16::try_from(self.rules.len()).map_err(|_| RouteError {
            pattern: pattern.text.to_string(),
            reason: "a table holds at most 65535 rules",
        })?;
        let method = method.as_ref().map(MethodKey::of);
        for (i, list) in self.by_method.iter_mut().enumerate() {
            if method
                .as_ref()
                .is_none_or(|m| *m == MethodKey::Standard(i as u8))
            {
                list.insert(0, index);
            }
        }
        self.rules.push(Rule {
            method,
            pattern,
            accepts,
        });
        Ok(self)
    }

    /// Adds a rule, builder style.
    pub fn with_route(
        mut self,
        method: Option<Method>,
        pattern: &str,
        accepts: Accepts,
    ) -> Result<Self, RouteError> {
        self.add_route(method, pattern, accepts)?;
        Ok(self)
    }

    /// Requires `scopes` of the HMAC tokens sent to matching routes; a later requirement takes
    /// precedence over an earlier one that matches the same request. Checked when a token's
    /// scopes are known ([`HmacCredentials::with_scopes`]): a request whose token lacks one
    /// fails locally with [`PolicyError::MissingScope`].
    pub fn require_scopes(
        &mut self,
        method: Option<Method>,
        pattern: &str,
        scopes: ScopeRequirement,
    ) -> Result<&mut Self, RouteError> {
        let pattern = RoutePattern::parse(pattern)?;
        self.scope_rules.push((
            method.as_ref().map(MethodKey::of),
            pattern,
            Arc::new(scopes),
        ));
        Ok(self)
    }

    /// [`RouteTable::require_scopes`], builder style.
    pub fn with_scopes(
        mut self,
        method: Option<Method>,
        pattern: &str,
        scopes: ScopeRequirement,
    ) -> Result<Self, RouteError> {
        self.require_scopes(method, pattern, scopes)?;
        Ok(self)
    }

    /// Never sends the header `name` to matching routes: the policy removes it.
    pub fn strip_header(
        mut self,
        method: Option<Method>,
        pattern: &str,
        name: HeaderName,
    ) -> Result<Self, RouteError> {
        let pattern = RoutePattern::parse(pattern)?;
        self.strip_rules
            .push((method.as_ref().map(MethodKey::of), pattern, name));
        Ok(self)
    }

    /// The scopes an HMAC token needs for a request, if the route requires any.
    pub fn required_scopes(&self, method: &Method, path: &str) -> Option<&ScopeRequirement> {
        self.required_scopes_arc(method, path).map(|r| &**r)
    }

    fn required_scopes_arc(&self, method: &Method, path: &str) -> Option<&Arc<ScopeRequirement>> {
        let key = MethodKey::of(method);
        self.scope_rules
            .iter()
            .rev()
            .find(|(m, p, _)| m.as_ref().is_none_or(|m| *m == key) && p.matches(path))
            .map(|(_, _, r)| r)
    }

    /// Removes from `req` the headers its route must not receive. Costs nothing unless the
    /// request carries one of the headers some route strips.
    fn strip_route_headers<B>(&self, req: &mut Request<B>) {
        if req.headers().is_empty() {
            return;
        }
        let key = MethodKey::of(req.method());
        loop {
            let headers = req.headers();
            let route = route_path(req);
            // The route first: most requests match no rule, and that costs no header lookup.
            let found = self.strip_rules.iter().find(|(m, p, name)| {
                m.as_ref().is_none_or(|m| *m == key)
                    && p.matches(route)
                    && headers.contains_key(name)
            });
            match found {
                Some((_, _, name)) => {
                    let name = name.clone();
                    req.headers_mut().remove(&name);
                }
                None => return,
            }
        }
    }

    /// Sets what routes no rule matches accept.
    pub fn with_fallback(mut self, fallback: Accepts) -> Self {
        self.fallback = fallback;
        self
    }

    /// Classifies a request by method and path (without the query).
    pub fn classify(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let found =
            match MethodKey::of(method) {
                MethodKey::Standard(i) => self.by_method[usize::from(i)]
                    .iter()
                    .map(|&r| &self.rules[usize::from(r)])
                    .find(|r| r.pattern.matches(path)),
                key => self.rules.iter().rev().find(|r| {
                    r.method.as_ref().is_none_or(|m| *m == key) && r.pattern.matches(path)
                }),
            };
        found.map_or(
            RouteMatch {
                accepts: self.fallback,
                pattern: None,
            },
            |r| RouteMatch {
                accepts: r.accepts,
                pattern: Some(&r.pattern.text),
            },
        )
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::limitless()
    }
}

/// The path a gateway mounts the Limitless API under (`/x` in `https://gw.example/x`).
///
/// In a request's extensions it makes the policy classify the Limitless route, the path after
/// the prefix, and tells the signing layer whether the HMAC signature covers the prefix (by
/// default it does: the request-target is signed as sent). The client inserts it for a base
/// URL with a path.
///
/// ```
/// use limitless_auth::policy::RoutePrefix;
///
/// let prefix = RoutePrefix::new("/x")?;
/// assert_eq!(prefix.route("/x/auth/api-tokens/capabilities"), "/auth/api-tokens/capabilities");
/// assert_eq!(prefix.route("/xy/orders"), "/xy/orders");
/// assert!(prefix.is_signed() && !prefix.unsigned().is_signed());
/// # Ok::<(), limitless_auth::policy::RouteError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePrefix {
    prefix: Arc<str>,
    signed: bool,
}

impl RoutePrefix {
    /// A prefix such as `/x` or `/api/v1`: starts with `/`, no trailing `/`, no query.
    pub fn new(prefix: &str) -> Result<Self, RouteError> {
        let err = |reason| RouteError {
            pattern: prefix.to_owned(),
            reason,
        };
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(err(
                "a path prefix starts with '/' and names at least one segment",
            ));
        }
        if prefix.ends_with('/') {
            return Err(err("a path prefix must not end with '/'"));
        }
        if prefix.contains(['?', '#']) || prefix.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(err(
                "a path prefix is a percent-encoded path without a query",
            ));
        }
        Ok(Self {
            prefix: prefix.into(),
            signed: true,
        })
    }

    /// The same prefix, left out of the HMAC signature: for a gateway that strips it before
    /// the API sees the request.
    pub fn unsigned(mut self) -> Self {
        self.signed = false;
        self
    }

    /// Whether the HMAC signature covers the prefix.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// What follows the prefix in `target` (a path, or a path and query) when it starts with
    /// the prefix and a `/`.
    fn strip<'a>(&self, target: &'a str) -> Option<&'a str> {
        target
            .strip_prefix(&*self.prefix)
            .filter(|rest| rest.starts_with('/'))
    }

    /// The Limitless route of a request path: the path after the prefix, or the whole path
    /// when it is not under the prefix.
    pub fn route<'a>(&self, path: &'a str) -> &'a str {
        self.strip(path).unwrap_or(path)
    }

    /// The request-target to sign: as sent, or without the prefix when it is unsigned.
    pub(crate) fn signing_target<'a>(&self, target: &'a str) -> &'a str {
        if self.signed {
            target
        } else {
            self.strip(target).unwrap_or(target)
        }
    }
}

/// The authentication the policy chose for a request: the one decision the layers below act on.
///
/// [`AuthPolicy`] inserts it into every request's extensions; [`IdentityLayer`] and
/// [`HmacSigningLayer`] below carry it out (the identity token for Privy, the signature for
/// HMAC) and nothing else. Only this crate makes one, so a caller cannot forge a decision.
///
/// [`IdentityLayer`]: crate::IdentityLayer
/// [`HmacSigningLayer`]: crate::HmacSigningLayer
///
/// ```compile_fail
/// // No decision can be made outside the policy:
/// let forged = limitless_auth::SelectedAuth { selected: todo!(), nonce: 1 };
/// ```
#[derive(Clone, Debug)]
pub struct SelectedAuth {
    pub(crate) selected: Selected,
    /// Matched against [`claim`] to see that a layer below carried the decision out.
    nonce: u64,
    /// The method and request-target the decision was made for.
    method: Method,
    target: Option<PathAndQuery>,
}

/// What was chosen, with the credential to use.
#[derive(Clone, Debug)]
pub(crate) enum Selected {
    /// With the route's scope requirement when it depends on the body (the signing layer, which
    /// reads the body, checks it).
    Hmac(HmacCredentials, Option<Arc<ScopeRequirement>>),
    Privy(IdentityToken),
    /// The `x-api-key` header has been set by the policy.
    ApiKey,
    None,
}

impl Selected {
    pub(crate) fn mode(&self) -> AuthMode {
        match self {
            Self::Hmac(..) => AuthMode::Hmac,
            Self::Privy(_) => AuthMode::Privy,
            Self::ApiKey => AuthMode::ApiKey,
            Self::None => AuthMode::None,
        }
    }
}

impl SelectedAuth {
    /// The mode chosen.
    pub fn mode(&self) -> AuthMode {
        self.selected.mode()
    }

    /// Records that the calling layer carries this decision out.
    fn claim(&self) {
        claim::set(self.nonce);
    }

    /// The decision as a layer below takes it up: the selection, claimed, when `carries` its
    /// mode; `None` when it is another layer's to carry out. Refused (and claimed, so that the
    /// policy passes on this reason) for a request of another method or request-target than
    /// the one it was made for: a layer in between changed the request, and a decision is only
    /// ever carried out for the route it was made for.
    #[inline]
    pub(crate) fn take_up<B>(
        &self,
        req: &Request<B>,
        carries: impl FnOnce(AuthMode) -> bool,
    ) -> Result<Option<&Selected>, PolicyError> {
        if self.method != req.method() || self.target.as_ref() != req.uri().path_and_query() {
            self.claim();
            return Err(PolicyError::DecidedForAnother {
                method: req.method().clone(),
                path: display_path(req.uri().path()).into_owned(),
            });
        }
        if !carries(self.selected.mode()) {
            return Ok(None);
        }
        self.claim();
        Ok(Some(&self.selected))
    }
}

/// Whether a decision was carried out below the policy.
///
/// The layers below claim a decision synchronously in their `call`, before anything can be
/// sent; the policy compares, right after calling its inner service, the last claim made on
/// this thread with the nonce of its own decision. A stack with no layer to carry the decision
/// out fails locally, and the inner service's future is dropped unpolled.
mod claim {
    use std::cell::Cell;

    thread_local! {
        static NEXT: Cell<u64> = const { Cell::new(0) };
        static CLAIMED: Cell<u64> = const { Cell::new(0) };
    }

    /// A nonce not used before on this thread.
    pub(super) fn next() -> u64 {
        NEXT.with(|n| {
            let v = n.get().wrapping_add(1);
            n.set(v);
            v
        })
    }

    pub(super) fn set(nonce: u64) {
        CLAIMED.with(|c| c.set(nonce));
    }

    pub(super) fn taken(nonce: u64) -> bool {
        CLAIMED.with(|c| c.get() == nonce)
    }
}

/// The policy refused a request; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The route accepts only modes for which no credential is held.
    #[error("{method} {path} accepts {accepts}, but {needed} is configured; nothing was sent", needed = Needed(*.accepts))]
    MissingCredential {
        /// The request's method.
        method: Method,
        /// The request's path (without the query).
        path: String,
        /// What the route accepts.
        accepts: Accepts,
    },
    /// The caller asked for a mode the route (or, without a policy, the layer) does not accept.
    #[error(
        "{method} {path} accepts {accepts}; {requested} authentication was requested and is refused here; nothing was sent"
    )]
    ModeNotAccepted {
        /// The request's method.
        method: Method,
        /// The request's path (without the query).
        path: String,
        /// The mode asked for.
        requested: AuthMode,
        /// What the route accepts.
        accepts: Accepts,
    },
    /// The route needs a scope that the HMAC token is known not to hold.
    #[error(
        "{method} {path} needs the {scope} scope, which the HMAC token {token} does not hold; \
         nothing was sent"
    )]
    MissingScope {
        /// The request's method.
        method: Method,
        /// The request's path (without the query).
        path: String,
        /// The scope missing.
        scope: Scope,
        /// The token, by the last characters of its id.
        token: String,
    },
    /// The identity token the route needs has expired (by the stack's clock, which the client
    /// corrects by the offset it measured from the server).
    #[error(
        "{method} {path}: the identity token expired at {expired_at}; refresh it \
         (LIMITLESS_IDENTITY_TOKEN); nothing was sent"
    )]
    IdentityExpired {
        /// The request's method.
        method: Method,
        /// The request's path (without the query).
        path: String,
        /// When it expired (its JWT `exp`), `YYYY-MM-DDTHH:MM:SS.mmmZ`.
        expired_at: String,
    },
    /// The policy chose a mode that no layer below it carries out: HMAC with no
    /// [`HmacSigningLayer`](crate::HmacSigningLayer) below, Privy with no
    /// [`IdentityLayer`](crate::IdentityLayer) below.
    #[error(
        "{method} {path}: the route policy chose {mode} authentication, but no {layer} below it \
         took the request; nothing was sent", layer = executor(*.mode)
    )]
    NotCarriedOut {
        /// The request's method.
        method: Method,
        /// The request's path (without the query).
        path: String,
        /// The mode chosen.
        mode: AuthMode,
    },
    /// A layer below the policy received the policy's decision with a request of another
    /// method or request-target than the one it was made for (a layer in between changed the
    /// request): the decision is not carried out for a route it was not made for.
    #[error(
        "{method} {path}: the route policy decided for another method or request-target (a layer \
         between it and this one changed the request); nothing was sent"
    )]
    DecidedForAnother {
        /// The request's method, as this layer received it.
        method: Method,
        /// The request's path (without the query), as this layer received it.
        path: String,
    },
}

/// The layer that carries out `mode` below a policy.
fn executor(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Privy => "IdentityLayer",
        _ => "HmacSigningLayer",
    }
}

impl PolicyError {
    pub(crate) fn missing(method: &Method, uri: &http::Uri, accepts: Accepts) -> Self {
        Self::MissingCredential {
            method: method.clone(),
            path: display_path(uri.path()).into_owned(),
            accepts,
        }
    }

    pub(crate) fn missing_scope(
        method: &Method,
        uri: &http::Uri,
        scope: &Scope,
        creds: &HmacCredentials,
    ) -> Self {
        Self::MissingScope {
            method: method.clone(),
            path: display_path(uri.path()).into_owned(),
            scope: scope.clone(),
            token: creds.token_hint(),
        }
    }

    /// `token` has expired at `now_millis`: the refusal, else `None`.
    pub(crate) fn expired(
        method: &Method,
        uri: &http::Uri,
        token: &IdentityToken,
        now_millis: i64,
    ) -> Option<Self> {
        token
            .is_expired_at(now_millis)
            .then(|| Self::IdentityExpired {
                method: method.clone(),
                path: display_path(uri.path()).into_owned(),
                expired_at: token
                    .expires_at()
                    .map_or_else(String::new, |t| t.as_str().to_owned()),
            })
    }

    /// A layer used without a policy was asked for another mode than its own.
    pub(crate) fn not_this_layer(
        method: &Method,
        uri: &http::Uri,
        requested: AuthMode,
        own: AuthMode,
    ) -> Self {
        Self::ModeNotAccepted {
            method: method.clone(),
            path: display_path(uri.path()).into_owned(),
            requested,
            accepts: Accepts::only(own),
        }
    }
}

/// A request path as it may appear in errors and traces: a token id under
/// `/auth/api-tokens/` is replaced by the route template `{tokenId}`, wherever the path puts
/// it (behind a base-URL prefix too).
///
/// ```
/// use limitless_auth::policy::display_path;
///
/// assert_eq!(display_path("/auth/api-tokens/tok_123"), "/auth/api-tokens/{tokenId}");
/// assert_eq!(display_path("/x/AUTH/api-tokens/tok/"), "/x/AUTH/api-tokens/{tokenId}/");
/// assert_eq!(display_path("/auth/api-tokens/capabilities"), "/auth/api-tokens/capabilities");
/// assert_eq!(display_path("/orders"), "/orders");
/// ```
pub fn display_path(path: &str) -> std::borrow::Cow<'_, str> {
    const ROUTE: &[u8] = b"/auth/api-tokens/";
    let bytes = path.as_bytes();
    let Some(at) = bytes
        .windows(ROUTE.len())
        .position(|w| w.eq_ignore_ascii_case(ROUTE))
    else {
        return path.into();
    };
    let start = at + ROUTE.len();
    let end = bytes[start..]
        .iter()
        .position(|b| *b == b'/')
        .map_or(bytes.len(), |i| start + i);
    let segment = &path[start..end];
    if segment.is_empty()
        || segment.eq_ignore_ascii_case("capabilities")
        || segment.eq_ignore_ascii_case("derive")
    {
        return path.into();
    }
    format!("{}{{tokenId}}{}", &path[..start], &path[end..]).into()
}

/// "no Privy identity token (LIMITLESS_IDENTITY_TOKEN)" … for error messages.
struct Needed(Accepts);

impl fmt::Display for Needed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for mode in [AuthMode::Privy, AuthMode::Hmac, AuthMode::ApiKey] {
            if !self.0.contains(mode) {
                continue;
            }
            f.write_str(if first { "no " } else { " nor " })?;
            first = false;
            f.write_str(match mode {
                AuthMode::Privy => "Privy identity token (LIMITLESS_IDENTITY_TOKEN)",
                AuthMode::Hmac => "HMAC token (LMTS_TOKEN_ID, LMTS_TOKEN_SECRET)",
                _ => "API key (LIMITLESS_API_KEY)",
            })?;
        }
        if first {
            f.write_str("no credential")?;
        }
        Ok(())
    }
}

/// Applies a [`RouteTable`] to every request: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct AuthPolicyLayer {
    config: Arc<PolicyConfig>,
}

#[derive(Debug)]
pub(crate) struct PolicyConfig {
    table: RouteTable,
    credentials: SharedCredentials,
}

impl AuthPolicyLayer {
    /// A policy over the default Limitless [`RouteTable`] holding `credentials`: fixed
    /// [`Credentials`], or a [`SharedCredentials`] handle that can be swapped at run time.
    pub fn new(credentials: impl Into<SharedCredentials>) -> Self {
        Self::with_table(credentials, RouteTable::limitless())
    }

    /// A policy over a custom route table.
    pub fn with_table(credentials: impl Into<SharedCredentials>, table: RouteTable) -> Self {
        Self {
            config: Arc::new(PolicyConfig {
                table,
                credentials: credentials.into(),
            }),
        }
    }

    /// The route table.
    pub fn table(&self) -> &RouteTable {
        &self.config.table
    }

    pub(crate) fn config(&self) -> &Arc<PolicyConfig> {
        &self.config
    }
}

impl<S> Layer<S> for AuthPolicyLayer {
    type Service = AuthPolicy<S>;
    fn layer(&self, inner: S) -> AuthPolicy<S> {
        AuthPolicy {
            inner,
            credentials: self.config.credentials.cached(),
            config: self.config.clone(),
        }
    }
}

/// The service made by [`AuthPolicyLayer`].
#[derive(Clone, Debug)]
pub struct AuthPolicy<S> {
    inner: S,
    config: Arc<PolicyConfig>,
    /// This service's reader of the configuration's credentials.
    credentials: CachedCredentials,
}

impl<S> AuthPolicy<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Whether `name` is an authentication header: `identity`, `x-api-key` or any `lmts-*`.
fn is_auth_header(name: &HeaderName) -> bool {
    name == IDENTITY || name == X_API_KEY || name.as_str().starts_with("lmts-")
}

/// Removes every authentication header: `identity`, `x-api-key` and any `lmts-*`.
///
/// The common case, a request with none, costs one pass over the names and no hashing.
pub(crate) fn strip_auth_headers(headers: &mut HeaderMap) {
    while let Some(name) = headers.keys().find(|n| is_auth_header(n)).cloned() {
        headers.remove(&name);
    }
}

impl PolicyConfig {
    /// A reader of the credentials, for one service.
    pub(crate) fn cached_credentials(&self) -> CachedCredentials {
        self.credentials.cached()
    }

    /// Decides how `req` is authenticated: strips any authentication headers it came with,
    /// classifies its route, and picks one mode with its credential. The legacy key's header
    /// is set here; the identity token and the signature are left to the layer that carries
    /// the decision out.
    ///
    /// `creds` are the stack's current credentials as the calling service read them, or those
    /// one request uses for all its attempts (the client pins them).
    pub(crate) fn decide<B>(
        &self,
        req: &mut Request<B>,
        creds: &Credentials,
    ) -> Result<Selected, PolicyError> {
        strip_auth_headers(req.headers_mut());
        self.table.strip_route_headers(req);
        let mode = self.choose(req, creds)?;
        // Recorded into the client's request span (an INFO span: with INFO off, there is none).
        #[cfg(feature = "tracing")]
        if tracing::level_enabled!(tracing::Level::INFO) {
            tracing::Span::current().record("mode", tracing::field::display(mode));
        }
        let ext = req.extensions();
        Ok(match mode {
            AuthMode::Hmac => match ext.get::<HmacCredentials>().or(creds.hmac.as_ref()) {
                Some(hmac) => {
                    let body_rule = self.check_scopes(req, hmac)?;
                    Selected::Hmac(hmac.clone(), body_rule)
                }
                None => Selected::None,
            },
            AuthMode::Privy => ext
                .get::<IdentityToken>()
                .or(creds.identity.as_ref())
                .cloned()
                .map_or(Selected::None, Selected::Privy),
            AuthMode::ApiKey => match ext.get::<ApiKey>().or(creds.api_key.as_ref()) {
                Some(key) => {
                    let value = key.header_value();
                    req.headers_mut().insert(X_API_KEY, value);
                    Selected::ApiKey
                }
                None => Selected::None,
            },
            AuthMode::None => Selected::None,
        })
    }

    /// Checks the route's scope requirement against the scopes `hmac` is known to hold (nothing
    /// to check when they are unknown). Returns the requirement when it also depends on the
    /// body, for the signing layer to finish.
    fn check_scopes<B>(
        &self,
        req: &Request<B>,
        hmac: &HmacCredentials,
    ) -> Result<Option<Arc<ScopeRequirement>>, PolicyError> {
        let Some(held) = hmac.scopes() else {
            return Ok(None);
        };
        let Some(required) = self
            .table
            .required_scopes_arc(req.method(), route_path(req))
        else {
            return Ok(None);
        };
        if let Some(scope) = required.missing_always(held) {
            return Err(PolicyError::missing_scope(
                req.method(),
                req.uri(),
                scope,
                hmac,
            ));
        }
        Ok(required.body_flag.is_some().then(|| required.clone()))
    }

    /// The mode the policy picks for `req` with `creds` (and any credentials in the request's
    /// extensions): the route's accepted modes, most preferred first, that have a credential,
    /// or the mode the request asks for if the route accepts it.
    pub(crate) fn choose<B>(
        &self,
        req: &Request<B>,
        creds: &Credentials,
    ) -> Result<AuthMode, PolicyError> {
        let ext = req.extensions();
        let accepts = self.table.classify(req.method(), route_path(req)).accepts;
        let available = |mode: &AuthMode| match mode {
            AuthMode::Hmac => ext.get::<HmacCredentials>().is_some() || creds.hmac.is_some(),
            AuthMode::Privy => ext.get::<IdentityToken>().is_some() || creds.identity.is_some(),
            AuthMode::ApiKey => ext.get::<ApiKey>().is_some() || creds.api_key.is_some(),
            AuthMode::None => true,
        };
        match ext.get::<AuthMode>().copied() {
            Some(requested) if !accepts.contains(requested) => Err(PolicyError::ModeNotAccepted {
                method: req.method().clone(),
                path: display_path(req.uri().path()).into_owned(),
                requested,
                accepts,
            }),
            Some(requested) if available(&requested) => Ok(requested),
            Some(requested) => Err(PolicyError::missing(
                req.method(),
                req.uri(),
                Accepts::only(requested),
            )),
            None => accepts
                .modes()
                .find(available)
                .ok_or_else(|| PolicyError::missing(req.method(), req.uri(), accepts)),
        }
    }
}

/// The Limitless route of `req`: its path after a gateway's [`RoutePrefix`], if any.
fn route_path<B>(req: &Request<B>) -> &str {
    let path = req.uri().path();
    req.extensions()
        .get::<RoutePrefix>()
        .map_or(path, |p| p.route(path))
}

/// Logs a refusal (with the `tracing` feature) and makes it the layer's error.
pub(crate) fn refused(e: PolicyError) -> crate::BoxError {
    #[cfg(feature = "tracing")]
    tracing::debug!(error = %e, "refused by the route policy");
    e.into()
}

impl<S, B> Service<Request<B>> for AuthPolicy<S>
where
    S: Service<Request<B>>,
    S::Error: Into<crate::BoxError>,
{
    type Response = S::Response;
    type Error = crate::BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let selected = match self.config.decide(&mut req, self.credentials.current()) {
            Ok(selected) => selected,
            Err(e) => return ResponseFuture::error(refused(e)),
        };
        let mode = selected.mode();
        let carried_out_below = matches!(mode, AuthMode::Hmac | AuthMode::Privy);
        let nonce = claim::next();
        // The clones share their bytes.
        let (method, target) = (req.method().clone(), req.uri().path_and_query().cloned());
        // Kept for the refusal below.
        let refusal = carried_out_below.then(|| (method.clone(), target.clone()));
        // Replaces any decision already in the request: only this policy's counts.
        req.extensions_mut().insert(SelectedAuth {
            selected,
            nonce,
            method,
            target,
        });
        let fut = self.inner.call(req);
        match refusal {
            // Nothing below took the decision: drop the future unpolled, so nothing is sent.
            Some((method, target)) if !claim::taken(nonce) => {
                drop(fut);
                let path = target.as_ref().map_or("/", |pq| pq.path());
                ResponseFuture::error(refused(PolicyError::NotCarriedOut {
                    method,
                    path: display_path(path).into_owned(),
                    mode,
                }))
            }
            _ => ResponseFuture::inner(fut),
        }
    }
}
