//! Authentication for the [Limitless Exchange](https://limitless.exchange) API: byte-exact HMAC
//! signing, the Privy identity token, and a route policy that gives each request exactly the
//! authentication its route accepts.
//!
//! The core is [`decide`], a pure function of the route table, the request's method, target and
//! extensions, and the credentials at hand, which returns a [`Decision`] or a [`PolicyError`].
//! Front doors call it and carry the decision out in the same step:
//!
//! - [`AuthLayer`], a tower layer over every credential at hand; [`HmacSigningLayer`] and
//!   [`IdentityLayer`] are the same layer holding one credential. Privy-only routes such as
//!   `GET /auth/api-tokens/capabilities` receive the identity token and nothing else; a route
//!   whose credential is missing fails locally, before the inner service is called.
//! - With feature `client`, [`client::Client`], a ready-made tower stack over hyper-util.
//! - With feature `reqwest`, `reqwest::AuthMiddleware`, the same policy for reqwest-middleware
//!   stacks.
//! - With feature `ws`, `ws::connect`: the `/markets` socket, signed afresh on every connect.
//!
//! The optional `mock` feature adds an embedded mock Limitless server (REST and socket.io),
//! `cli` the `lmts` tool and `tracing` request spans.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use limitless_auth::{AuthLayer, Credentials, HmacCredentials};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let creds = Credentials::new().with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?);
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::new(creds))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         assert_eq!(req.headers()["lmts-api-key"], "token-123");
//!         assert_eq!(req.headers()["lmts-signature"].len(), 44);
//!         Ok::<_, std::convert::Infallible>(Response::new(()))
//!     });
//! let req = Request::post("/orders").body(Full::new(Bytes::from_static(b"{}")))?;
//! svc.oneshot(req).await?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod apply;
mod body;
#[cfg(feature = "client")]
pub mod client;
mod clock;
mod credentials;
mod layer;
#[cfg(feature = "mock")]
pub mod mock;
mod policy;
#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(any(feature = "client", feature = "ws"))]
mod retry_after;
mod scope;
#[cfg(any(feature = "client", feature = "reqwest"))]
mod scope_guard;
mod sign;
#[cfg(any(feature = "client", feature = "reqwest"))]
mod skew;
#[cfg(any(feature = "client", feature = "mock"))]
pub mod types;
#[cfg(feature = "ws")]
pub mod ws;

pub use apply::SigningError;
pub use body::{BodyError, DEFAULT_BODY_LIMIT, SignedBody};
pub use clock::{Clock, FixedClock, SystemClock};
pub use credentials::{
    ApiKey, CredentialError, Credentials, ENV_API_KEY, ENV_IDENTITY_TOKEN, ENV_TOKEN_ID,
    ENV_TOKEN_SCOPES, ENV_TOKEN_SECRET, HmacCredentials, IdentityToken, SecretProblem,
    SharedCredentials,
};
pub use layer::{Auth, AuthFuture, AuthLayer, HmacSigningLayer, IdentityLayer};
pub use policy::{
    Accepts, AuthMode, Credential, Decision, PolicyError, RouteError, RoutePrefix, RouteTable,
    ScopeRequirement, decide,
};
pub use scope::Scope;
pub use sign::{Signature, Timestamp, TimestampError, canonical_message};

/// The error type of the layers, as tower expects (`tower::BoxError`): a boxed typed error
/// ([`PolicyError`], [`SigningError`], [`BodyError`], or the inner service's own).
pub(crate) use tower::BoxError;

/// 64 random bits from the standard library's randomly keyed hasher: jitter and mock token ids
/// need unpredictability, not a cryptographic generator.
#[cfg(any(feature = "client", feature = "mock", feature = "ws"))]
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// The header names this crate reads and writes.
pub mod headers {
    use http::HeaderName;

    /// `lmts-api-key`: the HMAC token id.
    pub const LMTS_API_KEY: HeaderName = HeaderName::from_static("lmts-api-key");
    /// `lmts-timestamp`: the signed timestamp.
    pub const LMTS_TIMESTAMP: HeaderName = HeaderName::from_static("lmts-timestamp");
    /// `lmts-signature`: the HMAC signature.
    pub const LMTS_SIGNATURE: HeaderName = HeaderName::from_static("lmts-signature");
    /// `identity`: `Bearer <Privy identity token>`.
    pub const IDENTITY: HeaderName = HeaderName::from_static("identity");
    /// `x-api-key`: the legacy API key.
    pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
}

/// The README's examples, compiled as doctests.
#[cfg(all(doctest, feature = "client", feature = "reqwest", feature = "ws"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
