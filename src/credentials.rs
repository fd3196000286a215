//! Credentials: HMAC scoped tokens, Privy identity tokens and legacy API keys.
//!
//! Every credential type validates its input once, at construction, and keeps its secret out of
//! `Debug` output. [`HmacCredentials`] decodes the base64 secret strictly and keys the MAC right
//! away; the decoded key bytes are wiped as soon as the MAC is keyed, and the MAC state (as good
//! as the key) is wiped when the last clone is dropped.
//!
//! ```
//! use limitless_auth::{Credentials, HmacCredentials, IdentityToken};
//!
//! let creds = Credentials::new()
//!     .with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?)
//!     .with_identity(IdentityToken::new("eyJhbGciOi.payload.sig")?);
//! assert!(!format!("{creds:?}").contains("c2VjcmV0"));
//!
//! // Malformed secrets are refused before anything can be signed with them.
//! assert!(HmacCredentials::new("token-123", "c2VjcmV0\n").is_err());
//! # Ok::<(), limitless_auth::CredentialError>(())
//! ```

use std::ffi::OsString;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _};
use http::HeaderValue;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::scope::Scope;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Environment variable holding the HMAC token id (`lmts-api-key`).
pub const ENV_TOKEN_ID: &str = "LMTS_TOKEN_ID";
/// Environment variable holding the base64 HMAC token secret.
pub const ENV_TOKEN_SECRET: &str = "LMTS_TOKEN_SECRET";
/// Environment variable holding the Privy identity token.
pub const ENV_IDENTITY_TOKEN: &str = "LIMITLESS_IDENTITY_TOKEN";
/// Environment variable holding a legacy API key.
pub const ENV_API_KEY: &str = "LIMITLESS_API_KEY";
/// Environment variable holding the scopes the HMAC token is known to hold, comma-separated
/// (optional).
pub const ENV_TOKEN_SCOPES: &str = "LMTS_TOKEN_SCOPES";

/// Why a base64 token secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretProblem {
    /// The secret is empty.
    Empty,
    /// The secret contains whitespace (spaces, tabs, line breaks).
    Whitespace,
    /// The secret uses the URL-safe alphabet (`-` or `_`) instead of the standard one.
    UrlSafeAlphabet,
    /// A character outside the standard base64 alphabet, at this byte offset.
    InvalidCharacter {
        /// Byte offset of the character.
        offset: usize,
    },
    /// The `=` padding is missing.
    MissingPadding,
    /// `=` padding in the wrong place or of the wrong length.
    InvalidPadding,
    /// The last character carries bits that a canonical encoder sets to zero.
    NonCanonicalTrailingBits,
    /// The length is impossible for base64.
    InvalidLength,
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::Whitespace => f.write_str("it contains whitespace"),
            Self::UrlSafeAlphabet => {
                f.write_str("it uses the URL-safe alphabet ('-' or '_'); use standard base64")
            }
            Self::InvalidCharacter { offset } => {
                write!(f, "it has a non-base64 character at offset {offset}")
            }
            Self::MissingPadding => f.write_str("its '=' padding is missing"),
            Self::InvalidPadding => f.write_str("its '=' padding is invalid"),
            Self::NonCanonicalTrailingBits => {
                f.write_str("its last character has non-zero trailing bits")
            }
            Self::InvalidLength => f.write_str("its length is not possible for base64"),
        }
    }
}

/// A credential was refused at construction or while loading from the environment.
///
/// Messages name the credential and the problem, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The value is empty.
    #[error("the {what} is empty")]
    Empty {
        /// Which credential.
        what: &'static str,
    },
    /// The value holds a byte that cannot be sent in an HTTP header.
    #[error(
        "the {what} has a byte at position {position} that cannot be sent in an HTTP header \
         (only visible ASCII is allowed: no spaces, CR, LF, NUL or non-ASCII)"
    )]
    InvalidHeaderValue {
        /// Which credential.
        what: &'static str,
        /// Byte offset of the first offending byte.
        position: usize,
    },
    /// The identity token was given with its `Bearer ` prefix.
    #[error("the identity token must be given without the 'Bearer ' prefix")]
    BearerPrefix,
    /// The token secret is not strict, padded, standard base64.
    #[error("the token secret is not standard padded base64: {0}")]
    MalformedSecret(SecretProblem),
    /// One of a pair of environment variables is set without the other.
    #[error("{set} is set but {missing} is not")]
    IncompleteEnv {
        /// The variable that is set.
        set: &'static str,
        /// The variable that is missing.
        missing: &'static str,
    },
    /// An environment variable is not valid UTF-8.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: &'static str,
    },
    /// A value read from an environment variable was refused.
    #[error("{var}: {source}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with its value.
        source: Box<CredentialError>,
    },
}

