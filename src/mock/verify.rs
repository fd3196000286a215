//! The server's side of HMAC authentication, as the mock applies it: written from the protocol
//! with `hmac`, `sha2`, `base64` and `chrono` directly, sharing no code with the crate's signer,
//! so that a signer building the wrong message is refused here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The acceptance window: a timestamp within this many milliseconds of the server's clock.
pub(crate) const WINDOW_MS: i64 = 30_000;

/// A token's secret as the server keeps it: the decoded key bytes, wiped when dropped.
#[derive(Clone)]
pub(crate) struct Key(Zeroizing<Vec<u8>>);

impl Key {
    /// Decodes a base64 secret; `None` when it is not standard padded base64.
    pub(crate) fn from_base64(secret: &str) -> Option<Self> {
        STANDARD
            .decode(secret)
            .ok()
            .map(|k| Self(Zeroizing::new(k)))
    }
}

/// What one HMAC-signed request carries, as received.
pub(crate) struct Received<'a> {
    /// The method, as in the request line.
    pub(crate) method: &'a str,
    /// The request-target, as in the request line.
    pub(crate) target: &'a str,
    /// The body bytes, as received.
    pub(crate) body: &'a [u8],
    /// The `lmts-timestamp` header.
    pub(crate) timestamp: &'a str,
    /// The `lmts-signature` header.
    pub(crate) signature: &'a str,
}

/// Why a signed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `lmts-timestamp` is not `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    MalformedTimestamp,
    /// The timestamp is outside the window around the server's clock.
    OutsideWindow,
    /// The signature does not match.
    BadSignature,
}

/// The milliseconds since the epoch of an `lmts-timestamp`: exactly `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn timestamp_millis(text: &str) -> Option<i64> {
    // chrono's parser also takes other widths and signs: the digits are checked here.
    const DIGITS: [usize; 17] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    let b = text.as_bytes();
    let exact = b.len() == 24 && DIGITS.iter().all(|&i| b[i].is_ascii_digit());
    let parsed = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.3fZ").ok()?;
    exact.then(|| parsed.and_utc().timestamp_millis())
}

