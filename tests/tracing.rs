//! Tracing output and error messages never carry a credential, a signature or a body.
#![cfg(all(feature = "tracing", feature = "client", feature = "mock"))]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use limitless_auth::Scope;
use limitless_auth::client::{Client, Error, RetryConfig};
use limitless_auth::mock::{
    Fault, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET,
};
use limitless_auth::{Credentials, HmacCredentials, IdentityToken};
use secrecy::ExposeSecret as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Writes every span, field and event, at every level, into one string.
/// Tracks entered spans like a real subscriber, so `Span::current()` works.
#[derive(Clone, Default)]
struct Capture {
    out: Arc<Mutex<String>>,
    ids: Arc<AtomicU64>,
    meta: Arc<Mutex<std::collections::HashMap<u64, &'static Metadata<'static>>>>,
    stack: Arc<Mutex<Vec<Id>>>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut out = self.out.lock().expect("lock");
        let _ = write!(out, "\nspan {}", attrs.metadata().name());
        attrs.record(&mut Fields(&mut out));
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        self.meta.lock().expect("lock").insert(id, attrs.metadata());
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut out = self.out.lock().expect("lock");
        out.push_str("\nrecord");
        values.record(&mut Fields(&mut out));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut out = self.out.lock().expect("lock");
        let _ = write!(
            out,
            "\n{} {}",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Fields(&mut out));
    }
    fn enter(&self, id: &Id) {
        self.stack.lock().expect("lock").push(id.clone());
    }
    fn exit(&self, id: &Id) {
        let mut stack = self.stack.lock().expect("lock");
        if let Some(pos) = stack.iter().rposition(|s| s == id) {
            stack.remove(pos);
        }
    }
    fn current_span(&self) -> tracing_core::span::Current {
        let stack = self.stack.lock().expect("lock");
        match stack.last() {
            Some(id) => match self.meta.lock().expect("lock").get(&id.into_u64()) {
                Some(meta) => tracing_core::span::Current::new(id.clone(), meta),
                None => tracing_core::span::Current::none(),
            },
            None => tracing_core::span::Current::none(),
        }
    }
}

fn assert_clean(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s.as_str()), "{s:?} appears in:\n{text}");
    }
}

#[tokio::test]
async fn a_full_session_traced_at_trace_level_shows_no_secret() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let mock = MockServer::start().await.expect("mock");
    let label = "label-in-a-request-body";
    let privy = Client::builder()
        .base_url(mock.base_url())
        .credentials(
            Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid")),
        )
        .build()
        .expect("client");
    let token = privy
        .derive_token(Some(label), Some(&[Scope::Trading]))
        .await
        .expect("derive");
    let hmac = Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(token.credentials().expect("valid")))
        .retry(RetryConfig {
            initial_backoff: std::time::Duration::from_millis(1),
            ..RetryConfig::default()
        })
        .build()
        .expect("client");
    mock.inject(Fault::Unavailable); // one retried attempt in the trace too
    hmac.list_tokens().await.expect("list");
    hmac.revoke_token(&token.token_id).await.expect("revoke");
    let err = hmac.list_tokens().await.expect_err("revoked");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    // A path the caller builds, and a policy refusal, both name the route template only.
    let built = "tok-caller-built-7f3a";
    let req = http::Request::delete(format!("/auth/api-tokens/{built}"))
        .body(bytes::Bytes::new())
        .expect("request");
    hmac.send(req).await.expect("answered");
    let refused = "tok-refused-9c1e";
    let req = http::Request::delete(format!("/x/auth/api-tokens/{refused}"))
        .body(bytes::Bytes::new())
        .expect("request");
    let err = privy.send(req).await.expect_err("no HMAC credentials");
    assert!(!err.to_string().contains(refused), "{err}");

    let text = capture.out.lock().expect("lock").clone();
    if std::env::var_os("SHOW_TRACE").is_some() {
        eprintln!("{text}");
    }
    // The trace says what happened…
    for expected in [
        "span limitless.request",
        "method=POST",
        "path=\"/auth/api-tokens/derive\"",
        "path=\"/auth/api-tokens/{tokenId}\"",
        "refused by the route policy",
        "mode=Privy",
        "mode=HMAC",
        "status=201",
        "status=503",
        "attempt=2",
        "skew_ms=0",
        "retrying",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // …and nothing secret: credentials, signatures, tokens, bodies.
    let mut secrets = vec![
        token.secret().expose_secret().to_owned(),
        token.token_id.clone(),
        PARTNER_IDENTITY.to_owned(),
        PARTNER_TOKEN_SECRET.to_owned(),
        label.to_owned(),
        built.to_owned(),
        refused.to_owned(),
    ];
    for r in mock.requests() {
        for name in ["lmts-signature", "lmts-api-key", "identity"] {
            if let Some(v) = r.headers.get(name) {
                secrets.push(v.to_str().expect("ascii").to_owned());
            }
        }
        if !r.body.is_empty() {
            secrets.push(String::from_utf8_lossy(&r.body).into_owned());
        }
    }
    assert!(secrets.len() > 8);
    assert_clean(&text, &secrets);
}

