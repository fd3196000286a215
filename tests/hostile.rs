//! Hostile input through the client: each case ends in a clear, typed error, and nothing is
//! sent (or, for hostile responses, nothing is mistaken for success). Malformed credentials
//! are the credential types' own unit tests; bodies and targets refused by the layer are in
//! `tests/policy.rs`.
#![cfg(all(feature = "client", feature = "mock"))]

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use limitless_auth::Scope;
use limitless_auth::client::{Client, Error, RetryConfig};
use limitless_auth::mock::{
    Fault, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET,
};
use limitless_auth::{BodyError, Credentials, HmacCredentials, IdentityToken};

async fn mock_and_client() -> (MockServer, Client) {
    let mock = MockServer::start().await.expect("mock");
    let client = Client::builder()
        .base_url(mock.base_url())
        .retry(RetryConfig::disabled())
        .credentials(
            Credentials::new()
                .with_hmac(
                    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"),
                )
                .with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid")),
        )
        .body_limit(1024)
        .response_limit(64 * 1024)
        .build()
        .expect("client");
    (mock, client)
}

#[tokio::test]
async fn authority_form_and_asterisk_form_targets() {
    let (mock, client) = mock_and_client().await;
    for target in ["api.limitless.exchange:443", "*"] {
        let req = Request::builder()
            .method(Method::OPTIONS)
            .uri(target)
            .body(Bytes::new())
            .expect("request");
        assert!(
            matches!(client.send(req).await, Err(Error::InvalidRequest(_))),
            "{target}"
        );
    }
    assert_eq!(mock.arrivals(), 0);
}

#[tokio::test]
async fn foreign_hosts_get_no_credentials() {
    let (mock, client) = mock_and_client().await;
    for url in [
        "http://evil.example/orders",
        "https://127.0.0.1/orders",
        "http://localhost/orders",
    ] {
        let req = Request::get(url).body(Bytes::new()).expect("request");
        assert!(
            matches!(client.send(req).await, Err(Error::ForeignOrigin { .. })),
            "{url}"
        );
    }
    assert_eq!(mock.arrivals(), 0);
}

#[tokio::test]
async fn body_over_the_limit_by_header() {
    let (mock, client) = mock_and_client().await;
    let req = Request::post("/orders")
        .header("content-length", "999999")
        .body(Bytes::from_static(b"{}"))
        .expect("request");
    assert!(matches!(
        client.send(req).await,
        Err(Error::Body(BodyError::TooLargeDeclared {
            declared: 999_999,
            limit: 1024
        }))
    ));
    let req = Request::post("/orders")
        .body(Bytes::from(vec![b'x'; 1025]))
        .expect("request");
    assert!(matches!(
        client.send(req).await,
        Err(Error::Body(BodyError::TooLargeDeclared {
            declared: 1025,
            ..
        }))
    ));
    assert_eq!(mock.arrivals(), 0);
}

#[tokio::test]
async fn malformed_json_in_a_success_response() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::json(StatusCode::OK, "{partnerProfileId: 42}"));
    assert!(matches!(
        client.capabilities().await,
        Err(Error::Decode {
            problem: "malformed JSON",
            ..
        })
    ));
}

#[tokio::test]
async fn truncated_json_in_a_success_response() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::json(
        StatusCode::OK,
        r#"[{"tokenId":"a","label":null,"sco"#,
    ));
    assert!(matches!(
        client.list_tokens().await,
        Err(Error::Decode {
            problem: "truncated JSON",
            ..
        })
    ));
}

#[tokio::test]
async fn huge_json_response() {
    let (mock, client) = mock_and_client().await;
    let huge = format!("[{}]", vec!["1"; 40_000].join(","));
    mock.inject(Fault::json(StatusCode::OK, huge));
    assert!(matches!(
        client.list_tokens().await,
        Err(Error::ResponseTooLarge {
            status: StatusCode::OK,
            limit: 65_536
        })
    ));
}

