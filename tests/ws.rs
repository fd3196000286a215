//! The authenticated socket against the embedded mock (plain WebSocket on 127.0.0.1): signed
//! handshakes verified over the target as received, reconnects signed afresh with the
//! credentials current then, subscriptions replayed, refusals final. Time is tokio's paused
//! time wherever it matters, and the signing clock follows it.
#![cfg(all(feature = "ws", feature = "mock", feature = "client"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use limitless_auth::client::Client;
use limitless_auth::mock::{
    Fault, MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET, RecordedRequest,
};
use limitless_auth::ws::{Event, Reconnect, Socket, SocketBuilder, WsError};
use limitless_auth::{Clock, Credentials, HmacCredentials, IdentityToken, SharedCredentials};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Wall-clock milliseconds that move with tokio's (paused) clock: the signer and the mock
/// both read it, so a virtual 31 s is 31 s to the signature window too.
#[derive(Clone)]
struct TokioClock {
    base: i64,
    start: Instant,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            base: 1_774_269_296_789,
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_millis(&self) -> i64 {
        self.base + i64::try_from(self.start.elapsed().as_millis()).expect("fits")
    }
}

fn partner() -> HmacCredentials {
    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
}

async fn mock_on(clock: &TokioClock) -> MockServer {
    MockServer::builder()
        .clock(clock.clone())
        .start()
        .await
        .expect("mock")
}

/// The socket upgrades the mock received.
fn handshakes(mock: &MockServer) -> Vec<RecordedRequest> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path() == "/socket.io/")
        .collect()
}

/// Whether `rec` is signed by the token `id` with `secret`, over what was received, computed
/// independently of the crate.
fn signed_by(rec: &RecordedRequest, id: &str, secret: &str) -> bool {
    let text = |n: &str| rec.headers[n].to_str().unwrap_or_default().to_owned();
    rec.headers["lmts-api-key"] == id
        && common::signature_matches(
            secret,
            &text("lmts-timestamp"),
            "GET",
            &rec.target,
            b"",
            &text("lmts-signature"),
        )
}

/// The next event, which must come.
async fn next(socket: &mut Socket) -> Event {
    match tokio::time::timeout(Duration::from_secs(300), socket.recv()).await {
        Ok(Some(Ok(event))) => event,
        other => panic!("no event: {other:?}"),
    }
}

/// The next event named `name`, skipping others (pings come and go meanwhile).
async fn next_named(socket: &mut Socket, name: &str) -> Event {
    loop {
        let event = next(socket).await;
        if event.name == name {
            return event;
        }
    }
}

/// The error the socket ended with.
async fn ended(socket: &mut Socket) -> WsError {
    loop {
        match tokio::time::timeout(Duration::from_secs(600), socket.recv()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return e,
            other => panic!("did not end with an error: {other:?}"),
        }
    }
}

/// A builder for the mock's socket, signing with `clock`, that tells each reconnect to `log`.
fn builder(
    mock: &MockServer,
    clock: &TokioClock,
    log: &Arc<Mutex<Vec<Reconnect>>>,
) -> SocketBuilder {
    let log = log.clone();
    SocketBuilder::new(&mock.socket_url())
        .clock(clock.clone())
        .on_reconnect(move |r| log.lock().expect("lock").push(r.clone()))
}

/// A socket to the mock, signed by the partner token.
async fn signed(mock: &MockServer, clock: &TokioClock) -> Socket {
    builder(mock, clock, &Arc::default())
        .credentials(Credentials::new().with_hmac(partner()))
        .connect()
        .await
        .expect("open")
}

