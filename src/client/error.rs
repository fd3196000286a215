//! The client's error type.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::observe::ResponseBodyError;
use crate::types::DeriveRequestError;
use crate::{BodyError, BoxError, CredentialError, PolicyError, SigningError};

/// A response body kept for diagnosis; its `Debug` shows only its length, because bodies can
/// carry secrets (a derive response holds one).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RawBody(pub Bytes);

impl fmt::Debug for RawBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// Everything a [`Client`](super::Client) call can fail with.
///
/// Every error says which of three things happened, which matters most for an order:
/// 1. **nothing reached the API's logic** ([`Error::is_local`]): refused locally (the variants
///    before [`Error::Connect`]), no connection ([`Error::Connect`], [`Error::Certificate`]), or
///    refused by the server before it processed the request ([`Error::NotProcessed`]): it is
///    safe to send again;
/// 2. **it may have been processed** ([`Error::may_have_been_sent`]): the connection failed or
///    timed out after the request went out; check the order's status before sending it again;
/// 3. **a response came** ([`Error::status`]).
///
/// No message includes a credential, a signature or a response body's secret; response bodies
/// are kept in [`RawBody`], whose `Debug` shows only the length.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A credential was refused.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The route policy refused the request.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Arguments the API would refuse for sure.
    #[error("{0}; nothing was sent")]
    InvalidArgument(#[from] DeriveRequestError),
    /// The request or the client configuration is not usable.
    #[error("{0}; nothing was sent")]
    InvalidRequest(String),
    /// The request is aimed at an origin other than the client's base URL.
    #[error(
        "{origin} is not the configured API origin {base}: credentials are only sent to the \
         base URL; nothing was sent"
    )]
    ForeignOrigin {
        /// Where the request was aimed.
        origin: String,
        /// The client's base origin.
        base: String,
    },
    /// The request body could not be read.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The request could not be signed.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The identity source ([`ClientBuilder::identity_source`](super::ClientBuilder::identity_source))
    /// failed to give a fresh identity token; nothing was sent.
    #[error("the identity source failed: {}; nothing was sent", Chain(&**.0))]
    IdentitySource(#[source] BoxError),
    /// The HMAC token holds a scope the client denies
    /// ([`ClientBuilder::deny_scopes`](super::ClientBuilder::deny_scopes)); nothing was sent.
    #[error(
        "the HMAC token {token} holds the {scope} scope, which this client denies; nothing was sent"
    )]
    ScopeDenied {
        /// The denied scope the token holds.
        scope: crate::Scope,
        /// The token, by the last characters of its id.
        token: String,
    },
    /// With denied scopes, the client could not learn the HMAC token's scopes, and so refuses
    /// to send with it (fail closed); the request was not sent.
    #[error("the HMAC token's scopes could not be learned, so nothing was sent: {0}")]
    ScopesUnknown(#[source] Box<Error>),
    /// No connection could be made; the request was not sent.
    #[error("could not connect: {}", Chain(&**.0))]
    Connect(#[source] BoxError),
    /// The server's TLS certificate is not one the client accepts (an unknown issuer, another
    /// host's name, expired); the request was not sent, and sending it again cannot help.
    #[error("the server's certificate was refused: {}; nothing was sent", Chain(&**.0))]
    Certificate(#[source] BoxError),
    /// The connection refused the request before the server processed it: an HTTP/2
    /// `REFUSED_STREAM`, a stream above the last one a `GOAWAY` kept, or a request the
    /// connection handed back unsent.
    #[error("the server did not process the request (it is safe to send again): {}", Chain(&**.0))]
    NotProcessed(#[source] BoxError),
    /// The connection failed after the request may have been sent.
    #[error("transport error: {}", Chain(&**.0))]
    Transport(#[source] BoxError),
    /// No complete response within the timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The response body is larger than the client accepts.
    #[error("the {status} response body exceeds the {limit}-byte limit")]
    ResponseTooLarge {
        /// The response status.
        status: StatusCode,
        /// The limit.
        limit: usize,
    },
    /// The server answered with a non-success status.
    #[error("{status}{}", message_suffix(message))]
    Status {
        /// The status.
        status: StatusCode,
        /// The server's `message` (an array is joined with "; "), or a short text body.
        message: Option<String>,
        /// The raw response body.
        body: RawBody,
    },
    /// The server answered 429 and retrying was not possible within the limits.
    #[error(
        "rate limited (429 Too Many Requests){}{}",
        retry_suffix(retry_after),
        message_suffix(message)
    )]
    RateLimited {
        /// How long the server asked to wait, when it said.
        retry_after: Option<Duration>,
        /// The server's message.
        message: Option<String>,
        /// The raw response body.
        body: RawBody,
    },
    /// A token rotation stopped before switching to the new token: the old token is still in
    /// use and nothing was revoked.
    #[error(
        "token rotation stopped at the {step} step{}; the old token is still in use and nothing \
         was revoked: {source}",
        new_token_suffix(new_token_id)
    )]
    Rotation {
        /// The step that failed.
        step: RotationStep,
        /// The new token, when it was derived (it exists on the server; revoke it if unwanted).
        new_token_id: Option<String>,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A success response whose body is not what the endpoint returns.
    #[error(
        "could not decode the {status} response as {expected}: {problem} at line {line}, column {column}"
    )]
    Decode {
        /// The response status.
        status: StatusCode,
        /// What was expected.
        expected: String,
        /// The kind of problem (syntax, data, end of input).
        problem: &'static str,
        /// Where in the body.
        line: usize,
        /// Where in the body.
        column: usize,
        /// The raw response body.
        body: RawBody,
    },
}

