//! Property tests: the mock's verifier accepts whatever the signer produces and refuses any
//! single-byte change and any timestamp outside ±30 s.
#![cfg(feature = "mock")]

use limitless_auth::mock::verify::{SignedRequest, VerifyError, WINDOW_MS, verify};
use limitless_auth::{HmacCredentials, Timestamp};
use proptest::prelude::*;

fn creds() -> HmacCredentials {
    HmacCredentials::new("prop-token", "1iT1SdUtRsG+J+qMN3tUaXJVJVMCXfrXWceK3FtsaMs=")
        .expect("valid")
}

/// 2001-09-09 .. 2096-…: any millisecond the format expresses and a server might see.
const MS: std::ops::Range<i64> = 1_000_000_000_000..4_000_000_000_000;

#[derive(Debug, Clone)]
struct Case {
    millis: i64,
    method: String,
    target: String,
    body: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        MS,
        "[A-Za-z]{1,10}",
        "/[!-~]{0,120}",
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(millis, method, target, body)| Case {
            millis,
            method,
            target,
            body,
        })
}

fn check(
    ts: &str,
    method: &str,
    target: &str,
    body: &[u8],
    sig: &str,
    now: i64,
) -> Result<(), VerifyError> {
    verify(
        &creds(),
        &SignedRequest {
            method,
            target,
            body,
            timestamp: ts,
            signature: sig,
        },
        now,
        WINDOW_MS,
    )
}

/// A different byte for position `i` of `s`, keeping it visible ASCII; for methods a
/// different letter even ignoring case (the method is signed upper-cased).
fn mutate(s: &str, i: usize, delta: u8, ignore_case: bool) -> String {
    let mut b = s.as_bytes().to_vec();
    let i = i % b.len();
    let old = b[i];
    b[i] = if ignore_case {
        let letter = old.to_ascii_uppercase() - b'A';
        b'A' + (letter + 1 + delta % 25) % 26
    } else {
        b'!' + (old - b'!' + 1 + delta % 93) % 94
    };
    debug_assert!(b[i] != old && !(ignore_case && b[i].eq_ignore_ascii_case(&old)));
    String::from_utf8(b).expect("ASCII")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn accepts_what_the_signer_produces(c in case(), drift in -WINDOW_MS..=WINDOW_MS) {
        let ts = Timestamp::from_unix_millis(c.millis).expect("in range");
        let sig = creds().sign(ts.as_str(), &c.method, &c.target, &c.body);
        prop_assert_eq!(check(ts.as_str(), &c.method, &c.target, &c.body, sig.as_str(), c.millis + drift), Ok(()));
    }

    #[test]
    fn refuses_timestamps_outside_the_window(c in case(), far in (WINDOW_MS + 1)..1_000_000_000i64, ahead in any::<bool>()) {
        let ts = Timestamp::from_unix_millis(c.millis).expect("in range");
        let sig = creds().sign(ts.as_str(), &c.method, &c.target, &c.body);
        let now = if ahead { c.millis + far } else { c.millis - far };
        let refused = matches!(
            check(ts.as_str(), &c.method, &c.target, &c.body, sig.as_str(), now),
            Err(VerifyError::OutsideWindow { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn refuses_any_single_byte_change(c in case(), i in any::<usize>(), delta in 1u8..200) {
        let ts = Timestamp::from_unix_millis(c.millis).expect("in range");
        let t = ts.as_str();
        let sig = creds().sign(t, &c.method, &c.target, &c.body);
        let s = sig.as_str();
        let now = c.millis;

        let bad_ts = mutate(t, i, delta, false);
        prop_assert!(check(&bad_ts, &c.method, &c.target, &c.body, s, now).is_err(), "timestamp {}", bad_ts);

        let bad_method = mutate(&c.method, i, delta, true);
        prop_assert_eq!(check(t, &bad_method, &c.target, &c.body, s, now), Err(VerifyError::BadSignature));

        let bad_target = mutate(&c.target, i, delta, false);
        prop_assert_eq!(check(t, &c.method, &bad_target, &c.body, s, now), Err(VerifyError::BadSignature));

        if !c.body.is_empty() {
            let mut bad_body = c.body.clone();
            let j = i % bad_body.len();
            bad_body[j] = bad_body[j].wrapping_add(delta);
            prop_assert_eq!(check(t, &c.method, &c.target, &bad_body, s, now), Err(VerifyError::BadSignature));
        }
        let mut longer = c.body.clone();
        longer.push(b'\n');
        prop_assert_eq!(check(t, &c.method, &c.target, &longer, s, now), Err(VerifyError::BadSignature));

        let bad_sig = mutate(s, i, delta, false);
        prop_assert!(check(t, &c.method, &c.target, &c.body, &bad_sig, now).is_err());
    }
}
