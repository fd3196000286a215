//! `AuthLayer` with `ServiceBuilder` over a bare hyper-util client, without the crate's
//! `Client` type, against the embedded mock server. Exits with an error unless every request
//! succeeds and reached the server with the one authentication its route accepts.
//!
//! ```sh
//! cargo run --example layers_over_hyper --features client,mock
//! ```

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use limitless_auth::mock::{MockServer, PARTNER_IDENTITY, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::{AuthLayer, Credentials, HmacCredentials, IdentityToken};
use tower::BoxError;
use tower::{ServiceBuilder, ServiceExt as _};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let mock = MockServer::start().await?;

    let credentials = Credentials::new()
        .with_hmac(HmacCredentials::new(
            PARTNER_TOKEN_ID,
            PARTNER_TOKEN_SECRET,
        )?)
        .with_identity(IdentityToken::new(PARTNER_IDENTITY)?);
    let transport = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    // One decision per request, made and carried out in the layer: the identity token on
    // Privy-only routes, the lmts-* signature on HMAC routes, caller auth headers stripped.
    let stack = ServiceBuilder::new()
        .layer(AuthLayer::new(credentials))
        .service(transport);

    for path in ["/auth/api-tokens/capabilities", "/auth/api-tokens"] {
        let req =
            Request::get(format!("{}{path}", mock.base_url())).body(Full::new(Bytes::new()))?;
        let resp = stack.clone().oneshot(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        println!(
            "GET {path} -> {status}\n{}\n",
            String::from_utf8_lossy(&body)
        );
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
