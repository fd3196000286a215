//! The socket a user holds: how it is configured, what it is told, and what it hands over.

use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::session::{self, Backoff, Command, Session};
use super::transport::Transport;
use super::{Target, WsError};
use crate::clock::{Clock, SystemClock};
use crate::{Credentials, SharedCredentials};

/// An event the server emitted on `/markets`: `newPriceData`, `orderbookUpdate`, `positions`,
/// `tx`, `orderEvent`, `authenticated`, `exception`, …
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event's name.
    pub name: String,
    /// Its argument (`null` without one; an array when there are several).
    pub data: Value,
}

/// A reconnect about to be attempted, as given to
/// [`SocketBuilder::on_reconnect`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Reconnect {
    /// 1 for the first attempt after the socket was lost, counting up while attempts fail.
    pub attempt: u32,
    /// How long the socket waits before the attempt.
    pub delay: Duration,
    /// Why: how the socket was lost, or how the previous attempt failed.
    pub cause: String,
}

/// A callback told of every reconnect attempt.
pub(crate) type OnReconnect = Arc<dyn Fn(&Reconnect) + Send + Sync>;

/// Configures a [`Socket`].
///
/// ```no_run
/// use std::time::Duration;
/// use limitless_auth::{Credentials, SharedCredentials, ws::SocketBuilder};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let credentials = SharedCredentials::new(Credentials::from_env()?);
/// let socket = SocketBuilder::new("wss://ws.limitless.exchange")
///     .credentials(credentials.clone()) // a later `store` applies at the next connect
///     .reconnect_backoff(Duration::from_secs(1), Duration::from_secs(60))
///     .on_reconnect(|r| eprintln!("reconnecting in {:?} ({})", r.delay, r.cause))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
pub struct SocketBuilder {
    url: String,
    credentials: SharedCredentials,
    clock: Arc<dyn Clock>,
    tls: Option<rustls::ClientConfig>,
    backoff: Backoff,
    max_attempts: Option<u32>,
    open_timeout: Duration,
    on_reconnect: Option<OnReconnect>,
}

impl SocketBuilder {
    /// A socket to `url` (`ws://` or `wss://`; see [`upgrade_request`](super::upgrade_request)
    /// for the request-target), without credentials: public channels only.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            credentials: SharedCredentials::new(Credentials::new()),
            clock: Arc::new(SystemClock),
            tls: None,
            backoff: Backoff::default(),
            max_attempts: None,
            open_timeout: Duration::from_secs(10),
            on_reconnect: None,
        }
    }

    /// The credentials every connect is signed with: fixed, or a [`SharedCredentials`] handle
    /// read afresh at every connect (a rotation applies at the next one; see
    /// [`Socket::reconnect`]).
    pub fn credentials(mut self, credentials: impl Into<SharedCredentials>) -> Self {
        self.credentials = credentials.into();
        self
    }

    /// The clock the handshakes are signed with (default the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The TLS configuration for `wss` (default: the ring provider and the web PKI roots, as
    /// the REST client). Its ALPN is set to HTTP/1.1.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// The wait before the first reconnect attempt, doubled after each failed one up to `max`
    /// (default 1 s and 60 s); each wait varies by up to 20 % either way, so that clients cut off
    /// together do not come back together.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff.initial = initial;
        self.backoff.max = max.max(initial);
        self
    }

    /// Gives up after this many reconnect attempts since the socket was last healthy, ending
    /// it with [`WsError::GaveUp`] (default `None`: never gives up; `Some(0)`: never
    /// reconnects). A connection is healthy once it has answered a ping; one that opens and is
    /// lost before then counts as an attempt that failed, so a server that keeps accepting and
    /// dropping the socket is given up on too.
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How long one connect may take, from the TCP connect to the namespace's answer (default
    /// 10 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Calls `f` before every reconnect attempt (from the socket's task: keep it short).
    pub fn on_reconnect(mut self, f: impl Fn(&Reconnect) + Send + Sync + 'static) -> Self {
        self.on_reconnect = Some(Arc::new(f));
        self
    }

    /// Opens the socket: connects, signed, and waits for the namespace to accept it. A first
    /// connection that cannot be opened is an error ([`WsError::Connect`], or
    /// [`WsError::Refused`]), not retried; once open, the socket reconnects on its own.
    pub async fn connect(self) -> Result<Socket, WsError> {
        let target = Target::parse(&self.url)?;
        let transport = Transport::new(&target, self.tls)?;
        let subscriptions = Arc::new(Mutex::new(Subscriptions::default()));
        let session = Session {
            target,
            transport,
            credentials: self.credentials,
            clock: self.clock,
            backoff: self.backoff,
            max_attempts: self.max_attempts,
            open_timeout: self.open_timeout,
            on_reconnect: self.on_reconnect,
            subscriptions: subscriptions.clone(),
        };
        let live = session.open().await.map_err(session::Failure::into_first)?;
        let (commands, received) = mpsc::unbounded_channel();
        let (deliver, events) = mpsc::unbounded_channel();
        tokio::spawn(session.run(live, received, deliver));
        Ok(Socket {
            commands,
            events,
            subscriptions,
        })
    }
}

