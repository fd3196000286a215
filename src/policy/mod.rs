//! The route policy: which authentication each route accepts, and [`decide`], the one function
//! that chooses how a request is authenticated.
//!
//! `decide` is pure: it reads the route table, the method and request-target, the caller's
//! per-request choices (in the request's extensions) and the credentials at hand, and returns a
//! [`Decision`] or a [`PolicyError`]. It does no I/O and knows nothing of tower or of the
//! signer; every front door of the crate (the tower layers, the client, the reqwest middleware,
//! the WebSocket) calls it and carries out what it returns, in the same step.

mod error;
mod limitless;
mod prefix;
mod route;

use std::fmt;
use std::ops::BitOr;

use http::{Extensions, HeaderName, Method};

#[cfg(any(all(feature = "tracing", feature = "client"), feature = "reqwest"))]
pub(crate) use error::display_path;
pub use error::{PolicyError, RouteError};
pub use prefix::RoutePrefix;
pub(crate) use route::upper;
pub use route::{RouteTable, ScopeRequirement};

use crate::credentials::{ApiKey, Credentials, HmacCredentials, IdentityToken};
use crate::scope::Scope;

/// How a request is authenticated.
///
/// Inserted into a request's extensions, it asks [`decide`] for that mode, which is refused on
/// routes that do not accept it (so HMAC can never be forced onto a Privy-only route).
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
    /// No authentication (chosen when none of the other accepted credentials is held).
    pub const ANONYMOUS: Self = Self(8);
    /// What the Limitless API accepts on routes it does not single out: HMAC or the legacy key.
    pub const DEFAULT: Self = Self::HMAC.union(Self::API_KEY);

    /// Preference order when several accepted modes have credentials.
    const PREFERENCE: [AuthMode; 4] = [
        AuthMode::Hmac,
        AuthMode::Privy,
        AuthMode::ApiKey,
        AuthMode::None,
    ];

    /// The set holding only `mode`.
    pub(crate) const fn only(mode: AuthMode) -> Self {
        match mode {
            AuthMode::Hmac => Self::HMAC,
            AuthMode::Privy => Self::PRIVY,
            AuthMode::ApiKey => Self::API_KEY,
            AuthMode::None => Self::ANONYMOUS,
        }
    }

    pub(crate) const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether `mode` is accepted.
    pub fn contains(self, mode: AuthMode) -> bool {
        self.0 & Self::only(mode).0 != 0
    }

    /// The accepted modes, most preferred first.
    fn modes(self) -> impl Iterator<Item = AuthMode> {
        Self::PREFERENCE
            .into_iter()
            .filter(move |mode| self.contains(*mode))
    }
}

impl BitOr for Accepts {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
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

/// The one credential a request is sent with; its variant is the mode.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credential {
    /// Sign with this HMAC token.
    Hmac(HmacCredentials),
    /// Send this Privy identity token.
    Privy(IdentityToken),
    /// Send this legacy API key.
    ApiKey(ApiKey),
    /// Send no authentication.
    None,
}

impl Credential {
    /// The mode.
    pub fn mode(&self) -> AuthMode {
        match self {
            Self::Hmac(_) => AuthMode::Hmac,
            Self::Privy(_) => AuthMode::Privy,
            Self::ApiKey(_) => AuthMode::ApiKey,
            Self::None => AuthMode::None,
        }
    }
}

/// How one request is authenticated: what [`decide`] returns, and what a front door carries
/// out, all of it, before the request goes any further.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decision<'t> {
    /// The credential to send the request with.
    pub credential: Credential,
    /// Headers the route must not receive, besides the authentication headers (`lmts-*`,
    /// `identity`, `x-api-key`) that every front door removes before it decides.
    pub strip: &'t [HeaderName],
    /// For an HMAC token whose scopes are known: a JSON body field and the scope it requires
    /// when `true`, which the token lacks. The front door reads the body it signs, and refuses
    /// the request with [`PolicyError::MissingScope`] if the field is set (`true`, or any value
    /// but `false`, `null`, `0` and `""`, as the server's JavaScript reads it).
    pub body_scope: Option<(&'t str, &'t Scope)>,
}