#[tokio::test(start_paused = true)]
async fn a_signed_socket_is_authenticated_and_answers_its_subscriptions() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let mut socket = signed(&mock, &clock).await;
    assert_eq!(next(&mut socket).await.name, "authenticated");
    socket
        .emit(
            "subscribe_market_prices",
            json!({"marketSlugs": ["btc-100k"]}),
        )
        .expect("emit");
    let prices = next(&mut socket).await;
    assert_eq!(prices.name, "newPriceData");
    assert_eq!(prices.data["marketAddress"], "btc-100k");
    socket
        .emit("subscribe_order_events", json!({}))
        .expect("emit");
    assert_eq!(next(&mut socket).await.name, "orderEvent");
    let seen = handshakes(&mock);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/socket.io/?EIO=4&transport=websocket");
    assert_eq!(seen[0].status, Some(StatusCode::SWITCHING_PROTOCOLS));
    assert!(signed_by(&seen[0], PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET));
    assert!(seen[0].headers["lmts-signature"].len() == 44);
}

#[tokio::test(start_paused = true)]
async fn public_channels_need_no_credentials_and_no_identity_goes_on_the_socket() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let identity_only =
        Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid"));
    let mut socket = builder(&mock, &clock, &Arc::default())
        .credentials(identity_only)
        .connect()
        .await
        .expect("open");
    socket
        .emit(
            "subscribe_market_prices",
            json!({"marketAddresses": ["0xabc"]}),
        )
        .expect("emit");
    assert_eq!(
        next(&mut socket).await.name,
        "newPriceData",
        "no authenticated event"
    );
    socket
        .emit("subscribe_positions", json!({"marketSlugs": ["a"]}))
        .expect("emit");
    let refused = next(&mut socket).await;
    assert_eq!(
        (refused.name.as_str(), &refused.data),
        ("exception", &json!({"message": "Authentication required"}))
    );
    let h = &handshakes(&mock)[0].headers;
    assert!(
        h.keys()
            .all(|k| !k.as_str().starts_with("lmts-") && k != "identity" && k != "x-api-key"),
        "{h:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reconnect_31_s_later_is_signed_afresh_and_replays_the_subscriptions() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let log = Arc::default();
    let mut socket = builder(&mock, &clock, &log)
        .credentials(Credentials::new().with_hmac(partner()))
        .connect()
        .await
        .expect("open");
    next_named(&mut socket, "authenticated").await;
    socket
        .emit("subscribe_market_prices", json!({"marketSlugs": ["a"]}))
        .expect("emit");
    socket
        .emit("subscribe_market_prices", json!({"marketSlugs": ["b"]}))
        .expect("emit");
    socket
        .emit("subscribe_positions", json!({"marketSlugs": ["b"]}))
        .expect("emit");
    next_named(&mut socket, "positions").await;

    tokio::time::sleep(Duration::from_secs(31)).await;
    mock.drop_sockets();
    next_named(&mut socket, "authenticated").await;
    // The replay: the last subscription of each kind, answered again.
    next_named(&mut socket, "newPriceData").await;
    next_named(&mut socket, "positions").await;

    let seen = handshakes(&mock);
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|r| signed_by(r, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET))
    );
    let stamp = |r: &RecordedRequest| {
        r.headers["lmts-timestamp"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    assert_ne!(stamp(&seen[0]), stamp(&seen[1]));
    let millis = |r: &RecordedRequest| {
        chrono::DateTime::parse_from_rfc3339(&stamp(r))
            .expect("timestamp")
            .timestamp_millis()
    };
    let apart = millis(&seen[1]) - millis(&seen[0]);
    assert!((31_000..33_000).contains(&apart), "{apart} ms apart");
    let log = log.lock().expect("lock").clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].attempt, 1);
    assert!(
        (Duration::from_millis(800)..=Duration::from_millis(1200)).contains(&log[0].delay),
        "{log:?}"
    );
    let replayed: Vec<(String, Value)> = mock
        .socket_events()
        .into_iter()
        .filter(|e| e.socket == 2)
        .map(|e| (e.name, e.data))
        .collect();
    assert_eq!(
        replayed,
        [
            (
                "subscribe_market_prices".to_owned(),
                json!({"marketSlugs": ["b"]})
            ),
            (
                "subscribe_positions".to_owned(),
                json!({"marketSlugs": ["b"]})
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rotation_applies_at_the_next_connect_and_a_reconnect_can_be_forced() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let privy = Client::builder()
        .base_url(mock.base_url())
        .clock(clock.clone())
        .credentials(
            Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY).expect("valid")),
        )
        .build()
        .expect("client");
    let derived = privy
        .derive_token(Some("socket"), None)
        .await
        .expect("derived");
    let second = derived.credentials().expect("valid");
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner()));
    let mut socket = builder(&mock, &clock, &Arc::default())
        .credentials(shared.clone())
        .connect()
        .await
        .expect("open");
    next_named(&mut socket, "authenticated").await;
    shared.store(Credentials::new().with_hmac(second.clone()));
    socket.reconnect().expect("open socket");
    next_named(&mut socket, "authenticated").await;
    let seen = handshakes(&mock);
    assert_eq!(seen.len(), 2);
    assert!(signed_by(&seen[0], PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET));
    let secret = {
        use secrecy::ExposeSecret as _;
        derived.secret().expose_secret().to_owned()
    };
    assert!(signed_by(&seen[1], second.token_id(), &secret));
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_and_a_healthy_socket_is_never_reconnected() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let log = Arc::default();
    let mut socket = builder(&mock, &clock, &log).connect().await.expect("open");
    // Ten minutes of pings every 25 s: each answered, and no watchdog firing.
    tokio::time::sleep(Duration::from_secs(600)).await;
    socket
        .emit("subscribe_market_prices", json!({}))
        .expect("emit");
    next_named(&mut socket, "newPriceData").await;
    assert_eq!(mock.socket_pongs(), 24);
    assert_eq!(handshakes(&mock).len(), 1);
    assert!(log.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_reconnects_a_silent_socket() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let mut socket = SocketBuilder::new(&mock.socket_url())
        .clock(clock.clone())
        .credentials(Credentials::new().with_hmac(partner()))
        .on_reconnect(move |r| {
            let _ = tx.send((Instant::now(), r.clone()));
        })
        .connect()
        .await
        .expect("open");
    next_named(&mut socket, "authenticated").await;
    let silent_from = Instant::now();
    mock.silence_sockets(true);
    let (at, notice) = notices.recv().await.expect("a reconnect");
    // Silence past pingInterval + pingTimeout (25 s + 20 s) is a lost socket.
    assert_eq!(at - silent_from, Duration::from_secs(45));
    assert_eq!(
        notice.cause,
        "nothing was received for 45s (ping interval and timeout)"
    );
    mock.silence_sockets(false);
    next_named(&mut socket, "authenticated").await;
    assert_eq!(handshakes(&mock).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_wrong_secret_and_a_stale_timestamp_are_refused_by_the_mock() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let wrong = HmacCredentials::new(PARTNER_TOKEN_ID, "d3Jvbmctc2VjcmV0").expect("valid");
    let err = builder(&mock, &clock, &Arc::default())
        .credentials(Credentials::new().with_hmac(wrong))
        .connect()
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, WsError::Refused { status: None, message } if message == "Invalid signature"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the server refused the socket: Invalid signature"
    );
    let behind = limitless_auth::FixedClock::new(clock.now_millis() - 31_000);
    let err = SocketBuilder::new(&mock.socket_url())
        .clock(behind)
        .credentials(Credentials::new().with_hmac(partner()))
        .connect()
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, WsError::Refused { message, .. } if message == "Request timestamp expired"),
        "{err:?}"
    );
    assert!(
        handshakes(&mock)
            .iter()
            .all(|r| r.signature_valid == Some(false))
    );
}

