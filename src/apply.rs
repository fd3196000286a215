//! Carrying out a [`Decision`] on a request's headers: the steps every front door takes, in
//! this order, in the same call:
//!
//! 1. [`strip_auth_headers`]: remove every authentication header the caller set;
//! 2. [`decide`](crate::decide);
//! 3. [`check_expiry`]: refuse an identity token that has expired;
//! 4. [`apply`]: remove the route's stripped headers and insert the identity token or the API
//!    key; for HMAC, hand back the [`Signer`];
//! 5. with a signer, once the exact body bytes are at hand: [`Signer::check_body`], then
//!    [`Signer::sign`].
//!
//! Nothing here knows tower, reqwest or the WebSocket.

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::clock::Clock;
use crate::credentials::{HmacCredentials, sensitive_header};
use crate::headers::{IDENTITY, LMTS_API_KEY, LMTS_SIGNATURE, LMTS_TIMESTAMP, X_API_KEY};
use crate::policy::{Credential, Decision, PolicyError, RoutePrefix};
use crate::scope::Scope;
use crate::sign::{Signature, Timestamp, TimestampError};

/// A request could not be signed; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The request-target is not in origin form (authority-form `host:port`, asterisk-form `*`).
    #[error(
        "{method} {target}: only a request-target that starts with '/' can be signed \
         (authority-form and asterisk-form targets are refused); nothing was sent"
    )]
    InvalidTarget {
        /// The request's method.
        method: Method,
        /// The request-target.
        target: String,
    },
    /// The body is a stream: a signed request needs its exact bytes before it is sent.
    #[error(
        "{method} {path}: the body is a stream, and a signed request needs its exact bytes; \
         buffer it (a body made from bytes); nothing was sent"
    )]
    StreamingBody {
        /// The request's method.
        method: Method,
        /// The request's path (without the query).
        path: String,
    },
    /// The clock reads a time outside what the timestamp format can express.
    #[error("cannot sign: {0}; nothing was sent")]
    Clock(#[from] TimestampError),
}

/// Whether `name` is an authentication header: `identity`, `x-api-key` or any `lmts-*`.
fn is_auth_header(name: &HeaderName) -> bool {
    name == IDENTITY || name == X_API_KEY || name.as_str().starts_with("lmts-")
}

/// Removes every authentication header: `identity`, `x-api-key` and any `lmts-*`.
pub(crate) fn strip_auth_headers(headers: &mut HeaderMap) {
    if headers.is_empty() {
        return;
    }
    while let Some(name) = headers.keys().find(|n| is_auth_header(n)).cloned() {
        headers.remove(&name);
    }
}

/// Refuses a decision for an identity token that has expired by `clock`'s confirmed time.
pub(crate) fn check_expiry(
    decision: &Decision<'_>,
    method: &Method,
    path: &str,
    clock: &impl Clock,
) -> Result<(), PolicyError> {
    match &decision.credential {
        Credential::Privy(token) if token.is_expired_at(clock.confirmed_now_millis()) => {
            Err(PolicyError::expired(method, path, token))
        }
        _ => Ok(()),
    }
}

/// Carries out `decision` on `headers`, but for the signature: the route's stripped headers
/// removed, the identity token or the API key inserted. For HMAC, the signer to finish with.
pub(crate) fn apply(decision: Decision<'_>, headers: &mut HeaderMap) -> Option<Signer> {
    if !headers.is_empty() {
        for name in decision.strip {
            headers.remove(name);
        }
    }
    match decision.credential {
        Credential::Hmac(hmac) => Some(Signer {
            hmac,
            body_scope: decision
                .body_scope
                .map(|(field, scope)| (field.into(), scope.clone())),
        }),
        Credential::Privy(token) => {
            headers.insert(IDENTITY, token.header_value());
            None
        }
        Credential::ApiKey(key) => {
            headers.insert(X_API_KEY, key.header_value());
            None
        }
        Credential::None => None,
    }
}