/// Checks that `value` is non-empty visible ASCII (0x21..=0x7E).
fn check_visible(what: &'static str, value: &str) -> Result<(), CredentialError> {
    if value.is_empty() {
        return Err(CredentialError::Empty { what });
    }
    match value.bytes().position(|b| !b.is_ascii_graphic()) {
        Some(position) => Err(CredentialError::InvalidHeaderValue { what, position }),
        None => Ok(()),
    }
}

/// A sensitive header value holding a copy of `bytes`, which must be visible ASCII: checked by
/// [`check_visible`], or ASCII by construction (a formatted timestamp, base64).
pub(crate) fn sensitive_header(bytes: &[u8]) -> HeaderValue {
    let mut v = HeaderValue::from_bytes(bytes).expect("visible ASCII is a valid header value");
    v.set_sensitive(true);
    v
}

/// An HMAC scoped API token: the token id sent as `lmts-api-key` and a MAC keyed with the
/// decoded secret.
///
/// Built once; cloning is a reference-count increment. The secret is decoded strictly
/// (standard alphabet, `=` padding required, no whitespace, canonical trailing bits) and the MAC
/// keyed immediately, so signing never pays for key setup. `Debug` shows neither the token id,
/// nor the secret, nor the key.
#[derive(Clone)]
pub struct HmacCredentials {
    inner: Arc<HmacInner>,
}

struct HmacInner {
    token_id: HeaderValue,
    mac: HmacSha256,
    /// The scopes the token is known to hold, if known.
    scopes: Option<Box<[Scope]>>,
}

impl HmacCredentials {
    /// Validates the token id, decodes `secret_b64` and keys the MAC.
    ///
    /// ```
    /// use limitless_auth::{CredentialError, HmacCredentials, SecretProblem};
    ///
    /// assert!(HmacCredentials::new("token-123", "c2VjcmV0").is_ok());
    /// assert_eq!(
    ///     HmacCredentials::new("token-123", "c2VjcmV0LWtleQ").unwrap_err(),
    ///     CredentialError::MalformedSecret(SecretProblem::MissingPadding),
    /// );
    /// assert!(matches!(
    ///     HmacCredentials::new("token\r\n123", "c2VjcmV0"),
    ///     Err(CredentialError::InvalidHeaderValue { .. })
    /// ));
    /// ```
    pub fn new(token_id: &str, secret_b64: &str) -> Result<Self, CredentialError> {
        check_visible("token id", token_id)?;
        let key = decode_secret(secret_b64)?;
        let mac = HmacSha256::new_from_slice(&key).expect("HMAC accepts keys of any length");
        Ok(Self {
            inner: Arc::new(HmacInner {
                token_id: sensitive_header(token_id.as_bytes()),
                mac,
                scopes: None,
            }),
        })
    }

    /// The same token, known to hold `scopes` (from a derive response, `GET /auth/api-tokens`
    /// or `LMTS_TOKEN_SCOPES`). The route policy then refuses locally a request that needs a
    /// scope the token lacks.
    ///
    /// ```
    /// use limitless_auth::{HmacCredentials, Scope};
    /// let creds = HmacCredentials::new("token-123", "c2VjcmV0")?.with_scopes([Scope::Trading]);
    /// assert_eq!(creds.scopes(), Some(&[Scope::Trading][..]));
    /// # Ok::<(), limitless_auth::CredentialError>(())
    /// ```
    pub fn with_scopes(&self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            inner: Arc::new(HmacInner {
                token_id: self.inner.token_id.clone(),
                mac: self.inner.mac.clone(),
                scopes: Some(scopes.into_iter().collect()),
            }),
        }
    }

    /// The scopes the token is known to hold, if known.
    pub fn scopes(&self) -> Option<&[Scope]> {
        self.inner.scopes.as_deref()
    }

    /// The token id as it may be shown in messages: its last four characters only.
    pub(crate) fn token_hint(&self) -> String {
        let id = self.token_id();
        let tail: String = id
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }

    /// The token id (the `lmts-api-key` value).
    pub fn token_id(&self) -> &str {
        self.inner
            .token_id
            .to_str()
            .expect("validated as visible ASCII")
    }

    /// The token id as a sensitive header value; cloning it shares its bytes.
    pub(crate) fn token_id_header(&self) -> &HeaderValue {
        &self.inner.token_id
    }

    pub(crate) fn mac(&self) -> &HmacSha256 {
        &self.inner.mac
    }
}

impl fmt::Debug for HmacCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacCredentials { token_id: <redacted>, key: <redacted> }")
    }
}