#[tokio::test(start_paused = true)]
async fn the_python_order_of_the_query_is_signed_as_sent_and_accepted() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let url = format!("{}/socket.io/?transport=websocket&EIO=4", mock.socket_url());
    let mut socket = SocketBuilder::new(&url)
        .clock(clock.clone())
        .credentials(Credentials::new().with_hmac(partner()))
        .connect()
        .await
        .expect("open");
    assert_eq!(next(&mut socket).await.name, "authenticated");
    let seen = &handshakes(&mock)[0];
    assert_eq!(seen.target, "/socket.io/?transport=websocket&EIO=4");
    assert!(signed_by(seen, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET));
}

#[tokio::test(start_paused = true)]
async fn a_refusal_on_reconnect_ends_the_socket_and_is_never_retried() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let mut socket = signed(&mock, &clock).await;
    next_named(&mut socket, "authenticated").await;
    mock.inject(Fault::json(
        StatusCode::UNAUTHORIZED,
        r#"{"message":"Invalid or revoked API token"}"#,
    ));
    mock.drop_sockets();
    let err = ended(&mut socket).await;
    assert!(
        matches!(&err, WsError::Refused { status: Some(StatusCode::UNAUTHORIZED), message }
            if message == "Invalid or revoked API token"),
        "{err:?}"
    );
    assert!(err.is_refusal());
    assert!(socket.recv().await.is_none(), "the stream ends");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(handshakes(&mock).len(), 2, "no attempt after the refusal");
    assert!(matches!(
        socket.emit("subscribe_order_events", json!({})),
        Err(WsError::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_429_backs_off_for_its_retry_after_and_failures_double_the_wait() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let log = Arc::default();
    let mut socket = builder(&mock, &clock, &log).connect().await.expect("open");
    mock.inject(Fault::TooManyRequests {
        retry_after: Some("7".into()),
        body_seconds: None,
    });
    mock.inject(Fault::Unavailable);
    mock.drop_sockets();
    socket
        .emit("subscribe_market_prices", json!({}))
        .expect("emit");
    next_named(&mut socket, "newPriceData").await;
    let log = log.lock().expect("lock").clone();
    let waits: Vec<(u32, Duration)> = log.iter().map(|r| (r.attempt, r.delay)).collect();
    assert_eq!(waits.len(), 3, "{log:?}");
    assert_eq!(waits[1].0, 2);
    assert!(log[1].cause.contains("429"), "{log:?}");
    assert!(
        waits[1].1 >= Duration::from_secs(7),
        "Retry-After: {waits:?}"
    );
    assert!(log[2].cause.contains("503"), "{log:?}");
    let doubled = Duration::from_millis(3200)..=Duration::from_millis(4800);
    assert!(
        doubled.contains(&waits[2].1),
        "two failures: 4 s ± 20 %: {waits:?}"
    );
    assert_eq!(handshakes(&mock).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn reconnecting_is_given_up_after_the_attempts_allowed() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let mut socket = builder(&mock, &clock, &Arc::default())
        .max_reconnect_attempts(Some(2))
        .connect()
        .await
        .expect("open");
    mock.inject_times(Fault::Unavailable, 2);
    mock.drop_sockets();
    let err = ended(&mut socket).await;
    assert!(
        matches!(err, WsError::GaveUp { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(
            "the socket was lost and 2 reconnect attempts failed; the last: the upgrade was \
             answered 503 Service Unavailable"
        ),
        "{err}"
    );
    assert_eq!(handshakes(&mock).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn close_ends_the_socket_and_a_first_connection_that_fails_is_an_error() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let mut socket = builder(&mock, &clock, &Arc::default())
        .connect()
        .await
        .expect("open");
    socket.close();
    assert!(socket.recv().await.is_none());
    assert!(common::eventually(Duration::from_secs(5), || mock.open_sockets() == 0).await);
    assert!(matches!(socket.emit("x", json!({})), Err(WsError::Closed)));

    let nobody = common_unused_port();
    let err = SocketBuilder::new(&format!("ws://127.0.0.1:{nobody}"))
        .connect()
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, WsError::Connect(_)), "{err:?}");
    let err = SocketBuilder::new("http://127.0.0.1:1")
        .connect()
        .await
        .expect_err("not a socket URL");
    assert!(matches!(err, WsError::InvalidUrl { .. }), "{err:?}");
}

/// A loopback port nothing listens on (bound, then released).
fn common_unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test(start_paused = true)]
async fn debug_shows_no_secret() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let creds = Credentials::new().with_hmac(partner());
    let b = builder(&mock, &clock, &Arc::default()).credentials(creds);
    let shown_builder = format!("{b:?}");
    let mut socket = b.connect().await.expect("open");
    socket
        .emit("subscribe_positions", json!({"marketSlugs": ["a"]}))
        .expect("emit");
    next_named(&mut socket, "positions").await;
    let shown = format!("{shown_builder} {socket:?} {socket:#?}");
    assert!(shown.contains("subscribe_positions"), "{shown}");
    for secret in [PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let h = &handshakes(&mock)[0].headers;
    let signature = h["lmts-signature"].to_str().expect("ascii");
    assert!(!shown.contains(signature));
}

/// Every `log` record of the test binary (tungstenite logs through `log`).
static LOGGED: Mutex<String> = Mutex::new(String::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}\n", record.level(), record.target(), record.args());
        LOGGED.lock().expect("lock").push_str(&line);
    }
    fn flush(&self) {}
}

#[tokio::test(start_paused = true)]
async fn the_libraries_logs_at_trace_level_carry_no_credential_or_signature() {
    if log::set_logger(&Capture).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let mut socket = signed(&mock, &clock).await;
    next_named(&mut socket, "authenticated").await;
    socket
        .emit("subscribe_positions", json!({"marketSlugs": ["a"]}))
        .expect("emit");
    next_named(&mut socket, "positions").await;
    let signature = handshakes(&mock)[0].headers["lmts-signature"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let logged = LOGGED.lock().expect("lock").clone();
    assert!(
        logged.contains("tungstenite"),
        "the capture sees the library: {logged}"
    );
    for secret in [PARTNER_TOKEN_SECRET, PARTNER_TOKEN_ID, signature.as_str()] {
        assert!(!logged.contains(secret), "{secret} logged:\n{logged}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_keeps_dropping_before_it_is_healthy_is_given_up() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let log = Arc::default();
    let mut socket = builder(&mock, &clock, &log)
        .credentials(Credentials::new().with_hmac(partner()))
        .max_reconnect_attempts(Some(3))
        .connect()
        .await
        .expect("open");
    let err = loop {
        match socket.recv().await.expect("ends with an error") {
            // Dropped as soon as it opens, before any ping.
            Ok(event) if event.name == "authenticated" => mock.drop_sockets(),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, WsError::GaveUp { attempts: 3, .. }),
        "{err:?}"
    );
    let attempts: Vec<u32> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(
        attempts,
        [1, 2, 3],
        "the count goes on across connections that opened"
    );
    assert_eq!(handshakes(&mock).len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_403_upgrade_and_a_namespace_refusal_on_reconnect_are_final() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    mock.inject(Fault::json(
        StatusCode::FORBIDDEN,
        r#"{"message":"Forbidden"}"#,
    ));
    let err = builder(&mock, &clock, &Arc::default())
        .credentials(Credentials::new().with_hmac(partner()))
        .connect()
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, WsError::Refused { status: Some(StatusCode::FORBIDDEN), message } if message == "Forbidden"),
        "{err:?}"
    );
    // A rotation to a token the server rejects: the reconnect is refused by the namespace.
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner()));
    let mut socket = builder(&mock, &clock, &Arc::default())
        .credentials(shared.clone())
        .connect()
        .await
        .expect("open");
    next_named(&mut socket, "authenticated").await;
    let wrong = HmacCredentials::new(PARTNER_TOKEN_ID, "d3Jvbmctc2VjcmV0").expect("valid");
    shared.store(Credentials::new().with_hmac(wrong));
    mock.drop_sockets();
    let err = ended(&mut socket).await;
    assert!(
        matches!(&err, WsError::Refused { status: None, message } if message == "Invalid signature"),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        handshakes(&mock).len(),
        3,
        "the 403, the first connect, the refused reconnect"
    );
}

#[tokio::test(start_paused = true)]
async fn an_event_emitted_while_reconnecting_is_sent_once_connected() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let mut socket = SocketBuilder::new(&mock.socket_url())
        .clock(clock.clone())
        .credentials(Credentials::new().with_hmac(partner()))
        .on_reconnect(move |r| {
            let _ = tx.send(r.clone());
        })
        .connect()
        .await
        .expect("open");
    next_named(&mut socket, "authenticated").await;
    mock.drop_sockets();
    notices.recv().await.expect("the loss noticed");
    socket.emit("hello", json!({"n": 1})).expect("queued");
    socket.emit("hello", json!({"n": 2})).expect("queued");
    socket
        .emit("subscribe_order_events", json!({}))
        .expect("queued");
    next_named(&mut socket, "orderEvent").await;
    // Frames arrive in order: once this is answered, everything before it has arrived.
    socket
        .emit("subscribe_market_prices", json!({}))
        .expect("emit");
    next_named(&mut socket, "newPriceData").await;
    let second: Vec<(String, Value)> = mock
        .socket_events()
        .into_iter()
        .filter(|e| e.socket == 2)
        .map(|e| (e.name, e.data))
        .collect();
    assert_eq!(
        second,
        [
            ("subscribe_order_events".to_owned(), json!({})),
            ("hello".to_owned(), json!({"n": 1})),
            ("hello".to_owned(), json!({"n": 2})),
            ("subscribe_market_prices".to_owned(), json!({})),
        ],
        "the replay, then what waited, each once"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_socket_closes_it() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let mut socket = signed(&mock, &clock).await;
    next_named(&mut socket, "authenticated").await;
    assert_eq!(mock.open_sockets(), 1);
    drop(socket);
    assert!(common::eventually(Duration::from_secs(5), || mock.open_sockets() == 0).await);
}

#[tokio::test]
async fn wss_runs_over_tls_with_the_given_configuration() {
    use tokio::net::{TcpListener, TcpStream};
    let mock = MockServer::start().await.expect("mock");
    // A TLS terminator in front of the mock, with the test certificate.
    let acceptor = tokio_rustls::TlsAcceptor::from(common::raw::server_tls(&[b"http/1.1"]));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let upstream = mock.addr();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    let url = format!("wss://localhost:{port}");
    let mut socket = SocketBuilder::new(&url)
        .tls_config(common::raw::client_tls())
        .credentials(Credentials::new().with_hmac(partner()))
        .connect()
        .await
        .expect("open over TLS");
    assert_eq!(next(&mut socket).await.name, "authenticated");
    assert_eq!(
        handshakes(&mock)[0].headers["host"],
        format!("localhost:{port}").as_str()
    );
    // The default roots do not know the test CA.
    let err = SocketBuilder::new(&url)
        .connect()
        .await
        .expect_err("untrusted");
    assert!(matches!(err, WsError::Connect(_)), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_healthy_connection_starts_the_count_of_attempts_again() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let log = Arc::default();
    let mut socket = builder(&mock, &clock, &log)
        .credentials(Credentials::new().with_hmac(partner()))
        .max_reconnect_attempts(Some(2))
        .connect()
        .await
        .expect("open");
    next_named(&mut socket, "authenticated").await;
    mock.drop_sockets(); // before any ping: attempt 1
    next_named(&mut socket, "authenticated").await;
    tokio::time::sleep(Duration::from_secs(30)).await; // pinged at 25 s: healthy
    mock.drop_sockets(); // attempt 1 again, not 2
    next_named(&mut socket, "authenticated").await;
    mock.drop_sockets(); // attempt 2: still allowed
    next_named(&mut socket, "authenticated").await;
    let attempts: Vec<u32> = log
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(attempts, [1, 1, 2]);
}

/// `upgrade_request` for another WebSocket library: tokio-tungstenite's `client_async` takes
/// it as it is, and the mock verifies the signature over the target it received.
#[tokio::test(start_paused = true)]
async fn the_upgrade_request_works_with_tokio_tungstenites_client_async() {
    use futures_util::StreamExt as _;
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let shared = SharedCredentials::new(Credentials::new().with_hmac(partner()));
    let req =
        limitless_auth::ws::upgrade_request(&mock.socket_url(), &shared, &clock).expect("signed");
    let tcp = tokio::net::TcpStream::connect(mock.addr())
        .await
        .expect("connect");
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("upgraded");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let open = ws.next().await.expect("a frame").expect("readable");
    assert!(open.to_text().expect("text").starts_with("0{"), "{open:?}");
    let seen = handshakes(&mock);
    assert_eq!(seen.len(), 1);
    assert!(signed_by(&seen[0], PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET));
}

/// A 429 whose `Retry-After` is an HTTP date is waited out until that date.
#[tokio::test(start_paused = true)]
async fn a_429_retry_after_date_is_waited_out() {
    let clock = TokioClock::new();
    let mock = mock_on(&clock).await;
    let log = Arc::default();
    let mut socket = builder(&mock, &clock, &log).connect().await.expect("open");
    // Twelve seconds from now by the clock both sides read (in whole seconds).
    let at = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(clock.now_millis() + 12_000).expect("positive"));
    mock.inject(Fault::TooManyRequests {
        retry_after: Some(httpdate::fmt_http_date(at)),
        body_seconds: None,
    });
    mock.drop_sockets();
    socket
        .emit("subscribe_market_prices", json!({}))
        .expect("emit");
    next_named(&mut socket, "newPriceData").await;
    let log = log.lock().expect("lock").clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1].cause.contains("429"), "{log:?}");
    // The first reconnect waited its backoff (1 s ± 20 %); the second waits until the date,
    // not its own backoff (2 s ± 20 %).
    let wait = log[1].delay;
    assert!(
        (Duration::from_secs(9)..=Duration::from_secs(12)).contains(&wait),
        "until the date: {wait:?}"
    );
}

