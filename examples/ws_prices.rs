//! The `/markets` socket against the embedded mock server: signed with the partner's HMAC
//! token, two subscriptions, a lost connection, and the reconnect that signs afresh and sends
//! the subscriptions again. Exits with an error unless every step is seen.
//!
//! ```sh
//! cargo run --example ws_prices --features ws,mock
//! ```

use limitless_auth::mock::{MockServer, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::ws::{Event, Socket, SocketBuilder};
use limitless_auth::{Credentials, HmacCredentials};
use serde_json::json;
use tower::BoxError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;
    let credentials = Credentials::new().with_hmac(HmacCredentials::new(
        PARTNER_TOKEN_ID,
        PARTNER_TOKEN_SECRET,
    )?);
    let mut socket = SocketBuilder::new(&mock.socket_url())
        .credentials(credentials)
        .on_reconnect(|r| println!("-- {}; reconnecting in {:?}", r.cause, r.delay))
        .connect()
        .await?;
    socket.emit(
        "subscribe_market_prices",
        json!({"marketSlugs": ["btc-above-100k"]}),
    )?;
    socket.emit(
        "subscribe_positions",
        json!({"marketSlugs": ["btc-above-100k"]}),
    )?;
    for name in ["authenticated", "newPriceData", "positions"] {
        expect(&mut socket, name).await?;
    }

    mock.drop_sockets(); // as a lost connection: the socket signs again and resubscribes
    for name in ["authenticated", "newPriceData", "positions"] {
        expect(&mut socket, name).await?;
    }
    for handshake in mock.requests() {
        let stamp = handshake.headers.get("lmts-timestamp");
        println!(
            "the server saw {} {} signed at {stamp:?}",
            handshake.method, handshake.target
        );
    }
    Ok(())
}

/// Prints events until one named `name` arrives.
async fn expect(socket: &mut Socket, name: &str) -> Result<Event, BoxError> {
    loop {
        let event = socket.recv().await.ok_or("the socket ended")??;
        println!("{}: {}", event.name, event.data);
        if event.name == name {
            return Ok(event);
        }
    }
}
