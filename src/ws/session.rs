//! The task behind a socket: opens a connection, serves it until it is lost, reconnects.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

use super::packet::{self, CONNECT, Inbound, Open, PONG, connect_error_passes};
use super::socket::{Event, OnReconnect, Reconnect, Subscriptions, lock};
use super::transport::{Io, Transport};
use super::{Target, WsError, handshake};
use crate::clock::Clock;
use crate::{BoxError, SharedCredentials};

/// What the socket's handle tells its task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Emit this event.
    Emit {
        name: String,
        data: serde_json::Value,
    },
    /// Reconnect now.
    Reconnect,
    /// Close the socket.
    Close,
}

/// The waits between reconnect attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    /// The fraction each wait varies by, either way.
    pub(crate) jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed attempts: `initial × 2^failures` up to `max`, scaled
    /// by a factor between `1 - jitter` and `1 + jitter` drawn from `random`, and never above
    /// `max`.
    pub(crate) fn delay(&self, failures: u32, random: u64) -> Duration {
        let doubling = 1u32.checked_shl(failures).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(doubling).min(self.max);
        // 53 random bits as a fraction in [0, 1).
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit;
        Duration::try_from_secs_f64(base.as_secs_f64() * factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

pub(crate) type Ws = WebSocketStream<Box<dyn Io>>;

/// A connection whose namespace is connected.
pub(crate) struct Live {
    ws: Ws,
    open: Open,
}

/// Why a connection could not be opened.
pub(crate) enum Failure {
    /// Not to be tried again: the server refused the credentials, or the request could not be
    /// made.
    Final(WsError),
    /// Worth another attempt, after the server's `Retry-After` if it sent one.
    Transient {
        error: BoxError,
        retry_after: Option<Duration>,
    },
}

impl Failure {
    pub(crate) fn transient(error: impl Into<BoxError>) -> Self {
        Self::Transient {
            error: error.into(),
            retry_after: None,
        }
    }

    /// The error of a first connection, which is not retried.
    pub(crate) fn into_first(self) -> WsError {
        match self {
            Self::Final(e) => e,
            Self::Transient { error, .. } => WsError::Connect(error),
        }
    }
}

/// How serving a connection ended.
enum End {
    /// Closed by the handle, or the handle is gone.
    Stop,
    /// Refused by the server, for good.
    Refused(WsError),
    /// Lost: reconnect after the backoff.
    Lost(String),
    /// A reconnect was asked for: reconnect now.
    Reconnect,
}

/// Everything a socket's task needs.
pub(crate) struct Session {
    pub(crate) target: Target,
    pub(crate) transport: Transport,
    pub(crate) credentials: SharedCredentials,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) backoff: Backoff,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) open_timeout: Duration,
    pub(crate) on_reconnect: Option<OnReconnect>,
    pub(crate) subscriptions: Arc<Mutex<Subscriptions>>,
}

impl Session {
    /// Opens a connection, signed with the credentials current now, within the open timeout.
    pub(crate) async fn open(&self) -> Result<Live, Failure> {
        match timeout(self.open_timeout, self.open_unbounded()).await {
            Ok(opened) => opened,
            Err(_) => Err(Failure::transient(format!(
                "the socket did not open within {:?}",
                self.open_timeout
            ))),
        }
    }

    async fn open_unbounded(&self) -> Result<Live, Failure> {
        let io = self
            .transport
            .connect(&self.target)
            .await
            .map_err(Failure::transient)?;
        let req = self
            .target
            .request(&self.credentials.load(), &self.clock)
            .map_err(Failure::Final)?;
        #[cfg(feature = "tracing")]
        tracing::debug!(
            signed = req.headers().contains_key("lmts-signature"),
            "socket upgrade"
        );
        let mut ws = handshake::upgrade(io, &req, self.clock.now_millis()).await?;
        let open = loop {
            match read(&mut ws).await.map_err(Failure::transient)? {
                Inbound::Open(open) => break open,
                Inbound::Malformed(why) => return Err(Failure::transient(why)),
                _ => {}
            }
        };
        send(&mut ws, CONNECT).await.map_err(Failure::transient)?;
        loop {
            match read(&mut ws).await.map_err(Failure::transient)? {
                Inbound::Connected => return Ok(Live { ws, open }),
                Inbound::ConnectError(message) if connect_error_passes(&message) => {
                    return Err(Failure::transient(format!(
                        "the namespace refused the connection: {message}"
                    )));
                }
                Inbound::ConnectError(message) => {
                    return Err(Failure::Final(WsError::Refused {
                        status: None,
                        message,
                    }));
                }
                Inbound::Ping => send(&mut ws, PONG).await.map_err(Failure::transient)?,
                Inbound::Close | Inbound::Disconnected => {
                    return Err(Failure::transient("the server closed the session"));
                }
                _ => {}
            }
        }
    }