/// Whether the server, in JavaScript, takes `value` as set: anything but `false`, `null`, `0`
/// and `""`. A flag the local check would read as unset must not pass as set on the server.
fn truthy(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_none_or(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// What an HMAC decision leaves to do once the body is at hand.
#[derive(Debug)]
pub(crate) struct Signer {
    hmac: HmacCredentials,
    /// A body field that needs a scope the token lacks when it is set.
    body_scope: Option<(Box<str>, Scope)>,
}

impl Signer {
    /// Refuses a body that sets a field needing a scope the token lacks.
    #[inline]
    pub(crate) fn check_body(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> Result<(), PolicyError> {
        let Some((field, scope)) = &self.body_scope else {
            return Ok(());
        };
        self.refuse_flagged(method, path, body, field, scope)
    }

    fn refuse_flagged(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
        field: &str,
        scope: &Scope,
    ) -> Result<(), PolicyError> {
        let set = serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|v| v.get(field).is_some_and(truthy));
        if set {
            Err(PolicyError::missing_scope(method, path, scope, &self.hmac))
        } else {
            Ok(())
        }
    }

    /// Takes a timestamp from `clock` and signs `method`, `target` (the request-target to sign)
    /// and `body`.
    pub(crate) fn sign(
        &self,
        method: &Method,
        target: &str,
        body: &[u8],
        clock: &impl Clock,
    ) -> Result<Signed, SigningError> {
        let timestamp = Timestamp::now(clock)?;
        let signature = self.hmac.sign_bytes(
            timestamp.as_bytes(),
            method.as_str().as_bytes(),
            target.as_bytes(),
            body,
        );
        Ok(Signed {
            token_id: self.hmac.token_id_header().clone(),
            timestamp,
            signature,
        })
    }
}

/// The three `lmts-*` header values of one signed request.
pub(crate) struct Signed {
    token_id: HeaderValue,
    timestamp: Timestamp,
    signature: Signature,
}

impl Signed {
    /// Inserts the three headers, marked sensitive.
    pub(crate) fn insert(self, headers: &mut HeaderMap) {
        headers.insert(LMTS_API_KEY, self.token_id);
        // Both are ASCII by construction (the formatted timestamp, base64).
        headers.insert(LMTS_TIMESTAMP, sensitive_header(self.timestamp.as_bytes()));
        headers.insert(LMTS_SIGNATURE, sensitive_header(self.signature.as_bytes()));
    }
}

/// The request-target to sign for `target` as it will be sent (in origin form): without a
/// gateway's unsigned prefix.
pub(crate) fn signing_target<'a>(target: &'a str, prefix: Option<&RoutePrefix>) -> &'a str {
    prefix.map_or(target, |p| p.signing_target(target))
}

impl SigningError {
    /// `target` (shown as given) is not in origin form.
    pub(crate) fn invalid_target(method: &Method, target: impl std::fmt::Display) -> Self {
        Self::InvalidTarget {
            method: method.clone(),
            target: target.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_header_is_stripped_and_nothing_else() {
        let mut h = HeaderMap::new();
        for name in [
            "lmts-api-key",
            "lmts-signature",
            "lmts-anything",
            "identity",
            "x-api-key",
            "authorization",
            "x-lmts",
        ] {
            h.append(name, HeaderValue::from_static("v"));
        }
        h.append("identity", HeaderValue::from_static("second"));
        strip_auth_headers(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "x-lmts"]);
    }

    #[test]
    fn a_body_flag_is_set_as_javascript_reads_it() {
        let signer = Signer {
            hmac: HmacCredentials::new("t", "c2VjcmV0").expect("valid"),
            body_scope: Some(("wallet".into(), Scope::DelegatedSigning)),
        };
        let refused = |body: &str| {
            signer
                .check_body(&Method::POST, "/p", body.as_bytes())
                .is_err()
        };
        for set in [
            r#"{"wallet":true}"#,
            r#"{"wallet":1}"#,
            r#"{"wallet":-0.5}"#,
            r#"{"wallet":"false"}"#,
            r#"{"wallet":[]}"#,
            r#"{"wallet":{}}"#,
        ] {
            assert!(refused(set), "{set}");
        }
        for unset in [
            r#"{"wallet":false}"#,
            r#"{"wallet":0}"#,
            r#"{"wallet":0.0}"#,
            r#"{"wallet":""}"#,
            r#"{"wallet":null}"#,
            r#"{"other":true}"#,
            r#"[{"wallet":true}]"#,
            "not json",
            "",
        ] {
            assert!(!refused(unset), "{unset}");
        }
    }

    #[test]
    fn an_unsigned_prefix_is_left_out_of_the_signed_target() {
        assert_eq!(signing_target("/x/a?b", None), "/x/a?b");
        let prefix = RoutePrefix::new("/x").expect("valid");
        assert_eq!(signing_target("/x/a?b", Some(&prefix)), "/x/a?b");
        assert_eq!(signing_target("/x/a?b", Some(&prefix.unsigned())), "/a?b");
    }
}
