//! The mock's socket.io endpoint, `/socket.io/` on the REST port: Engine.IO v4 over
//! WebSocket, namespace `/markets`.
//!
//! The upgrade is verified as an HMAC route is, over the request-target as received (either
//! query order); a bad or stale signature is refused when the namespace connects
//! (`44/markets,{"message":…}`), with the message the REST routes answer. An accepted
//! signature gets an `authenticated` event. `subscribe_market_prices` is answered with a
//! `newPriceData` event, and the authenticated subscriptions with an event of their kind
//! (`positions`, `tx`, `orderEvent`), or an `exception` without credentials.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;

/// An event a mock socket received from its client.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketEvent {
    /// Which connection, counting from 1 in order of upgrade.
    pub socket: u64,
    /// The event's name.
    pub name: String,
    /// Its argument.
    pub data: Value,
}

/// The sockets' shared state.
pub(super) struct Sockets {
    pub(super) ping_interval: Duration,
    pub(super) ping_timeout: Duration,
    /// Bumped to drop every open socket.
    drops: watch::Sender<u64>,
    silent: AtomicBool,
    upgrades: AtomicU64,
    open: AtomicUsize,
    pongs: AtomicU64,
    events: Mutex<Vec<SocketEvent>>,
    /// The mock's shutdown.
    stop: watch::Receiver<bool>,
}

impl Sockets {
    pub(super) fn new(
        ping_interval: Duration,
        ping_timeout: Duration,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            stop,
            ping_interval,
            ping_timeout,
            drops: watch::channel(0).0,
            silent: AtomicBool::new(false),
            upgrades: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            pongs: AtomicU64::new(0),
            events: Mutex::new(Vec::new()),
        }
    }
}

/// Who a socket's handshake authenticated as.
#[derive(Clone, Debug)]
enum Auth {
    Anonymous,
    Profile(i64),
    Refused(String),
}

impl MockServer {
    /// `ws://127.0.0.1:<port>`: the socket.io endpoint on the same port.
    pub fn socket_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Closes every open socket at once, without a close frame, as a lost connection does.
    pub fn drop_sockets(&self) {
        self.state.sockets.drops.send_modify(|n| *n += 1);
    }

    /// Makes every socket, open or opened later, send nothing at all (no ping, no answer)
    /// while `silent`: a connection that is up but dead.
    pub fn silence_sockets(&self, silent: bool) {
        self.state.sockets.silent.store(silent, Ordering::Relaxed);
    }

    /// The events the sockets received, in order.
    pub fn socket_events(&self) -> Vec<SocketEvent> {
        lock(&self.state.sockets.events).clone()
    }

    /// How many pongs the sockets received.
    pub fn socket_pongs(&self) -> u64 {
        self.state.sockets.pongs.load(Ordering::Relaxed)
    }

    /// How many sockets are open now.
    pub fn open_sockets(&self) -> usize {
        self.state.sockets.open.load(Ordering::Relaxed)
    }
}

