//! Tower middleware that authenticates requests to the
//! [Limitless Exchange](https://limitless.exchange) REST API.
//!
//! - [`HmacSigningLayer`] signs requests with an HMAC scoped token, byte-exact with the official
//!   SDKs: `lmts-api-key`, `lmts-timestamp`, `lmts-signature` over
//!   `timestamp \n METHOD \n path_and_query \n body`.
//! - [`IdentityLayer`] adds the Privy identity token (`identity: Bearer …`).
//! - [`AuthPolicyLayer`] makes sure each request carries exactly one kind of authentication,
//!   the kind its route accepts: Privy-only routes such as `GET /auth/api-tokens/capabilities`
//!   receive the identity token and never an HMAC or API-key header.
//!
//! The layers work with any tower stack and any request body; the optional `client` feature adds
//! a ready-made client, `mock` an embedded mock Limitless server, `cli` the `lmts` tool and
//! `tracing` request spans.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use limitless_auth::{
//!     AuthPolicyLayer, Credentials, HmacCredentials, HmacSigningLayer, IdentityLayer,
//! };
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let creds = Credentials::new().with_hmac(HmacCredentials::new("token-123", "c2VjcmV0")?);
//! let svc = ServiceBuilder::new()
//!     .layer(AuthPolicyLayer::new(creds))
//!     .layer(IdentityLayer::for_policy())
//!     .layer(HmacSigningLayer::for_policy())
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

pub mod body;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod credentials;
pub mod layer;
#[cfg(feature = "mock")]
pub mod mock;
pub mod policy;
pub mod scope;
pub mod sign;
#[cfg(any(feature = "client", feature = "mock"))]
pub mod types;

pub use body::{BodyError, DEFAULT_BODY_LIMIT};
pub use credentials::{
    ApiKey, CredentialError, Credentials, HmacCredentials, IdentityToken, SecretProblem,
    SharedCredentials,
};
pub use layer::AuthLayer;
pub use layer::hmac::{HmacSigning, HmacSigningLayer, SignedBody, SigningError};
pub use layer::privy::{Identity, IdentityLayer};
pub use policy::{
    Accepts, AuthMode, AuthPolicy, AuthPolicyLayer, PolicyError, RouteTable, SelectedAuth,
};
pub use scope::Scope;
pub use sign::{Signature, Timestamp};

/// The error type of the layers, as tower expects: a boxed typed error
/// ([`PolicyError`], [`SigningError`], [`BodyError`], or the inner service's own).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// 64 random bits from the standard library's randomly keyed hasher: jitter and mock token ids
/// need unpredictability, not a cryptographic generator.
#[cfg(any(feature = "client", feature = "mock"))]
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
#[cfg(all(doctest, feature = "client"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
