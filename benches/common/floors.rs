//! The floors the benchmarks compare with, written out by hand.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use http::{HeaderValue, Request};
use http_body_util::Full;
use limitless_auth::SystemClock;
use limitless_auth::headers::{LMTS_API_KEY, LMTS_SIGNATURE, LMTS_TIMESTAMP};
use limitless_auth::{HmacCredentials, Timestamp};
use sha2::Sha256;

/// `floor_request`: the least any layer must do to sign `req` (a timestamp from the clock
/// formatted on the stack, a pre-keyed HMAC fed the message part by part, base64 into a stack
/// buffer, the three headers inserted), then the request consumed as the sink does.
pub fn floor_request(
    mac: &Hmac<Sha256>,
    token_id: &HeaderValue,
    mut req: Request<Full<Bytes>>,
    body: &[u8],
) {
    let ts = Timestamp::now(&SystemClock).expect("in range");
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut m = mac.clone();
    m.update(ts.as_str().as_bytes());
    m.update(b"\n");
    m.update(req.method().as_str().as_bytes());
    m.update(b"\n");
    m.update(target.as_bytes());
    m.update(b"\n");
    m.update(body);
    let mut sig = [0u8; 44];
    STANDARD
        .encode_slice(m.finalize().into_bytes(), &mut sig)
        .expect("44 bytes");
    let h = req.headers_mut();
    h.insert(LMTS_API_KEY, token_id.clone());
    h.insert(
        LMTS_TIMESTAMP,
        HeaderValue::from_bytes(ts.as_str().as_bytes()).expect("ascii"),
    );
    h.insert(
        LMTS_SIGNATURE,
        HeaderValue::from_bytes(&sig).expect("ascii"),
    );
    drop(std::hint::black_box(req));
}

/// The client's signed floor: a body-less request signed inline, with no layer; `token_id` is
/// `creds`' token id as a header value, built once.
pub fn sign_inline(
    req: &mut Request<Full<Bytes>>,
    creds: &HmacCredentials,
    token_id: &HeaderValue,
) {
    let ts = Timestamp::now(&SystemClock).expect("clock");
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let sig = creds.sign(ts.as_str(), req.method().as_str(), target, b"");
    let h = req.headers_mut();
    h.insert(LMTS_API_KEY, token_id.clone());
    h.insert(
        LMTS_TIMESTAMP,
        HeaderValue::from_bytes(ts.as_str().as_bytes()).expect("ascii"),
    );
    h.insert(
        LMTS_SIGNATURE,
        HeaderValue::from_bytes(sig.as_str().as_bytes()).expect("ascii"),
    );
}

/// The inputs of the layer cases and their floor.
pub struct Inputs {
    pub get_uri: http::Uri,
    pub post_uri: http::Uri,
    /// The 512-byte JSON body.
    pub body: Bytes,
    /// The pre-keyed HMAC of `floor_request`.
    pub mac: Hmac<Sha256>,
    pub token_id: HeaderValue,
}

pub fn inputs() -> Inputs {
    use hmac::KeyInit as _;
    let key = STANDARD.decode(super::SECRET).expect("valid");
    Inputs {
        get_uri: super::GET_TARGET.parse().expect("uri"),
        post_uri: "/orders".parse().expect("uri"),
        body: Bytes::from(super::json_512()),
        mac: Hmac::<Sha256>::new_from_slice(&key).expect("any length"),
        // Read at run time, as any signer reads its token id: a shared `Bytes`, like the
        // crate's own (a `from_static` value would be free to clone, which no real token is).
        token_id: HeaderValue::from_str(super::TOKEN_ID).expect("visible ASCII"),
    }
}
