//! No public constructor or parser panics on any input, and none shows a secret it was given:
//! credentials, identity tokens, API keys, timestamps, route patterns and prefixes, base URLs,
//! scopes and request-targets, over arbitrary Unicode strings and bytes.
#![cfg(all(feature = "client", feature = "mock"))]

use std::ffi::OsString;

use http::Method;
use limitless_auth::client::{Client, RetryConfig};
use limitless_auth::policy::{RoutePrefix, display_path};
use limitless_auth::types::Scope;
use limitless_auth::{
    Accepts, ApiKey, Credentials, HmacCredentials, IdentityToken, RouteTable, Timestamp,
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

    #[test]
    fn timestamps(ms in any::<i64>(), text in any::<String>(), near in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z") {
        if let Ok(ts) = Timestamp::from_unix_millis(ms) {
            prop_assert_eq!(ts.as_str().len(), 24);
        }
        for t in [&text, &near] {
            if let Ok(ts) = Timestamp::parse(t) {
                prop_assert_eq!(ts.as_str(), t.as_str());
            }
        }
    }

    #[test]
    fn route_patterns_prefixes_and_paths(pattern in any::<String>(), path in any::<String>(), method in proptest::collection::vec(any::<u8>(), 1..12)) {
        let table = RouteTable::limitless().with_route(None, &pattern, Accepts::HMAC);
        let table = table.unwrap_or_else(|_| RouteTable::limitless());
        if let Ok(m) = Method::from_bytes(&method) {
            let _ = table.classify(&m, &path);
        }
        let _ = table.classify(&Method::GET, &path);
        if let Ok(p) = RoutePrefix::new(&pattern) {
            let route = p.route(&path);
            prop_assert!(path.ends_with(route));
        }
        let shown = display_path(&path);
        prop_assert!(!shown.is_empty() || path.is_empty());
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