/// Decodes a token secret strictly; the key is wiped when the returned buffer drops.
fn decode_secret(secret_b64: &str) -> Result<Zeroizing<Vec<u8>>, CredentialError> {
    use base64::DecodeError;
    let bad = |p| Err(CredentialError::MalformedSecret(p));
    let bytes = secret_b64.as_bytes();
    if bytes.is_empty() {
        return bad(SecretProblem::Empty);
    }
    if bytes.iter().any(u8::is_ascii_whitespace) {
        return bad(SecretProblem::Whitespace);
    }
    if bytes.iter().any(|b| matches!(b, b'-' | b'_')) {
        return bad(SecretProblem::UrlSafeAlphabet);
    }
    // A character outside the alphabet is named by its position before any length or padding
    // problem, which it would otherwise masquerade as.
    if let Some(offset) = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
    {
        return bad(SecretProblem::InvalidCharacter { offset });
    }
    // Unpadded input is the common mistake; name it rather than a generic length error.

    let unpadded = !bytes.len().is_multiple_of(4) && !bytes.contains(&b'=');
    let mut key = Zeroizing::new(Vec::with_capacity(bytes.len() / 4 * 3 + 3));
    // Non-empty base64 that decodes at all decodes to at least one byte.
    match STANDARD.decode_vec(bytes, &mut key) {
        Ok(()) => Ok(key),
        Err(_) if unpadded => bad(SecretProblem::MissingPadding),
        Err(DecodeError::InvalidByte(_, b'=') | DecodeError::InvalidPadding) => {
            bad(SecretProblem::InvalidPadding)
        }
        Err(DecodeError::InvalidByte(offset, _)) => bad(SecretProblem::InvalidCharacter { offset }),
        Err(DecodeError::InvalidLastSymbol(..)) => bad(SecretProblem::NonCanonicalTrailingBits),
        Err(DecodeError::InvalidLength(_)) => bad(SecretProblem::InvalidLength),
    }
}

/// Shared body of [`IdentityToken`] and [`ApiKey`]: a validated secret string, and the header
/// value that carries it, built once (cloning it shares its bytes).
#[derive(Clone)]
struct HeaderSecret(Arc<HeaderSecretInner>);

struct HeaderSecretInner {
    secret: SecretString,
    header: HeaderValue,
}

impl HeaderSecret {
    /// Validates `value` and builds its header value, `prefix` followed by the secret.
    fn new(what: &'static str, value: String, prefix: &str) -> Result<Self, CredentialError> {
        let value = Zeroizing::new(value);
        check_visible(what, &value)?;
        // Wiped when dropped: the header value keeps its own copy.
        let mut buf = Zeroizing::new(Vec::with_capacity(prefix.len() + value.len()));
        buf.extend_from_slice(prefix.as_bytes());
        buf.extend_from_slice(value.as_bytes());
        Ok(Self(Arc::new(HeaderSecretInner {
            secret: SecretString::from(value.as_str()),
            header: sensitive_header(&buf),
        })))
    }

    fn expose(&self) -> &str {
        self.0.secret.expose_secret()
    }

    /// The sensitive header value; the clone shares its bytes.
    fn header(&self) -> HeaderValue {
        self.0.header.clone()
    }
}

/// A Privy identity token, sent as `identity: Bearer <token>` on Privy routes.
///
/// This is the `token` field of Privy's authenticate response (the identity token), not
/// `privy_access_token`. Held in a [`SecretString`]; cloning shares it; `Debug` is redacted.
///
/// A Privy identity token is a JWT: its `exp` claim is read at construction,
/// without verifying the signature (Limitless verifies it), so that an expired token is caught
/// before it is sent. A token that is not a JWT is accepted, with no expiry known.
///
/// ```
/// use limitless_auth::IdentityToken;
///
/// // {"alg":"ES256","typ":"JWT"} . {"sub":"did:privy:x","iat":1774872000,"exp":1774875600} . sig
/// let jwt = "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.\
///            eyJzdWIiOiJkaWQ6cHJpdnk6eCIsImlhdCI6MTc3NDg3MjAwMCwiZXhwIjoxNzc0ODc1NjAwfQ.c2ln";
/// let token = IdentityToken::new(jwt)?;
/// let expires = token.expires_at().expect("a JWT with exp");
/// assert_eq!(expires.as_str(), "2026-03-30T13:00:00.000Z");
/// assert_eq!(expires.unix_millis(), 1_774_875_600_000);
/// assert!(IdentityToken::new("not-a-jwt")?.expires_at().is_none());
/// # Ok::<(), limitless_auth::CredentialError>(())
/// ```
#[derive(Clone)]
pub struct IdentityToken {
    secret: HeaderSecret,
    times: JwtTimes,
}

/// The `exp` claim of a JWT, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct JwtTimes {
    expires: Option<i64>,
}

impl JwtTimes {
    /// Reads the claims of `token` if it is a JWT (three base64url parts, a JSON payload);
    /// anything else has no times.
    fn read(token: &str) -> Self {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Self::default();
        };
        let Ok(json) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
            return Self::default();
        };
        let Ok(serde_json::Value::Object(claims)) = serde_json::from_slice(&json) else {
            return Self::default();
        };
        // NumericDate: seconds since the epoch, possibly fractional.
        let millis = |name: &str| {
            let secs = claims.get(name)?.as_f64()?;
            (secs.is_finite() && secs.abs() < 1e14).then(|| (secs * 1000.0).round() as i64)
        };
        Self {
            expires: millis("exp"),
        }
    }
}

