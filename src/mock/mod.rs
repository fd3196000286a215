//! An embedded mock of the Limitless API's authentication surface (feature `mock`).
//!
//! A real HTTP/1.1 server on loopback implementing the API Tokens endpoints the way the real
//! server documents them: Privy-only routes answer 401 `{"message":"Requires Privy
//! authentication"}` when any `lmts-*` or `x-api-key` header is present or the identity token
//! is unknown; HMAC routes verify the signature over the request-target and body bytes actually
//! received (constant-time, ±30 s against the mock's clock); derived tokens work on the HMAC
//! routes until revoked. Every request is recorded, and faults can be injected: a clock offset,
//! 429 with `Retry-After`, 503, a dropped connection, a delay, any canned response.
//!
//! Known identities and credentials:
//!
//! | what | value | profile |
//! |---|---|---|
//! | partner identity token | [`PARTNER_IDENTITY`] | 42, all four scopes |
//! | user identity token (no capability row) | [`USER_IDENTITY`] | 7, the `true`/`["trading"]` default |
//! | HMAC token of the partner | [`PARTNER_TOKEN_ID`] / [`PARTNER_TOKEN_SECRET`] | 42 |
//! | legacy API key of the partner | [`LEGACY_API_KEY`] | 42 |
//!
//! Routes: `GET /auth/api-tokens/capabilities`, `POST /auth/api-tokens/derive`,
//! `POST /portfolio/withdrawal-addresses`, `DELETE /portfolio/withdrawal-addresses/{address}`
//! (Privy only); `GET /auth/api-tokens`, `DELETE /auth/api-tokens/{tokenId}`,
//! `GET /portfolio/positions`, `POST /orders`,
//! `DELETE /orders/{orderId}` (HMAC or the legacy key); `/profiles/partner-accounts/**` (HMAC
//! only); `GET /markets/active` (public). Anything else is 404. On the same port,
//! `/socket.io/` serves the `/markets` socket ([`MockServer::socket_url`]): the handshake
//! verified as an HMAC route over the target as received, in either query order; a bad or stale
//! signature refused when the namespace connects; `authenticated` for a good one; subscriptions
//! answered with an event of their kind; [`MockServer::drop_sockets`] and
//! [`MockServer::silence_sockets`] as faults.
//!
//! ```
//! use limitless_auth::{client::Client, Credentials, IdentityToken, mock::{MockServer, PARTNER_IDENTITY}};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mock = MockServer::start().await?;
//! let client = Client::builder()
//!     .base_url(mock.base_url())
//!     .credentials(Credentials::new().with_identity(IdentityToken::new(PARTNER_IDENTITY)?))
//!     .build()?;
//! let caps = client.capabilities().await?;
//! assert_eq!(caps.partner_profile_id, Some(42));
//! assert!(mock.requests()[0].headers.contains_key("identity"));
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

mod api;
mod faults;
mod record;
mod socket;
mod verify;

use api::TokenRecord;
pub use faults::Fault;
use faults::{Action, Faults};
pub use record::RecordedRequest;
pub use socket::SocketEvent;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, DATE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::{Clock, OffsetClock, SystemClock};
use crate::policy::AuthMode;
use crate::scope::Scope;
use crate::sign::Timestamp;
use verify::{Key, Received, Refusal, WINDOW_MS, verify};

/// Identity token of an approved partner: profile 42 with all four scopes.
pub const PARTNER_IDENTITY: &str = "mock-partner-identity";
/// Identity token of a profile without a capability row: profile 7.
pub const USER_IDENTITY: &str = "mock-user-identity";
/// A pre-registered HMAC token of the partner profile.
pub const PARTNER_TOKEN_ID: &str = "mock-partner-token";
/// The secret of [`PARTNER_TOKEN_ID`].
pub const PARTNER_TOKEN_SECRET: &str = "bW9jay1wYXJ0bmVyLXRva2VuLXNlY3JldC0zMi1ieXQ=";
/// A legacy API key of the partner profile.
pub const LEGACY_API_KEY: &str = "lmts_mock_legacy_key";
/// The partner profile's wallet address.
pub const PARTNER_ACCOUNT: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

const PARTNER_PROFILE: i64 = 42;
const USER_PROFILE: i64 = 7;
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Configuration of a [`MockServer`].
#[derive(Clone)]
pub struct MockConfig {
    clock: Arc<dyn Clock>,
    window_ms: i64,
    legacy_no_row_default: bool,
    addr: SocketAddr,
    record: bool,
    socket_ping: (Duration, Duration),
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            window_ms: WINDOW_MS,
            legacy_no_row_default: false,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            record: true,
            socket_ping: (Duration::from_secs(25), Duration::from_secs(20)),
        }
    }
}

