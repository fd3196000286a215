//! Least privilege, for the client and the reqwest middleware alike: a set of denied scopes,
//! and the HMAC token's scopes learned once when they are not known.

use std::future::Future;

use crate::{HmacCredentials, Scope, SharedCredentials};

/// Refuses HMAC tokens known to hold a denied scope; learns a token's scopes single-flight.
pub(crate) struct ScopeGuard {
    deny: Vec<Scope>,
    /// Held while a token's scopes are learned.
    learning: tokio::sync::Mutex<()>,
}

impl ScopeGuard {
    pub(crate) fn new(deny: Vec<Scope>) -> Self {
        Self {
            deny,
            learning: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any scope is denied (without one, the guard has nothing to do).
    pub(crate) fn denies(&self) -> bool {
        !self.deny.is_empty()
    }

    /// The first denied scope that `hmac` is known to hold.
    pub(crate) fn denied(&self, hmac: &HmacCredentials) -> Option<&Scope> {
        let held = hmac.scopes().unwrap_or_default();
        self.deny.iter().find(|d| held.contains(d))
    }

    /// `hmac` with its scopes: as known, or learned by `learn` (single-flight: requests that
    /// need them at the same time wait for one answer). With `keep`, learned scopes are kept
    /// with `shared`'s token if it is still `hmac`, and a wait ends with what another request
    /// learned.
    pub(crate) async fn scoped<F, Fut, E>(
        &self,
        shared: &SharedCredentials,
        hmac: HmacCredentials,
        keep: bool,
        learn: F,
    ) -> Result<HmacCredentials, E>
    where
        F: FnOnce(HmacCredentials) -> Fut,
        Fut: Future<Output = Result<Vec<Scope>, E>>,
    {
        if hmac.scopes().is_some() {
            return Ok(hmac);
        }
        let _single_flight = self.learning.lock().await;
        if keep {
            let current = shared.load();
            let learned = current
                .hmac
                .as_ref()
                .filter(|h| h.token_id() == hmac.token_id() && h.scopes().is_some());
            if let Some(learned) = learned {
                return Ok(learned.clone());
            }
        }
        let scopes = learn(hmac.clone()).await?;
        if keep {
            keep_scopes(shared, &hmac, &scopes);
        }
        Ok(hmac.with_scopes(scopes))
    }
}

/// Keeps `scopes` with `shared`'s HMAC token, if it is still `hmac` (a rotation may have
/// replaced it meanwhile).
pub(crate) fn keep_scopes(shared: &SharedCredentials, hmac: &HmacCredentials, scopes: &[Scope]) {
    let scoped = hmac.with_scopes(scopes.iter().cloned());
    shared.update(|c| match &c.hmac {
        Some(h) if h.token_id() == hmac.token_id() => c.clone().with_hmac(scoped.clone()),
        _ => c.clone(),
    });
}
