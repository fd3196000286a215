//! Fetch a partner's capabilities and list its tokens with the crate's client.
//!
//! Against the embedded mock server (no set-up):
//! ```sh
//! cargo run --example capabilities --features client,mock
//! ```
//! Against the real API, with `LIMITLESS_IDENTITY_TOKEN` (and `LMTS_TOKEN_ID` /
//! `LMTS_TOKEN_SECRET` for the token list) set:
//! ```sh
//! cargo run --example capabilities --features client,mock -- --live
//! ```

use limitless_auth::Scope;
use limitless_auth::client::{Client, Error};
use limitless_auth::mock::{MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::{Credentials, HmacCredentials, IdentityToken};
use tower::BoxError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let live = std::env::args().any(|a| a == "--live");
    let _mock;
    let client = if live {
        Client::builder()
            .credentials(Credentials::from_env()?)
            .build()?
    } else {
        let mock = MockServer::start().await?;
        let client = Client::builder()
            .base_url(mock.base_url())
            .credentials(
                Credentials::new()
                    .with_identity(IdentityToken::new(PARTNER_IDENTITY)?)
                    .with_hmac(HmacCredentials::new(
                        PARTNER_TOKEN_ID,
                        PARTNER_TOKEN_SECRET,
                    )?),
            )
            .build()?;
        _mock = mock;
        client
    };

    let caps = client.capabilities().await?;
    println!(
        "profile {:?}: token management {}",
        caps.partner_profile_id, caps.token_management_enabled
    );
    for scope in [Scope::Trading, Scope::DelegatedSigning, Scope::Withdrawal] {
        println!("  may grant {scope}: {}", caps.allows(&scope));
    }
    match client.list_tokens().await {
        Ok(tokens) => {
            for t in tokens {
                println!("token {} {:?} {:?}", t.token_id, t.label, t.scopes);
            }
        }
        Err(Error::Policy(e)) => println!("not listing tokens: {e}"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