    /// Serves `live`, reconnecting whenever it is lost, until the socket is closed, refused,
    /// or reconnecting is given up.
    pub(crate) async fn run(
        self,
        live: Live,
        mut commands: UnboundedReceiver<Command>,
        events: UnboundedSender<Result<Event, WsError>>,
    ) {
        let mut pending = VecDeque::new();
        // Attempts since a connection was last healthy (answered a ping): a connection that
        // opens and is lost before then does not start the count again.
        let mut attempts = 0u32;
        let mut live = live;
        loop {
            let (end, healthy) = self.serve(live, &mut commands, &events, &mut pending).await;
            let (cause, now) = match end {
                End::Stop => return,
                End::Refused(e) => {
                    let _ = events.send(Err(e));
                    return;
                }
                End::Lost(cause) => (cause, false),
                End::Reconnect => ("a reconnect was asked for".to_owned(), true),
            };
            if healthy || now {
                attempts = 0;
            }
            #[cfg(feature = "tracing")]
            tracing::info!(%cause, "socket lost");
            match self
                .reconnect(cause, now, &mut attempts, &mut commands, &mut pending)
                .await
            {
                Ok(again) => live = again,
                Err(None) => return,
                Err(Some(e)) => {
                    let _ = events.send(Err(e));
                    return;
                }
            }
        }
    }

    /// Replays the subscriptions, sends what waited, then relays events and commands until
    /// the connection ends, and closes it. Silence past the server's ping interval and timeout
    /// ends it. `true` with the end when the connection was healthy: it answered a ping.
    async fn serve(
        &self,
        mut live: Live,
        commands: &mut UnboundedReceiver<Command>,
        events: &UnboundedSender<Result<Event, WsError>>,
        pending: &mut VecDeque<String>,
    ) -> (End, bool) {
        let mut healthy = false;
        let end = self
            .relay(&mut live, commands, events, pending, &mut healthy)
            .await;
        let _ = timeout(CLOSE_TIMEOUT, live.ws.close(None)).await;
        (end, healthy)
    }

    async fn relay(
        &self,
        live: &mut Live,
        commands: &mut UnboundedReceiver<Command>,
        events: &UnboundedSender<Result<Event, WsError>>,
        pending: &mut VecDeque<String>,
        healthy: &mut bool,
    ) -> End {
        let replay = lock(&self.subscriptions).frames();
        for frame in &replay {
            if let Err(e) = self.send(&mut live.ws, frame).await {
                return End::Lost(e.to_string());
            }
        }
        // Each frame leaves the queue once sent: a connection lost meanwhile keeps the rest.
        while let Some(frame) = pending.front() {
            if let Err(e) = self.send(&mut live.ws, frame).await {
                return End::Lost(e.to_string());
            }
            pending.pop_front();
        }
        let limit = live.open.silence_limit();
        let mut deadline = Instant::now() + limit;
        loop {
            tokio::select! {
                frame = read(&mut live.ws) => {
                    deadline = Instant::now() + limit;
                    match frame {
                        Err(e) => return End::Lost(e.to_string()),
                        Ok(inbound) => {
                            *healthy |= inbound == Inbound::Ping;
                            if let Some(end) = self.handle(inbound, live, events).await {
                                return end;
                            }
                        }
                    }
                }
                command = commands.recv() => match command {
                    None | Some(Command::Close) => return End::Stop,
                    Some(Command::Reconnect) => return End::Reconnect,
                    Some(Command::Emit { name, data }) => {
                        let (frame, kept) = self.note(&name, &data);
                        if let Err(e) = self.send(&mut live.ws, &frame).await {
                            // A kept subscription goes again with the replay.
                            if !kept {
                                pending.push_back(frame);
                            }
                            return End::Lost(e.to_string());
                        }
                    }
                },
                () = sleep_until(deadline) => {
                    return End::Lost(format!(
                        "nothing was received for {limit:?} (ping interval and timeout)"
                    ));
                }
            }
        }
    }

    /// Acts on one frame read from a live connection; `Some` when it ends the connection.
    async fn handle(
        &self,
        inbound: Inbound,
        live: &mut Live,
        events: &UnboundedSender<Result<Event, WsError>>,
    ) -> Option<End> {
        match inbound {
            Inbound::Ping => match self.send(&mut live.ws, PONG).await {
                Ok(()) => None,
                Err(e) => Some(End::Lost(e.to_string())),
            },
            Inbound::Event(name, data) => {
                // The handle is gone: nobody reads the events.
                events
                    .send(Ok(Event { name, data }))
                    .err()
                    .map(|_| End::Stop)
            }
            Inbound::Close => Some(End::Lost("the server closed the session".into())),
            Inbound::Disconnected => {
                Some(End::Lost("the server disconnected the namespace".into()))
            }
            Inbound::ConnectError(message) if connect_error_passes(&message) => Some(End::Lost(
                format!("the namespace dropped the connection: {message}"),
            )),
            Inbound::ConnectError(message) => Some(End::Refused(WsError::Refused {
                status: None,
                message,
            })),
            Inbound::Open(_) | Inbound::Connected | Inbound::Other | Inbound::Malformed(_) => None,
        }
    }