#[tokio::test]
async fn a_2xx_with_an_undecodable_body() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::json(StatusCode::OK, r#"{"tokens":[]}"#));
    match client.list_tokens().await {
        Err(Error::Decode {
            status,
            expected,
            problem,
            body,
            ..
        }) => {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(expected, "Vec<ApiToken>");
            assert_eq!(problem, "unexpected content");
            assert_eq!(body.0.as_ref(), br#"{"tokens":[]}"#);
        }
        other => panic!("{other:?}"),
    }
    mock.inject(Fault::json(StatusCode::OK, ""));
    assert!(matches!(
        client.capabilities().await,
        Err(Error::Decode { .. })
    ));
}

#[tokio::test]
async fn a_non_json_error_body() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream overloaded\n",
    ));
    match client.list_tokens().await {
        Err(Error::Status {
            status, message, ..
        }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(message.as_deref(), Some("upstream overloaded"));
        }
        other => panic!("{other:?}"),
    }
    mock.inject(Fault::Respond {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: vec![],
        body: Bytes::from_static(&[0xff, 0x00, 0xfe]),
    });
    assert!(matches!(
        client.list_tokens().await,
        Err(Error::Status { message: None, .. })
    ));
}

#[tokio::test]
async fn garbage_retry_after() {
    let (mock, client) = mock_and_client().await;
    for garbage in ["-5", "tomorrow", "1e3", "Sun, 99 Nov 1994 08:49:37 GMT"] {
        mock.inject(Fault::TooManyRequests {
            retry_after: Some(garbage.into()),
            body_seconds: None,
        });
        assert!(
            matches!(
                client.list_tokens().await,
                Err(Error::RateLimited {
                    retry_after: None,
                    ..
                })
            ),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn garbage_date_headers() {
    let (mock, client) = mock_and_client().await;
    for garbage in [
        "0",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Monday",
        "Sun, 06 Nov 99999 08:49:37 GMT",
    ] {
        mock.inject(Fault::Respond {
            status: StatusCode::OK,
            headers: vec![
                (
                    HeaderName::from_static("date"),
                    HeaderValue::from_static(garbage),
                ),
                (
                    HeaderName::from_static("content-type"),
                    HeaderValue::from_static("application/json"),
                ),
            ],
            body: Bytes::from_static(b"[]"),
        });
        assert!(
            client.list_tokens().await.expect("decodes").is_empty(),
            "{garbage}"
        );
        assert_eq!(client.clock_offset_millis(), 0, "{garbage}");
    }
}

#[tokio::test]
async fn unknown_scopes_are_kept() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::json(
        StatusCode::OK,
        r#"{"partnerProfileId":42,"tokenManagementEnabled":true,"allowedScopes":["trading","🚀",""]}"#,
    ));
    let caps = client.capabilities().await.expect("decodes");
    assert_eq!(
        caps.allowed_scopes,
        vec![
            Scope::Trading,
            Scope::Other("🚀".into()),
            Scope::Other(String::new())
        ]
    );
    assert!(!caps.allows(&Scope::Withdrawal));
}

#[tokio::test]
async fn scope_values_of_the_wrong_type_are_a_decode_error() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::json(
        StatusCode::OK,
        r#"{"partnerProfileId":42,"tokenManagementEnabled":true,"allowedScopes":[1]}"#,
    ));
    assert!(matches!(
        client.capabilities().await,
        Err(Error::Decode { .. })
    ));
}

#[tokio::test]
async fn a_dropped_connection_on_a_post() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::DropConnection);
    let err = client
        .request(Method::POST, "/orders", Some(Bytes::from_static(b"{}")))
        .await
        .expect_err("dropped");
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(!err.is_local());
}

