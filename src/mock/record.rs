//! Recording: what the mock received, kept for tests to assert on the wire.

use super::*;

/// One request as the mock received it. Its `Debug` output redacts the authentication
/// headers (`lmts-signature`, `identity`, `x-api-key`).
#[derive(Clone)]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The request-target (path and query) as received.
    pub target: String,
    /// The headers as received.
    pub headers: HeaderMap,
    /// The body bytes as received.
    pub body: Bytes,
    /// The status answered (`None` when the connection was dropped).
    pub status: Option<StatusCode>,
    /// The authentication the mock accepted, if any.
    pub mode: Option<AuthMode>,
    /// For requests with `lmts-*` headers on an HMAC route: whether the signature verified.
    pub signature_valid: Option<bool>,
    /// Whether an injected fault answered.
    pub faulted: bool,
}

impl std::fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Headers<'a>(&'a HeaderMap);
        impl std::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut map = f.debug_map();
                for (name, value) in self.0 {
                    let secret =
                        matches!(name.as_str(), "lmts-signature" | "identity" | "x-api-key");
                    if secret {
                        map.entry(name, &"<redacted>");
                    } else {
                        map.entry(name, value);
                    }
                }
                map.finish()
            }
        }
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("headers", &Headers(&self.headers))
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("status", &self.status)
            .field("mode", &self.mode)
            .field("signature_valid", &self.signature_valid)
            .field("faulted", &self.faulted)
            .finish()
    }
}

impl RecordedRequest {
    /// The request's path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Whether any HMAC or API-key header was received.
    pub(crate) fn has_hmac_or_api_key_header(&self) -> bool {
        self.headers
            .keys()
            .any(|k| k.as_str().starts_with("lmts-") || k == "x-api-key")
    }
}

impl State {
    pub(super) fn keep(&self, record: RecordedRequest) {
        if self.record {
            lock(&self.requests).push(record);
        }
    }
}
