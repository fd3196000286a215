//! The authenticated WebSocket (feature `ws`): the Limitless `/markets` channels over Socket.IO,
//! signed afresh on every connect.
//!
//! Two levels:
//!
//! - [`upgrade_request`]: the signed upgrade request, an `http::Request<()>` for any WebSocket
//!   library (`tokio_tungstenite::client_async` takes it as it is; its handshake logs the
//!   request at trace level, see there). Its `lmts-*` headers are signed over `GET`, the
//!   request-target exactly as it is sent, and an empty body, with a fresh timestamp, by the
//!   same signer as every REST request.
//! - [`connect`] (or [`SocketBuilder`]): a [`Socket`] that stays authenticated. It opens the
//!   Engine.IO session, connects the `/markets` namespace, answers pings, and hands over the
//!   events as a stream. When the socket closes, or stays silent past the server's
//!   `pingInterval + pingTimeout`, it reconnects, with exponential backoff and jitter capped at
//!   60 s, signing every attempt with the credentials current at that moment, and replays the
//!   subscriptions made so far (the last one of each kind). A refusal (HTTP 401 or 403 on the
//!   upgrade, or the namespace's connect error) ends the socket with [`WsError::Refused`]; it
//!   is never retried in a loop. A 429 backs off, and so does a connect error whose message
//!   says it passes (an overloaded or restarting server) and says nothing of the credentials.
//!
//! ```no_run
//! use limitless_auth::{Credentials, ws};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // HMAC credentials from LMTS_TOKEN_ID and LMTS_TOKEN_SECRET; public channels without them.
//! let mut socket = ws::connect(ws::DEFAULT_URL, Credentials::from_env()?).await?;
//! socket.emit("subscribe_market_prices", json!({"marketSlugs": ["btc-above-100k"]}))?;
//! socket.emit("subscribe_order_events", json!({}))?; // needs HMAC credentials
//! while let Some(event) = socket.recv().await {
//!     let event = event?; // a refusal, or reconnecting given up
//!     println!("{}: {}", event.name, event.data);
//! }
//! # Ok(()) }
//! ```
//!
//! Only HMAC credentials (or, lacking them, a legacy API key) go on the socket. With only an
//! identity token, or with none, it connects unsigned, for the public channels: no Privy header
//! goes on the socket.

mod error;
mod handshake;
mod packet;
mod session;
mod socket;
mod transport;

pub use error::WsError;
pub use socket::{Event, Reconnect, Socket, SocketBuilder};