/// Whether `rec` is a socket upgrade.
pub(super) fn is_upgrade(rec: &RecordedRequest) -> bool {
    let path = rec.path().to_ascii_lowercase();
    (path == "/socket.io/" || path == "/socket.io")
        && rec
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

impl State {
    /// Answers a socket upgrade: 400 for a query without `EIO=4` and `transport=websocket` or
    /// a missing key, else 101, and serves the socket once hyper hands it over.
    pub(super) fn accept_socket(
        self: &Arc<Self>,
        rec: &mut RecordedRequest,
        upgrade: Option<OnUpgrade>,
    ) -> MockResponse {
        let query = rec.target.split_once('?').map_or("", |(_, q)| q);
        let pairs: Vec<&str> = query.split('&').collect();
        if !pairs.contains(&"EIO=4") || !pairs.contains(&"transport=websocket") {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"code": 0, "message": "Transport unknown"}),
            );
        }
        let key = rec.headers.get(http::header::SEC_WEBSOCKET_KEY);
        let (Some(key), Some(upgrade)) = (key, upgrade) else {
            return message(StatusCode::BAD_REQUEST, "not a WebSocket upgrade");
        };
        let accept = derive_accept_key(key.as_bytes());
        let auth = match self.socket_caller(rec) {
            Ok(None) => Auth::Anonymous,
            Ok(Some(profile)) => Auth::Profile(profile),
            Err(refusal) => Auth::Refused(refusal),
        };
        let socket = self.sockets.upgrades.fetch_add(1, Ordering::Relaxed) + 1;
        let state = self.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            state.sockets.open.fetch_add(1, Ordering::Relaxed);
            state.serve_socket(ws, socket, auth).await;
            state.sockets.open.fetch_sub(1, Ordering::Relaxed);
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }

    /// One socket: the open packet, pings every interval, and answers, until the client goes,
    /// the sockets are dropped, or the mock stops.
    async fn serve_socket<S>(&self, mut ws: WebSocketStream<S>, socket: u64, auth: Auth)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let s = &self.sockets;
        let mut drops = s.drops.subscribe();
        let mut stop = s.stop.clone();
        let open = json!({"sid": format!("mock-{socket}"), "upgrades": [],
            "pingInterval": s.ping_interval.as_millis() as u64,
            "pingTimeout": s.ping_timeout.as_millis() as u64, "maxPayload": 1_000_000});
        let mut out = vec![format!("0{open}")];
        let mut pings = tokio::time::interval_at(
            tokio::time::Instant::now() + s.ping_interval,
            s.ping_interval,
        );
        loop {
            if !s.silent.load(Ordering::Relaxed) {
                for frame in out.drain(..) {
                    if ws.send(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
            }
            out.clear();
            tokio::select! {
                _ = drops.changed() => return,
                _ = stop.changed() => return,
                _ = pings.tick() => out.push("2".to_owned()),
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.answer_frame(text.as_str(), socket, &auth, &mut out),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// What the socket sends back for `frame`.
    fn answer_frame(&self, frame: &str, socket: u64, auth: &Auth, out: &mut Vec<String>) {
        if frame == "3" {
            self.sockets.pongs.fetch_add(1, Ordering::Relaxed);
        } else if frame == "40/markets" || frame.starts_with("40/markets,") {
            match auth {
                Auth::Refused(why) => out.push(format!("44/markets,{}", json!({"message": why}))),
                Auth::Anonymous => out.push(connected(socket)),
                Auth::Profile(profile) => {
                    out.push(connected(socket));
                    out.push(emit("authenticated", &json!({"profileId": profile})));
                }
            }
        } else if let Some(args) = frame.strip_prefix("42/markets,") {
            let Ok(Value::Array(args)) = serde_json::from_str::<Value>(args) else {
                return;
            };
            let name = args.first().and_then(Value::as_str).unwrap_or_default();
            let data = args.get(1).cloned().unwrap_or(Value::Null);
            lock(&self.sockets.events).push(SocketEvent {
                socket,
                name: name.to_owned(),
                data: data.clone(),
            });
            if let Some(reply) = self.reply(name, &data, matches!(auth, Auth::Profile(_))) {
                out.push(reply);
            }
        }
    }

    /// The event answering a subscription.
    fn reply(&self, name: &str, data: &Value, authenticated: bool) -> Option<String> {
        let market = ["marketAddresses", "marketSlugs"]
            .iter()
            .find_map(|k| data[*k].get(0).and_then(Value::as_str))
            .unwrap_or("0x0000000000000000000000000000000000000001")
            .to_owned();
        let (event, payload) = match name {
            "subscribe_market_prices" => (
                "newPriceData",
                json!({"marketAddress": market, "updatedPrices": [{"marketId": 1,
                    "marketAddress": market, "yesPrice": 0.62, "noPrice": 0.38}],
                    "blockNumber": 1, "timestamp": self.now_text()}),
            ),
            "subscribe_positions" | "subscribe_transactions" | "subscribe_order_events"
                if !authenticated =>
            {
                ("exception", json!({"message": "Authentication required"}))
            }
            "subscribe_positions" => ("positions", json!({"positions": []})),
            "subscribe_transactions" => ("tx", json!({"status": "CONFIRMED"})),
            "subscribe_order_events" => ("orderEvent", json!({"type": "PLACEMENT"})),
            _ => return None,
        };
        Some(emit(event, &payload))
    }
}

/// The namespace's connect answer, with a session id.
fn connected(socket: u64) -> String {
    format!(
        "40/markets,{}",
        json!({"sid": format!("mock-markets-{socket}")})
    )
}

fn emit(name: &str, data: &Value) -> String {
    format!("42/markets,{}", json!([name, data]))
}
