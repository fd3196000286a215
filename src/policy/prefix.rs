//! The path a gateway mounts the Limitless API under.

use std::sync::Arc;

use super::error::RouteError;

/// The path a gateway mounts the Limitless API under (`/x` in `https://gw.example/x`).
///
/// In a request's extensions it makes the policy classify the Limitless route, the path after
/// the prefix, and tells the signer whether the HMAC signature covers the prefix (by default it
/// does: the request-target is signed as sent). The client inserts it for a base URL with a
/// path.
///
/// ```
/// use http::{Extensions, Method};
/// use limitless_auth::{AuthMode, Credentials, IdentityToken, RoutePrefix, RouteTable, decide};
///
/// let mut extensions = Extensions::new();
/// extensions.insert(RoutePrefix::new("/x")?);
/// let creds = Credentials::new().with_identity(IdentityToken::new("privy-identity-token")?);
/// let table = RouteTable::limitless();
/// let target = "/x/auth/api-tokens/capabilities";
/// let d = decide(&table, &Method::GET, target, &extensions, &creds)?;
/// assert_eq!(d.credential.mode(), AuthMode::Privy);
/// # Ok::<(), Box<dyn std::error::Error>>(())
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

    /// The prefix.
    #[cfg(feature = "client")]
    pub(crate) fn as_str(&self) -> &str {
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
    pub(crate) fn route<'a>(&self, path: &'a str) -> &'a str {
        self.strip(path).unwrap_or(path)
    }

    /// The request-target to sign: as sent, or without the prefix when it is unsigned.
    pub(crate) fn signing_target<'a>(&self, target: &'a str) -> &'a str {
        if self.signed {
            target
        } else {
            self.route(target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        for bad in ["", "/", "x", "/x/", "/x?y", "/x#y", "/a b"] {
            assert!(RoutePrefix::new(bad).is_err(), "{bad:?}");
        }
        let p = RoutePrefix::new("/api/v1").expect("valid");
        assert_eq!(p.signing_target("/api/v1/orders?a=1"), "/api/v1/orders?a=1");
        let u = p.unsigned();
        assert_eq!(u.signing_target("/api/v1/orders?a=1"), "/orders?a=1");
        assert_eq!(u.signing_target("/other/orders"), "/other/orders");
        assert_eq!(u.route("/api/v1"), "/api/v1");
        // A prefix ends at a segment boundary: `/api/v1x` is not under `/api/v1`.
        assert_eq!(u.route("/api/v1x/orders"), "/api/v1x/orders");
        assert_eq!(
            u.signing_target("/api/v1x/orders?a=1"),
            "/api/v1x/orders?a=1"
        );
        assert_eq!(u.route("/api/v1/orders"), "/orders");
    }
}
