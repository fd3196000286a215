//! The API Tokens endpoints' request and response types.
//!
//! Field names follow the API (camelCase on the wire). Scopes are an open set: the four known
//! ones are variants, anything else is kept as [`Scope::Other`] so that a scope Limitless adds
//! tomorrow never breaks decoding.

use std::fmt;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::credentials::{CredentialError, HmacCredentials};

/// Longest token label the API accepts, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

use crate::scope::Scope;

/// `GET /auth/api-tokens/capabilities`: what the caller's profile may do with API tokens.
///
/// A profile with no partner capability row gets the public self-service default
/// (`tokenManagementEnabled: true`, `allowedScopes: ["trading"]`; older servers answered
/// `false` and `[]`): both decode.
///
/// ```
/// use limitless_auth::Scope;
/// use limitless_auth::types::PartnerCapabilities;
/// let caps: PartnerCapabilities = serde_json::from_str(
///     r#"{"partnerProfileId":42,"tokenManagementEnabled":true,"allowedScopes":["trading","future_scope"]}"#,
/// )?;
/// assert!(caps.allows(&Scope::Trading));
/// assert!(!caps.allows(&Scope::Withdrawal));
/// assert_eq!(caps.allowed_scopes[1], Scope::Other("future_scope".into()));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartnerCapabilities {
    /// The caller's profile id.
    pub partner_profile_id: Option<i64>,
    /// Whether the profile may derive and manage tokens at all.
    pub token_management_enabled: bool,
    /// The scopes the profile may grant to tokens.
    pub allowed_scopes: Vec<Scope>,
}

impl PartnerCapabilities {
    /// Whether a token with `scope` may be derived: management is enabled and the scope allowed.
    pub fn allows(&self, scope: &Scope) -> bool {
        self.token_management_enabled && self.allowed_scopes.contains(scope)
    }
}

/// Body of `POST /auth/api-tokens/derive`. Absent fields are omitted on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeriveTokenRequest {
    /// A label for the token (at most 128 characters).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub label: Option<String>,
    /// The scopes to grant (the server defaults to `["trading"]`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scopes: Option<Vec<Scope>>,
}

/// Why a derive request was refused locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeriveRequestError {
    /// The label is longer than the API accepts.
    #[error("the token label has {chars} characters; at most 128 are allowed")]
    LabelTooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// `delegated_signing` was requested without `trading`.
    #[error("the delegated_signing scope requires the trading scope")]
    DelegatedSigningWithoutTrading,
    /// The scope list is empty.
    #[error("the scope list is empty; omit it to get the default [\"trading\"]")]
    NoScopes,
}

impl DeriveTokenRequest {
    /// Checks what the API would refuse for sure: label length and scope dependencies.
    #[cfg(any(feature = "client", test))]
    pub(crate) fn validate(&self) -> Result<(), DeriveRequestError> {
        if let Some(label) = &self.label {
            let chars = label.chars().count();
            if chars > MAX_LABEL_CHARS {
                return Err(DeriveRequestError::LabelTooLong { chars });
            }
        }
        if let Some(scopes) = &self.scopes {
            if scopes.is_empty() {
                return Err(DeriveRequestError::NoScopes);
            }
            if scopes.contains(&Scope::DelegatedSigning) && !scopes.contains(&Scope::Trading) {
                return Err(DeriveRequestError::DelegatedSigningWithoutTrading);
            }
        }
        Ok(())
    }
}

/// The profile a derived token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenProfile {
    /// Profile id.
    pub id: i64,
    /// The profile's wallet address.
    pub account: String,
}

/// The response of `POST /auth/api-tokens/derive`: a new token and its secret, shown once.
///
/// The secret is held in a [`SecretString`] and redacted from `Debug`; turn the token into
/// signing credentials with [`DerivedToken::credentials`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DerivedToken {
    /// The `lmts-api-key` value (equals `token_id`).
    pub api_key: String,
    /// The base64 secret.
    #[serde(deserialize_with = "secret_string")]
    secret: SecretString,
    /// The token id.
    pub token_id: String,
    /// Creation time, as the server formats it.
    pub created_at: String,
    /// The scopes granted.
    pub scopes: Vec<Scope>,
    /// The owning profile.
    pub profile: TokenProfile,
}

fn secret_string<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    let s = String::deserialize(d)?;
    Ok(SecretString::from(s))
}