impl fmt::Debug for SocketBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketBuilder")
            .field("url", &self.url)
            .field("credentials", &self.credentials)
            .field("backoff", &self.backoff)
            .field("max_reconnect_attempts", &self.max_attempts)
            .field("open_timeout", &self.open_timeout)
            .finish_non_exhaustive()
    }
}

/// The subscriptions made so far: the last frame of each kind, replayed after a reconnect.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions(BTreeMap<String, String>);

impl Subscriptions {
    /// Keeps what emitting `name` with `data` (as `frame`) means for the replay: a
    /// `subscribe_*` event replaces the previous one of its kind; `unsubscribe` (with the kind
    /// as `channel`) and `unsubscribe_*` end one. `true` when the frame is kept, and so is
    /// sent by the replay after a reconnect.
    pub(crate) fn note(&mut self, name: &str, data: &Value, frame: &str) -> bool {
        if name.starts_with("subscribe_") {
            self.0.insert(name.to_owned(), frame.to_owned());
            return true;
        }
        if let Some(kind) = name.strip_prefix("unsubscribe_") {
            self.0.remove(&format!("subscribe_{kind}"));
        } else if name == "unsubscribe"
            && let Some(kind) = data.get("channel").and_then(Value::as_str)
        {
            self.0.remove(kind);
        }
        false
    }

    /// The frames to send again, in order of kind.
    pub(crate) fn frames(&self) -> Vec<String> {
        self.0.values().cloned().collect()
    }
}

/// Locks the subscriptions, recovering them if a thread panicked while holding the lock.
pub(crate) fn lock(m: &Mutex<Subscriptions>) -> MutexGuard<'_, Subscriptions> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An open `/markets` socket: see the [module docs](super).
///
/// Events are received with [`Socket::recv`], or as a [`futures_core::Stream`]; the stream
/// ends after an error ([`WsError::Refused`], [`WsError::GaveUp`]) or [`Socket::close`]. Events
/// not yet received are buffered without bound. Dropping the socket closes it.
pub struct Socket {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Result<Event, WsError>>,
    subscriptions: Arc<Mutex<Subscriptions>>,
}

impl Socket {
    /// Emits `name` with `data` on `/markets`, now, or after the reconnect under way.
    ///
    /// A `subscribe_*` event (`subscribe_market_prices`, `subscribe_positions`,
    /// `subscribe_transactions`, `subscribe_order_events`, …) is kept and sent again after
    /// every reconnect, the last one of each kind; `unsubscribe` with
    /// `{"channel": "subscribe_…"}`, or an `unsubscribe_*` event, ends the replay of that kind.
    pub fn emit(&self, name: &str, data: Value) -> Result<(), WsError> {
        let name = name.to_owned();
        self.commands
            .send(Command::Emit { name, data })
            .map_err(|_| WsError::Closed)
    }

    /// Reconnects now, signed with the credentials current now: after a rotation, so that the
    /// socket stops using the old token before it is revoked.
    pub fn reconnect(&self) -> Result<(), WsError> {
        self.commands
            .send(Command::Reconnect)
            .map_err(|_| WsError::Closed)
    }

    /// Closes the socket; the events already received can still be read.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// The next event; `None` once the socket has ended.
    pub async fn recv(&mut self) -> Option<Result<Event, WsError>> {
        self.events.recv().await
    }
}

impl futures_core::Stream for Socket {
    type Item = Result<Event, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = lock(&self.subscriptions).0.keys().cloned().collect();
        f.debug_struct("Socket")
            .field("subscriptions", &kinds)
            .field("open", &!self.commands.is_closed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_replay_keeps_the_last_subscription_of_each_kind() {
        let mut subs = Subscriptions::default();
        let mut emit = |name: &str, data: Value| {
            let frame = super::super::packet::event(name, &data);
            subs.note(name, &data, &frame)
        };
        assert!(emit(
            "subscribe_market_prices",
            json!({"marketSlugs": ["a"]})
        ));
        assert!(emit("subscribe_positions", json!({"marketSlugs": ["a"]})));
        assert!(emit(
            "subscribe_market_prices",
            json!({"marketSlugs": ["b"]})
        ));
        assert!(emit("subscribe_market_lifecycle", json!({})));
        assert!(!emit("ping_me", json!({})));
        assert_eq!(
            subs.frames(),
            [
                r#"42/markets,["subscribe_market_lifecycle",{}]"#,
                r#"42/markets,["subscribe_market_prices",{"marketSlugs":["b"]}]"#,
                r#"42/markets,["subscribe_positions",{"marketSlugs":["a"]}]"#,
            ]
        );
        let mut emit = |name: &str, data: Value| {
            let frame = super::super::packet::event(name, &data);
            subs.note(name, &data, &frame)
        };
        assert!(!emit(
            "unsubscribe",
            json!({"channel": "subscribe_positions"})
        ));
        assert!(!emit("unsubscribe_market_lifecycle", json!({})));
        assert!(!emit("unsubscribe", json!({"channel": 7})));
        assert_eq!(
            subs.frames(),
            [r#"42/markets,["subscribe_market_prices",{"marketSlugs":["b"]}]"#]
        );
    }
}
