//! The `lmts` binary driven as a process, per its command-line contract.
#![cfg(feature = "cli")]

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::vectors;
use limitless_auth::Credentials;
use limitless_auth::Timestamp;

fn lmts(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lmts"));
    cmd.args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("lmts starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    child.wait_with_output().expect("lmts finishes")
}

/// `export NAME=value` as `(NAME, value)`.
fn export(line: &str) -> (String, String) {
    let (k, v) = line
        .strip_prefix("export ")
        .and_then(|kv| kv.split_once('='))
        .expect("export line");
    (k.to_owned(), v.to_owned())
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("UTF-8 output")
}

/// Asserts a local failure: exit 2, nothing on stdout, one line on stderr.
fn assert_local_error(out: &Output, contains: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(contains), "{err}");
}

#[test]
fn sign_reproduces_every_vector() {
    for v in vectors() {
        let env = [
            ("LMTS_TOKEN_ID", v.token_id.as_str()),
            ("LMTS_TOKEN_SECRET", v.secret_b64.as_str()),
        ];
        let args = [
            "sign",
            &v.method,
            &v.path_and_query,
            "--body",
            &v.body,
            "--timestamp",
            &v.timestamp,
        ];
        let out = lmts(&args, &env, None);
        match &v.expected_signature {
            Some(sig) => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{}: {}",
                    v.name,
                    text(&out.stderr)
                );
                assert_eq!(
                    text(&out.stdout),
                    format!(
                        "lmts-api-key: {}\nlmts-timestamp: {}\nlmts-signature: {sig}\n",
                        v.token_id, v.timestamp
                    ),
                    "{}",
                    v.name
                );
            }
            None => assert_local_error(
                &out,
                "LMTS_TOKEN_SECRET: the token secret is not standard padded base64",
            ),
        }
    }
}

const ID: &str = "dGVzdC10b2tlbi0x";
const SECRET: &str = "1iT1SdUtRsG+J+qMN3tUaXJVJVMCXfrXWceK3FtsaMs=";

fn env() -> [(&'static str, &'static str); 2] {
    [("LMTS_TOKEN_ID", ID), ("LMTS_TOKEN_SECRET", SECRET)]
}

