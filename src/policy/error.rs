//! Why the policy refused a request, and why a route could not be added to a table.

use std::borrow::Cow;
use std::fmt;

use http::Method;

use super::{Accepts, AuthMode};
use crate::credentials::{HmacCredentials, IdentityToken};
use crate::scope::Scope;

/// A route pattern or path prefix could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route pattern {pattern:?}: {reason}")]
pub struct RouteError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The policy refused a request; nothing was sent.
///
/// Every variant names the request's method and path (a token id in the path is shown as
/// `{tokenId}`), never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The route accepts only modes for which no credential is held.
    #[error(
        "{method} {path} accepts {accepts}, but {needed} is configured; nothing was sent",
        needed = Needed(*.accepts)
    )]
    MissingCredential {
        /// The request's method.
        method: Method,
        /// The request's path (without the query).
        path: String,
        /// What the route accepts (or the mode the request asked for).
        accepts: Accepts,
    },
    /// The request asked for a mode the route does not accept.
    #[error(
        "{method} {path} accepts {accepts}; {requested} authentication was requested and is \
         refused here; nothing was sent"
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
    /// The identity token the route needs has expired by the front door's clock (the client
    /// corrects it by the offset it measured from the server).
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
}

impl PolicyError {
    pub(crate) fn missing(method: &Method, path: &str, accepts: Accepts) -> Self {
        Self::MissingCredential {
            method: method.clone(),
            path: display_path(path).into_owned(),
            accepts,
        }
    }

    pub(crate) fn not_accepted(
        method: &Method,
        path: &str,
        requested: AuthMode,
        accepts: Accepts,
    ) -> Self {
        Self::ModeNotAccepted {
            method: method.clone(),
            path: display_path(path).into_owned(),
            requested,
            accepts,
        }
    }

    pub(crate) fn missing_scope(
        method: &Method,
        path: &str,
        scope: &Scope,
        hmac: &HmacCredentials,
    ) -> Self {
        Self::MissingScope {
            method: method.clone(),
            path: display_path(path).into_owned(),
            scope: scope.clone(),
            token: hmac.token_hint(),
        }
    }

    pub(crate) fn expired(method: &Method, path: &str, token: &IdentityToken) -> Self {
        Self::IdentityExpired {
            method: method.clone(),
            path: display_path(path).into_owned(),
            expired_at: token
                .expires_at()
                .map_or_else(String::new, |t| t.as_str().to_owned()),
        }
    }
}

/// A request path as it may appear in errors and traces: every token id under
/// `/auth/api-tokens/` is replaced by the route template `{tokenId}`, wherever the path puts
/// it (behind a base-URL prefix too).
pub(crate) fn display_path(path: &str) -> Cow<'_, str> {
    const ROUTE: &[u8] = b"/auth/api-tokens/";
    let bytes = path.as_bytes();
    let mut shown = String::new();
    // How much of `path` is in `shown` already.
    let mut done = 0;
    let mut from = 0;
    while let Some(at) = bytes[from..]
        .windows(ROUTE.len())
        .position(|w| w.eq_ignore_ascii_case(ROUTE))
    {
        let start = from + at + ROUTE.len();
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b'/')
            .map_or(bytes.len(), |i| start + i);
        let segment = &path[start..end];
        let named =
            segment.eq_ignore_ascii_case("capabilities") || segment.eq_ignore_ascii_case("derive");
        if !segment.is_empty() && !named {
            shown.push_str(&path[done..start]);
            shown.push_str("{tokenId}");
            done = end;
        }
        // The next occurrence may start at the '/' before this segment.
        from = start - 1;
    }
    if done == 0 {
        return path.into();
    }
    shown.push_str(&path[done..]);
    shown.into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_in_paths_are_shown_as_the_route_template() {
        let cases = [
            ("/auth/api-tokens/tok_123", "/auth/api-tokens/{tokenId}"),
            ("/x/AUTH/api-tokens/tok/", "/x/AUTH/api-tokens/{tokenId}/"),
            (
                "/auth/api-tokens/capabilities",
                "/auth/api-tokens/capabilities",
            ),
            ("/auth/api-tokens/DERIVE", "/auth/api-tokens/DERIVE"),
            ("/auth/api-tokens/", "/auth/api-tokens/"),
            ("/orders", "/orders"),
            (
                "/auth/api-tokens/a/auth/api-tokens/b",
                "/auth/api-tokens/{tokenId}/auth/api-tokens/{tokenId}",
            ),
            (
                "/auth/api-tokens//auth/api-tokens/b",
                "/auth/api-tokens//auth/api-tokens/{tokenId}",
            ),
            (
                "/AUTH/api-tokens/auth/api-tokens/secret",
                "/AUTH/api-tokens/{tokenId}/api-tokens/{tokenId}",
            ),
        ];
        for (path, shown) in cases {
            assert_eq!(display_path(path), shown, "{path}");
        }
    }

    #[test]
    fn messages_name_the_route_and_the_credential() {
        let e = PolicyError::missing(
            &Method::GET,
            "/auth/api-tokens/capabilities",
            Accepts::PRIVY,
        );
        assert_eq!(
            e.to_string(),
            "GET /auth/api-tokens/capabilities accepts Privy only, but no Privy identity token \
             (LIMITLESS_IDENTITY_TOKEN) is configured; nothing was sent"
        );
        let e = PolicyError::missing(&Method::POST, "/orders", Accepts::DEFAULT);
        assert_eq!(
            e.to_string(),
            "POST /orders accepts HMAC or API key, but no HMAC token (LMTS_TOKEN_ID, \
             LMTS_TOKEN_SECRET) nor API key (LIMITLESS_API_KEY) is configured; nothing was sent"
        );
        let e = PolicyError::not_accepted(
            &Method::GET,
            "/auth/api-tokens/capabilities",
            AuthMode::Hmac,
            Accepts::PRIVY,
        );
        assert_eq!(
            e.to_string(),
            "GET /auth/api-tokens/capabilities accepts Privy only; HMAC authentication was \
             requested and is refused here; nothing was sent"
        );
    }
}
