//! The wait a refusal asks for: `Retry-After` (delta-seconds or an HTTP date), else a
//! `retryAfterSeconds` number in a JSON body, as the API sends them (SPEC §5). Shared by the
//! client's retry policy and the socket's reconnects.

use std::time::Duration;

use http::HeaderMap;

/// The wait a 429 asks for: the `Retry-After` header (delta-seconds or an HTTP date, compared
/// with `server_now_ms`), else a `retryAfterSeconds` number in a JSON body. Garbage is ignored.
pub(crate) fn retry_after(
    headers: &HeaderMap,
    body: &[u8],
    server_now_ms: i64,
) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, server_now_ms))
        .or_else(|| body_retry_after(body))
}

/// [`retry_after`] for an answer on its own: an HTTP-date `Retry-After` is read against the
/// answer's `Date` when it has one (so a local clock that is off neither stretches nor cuts the
/// wait), else against `local_now_ms`.
pub(crate) fn requested_wait(
    headers: &HeaderMap,
    body: &[u8],
    local_now_ms: i64,
) -> Option<Duration> {
    let now = crate::clock::date_millis(headers).unwrap_or(local_now_ms);
    retry_after(headers, body, now)
}

fn parse_retry_after(value: &str, server_now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date_ms = crate::clock::http_date_millis(value)?;
    let wait = date_ms.saturating_sub(server_now_ms).max(0);
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

fn body_retry_after(body: &[u8]) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let secs = value.get("retryAfterSeconds")?.as_f64()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::RETRY_AFTER, HeaderValue::from_static(v));
            m
        };
        assert_eq!(retry_after(&h("7"), b"", now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&h(" 0 "), b"", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&h("Sun, 06 Nov 1994 08:49:47 GMT"), b"", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(&h("Sun, 06 Nov 1994 08:49:27 GMT"), b"", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            retry_after(&h("99999999999999999999999"), b"", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for garbage in ["-1", "1.5", "soon", "", "Sun, 06 Nov 1994", "0x10"] {
            let mut m = HeaderMap::new();
            m.insert(http::header::RETRY_AFTER, HeaderValue::from_static(garbage));
            assert_eq!(retry_after(&m, b"", now), None, "{garbage:?}");
        }
        let none = HeaderMap::new();
        assert_eq!(
            retry_after(&none, br#"{"retryAfterSeconds":2.5}"#, now),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            retry_after(&h("3"), br#"{"retryAfterSeconds":9}"#, now),
            Some(Duration::from_secs(3)),
            "the header wins"
        );
        for body in [
            &br#"{"retryAfterSeconds":-1}"#[..],
            br#"{"retryAfterSeconds":"5"}"#,
            br#"{"retryAfter":5}"#,
            b"not json",
            br#"[5]"#,
        ] {
            assert_eq!(retry_after(&none, body, now), None);
        }
    }
}