/// Decides how a request is authenticated.
///
/// - `table`: the route table;
/// - `method` and `target`: the request's method (in any case) and request-target (a path,
///   with or without a query);
/// - `choices`: the caller's choices for this request, read from its extensions: an
///   [`AuthMode`] asks for a mode; an [`HmacCredentials`], [`IdentityToken`] or [`ApiKey`]
///   replaces that credential for this request; a [`RoutePrefix`] names the gateway path in
///   front of the Limitless route;
/// - `credentials`: the credentials at hand.
///
/// The route's accepted modes are tried in the order HMAC, Privy, API key, none, and the first
/// with a credential is chosen, unless the request asks for a mode. The request is refused when
/// the route's modes have no credential, when it asks for a mode the route does not accept or
/// that has no credential, and when a token whose scopes are known lacks one the route needs.
///
/// ```
/// use http::{Extensions, Method};
/// use limitless_auth::{
///     AuthMode, Credential, Credentials, HmacCredentials, IdentityToken, PolicyError,
///     RouteTable, decide,
/// };
///
/// let table = RouteTable::limitless();
/// let creds = Credentials::new()
///     .with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?)
///     .with_identity(IdentityToken::new("privy-identity-token")?);
/// let none = Extensions::new();
///
/// let d = decide(&table, &Method::GET, "/auth/api-tokens/capabilities", &none, &creds)?;
/// assert_eq!(d.credential.mode(), AuthMode::Privy);
/// let d = decide(&table, &Method::POST, "/orders", &none, &creds)?;
/// assert!(matches!(d.credential, Credential::Hmac(_)));
///
/// // Without an identity token a Privy-only route is refused, and HMAC cannot be forced on it.
/// let hmac_only = Credentials::new().with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?);
/// let err = decide(&table, &Method::GET, "/auth/api-tokens/capabilities", &none, &hmac_only);
/// assert!(matches!(err, Err(PolicyError::MissingCredential { .. })));
/// let mut asks = Extensions::new();
/// asks.insert(AuthMode::Hmac);
/// let err = decide(&table, &Method::GET, "/auth/api-tokens/capabilities", &asks, &creds);
/// assert!(matches!(err, Err(PolicyError::ModeNotAccepted { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decide<'t>(
    table: &'t RouteTable,
    method: &Method,
    target: &str,
    choices: &Extensions,
    credentials: &Credentials,
) -> Result<Decision<'t>, PolicyError> {
    let path = match target.bytes().position(|b| b == b'?') {
        Some(query) => &target[..query],
        None => target,
    };
    let route = choices
        .get::<RoutePrefix>()
        .map_or(path, |prefix| prefix.route(path));
    let request = route::Route::new(method, route);
    let accepts = table.accepts_route(&request);
    // Refusals name the method in upper case, as it is signed and routed.
    let method = || upper(method.clone());
    let hmac = choices
        .get::<HmacCredentials>()
        .or(credentials.hmac.as_ref());
    let identity = choices
        .get::<IdentityToken>()
        .or(credentials.identity.as_ref());
    let api_key = choices.get::<ApiKey>().or(credentials.api_key.as_ref());
    let held = |mode: AuthMode| match mode {
        AuthMode::Hmac => hmac.cloned().map(Credential::Hmac),
        AuthMode::Privy => identity.cloned().map(Credential::Privy),
        AuthMode::ApiKey => api_key.cloned().map(Credential::ApiKey),
        AuthMode::None => Some(Credential::None),
    };
    let credential = match choices.get::<AuthMode>().copied() {
        Some(asked) if !accepts.contains(asked) => {
            return Err(PolicyError::not_accepted(&method(), path, asked, accepts));
        }
        Some(asked) => held(asked)
            .ok_or_else(|| PolicyError::missing(&method(), path, Accepts::only(asked)))?,
        None => accepts
            .modes()
            .find_map(held)
            .ok_or_else(|| PolicyError::missing(&method(), path, accepts))?,
    };
    let mut body_scope = None;
    if let Credential::Hmac(hmac) = &credential
        && let Some(held) = hmac.scopes()
        && let Some(required) = table.required_scopes(&request)
    {
        if let Some(scope) = required.missing(held) {
            return Err(PolicyError::missing_scope(&method(), path, scope, hmac));
        }
        body_scope = required.flag_missing(held);
    }
    Ok(Decision {
        credential,
        strip: table.stripped_headers(&request),
        body_scope,
    })
}

#[cfg(test)]
mod tests;