impl MockConfig {
    /// The mock's base clock (default the system clock); an offset can be added later.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Answer the older `false`/`[]` capabilities for profiles without a row.
    pub fn legacy_no_row_default(mut self, legacy: bool) -> Self {
        self.legacy_no_row_default = legacy;
        self
    }

    /// Whether to record requests (default true); benchmarks that send millions turn it off.
    pub fn record_requests(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// The address to listen on (default `127.0.0.1:0`).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The sockets' `pingInterval` and `pingTimeout` (default 25 s and 20 s, as Socket.IO's).
    pub fn socket_ping(mut self, interval: Duration, timeout: Duration) -> Self {
        self.socket_ping = (interval, timeout);
        self
    }

    /// Starts the server.
    pub async fn start(self) -> std::io::Result<MockServer> {
        MockServer::start_with(self).await
    }
}

struct State {
    clock: OffsetClock<Arc<dyn Clock>>,
    window_ms: i64,
    legacy_no_row_default: bool,
    record: bool,
    seq: AtomicU64,
    /// Whether any fault was ever injected (spares the lock otherwise).
    faults_set: std::sync::atomic::AtomicBool,
    tokens: Mutex<HashMap<String, TokenRecord>>,
    /// Identity tokens minted by [`MockServer::mint_identity`]: token → (profile, expiry ms).
    minted: Mutex<HashMap<String, (i64, i64)>>,
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Faults>,
    orders: AtomicU64,
    sockets: socket::Sockets,
}

/// Locks a mutex, recovering the data if a thread panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running mock server; it stops when dropped.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Configures a server.
    pub fn builder() -> MockConfig {
        MockConfig::default()
    }