#[tokio::test]
async fn invalid_client_configuration() {
    for url in [
        "",
        "not a url",
        "ftp://x",
        "https://user:pw@host",
        "https://h/?q",
    ] {
        assert!(
            matches!(
                Client::builder().base_url(url).build(),
                Err(Error::InvalidRequest(_))
            ),
            "{url:?}"
        );
    }
    assert!(matches!(
        Client::builder().user_agent("bad\r\nagent").build(),
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn url_passwords_never_reach_errors_or_debug_output() {
    let builder = Client::builder().base_url("https://user:hunter2@api.example");
    assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
    let err = builder.build().expect_err("credentials in the URL");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    assert!(err.to_string().contains("https://***@api.example"), "{err}");
}

#[tokio::test]
async fn dot_segments_in_token_ids_cannot_reach_another_route() {
    let (mock, client) = mock_and_client().await;
    for (id, target) in [
        ("..", "/auth/api-tokens/%2E%2E"),
        (".", "/auth/api-tokens/%2E"),
        ("%2E%2E", "/auth/api-tokens/%252E%252E"),
        ("../derive", "/auth/api-tokens/..%2Fderive"),
    ] {
        let err = client.revoke_token(id).await.expect_err("not a token");
        assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST), "{id}: {err}");
        let rec = mock.requests().pop().expect("recorded");
        assert_eq!(rec.target, target);
        assert_eq!(rec.method, Method::DELETE);
    }
}

#[tokio::test]
async fn an_undecodable_revoke_answer_names_its_type_cleanly() {
    let (mock, client) = mock_and_client().await;
    mock.inject(Fault::json(StatusCode::OK, r#"{"msg":1}"#));
    let err = client
        .revoke_token(PARTNER_TOKEN_ID)
        .await
        .expect_err("no message field");
    match &err {
        Error::Decode { expected, .. } => assert_eq!(expected, "RevokeResponse"),
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains("closure"), "{err}");
}

#[tokio::test]
async fn token_ids_stay_out_of_policy_refusals() {
    // Only an identity token: the HMAC route is refused locally, naming the route template.
    let client = Client::builder()
        .base_url("http://127.0.0.1:9")
        .credentials(
            Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid")),
        )
        .build()
        .expect("client");
    let err = client
        .revoke_token("tok_SECRETID")
        .await
        .expect_err("no HMAC credentials");
    assert!(matches!(err, Error::Policy(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRETID"), "{shown}");
    assert!(
        err.to_string()
            .starts_with("DELETE /auth/api-tokens/{tokenId} accepts"),
        "{err}"
    );
    // A caller-built path gets the same treatment.
    let req = Request::delete("/auth/api-tokens/tok_SECRETID/x")
        .body(Bytes::new())
        .expect("request");
    let err = client.send(req).await.expect_err("refused");
    assert!(!err.to_string().contains("SECRETID"), "{err}");
}

#[tokio::test]
async fn the_mock_answers_413_to_an_oversized_body() {
    let mock = MockServer::start().await.expect("mock");
    let client = Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(
            HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"),
        ))
        .body_limit(8 << 20)
        .retry(RetryConfig::disabled())
        .build()
        .expect("client");
    let resp = client
        .request(
            Method::POST,
            "/orders",
            Some(Bytes::from(vec![b' '; 5 << 20])),
        )
        .await
        .expect("answered");
    assert_eq!(resp.status, StatusCode::PAYLOAD_TOO_LARGE);
    let rec = mock.requests().pop().expect("recorded");
    assert_eq!(rec.status, Some(StatusCode::PAYLOAD_TOO_LARGE));
    assert_eq!(rec.signature_valid, None, "never verified");
}

#[tokio::test]
async fn the_mock_routes_like_the_policy() {
    let (mock, client) = mock_and_client().await;
    for target in ["/auth/api-tokens/", "/AUTH/Api-Tokens", "/auth/api-tokens"] {
        let resp = client
            .request(Method::GET, target, None)
            .await
            .expect("answered");
        assert_eq!(resp.status, StatusCode::OK, "{target}");
        assert_eq!(
            mock.requests().pop().expect("recorded").signature_valid,
            Some(true)
        );
    }
    let resp = client
        .request(Method::GET, "/Auth/API-Tokens/Capabilities/", None)
        .await
        .expect("answered");
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        mock.requests()
            .pop()
            .expect("recorded")
            .headers
            .contains_key("identity")
    );
}

#[tokio::test]
async fn recorded_requests_redact_authentication_headers() {
    let (mock, client) = mock_and_client().await;
    client.list_tokens().await.expect("listed");
    client.capabilities().await.expect("capabilities");
    for rec in mock.requests() {
        let shown = format!("{rec:?}");
        for name in ["lmts-signature", "identity"] {
            if let Some(v) = rec.headers.get(name) {
                let v = v.to_str().expect("ascii");
                assert!(!shown.contains(v), "{shown}");
                assert!(shown.contains("<redacted>"), "{shown}");
            }
        }
        assert!(!shown.contains(PARTNER_IDENTITY), "{shown}");
    }
}
