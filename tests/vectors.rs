//! The official SDKs' known-answer vectors, through the pure signer and through the layer.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::{Recorder, vectors};
use hmac::{Hmac, KeyInit, Mac};
use http::{Method, Request};
use http_body_util::Full;
use limitless_auth::FixedClock;
use limitless_auth::canonical_message;
use limitless_auth::{
    AuthLayer, CredentialError, Credentials, HmacCredentials, HmacSigningLayer, Timestamp,
};
use proptest::prelude::*;
use sha2::Sha256;
use tower::{Layer, ServiceExt};

#[test]
fn fixture_has_both_kinds_of_case() {
    let all = vectors();
    assert!(all.len() >= 19, "{}", all.len());
    assert!(
        all.iter()
            .filter(|v| v.expected_signature.is_none())
            .count()
            >= 2
    );
}

#[test]
fn pure_signer_matches_every_vector() {
    for v in vectors() {
        let Some(expected) = &v.expected_signature else {
            continue;
        };
        let creds = HmacCredentials::new(&v.token_id, &v.secret_b64)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let sig = creds.sign(
            &v.timestamp,
            &v.method,
            &v.path_and_query,
            v.body.as_bytes(),
        );
        assert_eq!(sig.as_ref(), expected, "{}", v.name);
        let message = canonical_message(
            &v.timestamp,
            &v.method,
            &v.path_and_query,
            v.body.as_bytes(),
        );
        if let Some(canonical) = &v.canonical_message {
            assert_eq!(
                String::from_utf8(message).expect("vectors are UTF-8"),
                *canonical,
                "{}",
                v.name
            );
        }
    }
}

#[test]
fn malformed_secret_vectors_are_refused() {
    let mut refused = 0;
    for v in vectors()
        .into_iter()
        .filter(|v| v.expected_signature.is_none())
    {
        match HmacCredentials::new(&v.token_id, &v.secret_b64) {
            Err(CredentialError::MalformedSecret(_)) => refused += 1,
            other => panic!(
                "{}: expected a malformed-secret error, got {other:?}",
                v.name
            ),
        }
    }
    assert!(refused >= 2);
}

fn request(method: &str, target: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(target)
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("request")
}

#[tokio::test]
async fn signing_layer_matches_every_vector() {
    for v in vectors() {
        let Some(expected) = &v.expected_signature else {
            continue;
        };
        let creds = HmacCredentials::new(&v.token_id, &v.secret_b64).expect("valid");
        let millis = Timestamp::parse(&v.timestamp)
            .expect("timestamp")
            .unix_millis();
        let rec = Recorder::new();
        let svc = HmacSigningLayer::new(creds)
            .with_clock(FixedClock::new(millis))
            .layer(rec.service());
        svc.oneshot(request(&v.method, &v.path_and_query, &v.body))
            .await
            .expect("signed");
        let seen = rec.taken();
        assert_eq!(seen.len(), 1);
        let h = seen[0].headers();
        assert_eq!(h["lmts-signature"], expected.as_str(), "{}", v.name);
        assert_eq!(h["lmts-timestamp"], v.timestamp.as_str(), "{}", v.name);
        assert_eq!(h["lmts-api-key"], v.token_id.as_str(), "{}", v.name);
        assert_eq!(seen[0].body().as_ref(), v.body.as_bytes(), "{}", v.name);
        for name in ["lmts-api-key", "lmts-timestamp", "lmts-signature"] {
            assert!(h[name].is_sensitive(), "{name}");
        }
    }
}

#[tokio::test]
async fn auth_layer_matches_every_vector() {
    for v in vectors() {
        let Some(expected) = &v.expected_signature else {
            continue;
        };
        let creds = HmacCredentials::new(&v.token_id, &v.secret_b64).expect("valid");
        let millis = Timestamp::parse(&v.timestamp)
            .expect("timestamp")
            .unix_millis();
        let rec = Recorder::new();
        let svc = AuthLayer::new(Credentials::new().with_hmac(creds))
            .with_clock(FixedClock::new(millis))
            .layer(rec.service());
        svc.oneshot(request(&v.method, &v.path_and_query, &v.body))
            .await
            .expect("signed");
        let seen = rec.taken();
        assert_eq!(
            seen[0].headers()["lmts-signature"],
            expected.as_str(),
            "{}",
            v.name
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The part-by-part signer equals one HMAC over the canonical message.
    #[test]
    fn signer_equals_plain_hmac_over_canonical_message(
        key in proptest::collection::vec(any::<u8>(), 1..130),
        timestamp in "[ -~]{0,40}",
        method in "[A-Za-z]{1,12}",
        target in "/[ -~]{0,200}",
        body in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let creds = HmacCredentials::new("token", &STANDARD.encode(&key)).expect("valid");
        let sig = creds.sign(&timestamp, &method, &target, &body);
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(&canonical_message(&timestamp, &method, &target, &body));
        let expected = STANDARD.encode(mac.finalize().into_bytes());
        prop_assert_eq!(sig.as_ref(), expected.as_str());
    }
}
