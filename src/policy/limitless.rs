//! The Limitless API's route table, as data.

use http::{HeaderName, Method};

use super::Accepts;
use super::route::{RouteTable, ScopeRequirement};
use crate::scope::Scope;

const PRIVY_OR_HMAC: Accepts = Accepts::PRIVY.union(Accepts::HMAC);

/// `(method, pattern, accepts)`; a later rule takes precedence over an earlier one.
const ROUTES: [(Option<Method>, &str, Accepts); 13] = [
    (None, "/profiles/partner-accounts/**", Accepts::HMAC),
    (Some(Method::POST), "/portfolio/redeem", PRIVY_OR_HMAC),
    (Some(Method::POST), "/auth/api-keys/**", Accepts::PRIVY),
    (Some(Method::DELETE), "/auth/api-keys/**", Accepts::PRIVY),
    (Some(Method::POST), "/amm/allowances/check", PRIVY_OR_HMAC),
    (Some(Method::POST), "/amm/allowances/approve", PRIVY_OR_HMAC),
    (Some(Method::POST), "/amm/buy", PRIVY_OR_HMAC),
    (Some(Method::POST), "/amm/sell", PRIVY_OR_HMAC),
    (Some(Method::POST), "/portfolio/withdraw", PRIVY_OR_HMAC),
    (
        Some(Method::GET),
        "/auth/api-tokens/capabilities",
        Accepts::PRIVY,
    ),
    (
        Some(Method::POST),
        "/auth/api-tokens/derive",
        Accepts::PRIVY,
    ),
    (
        Some(Method::POST),
        "/portfolio/withdrawal-addresses",
        Accepts::PRIVY,
    ),
    (
        Some(Method::DELETE),
        "/portfolio/withdrawal-addresses/{address}",
        Accepts::PRIVY,
    ),
];

const TRADING: &[Scope] = &[Scope::Trading];
const CREATION: &[Scope] = &[Scope::AccountCreation];
const CREATION_DELEGATED: &[Scope] = &[Scope::AccountCreation, Scope::DelegatedSigning];

/// `(method, pattern, scopes, the body flag that adds delegated_signing)`.
type ScopeRule = (
    Option<Method>,
    &'static str,
    &'static [Scope],
    Option<&'static str>,
);

const SCOPES: [ScopeRule; 9] = [
    (Some(Method::POST), "/orders/**", TRADING, None),
    (Some(Method::DELETE), "/orders/**", TRADING, None),
    (Some(Method::POST), "/portfolio/redeem", TRADING, None),
    (
        Some(Method::POST),
        "/portfolio/withdraw",
        &[Scope::Withdrawal],
        None,
    ),
    (
        None,
        "/amm/**",
        &[Scope::Trading, Scope::DelegatedSigning],
        None,
    ),
    (
        Some(Method::GET),
        "/profiles/partner-accounts",
        CREATION,
        None,
    ),
    (
        Some(Method::POST),
        "/profiles/partner-accounts",
        CREATION,
        Some("createServerWallet"),
    ),
    (
        Some(Method::GET),
        "/profiles/partner-accounts/{id}/allowances",
        CREATION_DELEGATED,
        None,
    ),
    (
        Some(Method::POST),
        "/profiles/partner-accounts/{id}/allowances/retry",
        CREATION_DELEGATED,
        None,
    ),
];

/// `x-on-behalf-of` must not go to `GET /profiles/partner-accounts`: the listing is always
/// scoped to the authenticated partner.
const ON_BEHALF_OF: HeaderName = HeaderName::from_static("x-on-behalf-of");

impl RouteTable {
    /// The Limitless API's routes (SPEC §3):
    ///
    /// | accepts | routes |
    /// |---|---|
    /// | Privy only | `GET /auth/api-tokens/capabilities`, `POST /auth/api-tokens/derive`, `POST /portfolio/withdrawal-addresses`, `DELETE /portfolio/withdrawal-addresses/{address}`, `POST` and `DELETE /auth/api-keys/**` (legacy key management: the API refuses HMAC and keys there) |
    /// | Privy or HMAC | `POST /amm/allowances/check`, `POST /amm/allowances/approve`, `POST /amm/buy`, `POST /amm/sell`, `POST /portfolio/withdraw`, `POST /portfolio/redeem` (legacy keys are not supported on server-wallet operations) |
    /// | HMAC only | any method on `/profiles/partner-accounts/**` |
    /// | HMAC or API key | everything else |
    ///
    /// Scopes an HMAC token needs:
    ///
    /// | scopes | routes |
    /// |---|---|
    /// | `trading` | `POST` and `DELETE /orders/**`, `POST /portfolio/redeem` |
    /// | `withdrawal` | `POST /portfolio/withdraw` |
    /// | `trading` + `delegated_signing` | any method on `/amm/**` |
    /// | `account_creation` | `GET /profiles/partner-accounts`; `POST /profiles/partner-accounts` (+ `delegated_signing` when the body sets `createServerWallet`: `true`, or any value but `false`, `null`, `0` and `""`) |
    /// | `account_creation` + `delegated_signing` | `GET /profiles/partner-accounts/{id}/allowances`, `POST /profiles/partner-accounts/{id}/allowances/retry` |
    ///
    /// `x-on-behalf-of` is removed from `GET /profiles/partner-accounts`: the API's docs say not
    /// to send it there (the listing is always scoped to the authenticated partner).
    pub fn limitless() -> Self {
        let mut table = Ok(Self::new(Accepts::DEFAULT));
        for (method, pattern, accepts) in ROUTES {
            table = table.and_then(|t| t.with_route(method, pattern, accepts));
        }
        for (method, pattern, scopes, flag) in SCOPES {
            let mut required = ScopeRequirement::all(scopes.iter().cloned());
            if let Some(field) = flag {
                required = required.when_body_flag(field, Scope::DelegatedSigning);
            }
            table = table.and_then(|t| t.with_scopes(method, pattern, required));
        }
        table
            .and_then(|t| {
                t.with_stripped_headers(
                    Some(Method::GET),
                    "/profiles/partner-accounts",
                    [ON_BEHALF_OF],
                )
            })
            .expect("the built-in patterns are valid (tested)")
    }
}