use http::header::{CONNECTION, HOST, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{Extensions, HeaderValue, Method, Request, Uri};

use crate::apply;
use crate::clock::Clock;
use crate::policy::{Accepts, RouteTable, decide};
use crate::{Credentials, SharedCredentials};

/// The Limitless socket.
pub const DEFAULT_URL: &str = "wss://ws.limitless.exchange";

/// The request-target of the upgrade, in the order the official Rust and TypeScript SDKs send
/// it. A URL given with a path or a query is sent, and signed, as given instead.
pub const SOCKET_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// What the socket accepts: HMAC, else the legacy API key, else nothing (public channels).
const SOCKET_ACCEPTS: Accepts = Accepts::HMAC
    .union(Accepts::API_KEY)
    .union(Accepts::ANONYMOUS);

/// Connects to `url` ([`DEFAULT_URL`] for Limitless) with the defaults of [`SocketBuilder`]:
/// a shorthand for `SocketBuilder::new(url).credentials(credentials).connect()`.
pub async fn connect(
    url: &str,
    credentials: impl Into<SharedCredentials>,
) -> Result<Socket, WsError> {
    SocketBuilder::new(url)
        .credentials(credentials)
        .connect()
        .await
}

/// The signed upgrade request for the socket at `url` (`ws://` or `wss://`; without a path,
/// the request-target is [`SOCKET_PATH`]), with a timestamp from `clock`.
///
/// `credentials` are [`Credentials`] or a [`SharedCredentials`] handle (or a reference to one):
/// the credentials current when it is called sign the request. It carries the WebSocket
/// handshake headers (`Host`, `Connection`, `Upgrade`, `Sec-WebSocket-Version`, a fresh
/// `Sec-WebSocket-Key`) and, with HMAC credentials, the three `lmts-*` headers, marked
/// sensitive, signed over `GET`, the request-target as it will be sent and an empty body.
/// Without HMAC credentials a legacy API key goes as `x-api-key`; with neither, the request is
/// unsigned. A signature is valid for 30 s: build a new request for every connect.
///
/// ```
/// use limitless_auth::{Credentials, FixedClock, HmacCredentials, ws};
///
/// let creds = Credentials::new().with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?);
/// let clock = FixedClock::new(1_774_269_296_789);
/// let req = ws::upgrade_request("wss://ws.limitless.exchange", creds, &clock)?;
/// assert_eq!(req.uri(), "wss://ws.limitless.exchange/socket.io/?EIO=4&transport=websocket");
/// assert_eq!(req.headers()["lmts-timestamp"], "2026-03-23T12:34:56.789Z");
/// assert!(req.headers()["lmts-signature"].is_sensitive());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `tokio_tungstenite::client_async(req, stream)` takes the request as it is. Mind its
/// logging: tungstenite's client handshake logs the whole request, the signature included,
/// through `log` at trace level, so keep `tungstenite` below trace in your logger, or use
/// [`connect`], which writes the upgrade itself.
pub fn upgrade_request(
    url: &str,
    credentials: impl Into<SharedCredentials>,
    clock: &impl Clock,
) -> Result<Request<()>, WsError> {
    let target = Target::parse(url)?;
    target.request(&credentials.into().current(), clock)
}

/// Where a socket connects: the parsed URL and the request-target to send.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The whole URL with its request-target.
    uri: Uri,
    /// `host:port` as the URL gives it, for the `Host` header.
    authority: HeaderValue,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, WsError> {
        let invalid = |reason| WsError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|_| invalid("not a URL: expected ws://host[:port][/path] or wss://…"))?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            _ => return Err(invalid("the scheme is not ws or wss")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information in a socket URL is not sent"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid("the URL has no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // The socket's path without the query it needs is completed; anything else is sent as
        // given.
        let target = match uri.path_and_query() {
            None => SOCKET_PATH,
            Some(pq)
                if pq.query().is_none()
                    && ["/", "/socket.io", "/socket.io/"].contains(&pq.path()) =>
            {
                SOCKET_PATH
            }
            Some(given) => given.as_str(),
        };
        let scheme = if tls { "wss" } else { "ws" };
        let full = format!("{scheme}://{authority}{target}");
        let uri = full
            .parse()
            .map_err(|_| invalid("the request-target is not a valid path and query"))?;
        let authority = HeaderValue::from_str(authority.as_str())
            .map_err(|_| invalid("the host is not a valid header value"))?;
        Ok(Self {
            uri,
            authority,
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// The request-target sent, and signed.
    fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |pq| pq.as_str())
    }

    /// The upgrade request, decided and signed now.
    pub(crate) fn request(
        &self,
        credentials: &Credentials,
        clock: &impl Clock,
    ) -> Result<Request<()>, WsError> {
        let mut req = Request::new(());
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, self.authority.clone());
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        // Base64 of 16 random bytes: a valid header value.
        if let Ok(key) = HeaderValue::from_str(&key) {
            headers.insert(SEC_WEBSOCKET_KEY, key);
        }
        let target = self.path_and_query();
        let table = RouteTable::new(SOCKET_ACCEPTS);
        let decision = decide(
            &table,
            &Method::GET,
            target,
            &Extensions::new(),
            credentials,
        )?;
        if let Some(signer) = apply::apply(decision, req.headers_mut()) {
            signer
                .sign(&Method::GET, target, b"", clock)?
                .insert(req.headers_mut());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FixedClock, HmacCredentials, IdentityToken};

    fn hmac() -> Credentials {
        Credentials::new().with_hmac(HmacCredentials::new("token-123", "c2VjcmV0").expect("valid"))
    }

    #[test]
    fn urls_give_the_target_sent_and_where_to_connect() {
        let cases = [
            (
                "wss://ws.limitless.exchange",
                "wss://ws.limitless.exchange/socket.io/?EIO=4&transport=websocket",
                443,
                true,
            ),
            (
                "wss://ws.limitless.exchange/",
                "wss://ws.limitless.exchange/socket.io/?EIO=4&transport=websocket",
                443,
                true,
            ),
            (
                "ws://127.0.0.1:8080",
                "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket",
                8080,
                false,
            ),
            (
                "WS://127.0.0.1:8080/socket.io/?transport=websocket&EIO=4",
                "ws://127.0.0.1:8080/socket.io/?transport=websocket&EIO=4",
                8080,
                false,
            ),
            (
                "ws://[::1]:9000",
                "ws://[::1]:9000/socket.io/?EIO=4&transport=websocket",
                9000,
                false,
            ),
        ];
        for (url, uri, port, tls) in cases {
            let t = Target::parse(url).expect(url);
            assert_eq!(t.uri, uri, "{url}");
            assert_eq!((t.port, t.tls), (port, tls), "{url}");
        }
        assert_eq!(Target::parse("ws://[::1]:9000").expect("valid").host, "::1");
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let cases = [
            (
                "https://ws.limitless.exchange",
                "the scheme is not ws or wss",
            ),
            ("ws.limitless.exchange", "the scheme is not ws or wss"),
            ("/socket.io/", "the scheme is not ws or wss"),
            (
                "ws://user:pw@host",
                "user information in a socket URL is not sent",
            ),
            (
                "ws://exa mple",
                "not a URL: expected ws://host[:port][/path] or wss://…",
            ),
            ("", "not a URL: expected ws://host[:port][/path] or wss://…"),
        ];
        for (url, reason) in cases {
            match Target::parse(url) {
                Err(WsError::InvalidUrl { reason: r, .. }) => assert_eq!(r, reason, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    /// HMAC-SHA256 of the canonical message with the key `secret` (base64 `c2VjcmV0`), built
    /// here from the protocol's definition.
    fn independent_signature(target: &str) -> String {
        use base64::Engine as _;
        use hmac::{KeyInit as _, Mac as _};
        let message = format!("2026-03-23T12:34:56.789Z\nGET\n{target}\n");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"secret").expect("any key");
        mac.update(message.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn the_upgrade_is_signed_over_the_target_sent() {
        let clock = FixedClock::new(1_774_269_296_789);
        for url in [
            "ws://127.0.0.1:1",
            "ws://127.0.0.1:1/socket.io/?transport=websocket&EIO=4",
        ] {
            let req = upgrade_request(url, hmac(), &clock).expect("signed");
            let h = req.headers();
            let target = req.uri().path_and_query().expect("target").as_str();
            assert_eq!(h["lmts-api-key"], "token-123");
            assert_eq!(h["lmts-timestamp"], "2026-03-23T12:34:56.789Z");
            assert_eq!(
                h["lmts-signature"],
                independent_signature(target).as_str(),
                "{url}"
            );
            for name in ["lmts-api-key", "lmts-timestamp", "lmts-signature"] {
                assert!(h[name].is_sensitive(), "{name}");
            }
            assert_eq!(h["host"], "127.0.0.1:1");
            assert_eq!(h["upgrade"], "websocket");
            assert_eq!(h["sec-websocket-version"], "13");
            assert_eq!(h["sec-websocket-key"].len(), 24);
        }
    }

    #[test]
    fn without_hmac_the_socket_gets_the_api_key_or_nothing_never_the_identity_token() {
        let clock = FixedClock::new(1_774_269_296_789);
        let identity = Credentials::new().with_identity(IdentityToken::new("privy").expect("t"));
        let req = upgrade_request("ws://127.0.0.1:1", identity.clone(), &clock).expect("unsigned");
        let names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "connection",
                "upgrade",
                "sec-websocket-version",
                "sec-websocket-key"
            ]
        );
        let key = identity.with_api_key(crate::ApiKey::new("lmts_key").expect("k"));
        let req = upgrade_request("ws://127.0.0.1:1", key, &clock).expect("keyed");
        assert_eq!(req.headers()["x-api-key"], "lmts_key");
        assert!(!req.headers().contains_key("identity"));
        assert!(!req.headers().contains_key("lmts-signature"));
    }
}
