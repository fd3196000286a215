//! A reqwest-middleware client with `AuthMiddleware`, below a retry middleware, against the
//! embedded mock server: the Privy-only capabilities route gets the identity token, the token
//! list an HMAC signature. Exits with an error unless both succeed.
//!
//! ```sh
//! cargo run --example reqwest_capabilities --features reqwest,mock
//! ```

use limitless_auth::mock::{MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::reqwest::AuthMiddleware;
use limitless_auth::{Credentials, HmacCredentials, IdentityToken};
use reqwest::redirect::Policy;
use reqwest_middleware::ClientBuilder;
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use tower::BoxError;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;
    let credentials = Credentials::new()
        .with_hmac(HmacCredentials::new(
            PARTNER_TOKEN_ID,
            PARTNER_TOKEN_SECRET,
        )?)
        .with_identity(IdentityToken::new(PARTNER_IDENTITY)?);
    let retries = ExponentialBackoff::builder().build_with_max_retries(3);
    let client = ClientBuilder::new(
        reqwest::Client::builder()
            .redirect(Policy::none())
            // The mock is on loopback: no proxy from the environment in between.
            .no_proxy()
            .build()?,
    )
    // Retries above, so that every attempt is signed afresh below.
    .with(RetryTransientMiddleware::new_with_policy(retries))
    // Only the mock's origin is authenticated (by default, https://api.limitless.exchange).
    .with(AuthMiddleware::new(credentials).origin(&mock.base_url().parse()?))
    .build();

    for path in ["/auth/api-tokens/capabilities", "/auth/api-tokens"] {
        let resp = client
            .get(format!("{}{path}", mock.base_url()))
            .send()
            .await?;
        let status = resp.status();
        println!("GET {path} -> {status}\n{}\n", resp.text().await?);
        if !status.is_success() {
            return Err(format!("GET {path} answered {status}").into());
        }
    }
    for r in mock.requests() {
        let auth: Vec<&str> = r
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.starts_with("lmts-") || *k == "identity" || *k == "x-api-key")
            .collect();
        println!("the server saw {} {} with {auth:?}", r.method, r.target);
    }
    Ok(())
}
