//! The client's credentials: one holder, read by every request's authentication layer, that
//! refreshes the identity token from an async source and learns the HMAC token's scopes, each
//! single-flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::Error;
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
    deny: Vec<Scope>,
    /// Held while the identity source runs.
    refreshing: tokio::sync::Mutex<()>,
    /// Held while the token's scopes are learned.
    learning: tokio::sync::Mutex<()>,
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
            deny,
            refreshing: tokio::sync::Mutex::new(()),
            learning: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a request may need the holder's steps (a refresh, the scope guard) before it is
    /// sent.
    pub(crate) fn has_steps(&self) -> bool {
        self.source.is_some() || !self.deny.is_empty()
    }

    /// Whether identity tokens are refreshed from a source.
    pub(crate) fn refreshes(&self) -> bool {
        self.source.is_some()
    }

    /// Whether HMAC tokens holding some scopes are refused.
    pub(crate) fn denies(&self) -> bool {
        !self.deny.is_empty()
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

    /// `hmac` with its scopes: as known, or learned once by `learn` (single-flight: requests
    /// that need them at the same time wait for one answer). With `keep`, learned scopes are
    /// kept with the holder's token if it is still `hmac`.
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
        if hmac.scopes().is_some() {
            return Ok(hmac);
        }
        let _single_flight = self.learning.lock().await;
        if keep {
            let current = self.shared.load();
            let learned = current
                .hmac
                .as_ref()
                .filter(|h| h.token_id() == hmac.token_id() && h.scopes().is_some());
            if let Some(learned) = learned {
                return Ok(learned.clone());
            }
        }
        let scopes = learn(hmac.clone())
            .await
            .map_err(|e| Error::ScopesUnknown(Box::new(e)))?;
        if keep {
            self.keep_scopes(&hmac, &scopes);
        }
        Ok(hmac.with_scopes(scopes))
    }

    /// Refuses `hmac` when it is known to hold a denied scope (its scopes are known: see
    /// [`Holder::scoped`]).
    pub(crate) fn check_denied(&self, hmac: &HmacCredentials) -> Result<(), Error> {
        let held = hmac.scopes().unwrap_or_default();
        match self.deny.iter().find(|d| held.contains(d)) {
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
        let scoped = hmac.with_scopes(scopes.iter().cloned());
        self.shared.update(|c| match &c.hmac {
            Some(h) if h.token_id() == hmac.token_id() => c.clone().with_hmac(scoped.clone()),
            _ => c.clone(),
        });
    }
}
