//! The server's side of HMAC authentication, as the mock server applies it.

use crate::credentials::HmacCredentials;
use crate::sign::Timestamp;

/// The acceptance window: a timestamp within this many milliseconds of the server's clock.
pub const WINDOW_MS: i64 = 30_000;

/// What a server receives for one HMAC-signed request.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// The method as received.
    pub method: &'a str,
    /// The request-target as received (path and query).
    pub target: &'a str,
    /// The body bytes as received.
    pub body: &'a [u8],
    /// The `lmts-timestamp` header.
    pub timestamp: &'a str,
    /// The `lmts-signature` header.
    pub signature: &'a str,
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// `lmts-timestamp` is not `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    #[error("malformed timestamp")]
    MalformedTimestamp,
    /// The timestamp is outside the window around the server's clock.
    #[error("timestamp is {skew_ms} ms away from the server's clock")]
    OutsideWindow {
        /// Timestamp minus server time.
        skew_ms: i64,
    },
    /// The signature does not match.
    #[error("signature mismatch")]
    BadSignature,
}

/// Verifies `req` against `creds` at server time `now_ms`, accepting timestamps within
/// `window_ms` either side. The signature comparison is constant-time.
///
/// ```
/// use limitless_auth::HmacCredentials;
/// use limitless_auth::mock::verify::{SignedRequest, VerifyError, WINDOW_MS, verify};
///
/// let creds = HmacCredentials::new("token-123", "c2VjcmV0")?;
/// let ts = "2026-03-30T12:00:00.000Z";
/// let sig = creds.sign(ts, "GET", "/orders", b"");
/// let req = SignedRequest { method: "GET", target: "/orders", body: b"", timestamp: ts, signature: sig.as_str() };
/// assert_eq!(verify(&creds, &req, 1_774_872_000_000 + 30_000, WINDOW_MS), Ok(()));
/// assert_eq!(
///     verify(&creds, &req, 1_774_872_000_000 + 30_001, WINDOW_MS),
///     Err(VerifyError::OutsideWindow { skew_ms: -30_001 })
/// );
/// # Ok::<(), limitless_auth::CredentialError>(())
/// ```
pub fn verify(
    creds: &HmacCredentials,
    req: &SignedRequest<'_>,
    now_ms: i64,
    window_ms: i64,
) -> Result<(), VerifyError> {
    let ts = Timestamp::parse(req.timestamp).map_err(|_| VerifyError::MalformedTimestamp)?;
    let skew_ms = ts.unix_millis().saturating_sub(now_ms);
    if skew_ms.saturating_abs() > window_ms {
        return Err(VerifyError::OutsideWindow { skew_ms });
    }
    if creds.verify(
        req.timestamp,
        req.method,
        req.target,
        req.body,
        req.signature,
    ) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}
