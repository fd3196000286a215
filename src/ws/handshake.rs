//! The WebSocket upgrade, written and read here rather than by tungstenite, whose client
//! handshake logs the whole request (signature included) at trace level.

use std::time::Duration;

use http::header::{SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::WsError;
use super::session::{Failure, Ws};
use super::transport::Io;

/// The largest answer head read, and the largest refusal body.
const MAX_HEAD: usize = 16 * 1024;
/// The longest wait a `Retry-After` may ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Sends the upgrade request `req` over `io` and reads the answer: the socket on a 101 with
/// the right `Sec-WebSocket-Accept`, a final refusal on 401 or 403, a transient failure
/// otherwise.
///
/// `now_millis` is the time by the socket's clock, against which a `Retry-After` date is read
/// when the answer has no `Date` of its own.
pub(crate) async fn upgrade(
    mut io: Box<dyn Io>,
    req: &Request<()>,
    now_millis: i64,
) -> Result<Ws, Failure> {
    io.write_all(&head(req)).await.map_err(Failure::transient)?;
    io.flush().await.map_err(Failure::transient)?;
    let mut buf = Vec::with_capacity(1024);
    let (status, headers, head_len) = loop {
        let mut chunk = [0u8; 1024];
        let n = io.read(&mut chunk).await.map_err(Failure::transient)?;
        if n == 0 {
            return Err(Failure::transient(
                "the server closed the connection during the upgrade",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(parsed) = parse_head(&buf)? {
            break parsed;
        }
        if buf.len() > MAX_HEAD {
            return Err(Failure::transient("the upgrade answer's head is too large"));
        }
    };
    let rest = buf.split_off(head_len);
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refused(status, &headers, io, rest, now_millis).await);
    }
    let expected = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|key| derive_accept_key(key.as_bytes()));
    let accepted = headers
        .get(SEC_WEBSOCKET_ACCEPT)
        .and_then(|v| v.to_str().ok());
    let upgraded = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !upgraded || expected.is_none() || accepted != expected.as_deref() {
        return Err(Failure::transient(
            "the server answered 101 without a valid WebSocket acceptance",
        ));
    }
    Ok(WebSocketStream::from_partially_read(io, rest, Role::Client, None).await)
}

/// `GET target HTTP/1.1`, the headers, a blank line.
fn head(req: &Request<()>) -> Vec<u8> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The status, headers and length of a complete answer head in `buf`; `None` while it is
/// incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(StatusCode, HeaderMap, usize)>, Failure> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(Failure::transient(format!(
                "a malformed upgrade answer: {e}"
            )));
        }
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| Failure::transient("an upgrade answer without a valid status"))?;
    let mut headers = HeaderMap::new();
    for h in resp.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            headers.append(name, value);
        }
    }
    Ok(Some((status, headers, len)))
}

/// The failure an answer other than 101 means, with the server's message from its body
/// (read up to `Content-Length`, at most [`MAX_HEAD`] bytes).
async fn refused(
    status: StatusCode,
    headers: &HeaderMap,
    mut io: Box<dyn Io>,
    mut body: Vec<u8>,
    now_millis: i64,
) -> Failure {
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_HEAD);
    while body.len() < length {
        let mut chunk = [0u8; 1024];
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Failure::Final(WsError::Refused {
            status: Some(status),
            message,
        });
    }
    let retry_after = crate::retry_after::requested_wait(headers, &body, now_millis)
        .map(|d| d.min(MAX_RETRY_AFTER));
    Failure::Transient {
        error: format!("the upgrade was answered {status}: {message}").into(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_head_is_the_request_as_signed() {
        let req = Request::get("ws://127.0.0.1:1/socket.io/?transport=websocket&EIO=4")
            .header("host", "127.0.0.1:1")
            .header("lmts-api-key", "token")
            .body(())
            .expect("request");
        assert_eq!(
            head(&req),
            b"GET /socket.io/?transport=websocket&EIO=4 HTTP/1.1\r\nhost: 127.0.0.1:1\r\n\
              lmts-api-key: token\r\n\r\n"
        );
    }

    /// A 429 whose `Retry-After` is a date is waited out by the answer's own `Date`: a local
    /// clock five minutes slow waits 12 s, not 5 min 12 s.
    #[tokio::test]
    async fn a_retry_after_date_is_read_against_the_answers_date() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "date",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:49 GMT"),
        );
        let date_ms = 784_111_777_000;
        let (io, _peer) = tokio::io::duplex(64);
        let status = StatusCode::TOO_MANY_REQUESTS;
        let failure = refused(
            status,
            &headers,
            Box::new(io),
            Vec::new(),
            date_ms - 300_000,
        );
        let Failure::Transient { retry_after, .. } = failure.await else {
            panic!("a 429 is transient");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(12)));
        // Without a Date, the local clock is all there is.
        headers.remove("date");
        let (io, _peer) = tokio::io::duplex(64);
        let failure = refused(status, &headers, Box::new(io), Vec::new(), date_ms - 60_000);
        let Failure::Transient { retry_after, .. } = failure.await else {
            panic!("a 429 is transient");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(72)));
    }

    #[test]
    fn answer_heads_parse_once_complete() {
        assert!(matches!(parse_head(b"HTTP/1.1 101 Switching"), Ok(None)));
        let Ok(Some((status, headers, len))) =
            parse_head(b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\n\r\n0{")
        else {
            panic!("complete");
        };
        assert_eq!((status, len), (StatusCode::TOO_MANY_REQUESTS, 41));
        assert_eq!(headers["retry-after"], "7");
        assert!(matches!(
            parse_head(b"garbage\r\n\r\n"),
            Err(Failure::Transient { .. })
        ));
    }
}