/// A namespace connect error that is not about the credentials (a server overloaded) is
/// reconnected after the backoff; only a refusal of the credentials is final.
#[tokio::test(start_paused = true)]
async fn a_connect_error_that_is_not_about_credentials_is_reconnected() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let open = r#"0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#;
                let _ = ws.send(Message::text(open)).await;
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    if !text.as_str().starts_with("40/markets") {
                        continue;
                    }
                    // The first connection is served, then closed; the second is refused for
                    // a reason that passes; the third is served.
                    let frames: &[&str] = match n {
                        1 => &[r#"44/markets,{"message":"Server overloaded"}"#],
                        _ => &[r#"40/markets,{"sid":"n"}"#, r#"42/markets,["hello",{}]"#],
                    };
                    for frame in frames {
                        let _ = ws.send(Message::text(*frame)).await;
                    }
                    if n == 0 {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
            });
        }
    });
    let log = Arc::new(Mutex::new(Vec::<Reconnect>::new()));
    let logged = log.clone();
    let mut socket = SocketBuilder::new(&format!("ws://{addr}"))
        .on_reconnect(move |r| logged.lock().expect("lock").push(r.clone()))
        .connect()
        .await
        .expect("open");
    next_named(&mut socket, "hello").await;
    // Lost, refused for an overload, then served again: no error on the way.
    next_named(&mut socket, "hello").await;
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
    let log = log.lock().expect("lock").clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1].cause.contains("Server overloaded"), "{log:?}");
}
