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
//! (Privy only); `GET /auth/api-tokens`, `DELETE /auth/api-tokens/{tokenId}`, `POST /orders`
//! (HMAC or the legacy key); `/profiles/partner-accounts/**` (HMAC only); `GET /markets/active`
//! (public). Anything else is 404.
//!
//! ```
//! use limitless_auth::{client::Client, IdentityToken, mock::{MockServer, PARTNER_IDENTITY}};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mock = MockServer::start().await?;
//! let client = Client::builder()
//!     .base_url(mock.base_url())
//!     .identity(IdentityToken::new(PARTNER_IDENTITY)?)
//!     .build()?;
//! let caps = client.capabilities().await?;
//! assert_eq!(caps.partner_profile_id, Some(42));
//! assert!(mock.requests()[0].headers.contains_key("identity"));
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

pub mod verify;

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
use crate::credentials::HmacCredentials;
use crate::policy::AuthMode;
use crate::sign::Timestamp;
use crate::types::Scope;
use verify::{SignedRequest, VerifyError, WINDOW_MS};

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

/// A fault the mock applies to a request instead of (or before) handling it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Fault {
    /// 429 with an optional `Retry-After` header value and `retryAfterSeconds` body field.
    TooManyRequests {
        /// The `Retry-After` header, verbatim.
        retry_after: Option<String>,
        /// The body's `retryAfterSeconds`.
        body_seconds: Option<f64>,
    },
    /// 503 Service Unavailable.
    Unavailable,
    /// Close the connection without answering.
    DropConnection,
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Answer with this response (a `date` header is added unless it has one).
    Respond {
        /// The status.
        status: StatusCode,
        /// Extra headers.
        headers: Vec<(HeaderName, HeaderValue)>,
        /// The body.
        body: Bytes,
    },
}

impl Fault {
    /// A canned response with `content-type: application/json`.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::Respond {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: body.into(),
        }
    }

    /// A canned response with `content-type: text/plain`.
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self::Respond {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            body: body.into(),
        }
    }
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The request-target (path and query) as received.
    pub target: String,
    /// The headers as received.
    pub headers: HeaderMap,
    /// The body bytes as received.
    pub body: Bytes,
    /// The status answered (`None` when the connection was dropped).
    pub status: Option<StatusCode>,
    /// The authentication the mock accepted, if any.
    pub mode: Option<AuthMode>,
    /// For requests with `lmts-*` headers on an HMAC route: whether the signature verified.
    pub signature_valid: Option<bool>,
    /// Whether an injected fault answered.
    pub faulted: bool,
}

impl RecordedRequest {
    /// The request's path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Whether any HMAC or API-key header was received.
    pub fn has_hmac_or_api_key_header(&self) -> bool {
        self.headers
            .keys()
            .any(|k| k.as_str().starts_with("lmts-") || k == "x-api-key")
    }
}

/// Configuration of a [`MockServer`].
#[derive(Clone)]
pub struct MockConfig {
    clock: Arc<dyn Clock>,
    window_ms: i64,
    legacy_no_row_default: bool,
    addr: SocketAddr,
    record: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            window_ms: WINDOW_MS,
            legacy_no_row_default: false,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            record: true,
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

    /// Starts the server.
    pub async fn start(self) -> std::io::Result<MockServer> {
        MockServer::start_with(self).await
    }
}

struct TokenRecord {
    creds: HmacCredentials,
    profile: i64,
    label: Option<String>,
    scopes: Vec<Scope>,
    created_at: String,
    last_used_at: Option<String>,
    revoked: bool,
}

