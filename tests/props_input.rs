//! No public constructor or parser panics on any input, and none shows a secret it was given:
//! credentials, identity tokens, API keys, timestamps, route patterns and prefixes, base URLs,
//! scopes and request-targets, over arbitrary Unicode strings and bytes.
#![cfg(all(feature = "client", feature = "mock"))]

use std::ffi::OsString;

use http::Method;
use limitless_auth::client::{Client, RetryConfig};
use limitless_auth::{
    Accepts, ApiKey, AuthMode, Credentials, HmacCredentials, IdentityToken, RoutePrefix,
    RouteTable, Scope, Timestamp, decide,
};
use proptest::prelude::*;

/// Spliced into every secret input: no output may contain it.
const MARK: &str = "Zq9Xv";

fn shown<T: std::fmt::Debug, E: std::fmt::Display + std::fmt::Debug>(r: &Result<T, E>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("{e} {e:?}"),
    }
}

fn secret() -> impl Strategy<Value = String> {
    (any::<String>(), any::<String>()).prop_map(|(a, b)| format!("{a}{MARK}{b}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hmac_credentials(id in secret(), secret in secret(), b64 in "[A-Za-z0-9+/=*_ -]{0,40}") {
        for (id, secret) in [(&id, &secret), (&id, &b64), (&"token".to_owned(), &secret)] {
            let r = HmacCredentials::new(id, secret);
            prop_assert!(!shown(&r).contains(MARK));
        }
        let _ = shown(&HmacCredentials::new(&b64, &b64));
        // A valid secret and token id that both carry the mark: neither is shown.
        let valid = HmacCredentials::new(&format!("{MARK}{}", b64.len()), "Zq9XvA==");
        prop_assert!(valid.is_ok());
        prop_assert!(!shown(&valid).contains(MARK));
    }

    #[test]
    fn identity_tokens_and_api_keys(token in secret(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let r = IdentityToken::new(token.clone());
        prop_assert!(!shown(&r).contains(MARK));
        let r = ApiKey::new(token);
        prop_assert!(!shown(&r).contains(MARK));
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        let _ = IdentityToken::new(lossy.clone());
        let _ = IdentityToken::new(format!("Bearer {lossy}"));
        let _ = ApiKey::new(lossy);
    }

    #[test]
    fn credentials_from_the_environment(id in secret(), secret in secret(), token in secret(), raw in proptest::collection::vec(any::<u8>(), 0..32)) {
        let r = Credentials::from_lookup(|name| match name {
            "LMTS_TOKEN_ID" => Some(OsString::from(id.clone())),
            "LMTS_TOKEN_SECRET" => Some(OsString::from(secret.clone())),
            "LIMITLESS_IDENTITY_TOKEN" => Some(OsString::from(token.clone())),
            _ => None,
        });
        prop_assert!(!shown(&r).contains(MARK));
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt as _;
            let r = Credentials::from_lookup(|name| {
                (name == "LIMITLESS_API_KEY").then(|| OsString::from_vec(raw.clone()))
            });
            let _ = shown(&r);
        }
    }

    /// Every generated time is in the format's range (0000-9999) and every generated text a
    /// real calendar instant, so every case reaches the assertions; out-of-range times and
    /// arbitrary texts are checked not to panic, and to be refused when they must be.
    #[test]
    fn timestamps(
        ms in -62_167_219_200_000i64..=253_402_300_799_999,
        wild in any::<i64>(),
        text in any::<String>(),
        date in (0u32..=9999, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60, 0u32..60, 0u32..1000),
    ) {
        // (Formatting is compared with chrono's in the signer's own property test.)
        let ts = Timestamp::from_unix_millis(ms).expect("in range");
        prop_assert_eq!(Timestamp::parse(ts.as_str()).expect("parses").unix_millis(), ms);
        let (y, mo, d, h, mi, se, milli) = date;
        let text_date = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{milli:03}Z");
        let parsed = Timestamp::parse(&text_date).expect("a real instant");
        let again = Timestamp::from_unix_millis(parsed.unix_millis()).expect("in range");
        prop_assert_eq!(again.as_str(), text_date.as_str());
        let in_range = (-62_167_219_200_000..=253_402_300_799_999).contains(&wild);
        prop_assert_eq!(Timestamp::from_unix_millis(wild).is_ok(), in_range);
        if let Ok(t) = Timestamp::parse(&text) {
            prop_assert_eq!(t.as_str(), text.as_str());
        }
    }

    /// Paths made from the table's own routes, in the variants the server routes alike
    /// (letter case, a trailing slash) and near misses (a segment more, one dropped), with
    /// methods that match and do not: 24 % of the cases land on a rule other than the fallback
    /// (126 of the 520 equally likely combinations, counted), and every case has a token id
    /// under `/auth/api-tokens/`. `decide` never panics and chooses only a mode the route accepts;
    /// the token id is never shown in a refusal.
    #[test]
    fn decisions_over_the_tables_own_routes(
        route in prop_oneof![
            Just("/auth/api-tokens/capabilities"), Just("/auth/api-tokens/derive"),
            Just("/portfolio/withdrawal-addresses"), Just("/portfolio/withdrawal-addresses/0xab"),
            Just("/amm/buy"), Just("/amm/allowances/check"), Just("/portfolio/withdraw"),
            Just("/portfolio/redeem"), Just("/profiles/partner-accounts"),
            Just("/profiles/partner-accounts/7/allowances"), Just("/auth/api-keys/k1"),
            Just("/orders"), Just("/orders/all/btc"),
        ],
        upper in any::<bool>(),
        variant in 0u8..4,
        token in "[A-Za-z0-9_~.-]{1,16}",
        method in prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("get"), Just("PURGE")],
        pattern in any::<String>(),
    ) {
        let mut path = if upper { route.to_ascii_uppercase() } else { route.to_owned() };
        match variant {
            1 => path.push('/'),
            2 => path.push_str("/extra"),
            3 => path.truncate(path.rfind('/').unwrap_or(0).max(1)),
            _ => {}
        }
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let table = RouteTable::limitless();
        let creds = Credentials::new()
            .with_hmac(HmacCredentials::new("id", "c2VjcmV0").expect("valid"))
            .with_identity(IdentityToken::new("t").expect("valid"));
        let accepts = table.accepts(&method, &path);
        match decide(&table, &method, &path, &http::Extensions::new(), &creds) {
            Ok(d) => prop_assert!(accepts.contains(d.credential.mode()), "{method} {path}"),
            Err(e) => prop_assert!(false, "{method} {path}: {e}"),
        }
        // A token id under /auth/api-tokens/ is never named in a refusal.
        let secret_path = format!("{path}/auth/api-tokens/{MARK}{token}");
        let none = Credentials::new();
        match decide(&table, &method, &secret_path, &http::Extensions::new(), &none) {
            Ok(d) => prop_assert_eq!(d.credential.mode(), AuthMode::None),
            Err(e) => prop_assert!(!format!("{e} {e:?}").contains(MARK), "{e}"),
        }
        // Any text as a pattern or a prefix: an error or a value, never a panic.
        let _ = RouteTable::limitless().with_route(None, &pattern, Accepts::HMAC);
        let _ = RoutePrefix::new(&pattern);
    }

    /// A gateway prefix in front of the table's routes: a request under the prefix is decided
    /// as its route without the prefix, and one not under it (a prefix that only shares the
    /// first letters, or none) as its whole path. Every prefix drawn is valid, and half the
    /// paths are under it.
    #[test]
    fn a_prefix_is_left_out_of_the_route(
        prefix in "(/[a-z]{1,6}){1,2}",
        route in prop_oneof![
            Just("/auth/api-tokens/capabilities"), Just("/auth/api-tokens/derive"),
            Just("/profiles/partner-accounts"), Just("/orders"), Just("/amm/buy"),
        ],
        under in any::<bool>(),
        method in prop_oneof![Just(Method::GET), Just(Method::POST)],
        letters in "[HPK]{0,3}",
    ) {
        let table = RouteTable::limitless();
        let mut creds = Credentials::new();
        if letters.contains('H') {
            creds = creds.with_hmac(HmacCredentials::new("id", "c2VjcmV0").expect("valid"));
        }
        if letters.contains('P') {
            creds = creds.with_identity(IdentityToken::new("t").expect("valid"));
        }
        if letters.contains('K') {
            creds = creds.with_api_key(ApiKey::new("lmts_k").expect("valid"));
        }
        let mode = |target: &str, ext: &http::Extensions| {
            decide(&table, &method, target, ext, &creds)
                .map(|d| d.credential.mode())
                .map_err(|e| e.to_string())
        };
        let mut ext = http::Extensions::new();
        ext.insert(RoutePrefix::new(&prefix).expect("a valid prefix"));
        let none = http::Extensions::new();
        if under {
            let target = format!("{prefix}{route}");
            let (with, without) = (mode(&target, &ext), mode(route, &none));
            // Refusals name the path as sent, so compare the modes or the kind of refusal.
            prop_assert_eq!(with.is_ok(), without.is_ok(), "{} {}", method, target);
            if let (Ok(a), Ok(b)) = (&with, &without) {
                prop_assert_eq!(a, b);
            }
        } else {
            let target = format!("{prefix}x{route}");
            prop_assert_eq!(mode(&target, &ext), mode(&target, &none));
        }
    }

    #[test]
    fn scopes(text in any::<String>()) {
        let scope = Scope::parse(&text);
        prop_assert_eq!(scope.as_str(), text.as_str());
    }

    #[test]
    fn base_urls(url in any::<String>(), user in "[a-z]{1,8}", tail in "[a-z0-9./?#:@-]{0,20}") {
        let _ = shown(&Client::builder().base_url(url).build());
        let with_password = format!("https://{user}:{MARK}@api.example{tail}");
        let builder = Client::builder().base_url(with_password);
        let debug = format!("{:?}", builder);
        prop_assert!(!debug.contains(MARK));
        let r = builder.build();
        prop_assert!(!shown(&r).contains(MARK));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary request-targets and methods through the client: a local error or a request
    /// sent (here to a port nothing listens on), never a panic.
    #[test]
    fn request_targets(target in any::<String>(), method in proptest::collection::vec(any::<u8>(), 1..10)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let client = Client::builder()
                .base_url("http://127.0.0.1:9")
                .credentials(Credentials::new().with_hmac(HmacCredentials::new("id", "c2VjcmV0").expect("valid")))
                .retry(RetryConfig::disabled())
                .build()
                .expect("client");
            let _ = client.request(Method::GET, &target, None).await;
            if let Ok(m) = Method::from_bytes(&method) {
                let _ = client.request(m, "/orders", None).await;
            }
            if let Ok(req) = http::Request::builder().uri(target.as_str()).body(bytes::Bytes::new()) {
                let _ = client.send(req).await;
            }
        });
    }
}