    /// Starts a server with the defaults on `127.0.0.1` and a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(MockConfig::default()).await
    }

    /// Starts a server with `config`.
    async fn start_with(config: MockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, watcher) = watch::channel(false);
        let state = Arc::new(State {
            clock: OffsetClock::new(config.clock),
            window_ms: config.window_ms,
            legacy_no_row_default: config.legacy_no_row_default,
            record: config.record,
            seq: AtomicU64::new(0),
            faults_set: std::sync::atomic::AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
            minted: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            orders: AtomicU64::new(0),
            sockets: socket::Sockets::new(
                config.socket_ping.0,
                config.socket_ping.1,
                watcher.clone(),
            ),
        });
        let seeded = Key::from_base64(PARTNER_TOKEN_SECRET)
            .ok_or_else(|| std::io::Error::other("the seeded secret is base64"))?;
        let created_at = state.now_text();
        lock(&state.tokens).insert(
            PARTNER_TOKEN_ID.to_owned(),
            TokenRecord {
                key: seeded,
                profile: PARTNER_PROFILE,
                label: Some("seeded".to_owned()),
                scopes: vec![
                    Scope::Trading,
                    Scope::AccountCreation,
                    Scope::DelegatedSigning,
                ],
                created_at,
                last_used_at: None,
                revoked: false,
            },
        );
        tokio::spawn(accept_loop(listener, state.clone(), watcher));
        Ok(Self {
            addr,
            state,
            shutdown,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// How many requests have arrived, including those still being answered (delayed).
    pub fn arrivals(&self) -> u64 {
        self.state.seq.load(Ordering::Relaxed)
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// Moves the mock's clock by `offset` milliseconds from its base clock (positive: ahead).
    pub fn set_clock_offset_millis(&self, offset: i64) {
        self.state.clock.set_offset_millis(offset);
    }

    /// The mock's current time.
    pub fn now_millis(&self) -> i64 {
        self.state.clock.now_millis()
    }

    /// Mints a JWT-shaped identity token for the profile of `identity` ([`PARTNER_IDENTITY`]
    /// or [`USER_IDENTITY`]), issued now and expiring `ttl` from now by the mock's clock
    /// (`exp` and `iat` in whole seconds; the signature is random, as the mock does not check
    /// it). The mock answers it like `identity` until it expires, then 401
    /// `{"message":"Identity token expired"}`. Returns `None` for another identity.
    pub fn mint_identity(&self, identity: &str, ttl: Duration) -> Option<String> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let profile = match identity {
            PARTNER_IDENTITY => PARTNER_PROFILE,
            USER_IDENTITY => USER_PROFILE,
            _ => return None,
        };
        let now = self.state.clock.now_millis();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let iat = now.div_euclid(1000);
        let exp = now.saturating_add(ttl_ms).div_euclid(1000);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let claims = json!({"sub": format!("did:privy:mock-{profile}"), "iat": iat, "exp": exp,
            "jti": crate::random_u64()});
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signature = URL_SAFE_NO_PAD.encode(api::random_bytes::<64>());
        let token = format!("{header}.{payload}.{signature}");
        lock(&self.state.minted).insert(token.clone(), (profile, exp.saturating_mul(1000)));
        Some(token)
    }

    /// Applies `fault` to the next request that has none queued before it.
    pub fn inject(&self, fault: Fault) {
        lock(&self.state.faults).next.push_back(fault);
        self.state.faults_set.store(true, Ordering::Relaxed);
    }

    /// Applies `fault` to each of the next `times` requests.
    pub fn inject_times(&self, fault: Fault, times: usize) {
        let mut f = lock(&self.state.faults);
        f.next.extend(std::iter::repeat_n(fault, times));
        self.state.faults_set.store(true, Ordering::Relaxed);
    }

    /// Applies `fault` to every `n`th request from now on (counting all requests received).
    pub fn inject_every(&self, n: u64, fault: Fault) {
        if n > 0 {
            lock(&self.state.faults).every.push((n, fault));
            self.state.faults_set.store(true, Ordering::Relaxed);
        }
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        *lock(&self.state.faults) = Faults::default();
    }

    /// Stops accepting connections and closes the open ones.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Closing the connection without a response is a service error to hyper.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by injected fault")]
struct Dropped;

type MockResponse = Response<Full<Bytes>>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<MockResponse, Dropped> {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    // An oversized body is answered 413 and never verified: a truncated body would only make
    // the signature check fail for the wrong reason.
    let (body, too_large) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => (c.to_bytes(), false),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => (Bytes::new(), true),
        Err(_) => return Err(Dropped),
    };
    let mut record = RecordedRequest {
        method: parts.method.clone(),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_owned()),
        headers: parts.headers,
        body,
        status: None,
        mode: None,
        signature_valid: None,
        faulted: false,
    };
    let fault = state.take_fault(seq);
    let response = match fault.map(Fault::action) {
        _ if too_large => message(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request entity too large (the limit is {MAX_BODY} bytes)"),
        ),
        Some(Action::Drop) => {
            record.faulted = true;
            state.keep(record);
            return Err(Dropped);
        }
        Some(Action::HandleThenDrop) => {
            let answer = state.route(&mut record);
            record.status = Some(answer.status());
            record.faulted = true;
            state.keep(record);
            return Err(Dropped);
        }
        Some(Action::Delay(d)) => {
            tokio::time::sleep(d).await;
            state.answer(&mut record, upgrade)
        }
        Some(Action::Respond(resp)) => {
            record.faulted = true;
            resp
        }
        None => state.answer(&mut record, upgrade),
    };
    let response = state.finish(response);
    record.status = Some(response.status());
    state.keep(record);
    Ok(response)
}

fn json_response(status: StatusCode, body: &Value) -> MockResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn message(status: StatusCode, text: &str) -> MockResponse {
    json_response(status, &json!({ "message": text }))
}

fn unauthorized(text: &str) -> MockResponse {
    message(StatusCode::UNAUTHORIZED, text)
}

/// A NestJS-style validation error: `message` is an array.
fn validation(messages: &[&str]) -> MockResponse {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"message": messages, "error": "Bad Request", "statusCode": 400}),
    )
}

impl State {
    /// A socket upgrade, or a REST route.
    fn answer(
        self: &Arc<Self>,
        rec: &mut RecordedRequest,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> MockResponse {
        if socket::is_upgrade(rec) {
            self.accept_socket(rec, upgrade)
        } else {
            self.route(rec)
        }
    }

    fn now_text(&self) -> String {
        Timestamp::from_unix_millis(self.clock.now_millis())
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default()
    }

    /// Adds the `date` header from the mock's clock.
    fn finish(&self, mut resp: MockResponse) -> MockResponse {
        if !resp.headers().contains_key(DATE) {
            let ms = u64::try_from(self.clock.now_millis()).unwrap_or(0);
            let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms));
            if let Ok(v) = HeaderValue::from_str(&date) {
                resp.headers_mut().insert(DATE, v);
            }
        }
        resp
    }
}