/// Verifies `req` against `key` at server time `now_ms`, accepting timestamps within
/// `window_ms` either side: the signature must be the padded base64 HMAC-SHA256, keyed with
/// `key`, of `timestamp "\n" METHOD "\n" target "\n" body`, compared in constant time.
pub(crate) fn verify(
    key: &Key,
    req: &Received<'_>,
    now_ms: i64,
    window_ms: i64,
) -> Result<(), Refusal> {
    let ts = timestamp_millis(req.timestamp).ok_or(Refusal::MalformedTimestamp)?;
    if ts.abs_diff(now_ms) > window_ms.unsigned_abs() {
        return Err(Refusal::OutsideWindow);
    }
    let mut message = Vec::with_capacity(req.target.len() + req.body.len() + 48);
    message.extend_from_slice(req.timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(req.method.to_ascii_uppercase().as_bytes());
    message.push(b'\n');
    message.extend_from_slice(req.target.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(req.body);
    let tag = match STANDARD.decode(req.signature) {
        Ok(tag) if req.signature.len() == 44 && tag.len() == 32 => tag,
        _ => return Err(Refusal::BadSignature),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).map_err(|_| Refusal::BadSignature)?;
    mac.update(&message);
    mac.verify_slice(&tag).map_err(|_| Refusal::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HmacCredentials, Timestamp};
    use proptest::prelude::*;

    const SECRET: &str = "1iT1SdUtRsG+J+qMN3tUaXJVJVMCXfrXWceK3FtsaMs=";

    fn key() -> Key {
        Key::from_base64(SECRET).expect("valid")
    }

    fn check(
        ts: &str,
        method: &str,
        target: &str,
        body: &[u8],
        sig: &str,
        now: i64,
    ) -> Result<(), Refusal> {
        let req = Received {
            method,
            target,
            body,
            timestamp: ts,
            signature: sig,
        };
        verify(&key(), &req, now, WINDOW_MS)
    }

    /// The official SDKs' known answer: the verifier agrees with it without the signer.
    #[test]
    fn accepts_a_known_answer_and_refuses_its_near_misses() {
        let key = Key::from_base64("c2VjcmV0").expect("valid");
        let sig = "lqUdGxW7CcqHKaX99McgZb/TddUNxiFaIm5OiM/GMI0=";
        let ts = "2026-03-30T12:00:00.000Z";
        let now = 1_774_872_000_000;
        let at = |method, target, body: &[u8], ts, now| {
            let req = Received {
                method,
                target,
                body,
                timestamp: ts,
                signature: sig,
            };
            verify(&key, &req, now, WINDOW_MS)
        };
        let body = br#"{"foo":"bar"}"#;
        assert_eq!(at("POST", "/orders", body, ts, now), Ok(()));
        assert_eq!(at("post", "/orders", body, ts, now + 30_000), Ok(()));
        assert_eq!(
            at("POST", "/orders", body, ts, now + 30_001),
            Err(Refusal::OutsideWindow)
        );
        assert_eq!(
            at("POST", "/orders?", body, ts, now),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            at("POST", "/orders", b"{\"foo\":\"bar\"}\n", ts, now),
            Err(Refusal::BadSignature)
        );
        for malformed in [
            "2026-03-30T12:00:00Z",
            "2026-03-30T12:00:00.0000Z",
            "2026-03-30T12:00:00.000+00:00",
            "2026-03-30 12:00:00.000Z",
            "2026-02-30T12:00:00.000Z",
        ] {
            assert_eq!(
                at("POST", "/orders", body, malformed, now),
                Err(Refusal::MalformedTimestamp),
                "{malformed}"
            );
        }
    }

    /// The message the verifier rebuilds is the protocol's, part for part: a signer that put
    /// the parts in another order, left out a newline or signed the target without its query
    /// is refused.
    #[test]
    fn refuses_messages_built_the_wrong_way() {
        let key = Key::from_base64(SECRET).expect("valid");
        let raw = STANDARD.decode(SECRET).expect("valid");
        let (ts, method, target, body) = ("2026-03-30T12:00:00.000Z", "GET", "/orders?a=1", b"");
        let sign = |message: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&raw).expect("any length");
            mac.update(message);
            STANDARD.encode(mac.finalize().into_bytes())
        };
        let right = format!("{ts}\n{method}\n{target}\n");
        let wrong = [
            format!("{method}\n{ts}\n{target}\n"),
            format!("{ts}\n{method}\n{target}"),
            format!("{ts}{method}\n{target}\n"),
            format!("{ts}\n{method}\n/orders\n"),
            format!("{ts}\nget\n{target}\n"),
        ];
        let now = 1_774_872_000_000;
        let check = |sig: &str| {
            let req = Received {
                method,
                target,
                body,
                timestamp: ts,
                signature: sig,
            };
            verify(&key, &req, now, WINDOW_MS)
        };
        assert_eq!(check(&sign(right.as_bytes())), Ok(()));
        for message in wrong {
            assert_eq!(
                check(&sign(message.as_bytes())),
                Err(Refusal::BadSignature),
                "{message:?}"
            );
        }
    }

    /// 2001-09-09 .. 2096: any millisecond a server might see.
    const MS: std::ops::Range<i64> = 1_000_000_000_000..4_000_000_000_000;

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
        String::from_utf8(b).expect("ASCII")
    }

    fn signer() -> HmacCredentials {
        HmacCredentials::new("prop-token", SECRET).expect("valid")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The crate's signer and this verifier, written apart, agree.
        #[test]
        fn accepts_what_the_signer_produces(
            millis in MS,
            method in "[A-Za-z]{1,10}",
            target in "/[!-~]{0,120}",
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            drift in -WINDOW_MS..=WINDOW_MS,
        ) {
            let ts = Timestamp::from_unix_millis(millis).expect("in range");
            let sig = signer().sign(ts.as_str(), &method, &target, &body);
            prop_assert_eq!(check(ts.as_str(), &method, &target, &body, sig.as_str(), millis + drift), Ok(()));
        }

        #[test]
        fn refuses_timestamps_outside_the_window(
            millis in MS,
            far in (WINDOW_MS + 1)..1_000_000_000i64,
            ahead in any::<bool>(),
        ) {
            let ts = Timestamp::from_unix_millis(millis).expect("in range");
            let sig = signer().sign(ts.as_str(), "GET", "/orders", b"");
            let now = if ahead { millis + far } else { millis - far };
            prop_assert_eq!(check(ts.as_str(), "GET", "/orders", b"", sig.as_str(), now), Err(Refusal::OutsideWindow));
        }

        #[test]
        fn refuses_any_single_byte_change(
            millis in MS,
            method in "[A-Za-z]{1,10}",
            target in "/[!-~]{0,120}",
            body in proptest::collection::vec(any::<u8>(), 0..512),
            i in any::<usize>(),
            delta in 1u8..200,
        ) {
            let ts = Timestamp::from_unix_millis(millis).expect("in range");
            let t = ts.as_str();
            let sig = signer().sign(t, &method, &target, &body);
            let s = sig.as_str();
            let bad_ts = mutate(t, i, delta, false);
            prop_assert!(check(&bad_ts, &method, &target, &body, s, millis).is_err(), "timestamp {}", bad_ts);
            let bad_method = mutate(&method, i, delta, true);
            prop_assert_eq!(check(t, &bad_method, &target, &body, s, millis), Err(Refusal::BadSignature));
            let bad_target = mutate(&target, i, delta, false);
            prop_assert_eq!(check(t, &method, &bad_target, &body, s, millis), Err(Refusal::BadSignature));
            if !body.is_empty() {
                let mut bad_body = body.clone();
                let j = i % bad_body.len();
                bad_body[j] = bad_body[j].wrapping_add(delta);
                prop_assert_eq!(check(t, &method, &target, &bad_body, s, millis), Err(Refusal::BadSignature));
            }
            let mut longer = body.clone();
            longer.push(b'\n');
            prop_assert_eq!(check(t, &method, &target, &longer, s, millis), Err(Refusal::BadSignature));
            let bad_sig = mutate(s, i, delta, false);
            prop_assert!(check(t, &method, &target, &body, &bad_sig, millis).is_err());
        }
    }
}