#[tokio::test]
async fn errors_never_show_secrets() {
    // Tracing caches per call site whether anyone listens: a call site first reached on a
    // thread with no subscriber would stay silent for the other test too.
    let _guard = tracing::subscriber::set_default(Capture::default());
    let mock = MockServer::start().await.expect("mock");
    let secret_value = "c3VwZXItc2VjcmV0LWtleS12YWx1ZQ==";
    let client = Client::builder()
        .base_url(mock.base_url())
        .retry(RetryConfig::disabled())
        .credentials(
            Credentials::new()
                .with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid"))
                .with_hmac(
                    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"),
                ),
        )
        .build()
        .expect("client");
    let mut errors: Vec<Error> = Vec::new();
    // A derive response that does not decode but carries a secret.
    mock.inject(Fault::json(
        StatusCode::CREATED,
        format!(r#"{{"apiKey":"tok","secret":"{secret_value}","tokenId":7}}"#),
    ));
    errors.push(
        client
            .derive_token(None, None)
            .await
            .expect_err("undecodable"),
    );
    // Error statuses whose bodies carry a secret.
    for status in [
        StatusCode::BAD_REQUEST,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        mock.inject(Fault::json(
            status,
            format!(r#"{{"detail":"{secret_value}"}}"#),
        ));
        errors.push(client.list_tokens().await.expect_err("status"));
    }
    // Local refusals.
    let bare = Client::builder()
        .base_url(mock.base_url())
        .build()
        .expect("client");
    errors.push(bare.capabilities().await.expect_err("no identity"));
    errors.push(
        client
            .send(
                http::Request::get("http://127.0.0.2/x")
                    .body(Bytes::new())
                    .expect("req"),
            )
            .await
            .expect_err("foreign"),
    );
    errors.push(
        client
            .request(Method::GET, "bad", None)
            .await
            .expect_err("target"),
    );
    errors.push(Error::from(
        HmacCredentials::new(PARTNER_TOKEN_ID, &format!("{secret_value}\n"))
            .expect_err("malformed"),
    ));
    errors.push(Error::from(
        IdentityToken::new(format!("{PARTNER_IDENTITY}\r\n")).expect_err("CRLF"),
    ));
    let secrets = vec![
        secret_value.to_owned(),
        PARTNER_IDENTITY.to_owned(),
        PARTNER_TOKEN_SECRET.to_owned(),
        PARTNER_TOKEN_ID.to_owned(),
    ];
    for e in &errors {
        assert_clean(&format!("{e}\n{e:?}\n{e:#?}"), &secrets);
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            assert_clean(&format!("{s}\n{s:?}"), &secrets);
            source = s.source();
        }
    }
    assert!(errors.iter().any(|e| matches!(e, Error::Decode { .. })));
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::RateLimited { .. }))
    );
}

/// A socket's life, traced: the signed handshake, a reconnect, a refusal; no credential or
/// signature in the trace, nor in the errors.
#[cfg(feature = "ws")]
#[tokio::test(start_paused = true)]
async fn a_socket_traced_at_trace_level_shows_no_secret() {
    use limitless_auth::ws::SocketBuilder;
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let mock = MockServer::start().await.expect("mock");
    let creds = Credentials::new()
        .with_hmac(HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"));
    let mut socket = SocketBuilder::new(&mock.socket_url())
        .credentials(creds)
        .connect()
        .await
        .expect("open");
    assert_eq!(
        socket.recv().await.expect("event").expect("ok").name,
        "authenticated"
    );
    mock.inject(Fault::json(
        StatusCode::UNAUTHORIZED,
        r#"{"message":"Invalid or revoked API token"}"#,
    ));
    mock.drop_sockets();
    let err = loop {
        match socket.recv().await.expect("ends with an error") {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(err.is_refusal(), "{err:?}");
    let signatures: Vec<String> = mock
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("lmts-signature"))
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    assert_eq!(signatures.len(), 2);
    let trace = capture.out.lock().expect("lock").clone();
    assert!(trace.contains("socket reconnecting"), "{trace}");
    assert!(trace.contains("socket refused"), "{trace}");
    let mut secrets = vec![PARTNER_TOKEN_SECRET.to_owned(), PARTNER_TOKEN_ID.to_owned()];
    secrets.extend(signatures);
    assert_clean(&trace, &secrets);
    assert_clean(&format!("{err}\n{err:?}\n{socket:?}"), &secrets);
}

/// The reqwest middleware: a refusal and a request to another origin are logged, and the trace
/// of a signed session shows no secret.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middleware_traced_at_trace_level_shows_no_secret() {
    use limitless_auth::reqwest::AuthMiddleware;
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let mock = MockServer::start().await.expect("mock");
    let other = MockServer::start().await.expect("another origin");
    let creds = Credentials::new()
        .with_hmac(HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"));
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let client = reqwest_middleware::ClientBuilder::new(plain)
        .with(AuthMiddleware::new(creds).origin(&mock.base_url().parse().expect("url")))
        .build();
    let listed = client
        .get(format!("{}/auth/api-tokens", mock.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(listed.status(), StatusCode::OK);
    let refused = client
        .get(format!("{}/auth/api-tokens/capabilities", mock.base_url()))
        .send()
        .await
        .expect_err("no identity token");
    let elsewhere = client
        .get(format!("{}/auth/api-tokens", other.base_url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        elsewhere.status(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated"
    );
    let trace = capture.out.lock().expect("lock").clone();
    assert!(trace.contains("refused by the route policy"), "{trace}");
    assert!(trace.contains("not the API's origin"), "{trace}");
    let mut secrets = vec![PARTNER_TOKEN_SECRET.to_owned(), PARTNER_TOKEN_ID.to_owned()];
    secrets.extend(
        mock.requests()
            .iter()
            .filter_map(|r| r.headers.get("lmts-signature"))
            .map(|v| v.to_str().expect("ascii").to_owned()),
    );
    assert_eq!(secrets.len(), 3, "one signed request");
    assert_clean(&trace, &secrets);
    assert_clean(&format!("{refused}\n{refused:?}"), &secrets);
}