impl IdentityToken {
    /// Validates the token: non-empty, visible ASCII, without a `Bearer ` prefix.
    pub fn new(token: impl Into<String>) -> Result<Self, CredentialError> {
        let token = token.into();
        // Compared as bytes: slicing the string could split a multi-byte character.
        if token.len() > 7 && token.as_bytes()[..7].eq_ignore_ascii_case(b"bearer ") {
            drop(Zeroizing::new(token));
            return Err(CredentialError::BearerPrefix);
        }
        let times = JwtTimes::read(&token);
        HeaderSecret::new("identity token", token, "Bearer ").map(|secret| Self { secret, times })
    }

    /// When the token expires (its JWT `exp` claim), if it is a JWT that says.
    pub fn expires_at(&self) -> Option<crate::Timestamp> {
        crate::Timestamp::from_unix_millis(self.times.expires?).ok()
    }

    /// Whether the token has expired at `now_millis` (milliseconds since the Unix epoch);
    /// never for a token with no known expiry.
    pub(crate) fn is_expired_at(&self, now_millis: i64) -> bool {
        self.times.expires.is_some_and(|exp| now_millis >= exp)
    }

    /// Whether the token expires within `margin` of `now_millis` (or has expired).
    #[cfg(feature = "client")]
    pub(crate) fn expires_within(&self, now_millis: i64, margin: std::time::Duration) -> bool {
        let margin = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
        self.times
            .expires
            .is_some_and(|exp| now_millis.saturating_add(margin) >= exp)
    }

    /// Whether `other` is this very token (a clone of it).
    #[cfg(feature = "client")]
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.secret.0, &other.secret.0)
    }

    /// The token itself. Handle with care: this is a bearer credential.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose()
    }

    /// The `identity` header value, `Bearer <token>`, marked sensitive. Built once: every
    /// clone shares its bytes.
    pub(crate) fn header_value(&self) -> HeaderValue {
        self.secret.header()
    }
}

impl fmt::Debug for IdentityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityToken(<redacted>)")
    }
}

/// A legacy API key (`X-API-Key: lmts_...`). Deprecated by Limitless and no longer issued, but
/// existing keys still work on ordinary routes. `Debug` is redacted.
#[derive(Clone)]
pub struct ApiKey(HeaderSecret);

impl ApiKey {
    /// Validates the key: non-empty visible ASCII.
    pub fn new(key: impl Into<String>) -> Result<Self, CredentialError> {
        HeaderSecret::new("API key", key.into(), "").map(Self)
    }

    /// The key itself.
    pub fn expose_secret(&self) -> &str {
        self.0.expose()
    }

    /// The `x-api-key` header value, marked sensitive. Built once: every clone shares its
    /// bytes.
    pub(crate) fn header_value(&self) -> HeaderValue {
        self.0.header()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The credentials a stack or client holds; any of them may be absent.
///
/// Which one a request uses is decided per route by [`decide`](crate::decide).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// HMAC scoped token.
    pub hmac: Option<HmacCredentials>,
    /// Privy identity token.
    pub identity: Option<IdentityToken>,
    /// Legacy API key.
    pub api_key: Option<ApiKey>,
}

impl Credentials {
    /// No credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds HMAC credentials.
    pub fn with_hmac(mut self, hmac: HmacCredentials) -> Self {
        self.hmac = Some(hmac);
        self
    }

    /// Adds a Privy identity token.
    pub fn with_identity(mut self, identity: IdentityToken) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Adds a legacy API key.
    pub fn with_api_key(mut self, api_key: ApiKey) -> Self {
        self.api_key = Some(api_key);
        self
    }