/// An error and its sources, as `outer: inner: innermost`.
struct Chain<'a>(&'a (dyn std::error::Error + Send + Sync + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut last = self.0.to_string();
        let mut cur = self.0.source();
        while let Some(e) = cur {
            let text = e.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cur = e.source();
        }
        Ok(())
    }
}

fn new_token_suffix(id: &Option<String>) -> String {
    id.as_deref().map_or(String::new(), |id| {
        format!(" (the new token {id} was derived and is unused)")
    })
}

/// The steps of [`Client::rotate_token`](super::Client::rotate_token) that can fail before the
/// switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationStep {
    /// Deriving the new token (Privy).
    Derive,
    /// Proving that the new token signs requests the API accepts.
    Prove,
}

impl fmt::Display for RotationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Derive => "derive",
            Self::Prove => "prove",
        })
    }
}

fn message_suffix(message: &Option<String>) -> String {
    message
        .as_deref()
        .map_or(String::new(), |m| format!(": {m}"))
}

fn retry_suffix(retry_after: &Option<Duration>) -> String {
    retry_after.map_or(String::new(), |d| {
        format!(", retry after {:.3} s", d.as_secs_f64())
    })
}

impl Error {
    /// Whether nothing reached the API's logic: refused locally, no connection, or refused by
    /// the server before processing. Sending the request again is safe.
    pub fn is_local(&self) -> bool {
        match self {
            // A rotation that got past deriving has sent something.
            Self::Rotation { step, source, .. } => {
                *step == RotationStep::Derive && source.is_local()
            }
            _ => matches!(
                self,
                Self::Credential(_)
                    | Self::Policy(_)
                    | Self::InvalidArgument(_)
                    | Self::InvalidRequest(_)
                    | Self::ForeignOrigin { .. }
                    | Self::Body(_)
                    | Self::Signing(_)
                    | Self::IdentitySource(_)
                    | Self::ScopeDenied { .. }
                    | Self::ScopesUnknown(_)
                    | Self::Connect(_)
                    | Self::Certificate(_)
                    | Self::NotProcessed(_)
            ),
        }
    }

    /// Whether the request may have been processed although no response came: the connection
    /// failed or the attempt timed out after it was sent. An order that fails this way needs a
    /// status check before it is sent again.
    ///
    /// Exactly one of [`is_local`](Self::is_local), this and [`status`](Self::status) holds
    /// for every error. A rotation that stopped after deriving its new token has sent
    /// something, so it is never local: it answers with the status of the step that failed,
    /// or says it may have been sent.
    pub fn may_have_been_sent(&self) -> bool {
        !self.is_local() && self.status().is_none()
    }

