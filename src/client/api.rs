//! The typed endpoints of the API Tokens routes.

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};

use super::retry::RetriedUnsure;
use super::url::{encode_segment, parse_target};
use super::{ApiResponse, Client, Error, json_request};
use crate::types::{ApiToken, DeriveTokenRequest, DerivedToken, PartnerCapabilities};
use crate::{AuthMode, HmacCredentials, PolicyError, Scope};

impl Client {
    /// `GET /auth/api-tokens/capabilities` (Privy identity token only).
    pub async fn capabilities(&self) -> Result<PartnerCapabilities, Error> {
        self.json(Method::GET, "/auth/api-tokens/capabilities", None::<&()>)
            .await
    }

    /// `POST /auth/api-tokens/derive` (Privy identity token only): a new token with `scopes`
    /// (the server's default, `["trading"]`, when `None`). The label (at most 128 characters)
    /// and the scope dependencies are checked before anything is sent.
    pub async fn derive_token(
        &self,
        label: Option<&str>,
        scopes: Option<&[Scope]>,
    ) -> Result<DerivedToken, Error> {
        self.derive_token_with(&DeriveTokenRequest {
            label: label.map(str::to_owned),
            scopes: scopes.map(<[Scope]>::to_vec),
        })
        .await
    }

    /// [`Client::derive_token`] with a prepared request body.
    async fn derive_token_with(&self, req: &DeriveTokenRequest) -> Result<DerivedToken, Error> {
        req.validate()?;
        self.json(Method::POST, "/auth/api-tokens/derive", Some(req))
            .await
    }

    /// `GET /auth/api-tokens` (HMAC): the profile's active tokens, without secrets.
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, Error> {
        self.json(Method::GET, "/auth/api-tokens", None::<&()>)
            .await
    }

    /// `DELETE /auth/api-tokens/{tokenId}` (HMAC), the id percent-encoded as one path segment.
    /// Returns the server's confirmation message.
    ///
    /// Revoking is idempotent: when an attempt failed after it may have been processed and
    /// the retry is answered "not found or already revoked", the token is gone as asked, and
    /// this returns `Ok` (with [`ALREADY_REVOKED`](Self::ALREADY_REVOKED) as the message).
    pub async fn revoke_token(&self, token_id: &str) -> Result<String, Error> {
        if token_id.is_empty() {
            return Err(Error::InvalidRequest("the token id is empty".into()));
        }
        let path = format!("/auth/api-tokens/{}", encode_segment(token_id));
        let mut req = Request::new(Bytes::new());
        *req.method_mut() = Method::DELETE;
        *req.uri_mut() = Uri::from(parse_target(&path)?);
        let resp = self.send_response(req).await?;
        let retried_unsure = resp.extensions().get::<RetriedUnsure>().is_some();
        let resp = ApiResponse::from_response(resp);
        match resp.error_for_status() {
            Ok(resp) => Ok(resp.json::<RevokeResponse>()?.message),
            Err(Error::Status {
                status: StatusCode::BAD_REQUEST,
                message: Some(message),
                ..
            }) if retried_unsure && message.to_ascii_lowercase().contains("revoked") => {
                Ok(Self::ALREADY_REVOKED.to_owned())
            }
            Err(e) => Err(e),
        }
    }

    /// The message of [`Client::revoke_token`] when a retry found the token already revoked by
    /// an earlier attempt of the same call.
    pub const ALREADY_REVOKED: &str =
        "API token revoked (an earlier attempt was processed; its answer was lost)";

    /// The scopes of `hmac`, from `GET /auth/api-tokens` signed with it. Straight down the
    /// stack: not through the holder's steps, whose scope guard may be waiting on this.
    pub(crate) async fn learn_scopes(&self, hmac: HmacCredentials) -> Result<Vec<Scope>, Error> {
        let mut req = json_request(Method::GET, "/auth/api-tokens", None)?;
        req.extensions_mut().insert(hmac.clone());
        req.extensions_mut().insert(AuthMode::Hmac);
        let prepared = self.prepare(req)?;
        let resp = self.inner.call(prepared.req, prepared.timeout).await?;
        let tokens: Vec<ApiToken> = ApiResponse::from_response(resp)
            .error_for_status()?
            .json()?;
        tokens
            .into_iter()
            .find(|t| t.token_id == hmac.token_id())
            .map(|t| t.scopes)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "the token {} is not among the profile's active tokens",
                    hmac.token_hint()
                ))
            })
    }

    /// Learns the scopes of the client's HMAC token from `GET /auth/api-tokens` and keeps
    /// them with it, so that the route policy refuses locally what the token may not do.
    pub async fn refresh_token_scopes(&self) -> Result<Vec<Scope>, Error> {
        let Some(hmac) = self.inner.holder.shared.load().hmac.clone() else {
            return Err(Error::Policy(PolicyError::missing(
                &Method::GET,
                "/auth/api-tokens",
                crate::Accepts::HMAC,
            )));
        };
        let scopes = self.learn_scopes(hmac.clone()).await?;
        self.inner.holder.keep_scopes(&hmac, &scopes);
        Ok(scopes)
    }
}

/// The body of a revoke answer.
#[derive(serde::Deserialize)]
struct RevokeResponse {
    message: String,
}