#[derive(Default)]
struct Faults {
    next: VecDeque<Fault>,
    every: Vec<(u64, Fault)>,
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
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Faults>,
    orders: AtomicU64,
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
    pub async fn start_with(config: MockConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            clock: OffsetClock::new(config.clock),
            window_ms: config.window_ms,
            legacy_no_row_default: config.legacy_no_row_default,
            record: config.record,
            seq: AtomicU64::new(0),
            faults_set: std::sync::atomic::AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            orders: AtomicU64::new(0),
        });
        let seeded = HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET)
            .map_err(std::io::Error::other)?;
        let created_at = state.now_text();
        lock(&state.tokens).insert(
            PARTNER_TOKEN_ID.to_owned(),
            TokenRecord {
                creds: seeded,
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
        let (shutdown, watcher) = watch::channel(false);
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

    /// How many requests were recorded (a request is recorded once it is answered or dropped).
    pub fn request_count(&self) -> usize {
        lock(&self.state.requests).len()
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
                .serve_connection(TokioIo::new(stream), svc);
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
    let (parts, body) = req.into_parts();
    let seq = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
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
    let response = match fault {
        Some(Fault::DropConnection) => {
            record.faulted = true;
            state.keep(record);
            return Err(Dropped);
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            state.route(&mut record)
        }
        Some(fault) => {
            record.faulted = true;
            fault_response(fault)
        }
        None => state.route(&mut record),
    };
    let response = state.finish(response);
    record.status = Some(response.status());
    state.keep(record);
    Ok(response)
}

fn fault_response(fault: Fault) -> MockResponse {
    match fault {
        Fault::TooManyRequests {
            retry_after,
            body_seconds,
        } => {
            let mut body = json!({"message": "Too many requests", "statusCode": 429});
            if let Some(s) = body_seconds {
                body["retryAfterSeconds"] = json!(s);
            }
            let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
            if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                resp.headers_mut().insert(RETRY_AFTER, v);
            }
            resp
        }
        Fault::Unavailable => message(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
        Fault::Respond {
            status,
            headers,
            body,
        } => {
            let mut resp = Response::new(Full::new(body));
            *resp.status_mut() = status;
            for (k, v) in headers {
                resp.headers_mut().append(k, v);
            }
            resp
        }
        Fault::DropConnection | Fault::Delay(_) => {
            message(StatusCode::INTERNAL_SERVER_ERROR, "fault")
        }
    }
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

/// Who a request authenticated as.
struct Caller {
    profile: i64,
}

/// Random bytes from the standard library's randomly keyed hasher (good enough for a mock).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let r = crate::random_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    out
}

impl State {
    fn keep(&self, record: RecordedRequest) {
        if self.record {
            lock(&self.requests).push(record);
        }
    }

    fn now_text(&self) -> String {
        Timestamp::from_unix_millis(self.clock.now_millis())
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default()
    }

    fn take_fault(&self, seq: u64) -> Option<Fault> {
        if !self.faults_set.load(Ordering::Relaxed) {
            return None;
        }
        let mut faults = lock(&self.faults);
        if let Some(f) = faults.next.pop_front() {
            return Some(f);
        }
        faults
            .every
            .iter()
            .find(|(n, _)| seq.is_multiple_of(*n))
            .map(|(_, f)| f.clone())
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

    fn route(&self, rec: &mut RecordedRequest) -> MockResponse {
        let path = rec.path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let m = rec.method.clone();
        match (m.as_str(), segments.as_slice()) {
            ("GET", ["auth", "api-tokens", "capabilities"]) => {
                self.privy(rec, |s, _, who| s.capabilities(who))
            }
            ("POST", ["auth", "api-tokens", "derive"]) => {
                self.privy(rec, |s, rec, who| s.derive(rec, who))
            }
            ("POST", ["portfolio", "withdrawal-addresses"]) => self.privy(rec, |_, rec, _| {
                match serde_json::from_slice::<Value>(&rec.body) {
                    Ok(v) => json_response(StatusCode::CREATED, &json!({"address": v["address"]})),
                    Err(_) => validation(&["address must be an Ethereum address"]),
                }
            }),
            ("DELETE", ["portfolio", "withdrawal-addresses", address]) if !address.is_empty() => {
                self.privy(rec, |_, _, _| {
                    message(StatusCode::OK, "Withdrawal address removed")
                })
            }
            ("GET", ["auth", "api-tokens"]) => self.hmac(rec, true, |s, _, who| s.list(who)),
            ("DELETE", ["auth", "api-tokens", id]) if !id.is_empty() => {
                let id = percent_encoding::percent_decode_str(id)
                    .decode_utf8_lossy()
                    .into_owned();
                self.hmac(rec, true, move |s, _, who| s.revoke(&id, who))
            }
            ("POST", ["orders"]) => self.hmac(rec, true, |s, rec, who| s.order(rec, who)),
            (_, ["profiles", "partner-accounts", ..]) => {
                self.hmac(rec, false, |_, rec, who| match rec.method {
                    Method::POST => json_response(
                        StatusCode::CREATED,
                        &json!({"profileId": 1000 + who.profile, "account": PARTNER_ACCOUNT}),
                    ),
                    _ => json_response(StatusCode::OK, &json!([])),
                })
            }
            ("GET", ["markets", "active"]) => json_response(
                StatusCode::OK,
                &json!({"data": [{"slug": "btc-100k", "title": "BTC above 100k?"}], "totalMarketsCount": 1}),
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({
                    "message": format!("Cannot {} {}", rec.method, path),
                    "error": "Not Found",
                    "statusCode": 404
                }),
            ),
        }
    }

    /// Privy-only: identity header with a known token, and no HMAC or API-key header at all.
    fn privy(
        &self,
        rec: &mut RecordedRequest,
        then: impl FnOnce(&Self, &RecordedRequest, Caller) -> MockResponse,
    ) -> MockResponse {
        const REQUIRES: &str = "Requires Privy authentication";
        if rec.has_hmac_or_api_key_header() {
            return unauthorized(REQUIRES);
        }
        let token = rec
            .headers
            .get("identity")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let profile = match token {
            Some(PARTNER_IDENTITY) => PARTNER_PROFILE,
            Some(USER_IDENTITY) => USER_PROFILE,
            _ => return unauthorized(REQUIRES),
        };
        rec.mode = Some(AuthMode::Privy);
        then(self, rec, Caller { profile })
    }

    /// HMAC (or, where `api_key_ok`, the legacy key): the signature is verified over what was
    /// received.
    fn hmac(
        &self,
        rec: &mut RecordedRequest,
        api_key_ok: bool,
        then: impl FnOnce(&Self, &RecordedRequest, Caller) -> MockResponse,
    ) -> MockResponse {
        let header = |name: &str| rec.headers.get(name).and_then(|v| v.to_str().ok());
        let (id, ts, sig) = (
            header("lmts-api-key"),
            header("lmts-timestamp"),
            header("lmts-signature"),
        );
        if id.is_none() && ts.is_none() && sig.is_none() {
            return match header("x-api-key") {
                Some(LEGACY_API_KEY) if api_key_ok => {
                    rec.mode = Some(AuthMode::ApiKey);
                    then(
                        self,
                        rec,
                        Caller {
                            profile: PARTNER_PROFILE,
                        },
                    )
                }
                Some(_) if api_key_ok => unauthorized("Invalid API key"),
                _ => unauthorized("HMAC authentication required"),
            };
        }
        let (Some(id), Some(ts), Some(sig)) = (id, ts, sig) else {
            rec.signature_valid = Some(false);
            return unauthorized("Incomplete HMAC authentication headers");
        };
        let (creds, profile) = {
            let tokens = lock(&self.tokens);
            match tokens.get(id) {
                Some(t) if !t.revoked => (t.creds.clone(), t.profile),
                _ => {
                    rec.signature_valid = Some(false);
                    return unauthorized("Invalid or revoked API token");
                }
            }
        };
        let signed = SignedRequest {
            method: rec.method.as_str(),
            target: &rec.target,
            body: &rec.body,
            timestamp: ts,
            signature: sig,
        };
        match verify::verify(&creds, &signed, self.clock.now_millis(), self.window_ms) {
            Ok(()) => {}
            Err(e) => {
                rec.signature_valid = Some(false);
                return unauthorized(match e {
                    VerifyError::MalformedTimestamp => "Invalid timestamp",
                    VerifyError::OutsideWindow { .. } => "Request timestamp expired",
                    _ => "Invalid signature",
                });
            }
        }
        rec.signature_valid = Some(true);
        rec.mode = Some(AuthMode::Hmac);
        let now = self.now_text();
        let id = id.to_owned();
        if let Some(t) = lock(&self.tokens).get_mut(&id) {
            t.last_used_at = Some(now);
        }
        then(self, rec, Caller { profile })
    }

    /// (token management enabled, allowed scopes) of a profile.
    fn capability_row(&self, profile: i64) -> (bool, Vec<Scope>) {
        if profile == PARTNER_PROFILE {
            (
                true,
                vec![
                    Scope::Trading,
                    Scope::AccountCreation,
                    Scope::DelegatedSigning,
                    Scope::Withdrawal,
                ],
            )
        } else if self.legacy_no_row_default {
            (false, vec![])
        } else {
            (true, vec![Scope::Trading])
        }
    }

    fn capabilities(&self, who: Caller) -> MockResponse {
        let (enabled, scopes) = self.capability_row(who.profile);
        json_response(
            StatusCode::OK,
            &json!({
                "partnerProfileId": who.profile,
                "tokenManagementEnabled": enabled,
                "allowedScopes": scopes,
            }),
        )
    }

    fn derive(&self, rec: &RecordedRequest, who: Caller) -> MockResponse {
        let body: Value = if rec.body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&rec.body) {
                Ok(v @ Value::Object(_)) => v,
                _ => return validation(&["request body must be a JSON object"]),
            }
        };
        let label = match &body["label"] {
            Value::Null => None,
            Value::String(s) if s.chars().count() <= 128 => Some(s.clone()),
            Value::String(_) => {
                return validation(&["label must be shorter than or equal to 128 characters"]);
            }
            _ => return validation(&["label must be a string"]),
        };
        let scopes: Vec<Scope> = match &body["scopes"] {
            Value::Null => vec![Scope::Trading],
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str().map(Scope::parse) {
                        Some(s) if s.is_known() => out.push(s),
                        _ => {
                            return validation(&[
                                "each value in scopes must be one of the following values: \
                                 trading, account_creation, delegated_signing, withdrawal",
                            ]);
                        }
                    }
                }
                out
            }
            _ => return validation(&["scopes must be an array"]),
        };
        if scopes.contains(&Scope::DelegatedSigning) && !scopes.contains(&Scope::Trading) {
            return message(
                StatusCode::BAD_REQUEST,
                "delegated_signing requires trading",
            );
        }
        let (enabled, allowed) = self.capability_row(who.profile);
        if !enabled {
            return message(
                StatusCode::FORBIDDEN,
                "Token management is not enabled for this profile",
            );
        }
        if !scopes.iter().all(|s| allowed.contains(s)) {
            return message(
                StatusCode::FORBIDDEN,
                "Requested scopes are not allowed for this profile",
            );
        }
        let token_id = STANDARD.encode(random_bytes::<12>());
        let secret = STANDARD.encode(random_bytes::<32>());
        let Ok(creds) = HmacCredentials::new(&token_id, &secret) else {
            return message(StatusCode::INTERNAL_SERVER_ERROR, "key generation failed");
        };
        let created_at = self.now_text();
        lock(&self.tokens).insert(
            token_id.clone(),
            TokenRecord {
                creds,
                profile: who.profile,
                label,
                scopes: scopes.clone(),
                created_at: created_at.clone(),
                last_used_at: None,
                revoked: false,
            },
        );
        let account = if who.profile == PARTNER_PROFILE {
            PARTNER_ACCOUNT
        } else {
            "0x000000000000000000000000000000000000dEaD"
        };
        json_response(
            StatusCode::CREATED,
            &json!({
                "apiKey": token_id,
                "secret": secret,
                "tokenId": token_id,
                "createdAt": created_at,
                "scopes": scopes,
                "profile": {"id": who.profile, "account": account},
            }),
        )
    }

    fn list(&self, who: Caller) -> MockResponse {
        if !self.capability_row(who.profile).0 {
            return message(
                StatusCode::FORBIDDEN,
                "Token management is not enabled for this profile",
            );
        }
        let tokens = lock(&self.tokens);
        let mut list: Vec<(&String, &TokenRecord)> = tokens
            .iter()
            .filter(|(_, t)| t.profile == who.profile && !t.revoked)
            .collect();
        list.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at).then(a.0.cmp(b.0)));
        let items: Vec<Value> = list
            .into_iter()
            .map(|(id, t)| {
                json!({
                    "tokenId": id,
                    "label": t.label,
                    "scopes": t.scopes,
                    "createdAt": t.created_at,
                    "lastUsedAt": t.last_used_at,
                })
            })
            .collect();
        json_response(StatusCode::OK, &Value::Array(items))
    }

    fn revoke(&self, id: &str, who: Caller) -> MockResponse {
        let mut tokens = lock(&self.tokens);
        match tokens.get_mut(id) {
            Some(t) if t.profile == who.profile && !t.revoked => {
                t.revoked = true;
                message(StatusCode::OK, "API token revoked successfully")
            }
            _ => message(
                StatusCode::BAD_REQUEST,
                "API token not found or already revoked",
            ),
        }
    }

    fn order(&self, rec: &RecordedRequest, who: Caller) -> MockResponse {
        let Ok(body) = serde_json::from_slice::<Value>(&rec.body) else {
            return validation(&["order must be a JSON object"]);
        };
        let id = self.orders.fetch_add(1, Ordering::Relaxed) + 1;
        json_response(
            StatusCode::CREATED,
            &json!({
                "id": id,
                "ownerId": who.profile,
                "clientOrderId": body.get("clientOrderId").cloned().unwrap_or(Value::Null),
            }),
        )
    }
}
