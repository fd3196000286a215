//! The `lmts` binary driven as a process, per its command-line contract.
#![cfg(feature = "cli")]

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::vectors;
use limitless_auth::{HmacCredentials, Timestamp};

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
    let now = limitless_auth::clock::Clock::now_millis(&limitless_auth::clock::SystemClock);
    assert!((now - parsed.unix_millis()).abs() < 60_000);
    let creds = HmacCredentials::new(ID, SECRET).expect("valid");
    assert_eq!(
        lines[2],
        format!(
            "lmts-signature: {}",
            creds.sign(ts, "DELETE", "/auth/api-tokens/x", b"").as_str()
        )
    );
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
