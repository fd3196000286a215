//! Rotating the client's HMAC token: derive, prove, switch, revoke.

use std::fmt;
use std::time::Duration;

use http::{Method, StatusCode};

use super::error::RotationStep;
use super::{Client, Error, json_request};
use crate::types::DerivedToken;
use crate::{AuthMode, HmacCredentials, Scope};

impl Client {
    /// Rotates the client's HMAC token, in four steps:
    ///
    /// 1. derive a new token (Privy) with `label` and `scopes`;
    /// 2. prove that it works: a `GET /auth/api-tokens` signed with it, retried while the API
    ///    answers 401 (a new credential can take a while to become valid everywhere) for at
    ///    most [`rotation_proof_timeout`](super::ClientBuilder::rotation_proof_timeout);
    /// 3. switch the client (and every clone) to it: requests started from then on use it;
    /// 4. revoke the old token.
    ///
    /// If a step before the switch fails, the old token stays in use, nothing is revoked, and
    /// the error ([`Error::Rotation`]) names the step (and the new token, if it was derived). A
    /// failure to revoke the old token comes back in [`Rotation::revoke_error`]: by then the new
    /// token is in use, and its secret, which the API shows only once, is in the result.
    pub async fn rotate_token(
        &self,
        label: Option<&str>,
        scopes: Option<&[Scope]>,
    ) -> Result<Rotation, Error> {
        let mut rotation = self.switch_to_new_token(label, scopes).await?;
        if let Some(old) = &rotation.previous_token_id
            && *old != rotation.token.token_id
        {
            rotation.revoke_error = self.revoke_token(old).await.err();
        }
        Ok(rotation)
    }

    /// Steps 1 to 3 of [`Client::rotate_token`]: derive, prove and switch, leaving the previous
    /// token valid (revoke it with [`Client::revoke_token`] once the new secret is stored).
    pub async fn switch_to_new_token(
        &self,
        label: Option<&str>,
        scopes: Option<&[Scope]>,
    ) -> Result<Rotation, Error> {
        let failed = |step, new_token_id: Option<&str>| {
            let new_token_id = new_token_id.map(str::to_owned);
            move |e: Error| Error::Rotation {
                step,
                new_token_id,
                source: Box::new(e),
            }
        };
        let old = self.inner.holder.shared.load().hmac.clone();
        let token = self
            .derive_token(label, scopes)
            .await
            .map_err(failed(RotationStep::Derive, None))?;
        let prove = failed(RotationStep::Prove, Some(&token.token_id));
        let new = match token.credentials() {
            Ok(new) => new,
            Err(e) => return Err(prove(e.into())),
        };
        if let Err(e) = self.prove(&new).await {
            return Err(prove(e));
        }
        self.inner
            .holder
            .shared
            .update(|c| c.clone().with_hmac(new.clone()));
        Ok(Rotation {
            token,
            previous_token_id: old.map(|old| old.token_id().to_owned()),
            revoke_error: None,
        })
    }

    /// A signed `GET /auth/api-tokens` with `creds`, repeated with backoff while it is answered
    /// 401, within the rotation's proof timeout.
    async fn prove(&self, creds: &HmacCredentials) -> Result<(), Error> {
        let now = tokio::time::Instant::now();
        // A timeout too long to add is as good as none.
        let deadline = now.checked_add(self.inner.rotation_proof);
        let mut wait = Duration::from_millis(100);
        loop {
            let mut req = json_request(Method::GET, "/auth/api-tokens", None)?;
            req.extensions_mut().insert(creds.clone());
            req.extensions_mut().insert(AuthMode::Hmac);
            match self.send(req).await?.error_for_status() {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.status() == Some(StatusCode::UNAUTHORIZED)
                        && deadline.is_none_or(|d| tokio::time::Instant::now() + wait < d) =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The outcome of [`Client::rotate_token`]: the new token is in use.
pub struct Rotation {
    /// The new token, with its secret (shown only this once by the API).
    pub token: DerivedToken,
    /// The token it replaced, if the client had one.
    pub previous_token_id: Option<String>,
    /// Why revoking the previous token failed, if it did (it still works until revoked:
    /// `lmts tokens revoke <id>`).
    pub revoke_error: Option<Error>,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotation")
            .field("token", &self.token)
            .field("previous_token_id", &"<redacted>")
            .field("revoke_error", &self.revoke_error)
            .finish()
    }
}