    /// The HTTP status the server answered with, if it answered (for a rotation, the status of
    /// the step that failed).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. }
            | Self::ResponseTooLarge { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(StatusCode::TOO_MANY_REQUESTS),
            Self::Rotation { source, .. } => source.status(),
            _ => None,
        }
    }

    /// The raw response body, when the server answered.
    pub fn body(&self) -> Option<&RawBody> {
        match self {
            Self::Status { body, .. }
            | Self::RateLimited { body, .. }
            | Self::Decode { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The decode error of a success body.
    pub(crate) fn decode(
        status: StatusCode,
        expected: String,
        e: &serde_json::Error,
        body: Bytes,
    ) -> Self {
        use serde_json::error::Category;
        Self::Decode {
            status,
            expected,
            problem: match e.classify() {
                Category::Io => "read error",
                Category::Syntax => "malformed JSON",
                Category::Data => "unexpected content",
                Category::Eof => "truncated JSON",
            },
            line: e.line(),
            column: e.column(),
            body: RawBody(body),
        }
    }

    /// Maps an error from the service stack to the typed error: the one place where the
    /// stack's boxed errors (tower's convention, and `tower::timeout`'s `Elapsed`) become a
    /// `client::Error`, below the retry layer, so that the retry policy matches typed errors.
    /// The layers' own errors are typed ([`PolicyError`], [`BodyError`], [`SigningError`], the
    /// response body's); a transport error is read for what it says about delivery. `timeout`
    /// is the attempt timeout that applied.
    pub(crate) fn from_stack(err: BoxError, timeout: Option<Duration>) -> Self {
        if err.is::<tower::timeout::error::Elapsed>() {
            return Self::Timeout(timeout.unwrap_or(Duration::MAX));
        }
        let err = match err.downcast::<ResponseBodyError>() {
            Ok(e) => return Self::from_body(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<PolicyError>() {
            Ok(e) => return Self::Policy(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<BodyError>() {
            Ok(e) => return Self::Body(*e),
            Err(e) => e,
        };
        let err = match err.downcast::<SigningError>() {
            Ok(e) => return Self::Signing(*e),
            Err(e) => e,
        };
        match delivery(&*err) {
            Delivery::NoConnection if is_certificate_error(&*err) => Self::Certificate(err),
            Delivery::NoConnection => Self::Connect(err),
            Delivery::NotProcessed => Self::NotProcessed(err),
            Delivery::Unknown => Self::Transport(err),
        }
    }
}

impl Error {
    /// A response body that could not be read: too large, or a failed connection.
    fn from_body(e: ResponseBodyError) -> Self {
        match e.error {
            BodyError::TooLarge { .. } | BodyError::TooLargeDeclared { .. } => {
                Self::ResponseTooLarge {
                    status: e.status,
                    limit: e.limit,
                }
            }
            BodyError::Stream(source) => Self::Transport(source),
            other => Self::Transport(Box::new(other)),
        }
    }
}

/// What a transport error says about the request.
enum Delivery {
    /// No connection could be made.
    NoConnection,
    /// The connection refused it before the server processed it.
    NotProcessed,
    /// It may have been processed.
    Unknown,
}

/// What `err` (or an error it wraps) says about the request's delivery.
fn delivery(err: &(dyn std::error::Error + 'static)) -> Delivery {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return Delivery::NoConnection;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Delivery::NoConnection;
        }
        // Handed back unsent by the connection.
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return Delivery::NotProcessed;
        }
        // HTTP/2 (RFC 9113 §8.7): a stream refused, or above the last one a GOAWAY kept, was
        // not processed.
        if let Some(h2) = e.downcast_ref::<h2::Error>()
            && h2.is_remote()
            && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM))
        {
            return Delivery::NotProcessed;
        }
        cur = e.source();
    }
    Delivery::Unknown
}

/// Whether `err` is a TLS certificate the client does not accept: sending again cannot help.
fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    // hyper-rustls reports TLS failures as I/O errors that carry the rustls error, possibly in
    // another I/O error: `source()` skips what an I/O error carries, `get_ref()` does not.
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref() {
            return true;
        }
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// The message of an error body: `message` (a string, or an array joined with "; "), else
/// `error`, else `msg`; a body that is not JSON (a proxy's HTML page, say) gives its first 300
/// bytes as text. Other JSON gives no message, so that error messages never echo a body's
/// fields; the raw body stays available in the error.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    const MAX_TEXT: usize = 300;
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let serde_json::Value::Object(map) = value else {
            return None;
        };
        for key in ["message", "error", "msg"] {
            match map.get(key) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => return Some(s.clone()),
                Some(serde_json::Value::Array(items)) if !items.is_empty() => {
                    let parts: Vec<String> = items
                        .iter()
                        .map(|v| match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    return Some(parts.join("; "));
                }
                _ => {}
            }
        }
        return None;
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    let mut cut = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let ellipsis = if cut < text.len() { "…" } else { "" };
    Some(format!("{}{ellipsis}", &text[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The case each variant says, written out by hand with no catch-all arm: a variant added
    /// later does not compile until it is classified here.
    fn expected(err: &Error) -> String {
        match err {
            Error::Credential(_)
            | Error::Policy(_)
            | Error::InvalidArgument(_)
            | Error::InvalidRequest(_)
            | Error::ForeignOrigin { .. }
            | Error::Body(_)
            | Error::Signing(_)
            | Error::IdentitySource(_)
            | Error::ScopeDenied { .. }
            | Error::ScopesUnknown(_)
            | Error::Connect(_)
            | Error::Certificate(_)
            | Error::NotProcessed(_) => "local".into(),
            Error::Transport(_) | Error::Timeout(_) => "maybe".into(),
            Error::ResponseTooLarge { status, .. }
            | Error::Status { status, .. }
            | Error::Decode { status, .. } => format!("answered {}", status.as_u16()),
            Error::RateLimited { .. } => "answered 429".into(),
            // Past deriving, a new token exists: never local.
            Error::Rotation { step, source, .. } => match (step, expected(source).as_str()) {
                (RotationStep::Prove, "local") => "maybe".into(),
                (_, case) => case.to_owned(),
            },
        }
    }

    /// Every variant says exactly one of the three things, the one [`expected`] names.
    #[test]
    fn every_error_says_exactly_one_of_the_three_things() {
        let io = |kind| -> BoxError { Box::new(std::io::Error::from(kind)) };
        let refused = std::io::ErrorKind::ConnectionRefused;
        let reset = std::io::ErrorKind::ConnectionReset;
        let status = |code: u16| Error::Status {
            status: StatusCode::from_u16(code).expect("status"),
            message: None,
            body: RawBody::default(),
        };
        let rotation = |step, source: Error| Error::Rotation {
            step,
            new_token_id: None,
            source: Box::new(source),
        };
        let json_error = serde_json::from_slice::<u8>(b"x").expect_err("not JSON");
        let cases: Vec<Error> = vec![
            Error::Credential(CredentialError::BearerPrefix),
            Error::Policy(PolicyError::missing(
                &http::Method::GET,
                "/x",
                crate::Accepts::PRIVY,
            )),
            Error::InvalidArgument(DeriveRequestError::NoScopes),
            Error::InvalidRequest("x".into()),
            Error::ForeignOrigin {
                origin: "a".into(),
                base: "b".into(),
            },
            Error::Body(BodyError::TooLarge { limit: 1 }),
            Error::Signing(SigningError::invalid_target(&http::Method::GET, "*")),
            Error::IdentitySource(io(refused)),
            Error::ScopeDenied {
                scope: crate::Scope::Withdrawal,
                token: "…1".into(),
            },
            Error::ScopesUnknown(Box::new(status(500))),
            Error::Connect(io(refused)),
            Error::Certificate(io(refused)),
            Error::NotProcessed(io(reset)),
            Error::Transport(io(reset)),
            Error::Timeout(Duration::from_secs(1)),
            Error::ResponseTooLarge {
                status: StatusCode::OK,
                limit: 1,
            },
            status(400),
            Error::RateLimited {
                retry_after: None,
                message: None,
                body: RawBody::default(),
            },
            Error::decode(StatusCode::OK, "u8".into(), &json_error, Bytes::new()),
            rotation(RotationStep::Derive, Error::Connect(io(refused))),
            rotation(RotationStep::Derive, status(403)),
            rotation(RotationStep::Derive, Error::Transport(io(reset))),
            rotation(RotationStep::Prove, Error::Connect(io(refused))),
            rotation(RotationStep::Prove, status(401)),
        ];
        for err in cases {
            let says = [
                err.is_local(),
                err.may_have_been_sent(),
                err.status().is_some(),
            ];
            assert_eq!(says.iter().filter(|s| **s).count(), 1, "{err:?}: {says:?}");
            let case = match (err.is_local(), err.status()) {
                (true, _) => "local".to_owned(),
                (false, Some(s)) => format!("answered {}", s.as_u16()),
                (false, None) => "maybe".to_owned(),
            };
            assert_eq!(case, expected(&err), "{err:?}");
        }
    }

    #[test]
    fn error_messages_follow_the_fallback_order() {
        assert_eq!(
            error_message(br#"{"message":"Requires Privy authentication"}"#).as_deref(),
            Some("Requires Privy authentication")
        );
        assert_eq!(
            error_message(br#"{"message":["label too long","scopes must be an array"],"error":"Bad Request"}"#)
                .as_deref(),
            Some("label too long; scopes must be an array")
        );
        assert_eq!(
            error_message(br#"{"error":"Forbidden","statusCode":403}"#).as_deref(),
            Some("Forbidden")
        );
        assert_eq!(
            error_message(br#"{"msg":"slow down"}"#).as_deref(),
            Some("slow down")
        );
        assert_eq!(
            error_message(b"<html>Bad Gateway</html>\n").as_deref(),
            Some("<html>Bad Gateway</html>")
        );
        assert_eq!(error_message(b""), None);
        assert_eq!(error_message(&[0xff, 0xfe]), None);
        let long = "é".repeat(400);
        let cut = error_message(long.as_bytes()).expect("text");
        assert!(
            cut.ends_with('…') && cut.chars().count() <= 151,
            "{}",
            cut.len()
        );
    }

    #[test]
    fn raw_bodies_are_not_debug_printed() {
        let e = Error::Status {
            status: StatusCode::BAD_REQUEST,
            message: Some("bad".into()),
            body: RawBody(Bytes::from_static(b"{\"secret\":\"abc\"}")),
        };
        let shown = format!("{e:?}");
        assert!(!shown.contains("abc"), "{shown}");
        assert_eq!(e.to_string(), "400 Bad Request: bad");
    }
}
