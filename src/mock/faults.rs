//! Fault injection: what the mock does instead of (or before) handling a request.

use super::*;

/// A fault the mock applies to a request instead of (or before) handling it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Fault {
    /// 429 with an optional `Retry-After` header value and `retryAfterSeconds` body field.
    TooManyRequests {
        /// The `Retry-After` header, verbatim.
        retry_after: Option<String>,
        /// The body's `retryAfterSeconds`.
        body_seconds: Option<f64>,
    },
    /// 503 Service Unavailable.
    Unavailable,
    /// Close the connection without answering.
    DropConnection,
    /// Handle the request, then close the connection without answering: the request is
    /// processed and its answer lost.
    ProcessThenDrop,
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Answer with this response (a `date` header is added unless it has one).
    Respond {
        /// The status.
        status: StatusCode,
        /// Extra headers.
        headers: Vec<(HeaderName, HeaderValue)>,
        /// The body.
        body: Bytes,
    },
}

impl Fault {
    /// A canned response with `content-type: application/json`.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::Respond {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: body.into(),
        }
    }

    /// A canned response with `content-type: text/plain`.
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::Respond {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            body: body.into(),
        }
    }
}

#[derive(Default)]
pub(super) struct Faults {
    pub(super) next: VecDeque<Fault>,
    pub(super) every: Vec<(u64, Fault)>,
}

/// What the server does about a fault.
pub(super) enum Action {
    /// Close the connection without answering.
    Drop,
    /// Handle the request, then close the connection without answering.
    HandleThenDrop,
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Answer with this instead of handling the request.
    Respond(MockResponse),
}

impl Fault {
    pub(super) fn action(self) -> Action {
        match self {
            Self::DropConnection => Action::Drop,
            Self::ProcessThenDrop => Action::HandleThenDrop,
            Self::Delay(d) => Action::Delay(d),
            Self::TooManyRequests {
                retry_after,
                body_seconds,
            } => {
                let mut body = json!({"message": "Too many requests", "statusCode": 429});
                if let Some(s) = body_seconds {
                    body["retryAfterSeconds"] = json!(s);
                }
                let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
                if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    resp.headers_mut().insert(RETRY_AFTER, v);
                }
                Action::Respond(resp)
            }
            Self::Unavailable => Action::Respond(message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
            )),
            Self::Respond {
                status,
                headers,
                body,
            } => {
                let mut resp = Response::new(Full::new(body));
                *resp.status_mut() = status;
                for (k, v) in headers {
                    resp.headers_mut().append(k, v);
                }
                Action::Respond(resp)
            }
        }
    }
}

impl State {
    pub(super) fn take_fault(&self, seq: u64) -> Option<Fault> {
        if !self.faults_set.load(Ordering::Relaxed) {
            return None;
        }
        let mut faults = lock(&self.faults);
        if let Some(f) = faults.next.pop_front() {
            return Some(f);
        }
        faults
            .every
            .iter()
            .find(|(n, _)| seq.is_multiple_of(*n))
            .map(|(_, f)| f.clone())
    }
}
