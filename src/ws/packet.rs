//! Engine.IO v4 and Socket.IO v5 packets over WebSocket text frames, for the `/markets`
//! namespace: what the socket reads and writes, as pure functions.
//!
//! An Engine.IO packet is a type digit and a payload: `0` open (a JSON object), `1` close,
//! `2` ping, `3` pong, `4` message. A message carries a Socket.IO packet: a type digit
//! (`0` connect, `1` disconnect, `2` event, `4` connect error), then for a namespace other than
//! `/` the namespace and a comma, then for an event an optional acknowledgement id, then JSON.

use std::time::Duration;

use serde_json::Value;

/// The namespace of the market channels.
pub(crate) const NAMESPACE: &str = "/markets";

/// The frame that connects the namespace.
pub(crate) const CONNECT: &str = "40/markets,";

/// The answer to a ping.
pub(crate) const PONG: &str = "3";

/// The session parameters of an Engine.IO open packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Open {
    /// How often the server pings.
    pub(crate) ping_interval: Duration,
    /// How long the server waits for the answer.
    pub(crate) ping_timeout: Duration,
}

impl Open {
    /// How long the socket may stay silent before it is presumed lost: a ping is due every
    /// `ping_interval`, and the server allows `ping_timeout` on top of it.
    pub(crate) fn silence_limit(&self) -> Duration {
        self.ping_interval.saturating_add(self.ping_timeout)
    }
}

/// One frame read from the socket.
#[derive(Debug, PartialEq)]
pub(crate) enum Inbound {
    /// The Engine.IO session opened.
    Open(Open),
    /// The server pings; answer [`PONG`].
    Ping,
    /// The server closes the Engine.IO session.
    Close,
    /// The namespace is connected.
    Connected,
    /// The namespace refused the connection, with the server's message.
    ConnectError(String),
    /// The server disconnected the namespace.
    Disconnected,
    /// An event: its name, and its argument (`null` for none, an array for several).
    Event(String, Value),
    /// Anything else: another namespace, an acknowledgement, a pong, a noop.
    Other,
    /// A frame that does not parse as what its type announces.
    Malformed(&'static str),
}

/// Parses one text frame.
pub(crate) fn parse(frame: &str) -> Inbound {
    let mut chars = frame.chars();
    let Some(kind) = chars.next() else {
        return Inbound::Malformed("an empty frame");
    };
    let rest = chars.as_str();
    match kind {
        '0' => parse_open(rest),
        '1' => Inbound::Close,
        '2' => Inbound::Ping,
        '4' => parse_message(rest),
        _ => Inbound::Other,
    }
}

fn parse_open(json: &str) -> Inbound {
    let Ok(open) = serde_json::from_str::<Value>(json) else {
        return Inbound::Malformed("an open packet that is not JSON");
    };
    let millis = |field| open.get(field).and_then(Value::as_u64);
    match (millis("pingInterval"), millis("pingTimeout")) {
        (Some(interval), Some(timeout)) => Inbound::Open(Open {
            ping_interval: Duration::from_millis(interval),
            ping_timeout: Duration::from_millis(timeout),
        }),
        _ => Inbound::Malformed("an open packet without pingInterval and pingTimeout"),
    }
}

/// A Socket.IO packet: its type digit, then the namespace.
fn parse_message(packet: &str) -> Inbound {
    let mut chars = packet.chars();
    let Some(kind) = chars.next() else {
        return Inbound::Malformed("an empty message");
    };
    let Some(after) = chars.as_str().strip_prefix(NAMESPACE) else {
        return Inbound::Other;
    };
    // The namespace ends at a comma, or the packet ends with it.
    let payload = match after.strip_prefix(',') {
        Some(payload) => payload,
        None if after.is_empty() => "",
        None => return Inbound::Other,
    };
    match kind {
        '0' => Inbound::Connected,
        '1' => Inbound::Disconnected,
        '2' => parse_event(payload.trim_start_matches(|c: char| c.is_ascii_digit())),
        '4' => Inbound::ConnectError(refusal_message(payload)),
        _ => Inbound::Other,
    }
}

fn parse_event(json: &str) -> Inbound {
    let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(json) else {
        return Inbound::Malformed("an event that is not a JSON array");
    };
    if args.is_empty() {
        return Inbound::Malformed("an event without a name");
    }
    let Value::String(name) = args.remove(0) else {
        return Inbound::Malformed("an event whose name is not a string");
    };
    let data = match args.len() {
        0 => Value::Null,
        1 => args.remove(0),
        _ => Value::Array(args),
    };
    Inbound::Event(name, data)
}

/// The `message` of a connect error, else its payload as sent.
fn refusal_message(payload: &str) -> String {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| payload.to_owned())
}

/// Whether a connect error's `message` says it passes (a server overloaded, restarting), so
/// that another attempt is worth making. Anything else is a refusal, final: a message about
/// the credentials, and one this does not recognise, so that credentials the server refused
/// are never sent again in a loop.
pub(crate) fn connect_error_passes(message: &str) -> bool {
    const ABOUT_CREDENTIALS: [&str; 9] = [
        "auth",
        "token",
        "signature",
        "credential",
        "api key",
        "api-key",
        "timestamp",
        "forbidden",
        "permission",
    ];
    const PASSING: [&str; 8] = [
        "overload",
        "unavailable",
        "try again",
        "too many",
        "rate limit",
        "busy",
        "restart",
        "shutting down",
    ];
    let message = message.to_ascii_lowercase();
    !ABOUT_CREDENTIALS.iter().any(|word| message.contains(word))
        && PASSING.iter().any(|word| message.contains(word))
}