#[test]
fn sign_reads_the_body_from_a_file_and_from_stdin() {
    let body = "{\n  \"displayName\": \"Zoë 🚀 用户\",\n  \"note\": \"line1\\nline2 \\\"quoted\\\" tab\\t\",\n  \"createServerWallet\": true\n}\n";
    let expected = "lmts-signature: 4cIS9QYtqS0IMlNE10/SdSW3hKzEInS7diCE2utkWHw=\n";
    let dir = std::env::temp_dir().join(format!("lmts-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("body.json");
    std::fs::write(&file, body).expect("write body");
    let common = [
        "sign",
        "POST",
        "/profiles/partner-accounts",
        "--timestamp",
        "2026-03-23T12:34:56.789Z",
    ];
    let file_arg = file.to_str().expect("utf-8 path");
    let from_file = lmts(
        &[&common[..], &["--body-file", file_arg]].concat(),
        &env(),
        None,
    );
    assert!(
        text(&from_file.stdout).ends_with(expected),
        "{}",
        text(&from_file.stderr)
    );
    let from_stdin = lmts(
        &[&common[..], &["--body-file", "-"]].concat(),
        &env(),
        Some(body.as_bytes()),
    );
    assert!(
        text(&from_stdin.stdout).ends_with(expected),
        "{}",
        text(&from_stdin.stderr)
    );
    let missing = lmts(
        &[&common[..], &["--body-file", "/nonexistent/body"]].concat(),
        &env(),
        None,
    );
    assert_local_error(&missing, "cannot read the body from /nonexistent/body");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sign_prints_curl_arguments() {
    let out = lmts(
        &[
            "sign",
            "get",
            "/orders",
            "--timestamp",
            "2026-03-23T12:34:56.789Z",
            "--curl",
        ],
        &[
            ("LMTS_TOKEN_ID", ID),
            (
                "LMTS_TOKEN_SECRET",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!(
            "-H 'lmts-api-key: {ID}' -H 'lmts-timestamp: 2026-03-23T12:34:56.789Z' \
             -H 'lmts-signature: VRFEOihUCB68L5y2EFQdFkMng+o6cVnHo6euNPlEFZ0='\n"
        )
    );
}

#[test]
fn sign_uses_the_current_time_by_default() {
    let out = lmts(&["sign", "DELETE", "/auth/api-tokens/x"], &env(), None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3);
    let ts = lines[1]
        .strip_prefix("lmts-timestamp: ")
        .expect("timestamp line");
    let parsed = Timestamp::parse(ts).expect("well-formed timestamp");
    let now = limitless_auth::Clock::now_millis(&limitless_auth::SystemClock);
    assert!((now - parsed.unix_millis()).abs() < 60_000);
    let sig = lines[2]
        .strip_prefix("lmts-signature: ")
        .expect("signature line");
    assert!(common::signature_matches(
        SECRET,
        ts,
        "DELETE",
        "/auth/api-tokens/x",
        b"",
        sig
    ));
}

#[test]
fn sign_reads_only_the_hmac_variables() {
    let mut vars = env().to_vec();
    // Refused by every other command (a token given with its prefix, a key with a CR).
    vars.push(("LIMITLESS_IDENTITY_TOKEN", "Bearer x"));
    vars.push(("LIMITLESS_API_KEY", "lmts key"));
    let out = lmts(
        &[
            "sign",
            "GET",
            "/orders",
            "--timestamp",
            "2026-03-23T12:34:56.789Z",
        ],
        &vars,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    let out = lmts(
        &[
            "request",
            "GET",
            "/orders",
            "--base-url",
            "http://127.0.0.1:9",
        ],
        &vars,
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "the other commands do read them"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("LIMITLESS_IDENTITY_TOKEN"), "{stderr}");
}

#[test]
fn sign_refuses_bad_input_with_exit_2() {
    assert_local_error(
        &lmts(&["sign", "GET", "/orders"], &[], None),
        "set LMTS_TOKEN_ID and LMTS_TOKEN_SECRET",
    );
    assert_local_error(
        &lmts(&["sign", "GET", "/orders"], &[("LMTS_TOKEN_ID", ID)], None),
        "LMTS_TOKEN_ID is set but LMTS_TOKEN_SECRET is not",
    );
    assert_local_error(
        &lmts(
            &["sign", "GET", "/orders"],
            &[
                ("LMTS_TOKEN_ID", ID),
                ("LMTS_TOKEN_SECRET", "c2VjcmV0LWtleQ"),
            ],
            None,
        ),
        "its '=' padding is missing",
    );
    assert_local_error(
        &lmts(&["sign", "GET", "orders"], &env(), None),
        "is not a request-target",
    );
    assert_local_error(
        &lmts(&["sign", "GET", "/a b"], &env(), None),
        "is not a request-target",
    );
    assert_local_error(
        &lmts(&["sign", "G(T", "/orders"], &env(), None),
        "is not a valid HTTP method",
    );
    assert_local_error(
        &lmts(
            &["sign", "GET", "/orders", "--timestamp", "a b"],
            &env(),
            None,
        ),
        "--timestamp must be non-empty visible ASCII",
    );
    let out = lmts(&["sign", "GET"], &env(), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let out = lmts(
        &["sign", "GET", "/x", "--body", "a", "--body-file", "-"],
        &env(),
        None,
    );
    assert_eq!(out.status.code(), Some(2));
}

mod against_the_mock {
    use super::*;
    use limitless_auth::mock::{
        MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET,
    };
    use std::io::{BufRead as _, BufReader};

    /// Runs `lmts` off the async runtime so that the in-process mock keeps serving.
    async fn lmts_async(args: Vec<String>, env: Vec<(String, String)>) -> Output {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            lmts(&args, &env, None)
        })
        .await
        .expect("lmts ran")
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn json(out: &Output) -> serde_json::Value {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// The event names of `lmts ws` output, each line checked to be `{"event", "data"}`.
    fn events(out: &Output) -> Vec<String> {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                let keys: Vec<&String> = v.as_object().expect("an object").keys().collect();
                assert_eq!(keys, ["data", "event"], "{line}");
                v["event"].as_str().expect("a name").to_owned()
            })
            .collect()
    }

    #[test]
    fn ws_with_the_embedded_mock_prints_each_event_and_stops_after_count() {
        let out = lmts(
            &[
                "ws",
                "--mock",
                "--subscribe",
                r#"subscribe_market_prices={"marketSlugs":["btc-100k"]}"#,
                "--subscribe",
                "subscribe_order_events={}",
                "--count",
                "3",
            ],
            &[],
            None,
        );
        assert_eq!(
            events(&out),
            ["authenticated", "newPriceData", "orderEvent"]
        );
        let prices: serde_json::Value =
            serde_json::from_str(text(&out.stdout).lines().nth(1).expect("line")).expect("JSON");
        assert_eq!(prices["data"]["marketAddress"], "btc-100k");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ws_signs_with_the_environment_token_or_connects_unsigned() {
        let mock = MockServer::start().await.expect("mock");
        let url = mock.socket_url();
        let env = strings(&[
            "LMTS_TOKEN_ID",
            PARTNER_TOKEN_ID,
            "LMTS_TOKEN_SECRET",
            PARTNER_TOKEN_SECRET,
        ]);
        let env = vec![
            (env[0].clone(), env[1].clone()),
            (env[2].clone(), env[3].clone()),
        ];
        let out = lmts_async(strings(&["ws", "--url", &url, "--count", "1"]), env).await;
        assert_eq!(events(&out), ["authenticated"]);
        let public = strings(&[
            "ws",
            "--url",
            &url,
            "--subscribe",
            "subscribe_market_prices={}",
            "--count",
            "1",
        ]);
        let out = lmts_async(public, Vec::new()).await;
        assert_eq!(
            events(&out),
            ["newPriceData"],
            "no authenticated event unsigned"
        );
        let seen: Vec<_> = mock
            .requests()
            .into_iter()
            .filter(|r| r.path() == "/socket.io/")
            .collect();
        assert_eq!(seen.len(), 2);
        let h = &seen[0].headers;
        let ts = h["lmts-timestamp"].to_str().expect("ascii");
        let sig = h["lmts-signature"].to_str().expect("ascii");
        assert!(common::signature_matches(
            PARTNER_TOKEN_SECRET,
            ts,
            "GET",
            &seen[0].target,
            b"",
            sig
        ));
        assert!(!seen[1].headers.contains_key("lmts-signature"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ws_exits_1_on_a_refusal_without_retrying_and_2_when_nothing_was_sent() {
        let mock = MockServer::start().await.expect("mock");
        let url = mock.socket_url();
        let wrong = vec![
            ("LMTS_TOKEN_ID".to_owned(), PARTNER_TOKEN_ID.to_owned()),
            (
                "LMTS_TOKEN_SECRET".to_owned(),
                "d3Jvbmctc2VjcmV0".to_owned(),
            ),
        ];
        let out = lmts_async(strings(&["ws", "--url", &url, "--count", "1"]), wrong).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stderr),
            "lmts: the server refused the socket: Invalid signature\n"
        );
        assert_eq!(mock.requests().len(), 1, "refused once, never retried");

        let unreachable = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("ws://{}", l.local_addr().expect("addr"))
        };
        let out = lmts_async(strings(&["ws", "--url", &unreachable]), Vec::new()).await;
        assert_local_error(&out, "could not open the socket");
        let out = lmts_async(
            strings(&["ws", "--url", "https://ws.limitless.exchange"]),
            Vec::new(),
        )
        .await;
        assert_local_error(&out, "the scheme is not ws or wss");
        let half = vec![("LMTS_TOKEN_ID".to_owned(), PARTNER_TOKEN_ID.to_owned())];
        let out = lmts_async(strings(&["ws", "--url", &url]), half).await;
        assert_local_error(&out, "LMTS_TOKEN_SECRET is not");
        for bad in ["subscribe_order_events", "={}", "subscribe_order_events={"] {
            let out = lmts_async(
                strings(&["ws", "--url", &url, "--subscribe", bad]),
                Vec::new(),
            )
            .await;
            assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
            assert!(out.stdout.is_empty());
        }
        assert_eq!(mock.requests().len(), 1, "nothing more was sent");
    }

    /// A socket lost after it was open is reconnected, each attempt noted on stderr; when the
    /// attempts allowed fail, the command gives up with exit status 1.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ws_reconnects_a_lost_socket_and_exits_1_when_it_gives_up() {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        // One connection, served and then closed; every later one is closed unanswered, so
        // every reconnect fails.
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                while let Ok((later, _)) = listener.accept().await {
                    drop(later);
                }
            });
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            let open = r#"0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#;
            let _ = ws.send(Message::text(open)).await;
            while let Some(Ok(Message::Text(text))) = ws.next().await {
                if text.as_str().starts_with("40/markets") {
                    for frame in [r#"40/markets,{"sid":"n"}"#, r#"42/markets,["hello",{}]"#] {
                        let _ = ws.send(Message::text(frame)).await;
                    }
                    let _ = ws.close(None).await;
                    return;
                }
            }
        });
        let args = strings(&["ws", "--url", &url, "--max-attempts", "2"]);
        let out = lmts_async(args, Vec::new()).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "{\"event\":\"hello\",\"data\":{}}\n");
        let stderr = text(&out.stderr);
        let notes: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("reconnecting in"))
            .collect();
        assert_eq!(notes.len(), 2, "{stderr}");
        assert!(notes[0].ends_with("(attempt 1)"), "{stderr}");
        assert!(notes[1].ends_with("(attempt 2)"), "{stderr}");
        assert!(
            stderr.contains("2 reconnect attempts failed"),
            "gave up: {stderr}"
        );
    }

    #[test]
    fn capabilities_with_the_embedded_mock_needs_no_setup() {
        let out = lmts(&["capabilities", "--mock"], &[], None);
        let v = json(&out);
        assert_eq!(v["partnerProfileId"], 42);
        assert_eq!(v["tokenManagementEnabled"], true);
        assert_eq!(
            v["allowedScopes"],
            serde_json::json!([
                "trading",
                "account_creation",
                "delegated_signing",
                "withdrawal"
            ])
        );
        let out = lmts(
            &["capabilities", "--mock"],
            &[("LIMITLESS_IDENTITY_TOKEN", "mock-user-identity")],
            None,
        );
        let v = json(&out);
        assert_eq!(v["partnerProfileId"], 7);
        assert_eq!(v["allowedScopes"], serde_json::json!(["trading"]));
    }

    #[test]
    fn request_prints_the_body_or_fails_with_exit_1() {
        let out = lmts(&["request", "GET", "/markets/active", "--mock"], &[], None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["totalMarketsCount"], 1);

        let out = lmts(&["request", "GET", "/no/such/route", "--mock"], &[], None);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert_eq!(
            text(&out.stderr),
            "lmts: 404 Not Found: Cannot GET /no/such/route\n"
        );

        let out = lmts(
            &["request", "GET", "/auth/api-tokens/capabilities", "--mock"],
            &[("LIMITLESS_IDENTITY_TOKEN", "unknown-identity")],
            None,
        );
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            "lmts: 401 Unauthorized: Requires Privy authentication\n"
        );
    }

    #[test]
    fn bad_arguments_exit_2() {
        for args in [
            &["capabilities", "--mock", "--base-url", "http://127.0.0.1:1"][..],
            &["tokens"],
            &["nonsense"],
            &["request", "GET"],
            &["mock", "--addr", "not-an-address"],
        ] {
            let out = lmts(args, &[], None);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert!(out.stdout.is_empty(), "{args:?}");
        }
        assert_local_error(
            &lmts(
                &["capabilities", "--base-url", "ftp://x"],
                &[("LIMITLESS_IDENTITY_TOKEN", "t")],
                None,
            ),
            "must be http or https",
        );
        assert_local_error(
            &lmts(&["request", "GET", "/a b", "--mock"], &[], None),
            "is not a request-target",
        );
        assert_local_error(
            &lmts(
                &["tokens", "derive", "--scope", "delegated_signing", "--mock"],
                &[],
                None,
            ),
            "the delegated_signing scope requires the trading scope; nothing was sent",
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_legacy_api_key_alone_authenticates_ordinary_routes_and_only_those() {
        let mock = MockServer::start().await.expect("mock");
        let base = mock.base_url();
        let key = vec![(
            "LIMITLESS_API_KEY".to_owned(),
            limitless_auth::mock::LEGACY_API_KEY.to_owned(),
        )];
        let out = lmts_async(
            strings(&["request", "GET", "/auth/api-tokens", "--base-url", &base]),
            key.clone(),
        )
        .await;
        let listed = json(&out);
        assert!(listed.as_array().is_some_and(|a| !a.is_empty()), "{listed}");
        let seen = mock.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].headers["x-api-key"],
            limitless_auth::mock::LEGACY_API_KEY
        );
        assert!(!seen[0].headers.contains_key("lmts-signature"));
        // A Privy-only route does not take the key: refused, nothing sent.
        let out = lmts_async(strings(&["capabilities", "--base-url", &base]), key).await;
        assert_local_error(&out, "accepts Privy only");
        assert_eq!(mock.requests().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_identity_is_a_local_refusal_with_nothing_sent() {
        let mock = MockServer::start().await.expect("mock");
        let out = lmts_async(
            strings(&["capabilities", "--base-url", &mock.base_url()]),
            vec![],
        )
        .await;
        assert_local_error(
            &out,
            "GET /auth/api-tokens/capabilities accepts Privy only, but no Privy identity token (LIMITLESS_IDENTITY_TOKEN) is configured; nothing was sent",
        );
        assert_eq!(mock.requests().len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_derive_list_revoke_and_a_signed_request() {
        let mock = MockServer::start().await.expect("mock");
        let base = mock.base_url();
        let identity = vec![(
            "LIMITLESS_IDENTITY_TOKEN".to_owned(),
            PARTNER_IDENTITY.to_owned(),
        )];
        let out = lmts_async(
            strings(&[
                "tokens",
                "derive",
                "--label",
                "cli bot",
                "--scope",
                "trading",
                "--base-url",
                &base,
            ]),
            identity,
        )
        .await;
        let derived = json(&out);
        let id = derived["tokenId"].as_str().expect("token id").to_owned();
        let secret = derived["secret"].as_str().expect("secret").to_owned();
        assert_eq!(derived["apiKey"], id.as_str());
        assert_eq!(derived["scopes"], serde_json::json!(["trading"]));
        assert!(text(&out.stderr).contains("store the secret now"));

        let hmac = vec![
            ("LMTS_TOKEN_ID".to_owned(), id.clone()),
            ("LMTS_TOKEN_SECRET".to_owned(), secret.clone()),
        ];
        let list = json(
            &lmts_async(
                strings(&["tokens", "list", "--base-url", &base]),
                hmac.clone(),
            )
            .await,
        );
        let listed: Vec<&str> = list
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|t| t["tokenId"].as_str())
            .collect();
        assert!(listed.contains(&id.as_str()) && listed.contains(&PARTNER_TOKEN_ID));

        let out = lmts_async(
            strings(&[
                "request",
                "POST",
                "/orders?x=1",
                "--body",
                r#"{"clientOrderId":"cli-1"}"#,
                "--base-url",
                &base,
            ]),
            hmac.clone(),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let rec = mock.requests().pop().expect("recorded");
        assert_eq!(rec.target, "/orders?x=1");
        assert_eq!(rec.body.as_ref(), br#"{"clientOrderId":"cli-1"}"#);
        assert_eq!(rec.signature_valid, Some(true));

        let revoke = json(
            &lmts_async(
                strings(&["tokens", "revoke", PARTNER_TOKEN_ID, "--base-url", &base]),
                hmac.clone(),
            )
            .await,
        );
        assert_eq!(revoke["message"], "API token revoked successfully");
        let out = lmts_async(
            strings(&["tokens", "revoke", PARTNER_TOKEN_ID, "--base-url", &base]),
            hmac,
        )
        .await;
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            "lmts: 400 Bad Request: API token not found or already revoked\n"
        );
        let seeded = vec![
            ("LMTS_TOKEN_ID".to_owned(), PARTNER_TOKEN_ID.to_owned()),
            (
                "LMTS_TOKEN_SECRET".to_owned(),
                PARTNER_TOKEN_SECRET.to_owned(),
            ),
        ];
        let out = lmts_async(strings(&["tokens", "list", "--base-url", &base]), seeded).await;
        assert_eq!(out.status.code(), Some(1), "the revoked token is refused");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn content_types_dot_segments_and_the_timeout() {
        let mock = MockServer::start().await.expect("mock");
        let base = mock.base_url();
        let hmac = vec![
            ("LMTS_TOKEN_ID".to_owned(), PARTNER_TOKEN_ID.to_owned()),
            (
                "LMTS_TOKEN_SECRET".to_owned(),
                PARTNER_TOKEN_SECRET.to_owned(),
            ),
        ];
        let dir = std::env::temp_dir().join(format!("lmts-ct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("body.bin");
        std::fs::write(&file, [0u8, 159, 146, 150]).expect("write");
        let file = file.to_str().expect("path").to_owned();
        let cases: [(Vec<&str>, Option<&str>); 3] = [
            (vec!["--body", "{}"], Some("application/json")),
            (vec!["--body-file", &file], None),
            (
                vec![
                    "--body-file",
                    &file,
                    "--content-type",
                    "application/octet-stream",
                ],
                Some("application/octet-stream"),
            ),
        ];
        for (extra, expected) in cases {
            let mut args = strings(&["request", "POST", "/orders", "--base-url", &base]);
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            lmts_async(args, hmac.clone()).await;
            let rec = mock.requests().pop().expect("recorded");
            assert_eq!(
                rec.headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                expected,
                "{extra:?}"
            );
            assert_eq!(rec.signature_valid, Some(true));
        }
        std::fs::remove_dir_all(&dir).ok();

        // A token id of `..` cannot turn the revoke into another route.
        for (id, target) in [
            ("..", "/auth/api-tokens/%2E%2E"),
            (".", "/auth/api-tokens/%2E"),
        ] {
            let out = lmts_async(
                strings(&["tokens", "revoke", id, "--base-url", &base]),
                hmac.clone(),
            )
            .await;
            assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
            assert_eq!(mock.requests().pop().expect("recorded").target, target);
        }

        // A server that never answers: --timeout bounds each attempt; the GET was sent.
        let (addr, _) = common::raw::silent().await;
        let started = std::time::Instant::now();
        let out = lmts_async(
            strings(&[
                "request",
                "GET",
                "/markets/active",
                "--base-url",
                &format!("http://{addr}"),
                "--timeout",
                "0.3",
            ]),
            hmac,
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("no complete response within 300ms"));
        assert!(started.elapsed() < std::time::Duration::from_secs(8));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_rotate_prints_the_new_credentials_and_revokes_the_old() {
        let mock = MockServer::start().await.expect("mock");
        let base = mock.base_url();
        let env = vec![
            ("LMTS_TOKEN_ID".to_owned(), PARTNER_TOKEN_ID.to_owned()),
            (
                "LMTS_TOKEN_SECRET".to_owned(),
                PARTNER_TOKEN_SECRET.to_owned(),
            ),
            (
                "LIMITLESS_IDENTITY_TOKEN".to_owned(),
                PARTNER_IDENTITY.to_owned(),
            ),
        ];
        let out = lmts_async(
            strings(&[
                "tokens",
                "rotate",
                "--label",
                "rotated",
                "--base-url",
                &base,
            ]),
            env.clone(),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let exports: Vec<(String, String)> = stdout.lines().map(export).collect();
        let names: Vec<&str> = exports.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["LMTS_TOKEN_ID", "LMTS_TOKEN_SECRET", "LMTS_TOKEN_SCOPES"]
        );
        assert_ne!(exports[0].1, PARTNER_TOKEN_ID);
        assert_eq!(exports[2].1, "trading");
        assert!(text(&out.stderr).contains("which is revoked"));
        // The new credentials work; the old ones are revoked.
        let out = lmts_async(
            strings(&["tokens", "list", "--base-url", &base]),
            exports.clone(),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = lmts_async(strings(&["tokens", "list", "--base-url", &base]), env).await;
        assert_eq!(out.status.code(), Some(1), "the old token is refused");
        // Without an identity token nothing is derived: exit 2.
        let out = lmts_async(
            strings(&["tokens", "rotate", "--base-url", &base]),
            exports[..2].to_vec(),
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("derive step"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn token_scopes_and_denied_scopes_from_the_environment() {
        let mock = MockServer::start().await.expect("mock");
        let base = mock.base_url();
        let with = |extra: &[(&str, &str)]| {
            let mut env = vec![
                ("LMTS_TOKEN_ID".to_owned(), PARTNER_TOKEN_ID.to_owned()),
                (
                    "LMTS_TOKEN_SECRET".to_owned(),
                    PARTNER_TOKEN_SECRET.to_owned(),
                ),
            ];
            env.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            env
        };
        let withdraw = strings(&[
            "request",
            "POST",
            "/portfolio/withdraw",
            "--body",
            "{}",
            "--base-url",
            &base,
        ]);
        // Known scopes without `withdrawal`: refused locally, exit 2.
        let out = lmts_async(withdraw.clone(), with(&[("LMTS_TOKEN_SCOPES", "trading")])).await;
        assert_local_error(&out, "needs the withdrawal scope");
        assert_eq!(mock.requests().len(), 0);
        // Unknown scopes: sent, and the server refuses it (exit 1).
        let out = lmts_async(withdraw, with(&[])).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("Requires apiToken auth with withdrawal scope"));
        // A denied scope the token holds: learned, then refused, exit 2.
        let out = lmts_async(
            strings(&["tokens", "list", "--base-url", &base]),
            with(&[("LMTS_DENY_SCOPES", "delegated_signing")]),
        )
        .await;
        assert_local_error(&out, "holds the delegated_signing scope");
        let out = lmts_async(
            strings(&["tokens", "list", "--base-url", &base]),
            with(&[("LMTS_DENY_SCOPES", "withdrawal")]),
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mock_subcommand_serves_until_stopped() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lmts"))
            .args(["mock", "--addr", "127.0.0.1:0"])
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lmts mock starts");
        let stdout = child.stdout.take().expect("stdout");
        let lines = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            for _ in 0..5 {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                lines.push(line.trim_end().to_owned());
            }
            Ok::<_, std::io::Error>(lines)
        })
        .await
        .expect("reader")
        .expect("five lines");
        let line = &lines[0];
        let url = line
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        // Ready-to-paste export lines: the base URL and the seeded partner credentials.
        let exports: Vec<(String, String)> = lines[1..].iter().map(|l| export(l)).collect();
        let names: Vec<&str> = exports.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "LIMITLESS_API_URL",
                "LMTS_TOKEN_ID",
                "LMTS_TOKEN_SECRET",
                "LIMITLESS_IDENTITY_TOKEN"
            ]
        );
        assert_eq!(exports[0].1, url);
        // With nothing but those, the CLI works against the server without --mock.
        let out = lmts_async(strings(&["tokens", "list"]), exports.clone()).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let out = lmts_async(strings(&["capabilities"]), exports.clone()).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // Rotation against the running `lmts mock`, with nothing but its export lines.
        let out = lmts_async(strings(&["tokens", "rotate"]), exports.clone()).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let rotated = text(&out.stdout);
        assert!(rotated.starts_with("export LMTS_TOKEN_ID="), "{rotated}");
        let mut after = exports;
        for (k, v) in rotated.lines().map(export) {
            after.retain(|(name, _)| *name != k);
            after.push((k, v));
        }
        let out = lmts_async(strings(&["tokens", "list"]), after).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "the new token works: {}",
            text(&out.stderr)
        );
        let client = limitless_auth::client::Client::builder()
            .base_url(url.clone())
            .credentials(Credentials::new().with_identity(
                limitless_auth::IdentityToken::new(PARTNER_IDENTITY).expect("valid"),
            ))
            .build()
            .expect("client");
        let caps = client.capabilities().await;
        child.kill().expect("stopped");
        child.wait().expect("reaped");
        assert_eq!(caps.expect("served").partner_profile_id, Some(42));
    }
}

#[test]
fn every_help_names_its_variables_and_the_exit_statuses() {
    let network = [
        "LMTS_TOKEN_ID",
        "LMTS_TOKEN_SECRET",
        "LMTS_TOKEN_SCOPES",
        "LMTS_DENY_SCOPES",
        "LIMITLESS_IDENTITY_TOKEN",
        "LIMITLESS_API_KEY",
        "LIMITLESS_API_URL",
    ];
    let cases: [(&[&str], &[&str]); 10] = [
        (&["sign"], &["LMTS_TOKEN_ID", "LMTS_TOKEN_SECRET"]),
        (&["capabilities"], &network),
        (&["request"], &network),
        (&["tokens"], &network),
        (&["tokens", "list"], &network),
        (&["tokens", "derive"], &network),
        (&["tokens", "revoke"], &network),
        (&["tokens", "rotate"], &network),
        (&["mock"], &["export"]),
        (
            &["ws"],
            &[
                "LMTS_TOKEN_ID",
                "LMTS_TOKEN_SECRET",
                "--subscribe",
                "--count",
            ],
        ),
    ];
    for (command, vars) in cases {
        let mut args = command.to_vec();
        args.push("--help");
        let out = lmts(&args, &[], None);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        assert!(help.contains("Exit status:"), "{args:?}: {help}");
        assert!(help.contains("  2  nothing was"), "{args:?}: {help}");
        for var in vars {
            assert!(help.contains(var), "{args:?} lacks {var}: {help}");
        }
    }
    let top = text(&lmts(&["--help"], &[], None).stdout);
    assert!(top.contains("Exit status:") && top.contains("  1  the request was sent"));
    for network_command in ["capabilities", "request", "tokens"] {
        let help = text(&lmts(&[network_command, "--help"], &[], None).stdout);
        if network_command != "tokens" {
            assert!(help.contains("--timeout <SECS>"), "{help}");
        }
    }
}

#[test]
fn bodies_are_read_up_to_the_limit_and_no_further() {
    // /dev/zero never ends: only a bounded read can refuse it.
    let out = lmts(
        &["sign", "POST", "/orders", "--body-file", "/dev/zero"],
        &env(),
        None,
    );
    assert_local_error(&out, "larger than the 1048576-byte limit");
    let big = vec![b'x'; (1 << 20) + 1];
    let out = lmts(
        &["sign", "POST", "/orders", "--body-file", "-"],
        &env(),
        Some(&big),
    );
    assert_local_error(&out, "larger than the 1048576-byte limit");
    let exact = vec![b'x'; 1 << 20];
    let out = lmts(
        &["sign", "POST", "/orders", "--body-file", "-"],
        &env(),
        Some(&exact),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = lmts(
        &[
            "request",
            "POST",
            "/orders",
            "--body-file",
            "/dev/zero",
            "--mock",
        ],
        &[],
        None,
    );
    assert_local_error(&out, "larger than the 1048576-byte limit");
}

/// `VmHWM` (peak resident memory, in KiB) of process `pid`, once it has stopped growing: the
/// process is blocked, waiting for input.
#[cfg(target_os = "linux")]
fn settled_peak_kib(pid: u32) -> u64 {
    let read = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
    };
    let mut last = None;
    let mut same = 0;
    for _ in 0..500 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let now = read();
        if now.is_some() && now == last {
            same += 1;
            if same == 5 {
                return now.unwrap_or_default();
            }
        } else {
            same = 0;
        }
        last = now;
    }
    panic!("the peak memory of {pid} never settled: {last:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_body_at_the_limit_costs_about_its_own_size_in_memory() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmts"))
        .args(["sign", "POST", "/orders", "--body-file", "-"])
        .env_clear()
        .envs(env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lmts starts");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    // Started and waiting for its body.
    let before = settled_peak_kib(pid);
    // A body of exactly the limit, the pipe left open: it has read it all and waits for more.
    stdin.write_all(&vec![b'x'; 1 << 20]).expect("write");
    let at_limit = settled_peak_kib(pid);
    // Then far more than the limit: it stops reading and refuses.
    let more = std::thread::spawn(move || {
        let _ = stdin.write_all(&vec![b'x'; 16 << 20]);
    });
    let out = child.wait_with_output().expect("lmts finishes");
    more.join().expect("writer");
    assert_local_error(&out, "larger than the 1048576-byte limit");
    let grew = at_limit.saturating_sub(before);
    assert!(
        (1024..=4 * 1024).contains(&grew),
        "reading a 1 MiB body grew the peak by {grew} KiB ({before} -> {at_limit})"
    );
}

/// Runs `lmts` with its standard output going to /dev/full, where every write fails.
fn lmts_to_full(args: &[&str]) -> Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    Command::new(env!("CARGO_BIN_EXE_lmts"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .expect("lmts runs")
}

#[test]
fn unwritable_output_after_sending_exits_1() {
    let out = lmts_to_full(&["tokens", "derive", "--mock"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("was created, but its secret could not be printed"),
        "{err}"
    );
    let id = err
        .split("the token ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("the token id is named");
    assert!(err.contains(&format!("`lmts tokens revoke {id}`")), "{err}");
    let out = lmts_to_full(&["capabilities", "--mock"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("the request succeeded, but cannot write"));
    // Nothing is sent by `sign`: exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_lmts"))
        .args(["sign", "GET", "/orders"])
        .env_clear()
        .envs(env())
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full"),
        )
        .stderr(Stdio::piped())
        .output()
        .expect("lmts runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn timeouts_are_validated() {
    for bad in ["0", "-1", "soon", "NaN", "1e9"] {
        let out = lmts(
            &["request", "GET", "/x", "--mock", "--timeout", bad],
            &[],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
    let out = lmts(
        &[
            "request",
            "GET",
            "/markets/active",
            "--mock",
            "--timeout",
            "2.5",
        ],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
