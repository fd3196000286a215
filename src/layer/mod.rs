//! The tower front door: [`AuthLayer`] (the route policy over every credential at hand) and the
//! single-mode [`HmacSigningLayer`] and [`IdentityLayer`]. All three make the same service,
//! [`Auth`], which in one `call` strips the caller's authentication headers, [`decide`]s, and
//! carries the decision out; a request it refuses never reaches the inner service.
//!
//! [`decide`]: crate::decide

mod auth;
mod future;
mod hmac;
mod identity;

pub use auth::{Auth, AuthLayer};
pub use future::AuthFuture;
pub use hmac::HmacSigningLayer;
pub use identity::IdentityLayer;

use std::sync::Arc;

use http::Request;

use crate::BoxError;
use crate::apply::{self, Signer};
use crate::credentials::SharedCredentials;
use crate::policy::{PolicyError, RouteTable, decide};

/// What a service of the tower front door decides and signs with.
#[derive(Clone, Debug)]
pub(crate) struct Config<C> {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) credentials: SharedCredentials,
    pub(crate) clock: C,
    pub(crate) body_limit: usize,
}

/// The first four steps for a tower request: its authentication headers stripped, the
/// decision made with the credentials current now and carried out but for the signature.
/// Returns the signer when the request is to be signed.
fn authorize<B, C: crate::Clock>(
    req: &mut Request<B>,
    config: &Config<C>,
) -> Result<Option<Signer>, PolicyError> {
    apply::strip_auth_headers(req.headers_mut());
    let credentials = config.credentials.current();
    let path = req.uri().path();
    let decision = decide(
        &config.table,
        req.method(),
        path,
        req.extensions(),
        &credentials,
    )?;
    apply::check_expiry(&decision, req.method(), path, &config.clock)?;
    // Recorded into the client's request span (an INFO span: with INFO off, there is none).
    #[cfg(feature = "tracing")]
    if tracing::level_enabled!(tracing::Level::INFO) {
        let mode = decision.credential.mode();
        tracing::Span::current().record("mode", tracing::field::display(mode));
    }
    Ok(apply::apply(decision, req.headers_mut()))
}

/// Logs a refusal (with the `tracing` feature) and makes it the layer's error.
pub(crate) fn refused(e: PolicyError) -> BoxError {
    #[cfg(feature = "tracing")]
    tracing::debug!(error = %e, "refused by the route policy");
    e.into()
}

#[cfg(test)]
mod tests;