/// The frame that emits `name` with `data` on the namespace.
pub(crate) fn event(name: &str, data: &Value) -> String {
    let args = Value::Array(vec![Value::String(name.to_owned()), data.clone()]);
    format!("42{NAMESPACE},{args}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_connect_errors_that_say_they_pass_are_tried_again() {
        for refusal in [
            "Invalid signature",
            "Invalid or revoked API token",
            "Authentication failed",
            "Unauthorized",
            "Timestamp out of range",
            "Forbidden",
            "missing API key",
            // Not recognised: refused, never retried in a loop.
            "Invalid HMAC",
            "Access denied",
            "",
            r#"{"code":4001}"#,
            // About the credentials, whatever else it says.
            "Token rejected, try again with another",
        ] {
            assert!(!connect_error_passes(refusal), "{refusal}");
        }
        for passing in [
            "Server overloaded",
            "Service Unavailable",
            "try again later",
            "Too many connections",
            "server restarting",
        ] {
            assert!(connect_error_passes(passing), "{passing}");
        }
    }

    #[test]
    fn frames_parse_to_what_they_announce() {
        let cases: Vec<(&str, Inbound)> = vec![
            (
                r#"0{"sid":"a","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
                Inbound::Open(Open {
                    ping_interval: Duration::from_secs(25),
                    ping_timeout: Duration::from_secs(20),
                }),
            ),
            ("2", Inbound::Ping),
            ("1", Inbound::Close),
            ("3", Inbound::Other),
            ("6", Inbound::Other),
            (r#"40/markets,{"sid":"b"}"#, Inbound::Connected),
            ("40/markets", Inbound::Connected),
            ("41/markets,", Inbound::Disconnected),
            (
                r#"44/markets,{"message":"Invalid signature"}"#,
                Inbound::ConnectError("Invalid signature".into()),
            ),
            (
                "44/markets,not json",
                Inbound::ConnectError("not json".into()),
            ),
            (
                r#"42/markets,["newPriceData",{"blockNumber":1}]"#,
                Inbound::Event("newPriceData".into(), json!({"blockNumber": 1})),
            ),
            (
                r#"42/markets,17["orderEvent",{"type":"PLACEMENT"}]"#,
                Inbound::Event("orderEvent".into(), json!({"type": "PLACEMENT"})),
            ),
            (
                r#"42/markets,["authenticated"]"#,
                Inbound::Event("authenticated".into(), Value::Null),
            ),
            (
                r#"42/markets,["tx",1,2]"#,
                Inbound::Event("tx".into(), json!([1, 2])),
            ),
            // Another namespace, or one that only begins like it.
            (r#"42["newPriceData",{}]"#, Inbound::Other),
            (r#"42/marketsX,["newPriceData",{}]"#, Inbound::Other),
            (r#"43/markets,1[]"#, Inbound::Other),
            ("", Inbound::Malformed("an empty frame")),
            ("4", Inbound::Malformed("an empty message")),
            ("0{", Inbound::Malformed("an open packet that is not JSON")),
            (
                r#"0{"sid":"a"}"#,
                Inbound::Malformed("an open packet without pingInterval and pingTimeout"),
            ),
            (
                r#"42/markets,{"a":1}"#,
                Inbound::Malformed("an event that is not a JSON array"),
            ),
            (
                "42/markets,[]",
                Inbound::Malformed("an event without a name"),
            ),
            (
                "42/markets,[7]",
                Inbound::Malformed("an event whose name is not a string"),
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(parse(frame), expected, "{frame:?}");
        }
    }

    #[test]
    fn an_event_is_written_as_socket_io_writes_it() {
        assert_eq!(
            event(
                "subscribe_market_prices",
                &json!({"marketSlugs": ["btc-100k"]})
            ),
            r#"42/markets,["subscribe_market_prices",{"marketSlugs":["btc-100k"]}]"#
        );
        assert_eq!(
            event("subscribe_order_events", &json!({})),
            r#"42/markets,["subscribe_order_events",{}]"#
        );
    }

    #[test]
    fn the_silence_limit_is_the_interval_plus_the_timeout() {
        let open = Open {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
        };
        assert_eq!(open.silence_limit(), Duration::from_secs(45));
    }

    proptest::proptest! {
        /// Arbitrary text, and text that reaches the namespace's packets.
        #[test]
        fn arbitrary_frames_parse_without_a_panic(
            any in ".*",
            kind in "[0-6]",
            rest in ".*",
        ) {
            let _ = parse(&any);
            let reached = parse(&format!("4{kind}/markets,{rest}"));
            // Every frame of the namespace's types parses to one of them, or to Malformed.
            let of_namespace = !matches!(reached, Inbound::Other | Inbound::Open(_) | Inbound::Ping);
            proptest::prop_assert!(of_namespace || kind == "3" || kind == "5" || kind == "6");
        }
    }

    #[test]
    fn any_text_parses_without_a_panic() {
        for frame in [
            "4\u{e9}",
            "0\u{e9}",
            "42/markets,\u{e9}",
            "4\u{1F600}/markets",
            "\u{e9}",
        ] {
            let _ = parse(frame);
        }
    }
}