    /// Loads whatever the environment holds: `LMTS_TOKEN_ID` with `LMTS_TOKEN_SECRET`,
    /// `LIMITLESS_IDENTITY_TOKEN`, `LIMITLESS_API_KEY`. Unset or empty variables are absent;
    /// a token id without a secret (or the reverse) and malformed values are errors.
    pub fn from_env() -> Result<Self, CredentialError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Like [`Credentials::from_env`], reading variables through `lookup`.
    ///
    /// ```
    /// use limitless_auth::Credentials;
    /// let creds = Credentials::from_lookup(|name| match name {
    ///     "LMTS_TOKEN_ID" => Some("token-123".into()),
    ///     "LMTS_TOKEN_SECRET" => Some("c2VjcmV0".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(creds.hmac.map(|h| h.token_id().to_owned()).as_deref(), Some("token-123"));
    /// assert!(creds.identity.is_none());
    /// # Ok::<(), limitless_auth::CredentialError>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Self, CredentialError> {
        let get = |var: &'static str| -> Result<Option<Zeroizing<String>>, CredentialError> {
            match lookup(var) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => v
                    .into_string()
                    .map(|s| Some(Zeroizing::new(s)))
                    .map_err(|_| CredentialError::NotUnicode { var }),
            }
        };
        let in_var = |var: &'static str| {
            move |e: CredentialError| CredentialError::Env {
                var,
                source: Box::new(e),
            }
        };
        let hmac = match (get(ENV_TOKEN_ID)?, get(ENV_TOKEN_SECRET)?) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(CredentialError::IncompleteEnv {
                    set: ENV_TOKEN_ID,
                    missing: ENV_TOKEN_SECRET,
                });
            }
            (None, Some(_)) => {
                return Err(CredentialError::IncompleteEnv {
                    set: ENV_TOKEN_SECRET,
                    missing: ENV_TOKEN_ID,
                });
            }
            (Some(id), Some(secret)) => {
                check_visible("token id", &id).map_err(in_var(ENV_TOKEN_ID))?;
                let creds = HmacCredentials::new(&id, &secret).map_err(in_var(ENV_TOKEN_SECRET))?;
                Some(match get(ENV_TOKEN_SCOPES)? {
                    Some(scopes) => creds.with_scopes(Scope::parse_list(&scopes)),
                    None => creds,
                })
            }
        };
        let identity = get(ENV_IDENTITY_TOKEN)?
            .map(|t| IdentityToken::new(t.as_str()))
            .transpose()
            .map_err(in_var(ENV_IDENTITY_TOKEN))?;
        let api_key = get(ENV_API_KEY)?
            .map(|k| ApiKey::new(k.as_str()))
            .transpose()
            .map_err(in_var(ENV_API_KEY))?;
        Ok(Self {
            hmac,
            identity,
            api_key,
        })
    }
}

/// Credentials that can change while requests are being sent: a handle that every clone of a
/// stack (and of the client) reads, and that can be swapped at run time.
///
/// Each request reads the credentials once, when its authentication is decided, and a swap
/// affects only the requests decided after it: no request ever carries a mix of old and new
/// credentials. Reading costs no lock (an `arc_swap::ArcSwap`).
///
/// ```
/// use limitless_auth::{Credentials, HmacCredentials, SharedCredentials};
///
/// let shared = SharedCredentials::new(
///     Credentials::new().with_hmac(HmacCredentials::new("old-token", "c2VjcmV0")?),
/// );
/// let handle = shared.clone(); // e.g. kept by a rotation task
/// handle.update(|c| c.clone().with_hmac(HmacCredentials::new("new-token", "c2VjcmV0").unwrap()));
/// assert_eq!(shared.load().hmac.as_ref().map(|h| h.token_id()), Some("new-token"));
/// # Ok::<(), limitless_auth::CredentialError>(())
/// ```
#[derive(Clone)]
pub struct SharedCredentials(Arc<arc_swap::ArcSwap<Credentials>>);

impl SharedCredentials {
    /// A handle holding `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        Self(Arc::new(arc_swap::ArcSwap::from_pointee(credentials)))
    }

    /// The credentials now.
    pub fn load(&self) -> Arc<Credentials> {
        self.0.load_full()
    }

    /// The credentials now, for one decision: no reference count is taken.
    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Credentials>> {
        self.0.load()
    }

    /// Replaces the credentials for the requests that start from now on.
    pub fn store(&self, credentials: Credentials) {
        self.0.store(Arc::new(credentials));
    }

    /// Replaces the credentials with `f` of the current ones, atomically with respect to other
    /// updates (`f` may run more than once if updates race).
    pub fn update(&self, f: impl Fn(&Credentials) -> Credentials) {
        self.0.rcu(|current| f(current));
    }
}

impl From<Credentials> for SharedCredentials {
    fn from(credentials: Credentials) -> Self {
        Self::new(credentials)
    }
}

/// Another handle to the same credentials: what is stored through one is read through both.
impl From<&SharedCredentials> for SharedCredentials {
    fn from(shared: &SharedCredentials) -> Self {
        shared.clone()
    }
}

