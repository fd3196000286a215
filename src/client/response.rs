//! A response as the client returns it.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::error::{Error, RawBody, error_message};
use crate::clock::{Clock as _, SystemClock};

/// A response: status, headers and the whole body.
#[derive(Clone)]
pub struct ApiResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &RawBody(self.body.clone()))
            .finish()
    }
}

impl ApiResponse {
    pub(crate) fn from_response(resp: Response<Bytes>) -> Self {
        let (parts, body) = resp.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `Ok(self)` for 2xx; otherwise [`Error::RateLimited`] for 429 and [`Error::Status`] for
    /// the rest, with the server's message.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.status.is_success() {
            return Ok(self);
        }
        let message = error_message(&self.body);
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = crate::retry_after::requested_wait(
                &self.headers,
                &self.body,
                SystemClock.now_millis(),
            );
            return Err(Error::RateLimited {
                retry_after,
                message,
                body: RawBody(self.body),
            });
        }
        Err(Error::Status {
            status: self.status,
            message,
            body: RawBody(self.body),
        })
    }

    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let expected = short_type_name(std::any::type_name::<T>());
            Error::decode(self.status, expected, &e, self.body.clone())
        })
    }
}

/// `alloc::vec::Vec<limitless_auth::types::ApiToken>` → `Vec<ApiToken>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut path = String::new();
    let flush = |path: &mut String, out: &mut String| {
        out.push_str(path.rsplit("::").next().unwrap_or_default());
        path.clear();
    };
    for c in full.replace("{{closure}}::", "").chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else {
            flush(&mut path, &mut out);
            out.push(c);
        }
    }
    flush(&mut path, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_shortened() {
        assert_eq!(
            short_type_name("alloc::vec::Vec<limitless_auth::types::ApiToken>"),
            "Vec<ApiToken>"
        );
        assert_eq!(
            short_type_name("PartnerCapabilities"),
            "PartnerCapabilities"
        );
        assert_eq!(
            short_type_name("limitless_auth::client::Client::revoke::{{closure}}::RevokeResponse"),
            "RevokeResponse"
        );
    }
}