    /// Sends `frame`, within the open timeout: a peer that stops reading is a lost one.
    async fn send(&self, ws: &mut Ws, frame: &str) -> Result<(), BoxError> {
        match timeout(self.open_timeout, send(ws, frame)).await {
            Ok(sent) => sent.map_err(Into::into),
            Err(_) => {
                Err(format!("a frame could not be sent within {:?}", self.open_timeout).into())
            }
        }
    }

    /// Opens a new connection: at once when `now`, else after the backoff, and again after
    /// each failed attempt, until `max_attempts` attempts have been made since the socket was
    /// last healthy. `Err(None)` when the socket was closed meanwhile.
    async fn reconnect(
        &self,
        mut cause: String,
        now: bool,
        attempts: &mut u32,
        commands: &mut UnboundedReceiver<Command>,
        pending: &mut VecDeque<String>,
    ) -> Result<Live, Option<WsError>> {
        let mut retry_after = None;
        let mut first = true;
        loop {
            if self.max_attempts.is_some_and(|max| *attempts >= max) {
                return Err(Some(WsError::GaveUp {
                    attempts: *attempts,
                    last: cause.into(),
                }));
            }
            let delay = if first && now {
                Duration::ZERO
            } else {
                self.backoff
                    .delay(*attempts, crate::random_u64())
                    .max(retry_after.unwrap_or_default())
            };
            first = false;
            #[cfg(feature = "tracing")]
            tracing::info!(attempt = *attempts + 1, delay_ms = delay.as_millis() as u64, %cause, "socket reconnecting");
            if let Some(f) = &self.on_reconnect {
                f(&Reconnect {
                    attempt: *attempts + 1,
                    delay,
                    cause: cause.clone(),
                });
            }
            if !self.wait(delay, commands, pending).await {
                return Err(None);
            }
            *attempts += 1;
            match self.open().await {
                Ok(live) => {
                    #[cfg(feature = "tracing")]
                    tracing::info!(attempt = *attempts, "socket reconnected");
                    return Ok(live);
                }
                Err(Failure::Final(e)) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %e, "socket refused");
                    return Err(Some(e));
                }
                Err(Failure::Transient {
                    error,
                    retry_after: wait,
                }) => {
                    cause = error.to_string();
                    retry_after = wait;
                }
            }
        }
    }

    /// The frame emitting `name` with `data`, noted for the replay; `true` when the replay
    /// sends it.
    fn note(&self, name: &str, data: &serde_json::Value) -> (String, bool) {
        let frame = packet::event(name, data);
        let kept = lock(&self.subscriptions).note(name, data, &frame);
        (frame, kept)
    }

    /// Waits `delay`; the events emitted meanwhile are noted for the replay, or kept to send
    /// once connected. `false` when the socket is closed. A reconnect asked for meanwhile cuts
    /// the wait short.
    async fn wait(
        &self,
        delay: Duration,
        commands: &mut UnboundedReceiver<Command>,
        pending: &mut VecDeque<String>,
    ) -> bool {
        let until = sleep(delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return true,
                command = commands.recv() => match command {
                    None | Some(Command::Close) => return false,
                    Some(Command::Reconnect) => return true,
                    Some(Command::Emit { name, data }) => {
                        let (frame, kept) = self.note(&name, &data);
                        if !kept {
                            pending.push_back(frame);
                        }
                    }
                },
            }
        }
    }
}

/// How long closing a connection may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Reads the next text frame and parses it; other frames parse as [`Inbound::Other`]. A closed
/// socket is an error.
async fn read(ws: &mut Ws) -> Result<Inbound, BoxError> {
    match ws.next().await {
        Some(Ok(Message::Text(text))) => Ok(packet::parse(text.as_str())),
        Some(Ok(Message::Close(_))) | None => Err("the socket was closed".into()),
        Some(Ok(_)) => Ok(Inbound::Other),
        Some(Err(e)) => Err(e.into()),
    }
}

async fn send(ws: &mut Ws, frame: &str) -> Result<(), tungstenite::Error> {
    ws.send(Message::text(frame)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_varies_by_a_fifth_and_stops_at_the_cap() {
        let b = Backoff::default();
        let (low, mid, high) = (0, 1u64 << 63, u64::MAX);
        assert_eq!(b.delay(0, low), Duration::from_millis(800));
        assert_eq!(b.delay(0, mid), Duration::from_secs(1));
        assert!(b.delay(0, high) > Duration::from_millis(1199));
        assert!(b.delay(0, high) <= Duration::from_millis(1200));
        assert_eq!(b.delay(3, mid), Duration::from_secs(8));
        assert_eq!(b.delay(5, low), Duration::from_millis(25_600));
        assert_eq!(b.delay(6, mid), Duration::from_secs(60));
        assert_eq!(b.delay(6, low), Duration::from_secs(48));
        assert_eq!(
            b.delay(6, high),
            Duration::from_secs(60),
            "never above the cap"
        );
        assert_eq!(b.delay(40, mid), Duration::from_secs(60));
        let huge = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            jitter: 0.2,
        };
        assert_eq!(huge.delay(3, high), Duration::MAX);
    }
}