impl DerivedToken {
    /// The base64 secret. It is returned by the API once; store it safely.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// Signing credentials for this token (`apiKey` with the decoded secret).
    pub fn credentials(&self) -> Result<HmacCredentials, CredentialError> {
        Ok(
            HmacCredentials::new(&self.api_key, self.secret.expose_secret())?
                .with_scopes(self.scopes.iter().cloned()),
        )
    }
}

impl fmt::Debug for DerivedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedToken")
            .field("api_key", &"<redacted>")
            .field("secret", &"<redacted>")
            .field("token_id", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("scopes", &self.scopes)
            .field("profile", &self.profile)
            .finish()
    }
}

/// One entry of `GET /auth/api-tokens` (secrets are never listed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    /// The token id.
    pub token_id: String,
    /// The label, if one was given.
    pub label: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<Scope>,
    /// Creation time.
    pub created_at: String,
    /// Last use, if any.
    pub last_used_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_keep_unknown_names() {
        let scopes: Vec<Scope> = serde_json::from_str(
            r#"["trading","account_creation","delegated_signing","withdrawal","market_making"]"#,
        )
        .expect("decodes");
        assert_eq!(
            scopes,
            vec![
                Scope::Trading,
                Scope::AccountCreation,
                Scope::DelegatedSigning,
                Scope::Withdrawal,
                Scope::Other("market_making".into())
            ]
        );
        assert_eq!(
            serde_json::to_string(&scopes).expect("encodes"),
            r#"["trading","account_creation","delegated_signing","withdrawal","market_making"]"#
        );
        assert!(!scopes[4].is_known());
    }

    #[test]
    fn both_no_row_defaults_decode() {
        for (text, enabled, scopes) in [
            (
                r#"{"partnerProfileId":7,"tokenManagementEnabled":true,"allowedScopes":["trading"]}"#,
                true,
                vec![Scope::Trading],
            ),
            (
                r#"{"partnerProfileId":7,"tokenManagementEnabled":false,"allowedScopes":[]}"#,
                false,
                vec![],
            ),
        ] {
            let caps: PartnerCapabilities = serde_json::from_str(text).expect("decodes");
            assert_eq!(caps.token_management_enabled, enabled);
            assert_eq!(caps.allowed_scopes, scopes);
            assert_eq!(caps.allows(&Scope::Trading), enabled);
        }
    }

    #[test]
    fn derive_request_is_compact_and_validated() {
        let req = DeriveTokenRequest::default();
        assert_eq!(serde_json::to_string(&req).expect("json"), "{}");
        let req = DeriveTokenRequest {
            label: Some("bot é".into()),
            scopes: Some(vec![Scope::Trading, Scope::DelegatedSigning]),
        };
        assert_eq!(
            serde_json::to_string(&req).expect("json"),
            r#"{"label":"bot é","scopes":["trading","delegated_signing"]}"#
        );
        assert_eq!(req.validate(), Ok(()));
        let long = DeriveTokenRequest {
            label: Some("é".repeat(129)),
            scopes: None,
        };
        assert_eq!(
            long.validate(),
            Err(DeriveRequestError::LabelTooLong { chars: 129 })
        );
        assert!(
            DeriveTokenRequest {
                label: Some("é".repeat(128)),
                scopes: None
            }
            .validate()
            .is_ok()
        );
        let bad = DeriveTokenRequest {
            label: None,
            scopes: Some(vec![Scope::DelegatedSigning]),
        };
        assert_eq!(
            bad.validate(),
            Err(DeriveRequestError::DelegatedSigningWithoutTrading)
        );
        let empty = DeriveTokenRequest {
            label: None,
            scopes: Some(vec![]),
        };
        assert_eq!(empty.validate(), Err(DeriveRequestError::NoScopes));
    }

    #[test]
    fn derived_token_hides_its_secret() {
        let text = r#"{"apiKey":"tok-1","secret":"c2VjcmV0","tokenId":"tok-1","createdAt":"2026-01-01T00:00:00.000Z","scopes":["trading"],"profile":{"id":42,"account":"0xabc"}}"#;
        let token: DerivedToken = serde_json::from_str(text).expect("decodes");
        let shown = format!("{token:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("tok-1"), "{shown}");
        let creds = token.credentials().expect("valid secret");
        assert_eq!(creds.token_id(), "tok-1");
        assert_eq!(token.secret().expose_secret(), "c2VjcmV0");
    }
}
