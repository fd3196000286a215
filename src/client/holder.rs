//! The client's credentials: one holder, read by every request's authentication layer, that
//! refreshes the identity token from an async source and learns the HMAC token's scopes, each
//! single-flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::Error;
use crate::scope_guard::{self, ScopeGuard};
use crate::{BoxError, HmacCredentials, IdentityToken, Scope, SharedCredentials};

/// The future of an identity source.
pub(crate) type IdentityFuture =
    Pin<Box<dyn Future<Output = Result<IdentityToken, BoxError>> + Send>>;

/// An async source of identity tokens.
pub(crate) type IdentitySource = Arc<dyn Fn() -> IdentityFuture + Send + Sync>;

/// The credentials of a client and of all its clones.
pub(crate) struct Holder {
    /// What the authentication layer reads for each request.
    pub(crate) shared: SharedCredentials,
    source: Option<IdentitySource>,
    margin: Duration,
    guard: ScopeGuard,
    /// Held while the identity source runs.
    refreshing: tokio::sync::Mutex<()>,
}

impl Holder {
    pub(crate) fn new(
        shared: SharedCredentials,
        source: Option<IdentitySource>,
        margin: Duration,
        deny: Vec<Scope>,
    ) -> Self {
        Self {
            shared,
            source,
            margin,
            guard: ScopeGuard::new(deny),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a request may need the holder's steps (a refresh, the scope guard) before it is
    /// sent.
    pub(crate) fn has_steps(&self) -> bool {
        self.source.is_some() || self.guard.denies()
    }

    /// Whether identity tokens are refreshed from a source.
    pub(crate) fn refreshes(&self) -> bool {
        self.source.is_some()
    }

    /// Whether HMAC tokens holding some scopes are refused.
    pub(crate) fn denies(&self) -> bool {
        self.guard.denies()
    }

    /// Whether `token` (`None`: there is none) is to be refreshed before a request sent at
    /// server time `now`: missing, expired, or within the margin of its expiry.
    pub(crate) fn due(&self, token: Option<&IdentityToken>, now: i64) -> bool {
        token.is_none_or(|t| t.expires_within(now, self.margin))
    }

    /// Calls the identity source, unless the token has changed since `stale` was read (another
    /// request refreshed it while this one waited), and stores what it returns.
    pub(crate) async fn refresh_identity(
        &self,
        stale: Option<&IdentityToken>,
    ) -> Result<(), Error> {
        let Some(source) = &self.source else {
            return Ok(());
        };
        let _single_flight = self.refreshing.lock().await;
        let current = self.shared.load();
        let changed = match (&current.identity, stale) {
            (Some(now), Some(stale)) => !now.same_as(stale),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if changed {
            return Ok(());
        }
        let token = source().await.map_err(Error::IdentitySource)?;
        #[cfg(feature = "tracing")]
        tracing::debug!("identity token refreshed");
        self.shared
            .update(|c| c.clone().with_identity(token.clone()));
        Ok(())
    }

    /// `hmac` with its scopes: as known, or learned once by `learn` (see
    /// [`ScopeGuard::scoped`]); a failure to learn them is [`Error::ScopesUnknown`].
    pub(crate) async fn scoped<F, Fut>(
        &self,
        hmac: HmacCredentials,
        keep: bool,
        learn: F,
    ) -> Result<HmacCredentials, Error>
    where
        F: FnOnce(HmacCredentials) -> Fut,
        Fut: Future<Output = Result<Vec<Scope>, Error>>,
    {
        let learn = |h| async {
            learn(h)
                .await
                .map_err(|e| Error::ScopesUnknown(Box::new(e)))
        };
        self.guard.scoped(&self.shared, hmac, keep, learn).await
    }

    /// Refuses `hmac` when it is known to hold a denied scope (its scopes are known: see
    /// [`Holder::scoped`]).
    pub(crate) fn check_denied(&self, hmac: &HmacCredentials) -> Result<(), Error> {
        match self.guard.denied(hmac) {
            Some(denied) => Err(Error::ScopeDenied {
                scope: denied.clone(),
                token: hmac.token_hint(),
            }),
            None => Ok(()),
        }
    }

    /// Keeps `scopes` with the holder's HMAC token, if it is still `hmac` (a rotation may have
    /// replaced it meanwhile).
    pub(crate) fn keep_scopes(&self, hmac: &HmacCredentials, scopes: &[Scope]) {
        scope_guard::keep_scopes(&self.shared, hmac, scopes);
    }
}