impl fmt::Debug for SharedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedCredentials")
            .field(&*self.0.load())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c3VwZXItc2VjcmV0LWtleQ==";

    #[test]
    fn secret_problems_are_classified() {
        let cases: &[(&str, SecretProblem)] = &[
            ("", SecretProblem::Empty),
            ("c3VwZXItc2VjcmV0LWtleQ", SecretProblem::MissingPadding),
            ("c3VwZXItc2VjcmV0LWtleQ=", SecretProblem::InvalidPadding),
            ("c3VwZXItc2VjcmV0LWtleQ===", SecretProblem::InvalidPadding),
            ("c3Vw=ZXItc2VjcmV0LWtleQ==", SecretProblem::InvalidPadding),
            ("c3VwZXItc2VjcmV0LWtleQ==\n", SecretProblem::Whitespace),
            (" c3VwZXItc2VjcmV0LWtleQ==", SecretProblem::Whitespace),
            ("c3Vw ZXItc2VjcmV0LWtleQ==", SecretProblem::Whitespace),
            ("c3VwZXItc2VjcmV0LWtleQ==\t", SecretProblem::Whitespace),
            ("c3VwZXI-c2VjcmV0LWtleQ==", SecretProblem::UrlSafeAlphabet),
            ("c3VwZXI_c2VjcmV0LWtleQ==", SecretProblem::UrlSafeAlphabet),
            (
                "c3VwZXI*c2VjcmV0LWtleQ==",
                SecretProblem::InvalidCharacter { offset: 7 },
            ),
            (
                "c3VwZXIéc2VjcmV0LWtleQ==",
                SecretProblem::InvalidCharacter { offset: 7 },
            ),
            (
                "c3VwZXItc2VjcmV0LWtleR==",
                SecretProblem::NonCanonicalTrailingBits,
            ),
            ("QQ==QQ==", SecretProblem::InvalidPadding),
            ("c2Vj*cmV0", SecretProblem::InvalidCharacter { offset: 4 }),
            ("c2VjcmV0!", SecretProblem::InvalidCharacter { offset: 8 }),
            ("A", SecretProblem::MissingPadding),
            ("====", SecretProblem::InvalidPadding),
            ("c2VjcmV0LWtleQ", SecretProblem::MissingPadding),
            ("-_-_c2VjcmV0", SecretProblem::UrlSafeAlphabet),
            ("c2Vj\ncmV0", SecretProblem::Whitespace),
            ("c2VjcmV0\r\n", SecretProblem::Whitespace),
            ("c2Vj!mV0", SecretProblem::InvalidCharacter { offset: 4 }),
            (
                "c2Vj\u{0}mV0",
                SecretProblem::InvalidCharacter { offset: 4 },
            ),
            ("QR==", SecretProblem::NonCanonicalTrailingBits),
        ];
        for (secret, problem) in cases {
            match HmacCredentials::new("id", secret) {
                Err(CredentialError::MalformedSecret(p)) => assert_eq!(p, *problem, "{secret:?}"),
                other => panic!("{secret:?}: expected {problem:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_never_contain_the_secret() {
        for secret in ["c3VwZXI*c2VjcmV0LWtleQ==", "c3VwZXItc2VjcmV0LWtleQ"] {
            let err = HmacCredentials::new("id", secret).expect_err("malformed");
            assert!(!err.to_string().contains("c3Vw"), "{err}");
            assert!(!format!("{err:?}").contains("c3Vw"), "{err:?}");
        }
    }

    #[test]
    fn token_id_must_be_a_visible_header_value() {
        for (id, expected) in [
            ("", CredentialError::Empty { what: "token id" }),
            (
                "tok\r\nx",
                CredentialError::InvalidHeaderValue {
                    what: "token id",
                    position: 3,
                },
            ),
            (
                "tok\0",
                CredentialError::InvalidHeaderValue {
                    what: "token id",
                    position: 3,
                },
            ),
            (
                "tok en",
                CredentialError::InvalidHeaderValue {
                    what: "token id",
                    position: 3,
                },
            ),
            (
                "tøk",
                CredentialError::InvalidHeaderValue {
                    what: "token id",
                    position: 1,
                },
            ),
            (
                "tok\r\nx-evil: 1",
                CredentialError::InvalidHeaderValue {
                    what: "token id",
                    position: 3,
                },
            ),
            (
                "tok\u{7f}",
                CredentialError::InvalidHeaderValue {
                    what: "token id",
                    position: 3,
                },
            ),
        ] {
            assert_eq!(HmacCredentials::new(id, SECRET).expect_err(id), expected);
        }
    }

    #[test]
    fn identity_token_and_api_key_validation() {
        assert!(matches!(
            IdentityToken::new("abc\ndef"),
            Err(CredentialError::InvalidHeaderValue { position: 3, .. })
        ));
        assert!(matches!(
            IdentityToken::new(""),
            Err(CredentialError::Empty { .. })
        ));
        assert_eq!(
            IdentityToken::new("Bearer abc")
                .expect_err("prefixed")
                .to_string(),
            "the identity token must be given without the 'Bearer ' prefix"
        );
        assert!(matches!(
            ApiKey::new("lmts_\r"),
            Err(CredentialError::InvalidHeaderValue { .. })
        ));
        for t in ["eyJ\r\nidentity: other", "eyJ\0", "eyJ abc", "ëyJ"] {
            assert!(matches!(
                IdentityToken::new(t),
                Err(CredentialError::InvalidHeaderValue {
                    what: "identity token",
                    ..
                })
            ));
            assert!(matches!(
                ApiKey::new(t),
                Err(CredentialError::InvalidHeaderValue {
                    what: "API key",
                    ..
                })
            ));
        }
        assert_eq!(
            IdentityToken::new("bearer eyJ").expect_err("prefixed"),
            CredentialError::BearerPrefix
        );
        assert_eq!(
            HmacCredentials::new("id", "c2Vj*cmV0")
                .expect_err("malformed")
                .to_string(),
            "the token secret is not standard padded base64: it has a non-base64 character at \
             offset 4"
        );
        let t = IdentityToken::new("eyJ.a.b").expect("valid");
        let h = t.header_value();
        assert_eq!(h.as_bytes(), b"Bearer eyJ.a.b");
        assert!(h.is_sensitive());
        let k = ApiKey::new("lmts_abc").expect("valid");
        assert_eq!(k.header_value().as_bytes(), b"lmts_abc");
        assert!(k.header_value().is_sensitive());
    }

    #[test]
    fn identity_tokens_with_multibyte_characters_do_not_panic() {
        for token in [
            "Bearer\u{a0}eyJhbGciOi",
            "abcdefé…",
            "ééééé",
            "Bearer é",
            "bearer\u{2003}x",
            "Bearer\u{a0}eyJhbGciOiJFUzI1NiJ9.payload.sig",
            "\u{1F600}\u{1F600}eyJ",
        ] {
            let err = IdentityToken::new(token).expect_err("not a header value");
            assert!(
                matches!(
                    err,
                    CredentialError::InvalidHeaderValue { .. } | CredentialError::BearerPrefix
                ),
                "{token:?}: {err:?}"
            );
            assert!(!err.to_string().contains("eyJ"), "{err}");
        }
    }

    #[test]
    fn debug_output_is_redacted() {
        let hmac = HmacCredentials::new("visible-token-id", SECRET).expect("valid");
        let identity = IdentityToken::new("identity-secret-value").expect("valid");
        let key = ApiKey::new("lmts_legacy_secret").expect("valid");
        let all = Credentials::new()
            .with_hmac(hmac.clone())
            .with_identity(identity.clone())
            .with_api_key(key.clone());
        for shown in [
            format!("{hmac:?}"),
            format!("{identity:?}"),
            format!("{key:?}"),
            format!("{all:?}"),
            format!("{all:#?}"),
        ] {
            for secret in [
                "visible-token-id",
                SECRET,
                "super-secret-key",
                "identity-secret-value",
                "lmts_legacy_secret",
            ] {
                assert!(!shown.contains(secret), "{shown} shows {secret}");
            }
        }
        // Redacted, not empty: each says what it is.
        assert_eq!(
            format!("{hmac:?}"),
            "HmacCredentials { token_id: <redacted>, key: <redacted> }"
        );
        assert_eq!(format!("{identity:?}"), "IdentityToken(<redacted>)");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert_eq!(
            format!(
                "{:?}",
                SharedCredentials::new(Credentials::new().with_api_key(key.clone()))
            ),
            "SharedCredentials(Credentials { hmac: None, identity: None, api_key: Some(ApiKey(<redacted>)) })"
        );
        assert!(hmac.token_id_header().is_sensitive());
        assert_eq!(hmac.token_id(), "visible-token-id");
    }

    #[test]
    fn env_loading() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(*v))
            }
        };
        let all = Credentials::from_lookup(env(&[
            ("LMTS_TOKEN_ID", "tok"),
            ("LMTS_TOKEN_SECRET", SECRET),
            ("LIMITLESS_IDENTITY_TOKEN", "idt"),
            ("LIMITLESS_API_KEY", "lmts_k"),
        ]))
        .expect("valid");
        assert_eq!(
            all.hmac.as_ref().map(HmacCredentials::token_id),
            Some("tok")
        );
        assert_eq!(
            all.identity.as_ref().map(IdentityToken::expose_secret),
            Some("idt")
        );
        assert_eq!(
            all.api_key.as_ref().map(ApiKey::expose_secret),
            Some("lmts_k")
        );

        let none = Credentials::from_lookup(env(&[("LMTS_TOKEN_ID", "")])).expect("empty is unset");
        assert!(none.hmac.is_none() && none.identity.is_none() && none.api_key.is_none());
        assert_eq!(
            Credentials::from_lookup(env(&[("LMTS_TOKEN_ID", "tok")])).expect_err("no secret"),
            CredentialError::IncompleteEnv {
                set: "LMTS_TOKEN_ID",
                missing: "LMTS_TOKEN_SECRET"
            }
        );
        assert_eq!(
            Credentials::from_lookup(env(&[("LMTS_TOKEN_SECRET", SECRET)])).expect_err("no id"),
            CredentialError::IncompleteEnv {
                set: "LMTS_TOKEN_SECRET",
                missing: "LMTS_TOKEN_ID"
            }
        );
        let err = Credentials::from_lookup(env(&[
            ("LMTS_TOKEN_ID", "tok"),
            ("LMTS_TOKEN_SECRET", "c3VwZXItc2VjcmV0LWtleQ"),
        ]))
        .expect_err("unpadded");
        assert_eq!(
            err.to_string(),
            "LMTS_TOKEN_SECRET: the token secret is not standard padded base64: its '=' padding is missing"
        );
        let err = Credentials::from_lookup(env(&[("LIMITLESS_IDENTITY_TOKEN", "a\r\nb")]))
            .expect_err("CRLF");
        assert!(err.to_string().starts_with("LIMITLESS_IDENTITY_TOKEN: "));
        let err = Credentials::from_lookup(env(&[
            ("LMTS_TOKEN_ID", "t o k"),
            ("LMTS_TOKEN_SECRET", SECRET),
        ]))
        .expect_err("space");
        assert!(err.to_string().starts_with("LMTS_TOKEN_ID: "), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn env_values_must_be_unicode() {
        use std::os::unix::ffi::OsStringExt;
        let err = Credentials::from_lookup(|name| {
            (name == "LIMITLESS_API_KEY").then(|| OsString::from_vec(vec![0xff, 0xfe]))
        })
        .expect_err("not UTF-8");
        assert_eq!(
            err,
            CredentialError::NotUnicode {
                var: "LIMITLESS_API_KEY"
            }
        );
    }

    /// A JWT with `payload` as its claims, its parts base64url-encoded (padded when `pad`).
    fn jwt(payload: &str, pad: bool) -> String {
        use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
        let engine = |b: &[u8]| {
            if pad {
                URL_SAFE.encode(b)
            } else {
                URL_SAFE_NO_PAD.encode(b)
            }
        };
        let header = engine(br#"{"alg":"ES256","typ":"JWT"}"#);
        format!("{header}.{}.c2ln", engine(payload.as_bytes()))
    }

    #[test]
    fn jwt_expiry_edge_cases() {
        let exp = |payload: &str, pad: bool| {
            let token = IdentityToken::new(jwt(payload, pad)).expect("a header value");
            token.times.expires
        };
        let cases: [(&str, bool, Option<i64>); 9] = [
            (r#"{"exp":1774875600}"#, false, Some(1_774_875_600_000)),
            // Padding that a lenient encoder left on the payload.
            (r#"{"exp":1774875600}"#, true, Some(1_774_875_600_000)),
            // A fractional NumericDate, as RFC 7519 allows.
            (r#"{"exp":1774875600.25}"#, false, Some(1_774_875_600_250)),
            (r#"{"exp":-1.5}"#, false, Some(-1_500)),
            // Not a NumericDate: no expiry is known, the token is sent as given.
            (r#"{"exp":"1774875600"}"#, false, None),
            (r#"{"exp":null}"#, false, None),
            // Past what milliseconds in an i64 can carry.
            (r#"{"exp":1e300}"#, false, None),
            (r#"{"exp":1e14}"#, false, None),
            (r#"{"iat":1774872000}"#, false, None),
        ];
        for (payload, pad, expected) in cases {
            assert_eq!(exp(payload, pad), expected, "{payload} padded: {pad}");
        }
        let fractional = IdentityToken::new(jwt(r#"{"exp":1774875600.25}"#, false)).expect("ok");
        assert!(!fractional.is_expired_at(1_774_875_600_249));
        assert!(fractional.is_expired_at(1_774_875_600_250));
        // Not JSON, not an object, or not three parts: no expiry, no refusal.
        for token in [
            "a.b.c",
            "a.b",
            "a.b.c.d",
            &jwt("[1,2]", false),
            &jwt("nope", false),
        ] {
            let t = IdentityToken::new(token).expect("a header value");
            assert_eq!(t.times.expires, None, "{token}");
            assert!(!t.is_expired_at(i64::MAX));
        }
    }

    /// The decoded key and the keyed MAC's two SHA-256 states (as good as the key) are wiped
    /// when dropped: checked on the values the credentials hold, by their types, since reading
    /// freed memory is not something a test may do. The key is held in a `Zeroizing` buffer;
    /// the MAC is an `Hmac<Sha256>`, whose key lives in two SHA-256 block states that wipe
    /// themselves on drop (`sha2`'s `zeroize` feature). Holding either in another type, or
    /// building `sha2` without that feature, makes this test fail to compile.
    #[test]
    fn key_material_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        fn wiped_on_drop_type<T: zeroize::ZeroizeOnDrop>() {}
        fn the_mac_is(_: &Hmac<Sha256>) {}
        let key = decode_secret(SECRET).expect("valid");
        wiped_on_drop(&key);
        assert_eq!(key.as_slice(), b"super-secret-key");
        let creds = HmacCredentials::new("t", SECRET).expect("valid");
        the_mac_is(&creds.inner.mac);
        wiped_on_drop_type::<sha2::block_api::Sha256VarCore>();
    }
}
