//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

/// One captured request, body collected.
pub type Captured = Request<Bytes>;

/// An inner service that records every request it receives and answers 200.
#[derive(Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Vec<Captured>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The requests received so far.
    pub fn taken(&self) -> Vec<Captured> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// A tower service recording into this recorder, for any request body.
    pub fn service<B>(&self) -> RecorderService<B>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        RecorderService {
            seen: self.seen.clone(),
            body: std::marker::PhantomData,
        }
    }
}

/// The service of a [`Recorder`].
pub struct RecorderService<B> {
    seen: Arc<Mutex<Vec<Captured>>>,
    body: std::marker::PhantomData<fn(B)>,
}

impl<B> Clone for RecorderService<B> {
    fn clone(&self) -> Self {
        Self {
            seen: self.seen.clone(),
            body: std::marker::PhantomData,
        }
    }
}

impl<B> tower::Service<Request<B>> for RecorderService<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<()>, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let seen = self.seen.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => panic!("the body does not read: {}", e.into()),
            };
            seen.lock()
                .expect("lock")
                .push(Request::from_parts(parts, bytes));
            Ok(Response::new(()))
        })
    }
}

/// One known-answer vector from `fixtures/hmac-public.json`.
#[derive(Debug, Clone)]
pub struct Vector {
    pub name: String,
    pub secret_b64: String,
    pub token_id: String,
    pub timestamp: String,
    pub method: String,
    pub path_and_query: String,
    pub body: String,
    pub expected_signature: Option<String>,
    pub canonical_message: Option<String>,
}

pub fn vectors() -> Vec<Vector> {
    let text = include_str!("../fixtures/hmac-public.json");
    let doc: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
    let s = |c: &serde_json::Value, k: &str| c[k].as_str().map(str::to_owned);
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let expect = s(c, "expect").expect("expect");
            assert!(expect == "signature" || expect == "error", "{expect}");
            Vector {
                name: s(c, "name").expect("name"),
                secret_b64: s(c, "secret_b64").expect("secret"),
                token_id: s(c, "token_id").expect("token id"),
                timestamp: s(c, "timestamp").expect("timestamp"),
                method: s(c, "method").expect("method"),
                path_and_query: s(c, "path_and_query").expect("path"),
                body: s(c, "body").expect("body"),
                expected_signature: if expect == "signature" {
                    Some(s(c, "expected_signature").expect("signature"))
                } else {
                    None
                },
                canonical_message: s(c, "canonical_message"),
            }
        })
        .collect()
}

/// Every authentication header name.
pub const AUTH_HEADERS: [&str; 5] = [
    "lmts-api-key",
    "lmts-timestamp",
    "lmts-signature",
    "identity",
    "x-api-key",
];

pub fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}
#[cfg(all(feature = "client", feature = "mock"))]
pub mod raw;

/// Waits, polling every 20 ms of tokio's clock (virtual under paused time), until `cond`
/// holds or `limit` has passed; says whether it holds.
pub async fn eventually(limit: std::time::Duration, cond: impl Fn() -> bool) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cond()
}

/// Whether `signature` is the `lmts-signature` of a request, computed here from the
/// protocol's definition with `hmac`, `sha2` and `base64` directly: no code of the crate's
/// signer is involved, so a signer that built the wrong message fails this check.
pub fn signature_matches(
    secret_b64: &str,
    timestamp: &str,
    method: &str,
    target: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let engine = base64::engine::general_purpose::STANDARD;
    let Ok(key) = engine.decode(secret_b64) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key) else {
        return false;
    };
    let mut message =
        format!("{timestamp}\n{}\n{target}\n", method.to_ascii_uppercase()).into_bytes();
    message.extend_from_slice(body);
    mac.update(&message);
    engine.encode(mac.finalize().into_bytes()) == signature
}
#[cfg(all(feature = "client", feature = "mock"))]
pub mod h2raw;
