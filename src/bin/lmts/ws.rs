//! `lmts ws`: the `/markets` socket, one JSON line per event.

use clap::Args;
use limitless_auth::mock::MockServer;
use limitless_auth::ws::{DEFAULT_URL, SocketBuilder, WsError};
use serde_json::Value;

use super::{Failure, after_sending, hmac_from_env, mock_credentials, write_stdout};

pub(crate) const WS_HELP: &str = "\
Environment:
  LMTS_TOKEN_ID, LMTS_TOKEN_SECRET  HMAC token: the handshake is signed with it; without it,
                                    the socket connects unsigned (public channels only)
With --mock, the mock server's partner token fills in when they are unset.

Output: one JSON line per event, {\"event\": NAME, \"data\": PAYLOAD}, `authenticated` included.
A lost socket is reconnected, signed afresh, and the --subscribe events are sent again; each
attempt is noted on stderr; after --max-attempts failed attempts in a row (default 10), with
backoff from 1 s doubling to 60 s, the command gives up.

Exit status:
  0  --count events were printed, or stopped with Ctrl-C
  1  the server refused the handshake; the socket was lost and reconnecting was given up; or
     the output could not be written
  2  nothing was sent: bad arguments, malformed credentials, or a first connection that could
     not be opened";

#[derive(Args)]
pub(crate) struct WsArgs {
    /// The socket URL (default: wss://ws.limitless.exchange).
    #[arg(long, value_name = "WS_URL", conflicts_with = "mock")]
    url: Option<String>,
    /// Start the embedded mock server on 127.0.0.1 and use its socket.
    #[arg(long)]
    mock: bool,
    /// An event to emit once connected, as EVENT=JSON (repeatable), e.g.
    /// subscribe_market_prices='{"marketSlugs":["btc-100k"]}'. Subscriptions are sent again
    /// after every reconnect.
    #[arg(long = "subscribe", value_name = "EVENT=JSON", value_parser = parse_event)]
    subscribe: Vec<(String, Value)>,
    /// Exit 0 after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Reconnect attempts that may fail in a row before giving up (exit 1).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
}

fn parse_event(text: &str) -> Result<(String, Value), String> {
    let (name, json) = text
        .split_once('=')
        .ok_or("expected EVENT=JSON, e.g. subscribe_order_events={}")?;
    if name.is_empty() {
        return Err("the event name is empty".into());
    }
    let data = serde_json::from_str(json).map_err(|e| format!("the payload is not JSON: {e}"))?;
    Ok((name.to_owned(), data))
}

pub(crate) async fn run(args: WsArgs) -> Result<(), Failure> {
    let mut creds = hmac_from_env()?;
    let (url, _mock) = if args.mock {
        let server = MockServer::start()
            .await
            .map_err(|e| Failure::local(format!("cannot start the mock server: {e}")))?;
        creds.hmac = creds.hmac.or(mock_credentials()?.hmac);
        (server.socket_url(), Some(server))
    } else {
        (args.url.unwrap_or_else(|| DEFAULT_URL.to_owned()), None)
    };
    let mut socket = SocketBuilder::new(&url)
        .credentials(creds)
        .max_reconnect_attempts(Some(args.max_attempts))
        .on_reconnect(|r| {
            eprintln!(
                "lmts: {}; reconnecting in {:.1} s (attempt {})",
                r.cause,
                r.delay.as_secs_f64(),
                r.attempt
            );
        })
        .connect()
        .await
        .map_err(ended)?;
    for (name, data) in args.subscribe {
        socket.emit(&name, data).map_err(ended)?;
    }
    let mut printed = 0;
    while args.count.is_none_or(|n| printed < n) {
        let next = tokio::select! {
            next = socket.recv() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let event = match next {
            Some(event) => event.map_err(ended)?,
            None => return Err(Failure::sent("the socket closed")),
        };
        let line = format!(
            "{{\"event\":{},\"data\":{}}}\n",
            Value::String(event.name),
            event.data
        );
        write_stdout(line.as_bytes()).map_err(after_sending)?;
        printed += 1;
    }
    socket.close();
    Ok(())
}

/// Exit 1 when the handshake was sent (a refusal, a lost socket given up), else 2.
fn ended(e: WsError) -> Failure {
    match e {
        WsError::Refused { .. } | WsError::GaveUp { .. } | WsError::Closed => {
            Failure::sent(e.to_string())
        }
        other => Failure::local(other.to_string()),
    }
}
