//! API token scopes: an open set. The four known ones are variants; anything else is kept as
//! [`Scope::Other`], so that a scope Limitless adds tomorrow never breaks decoding.

use std::fmt;

/// A permission an API token can carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Scope {
    /// `trading`: place and cancel orders.
    Trading,
    /// `account_creation`: create partner sub-accounts.
    AccountCreation,
    /// `delegated_signing`: sign orders on behalf of sub-accounts (requires `trading`).
    DelegatedSigning,
    /// `withdrawal`: withdraw funds.
    Withdrawal,
    /// A scope this version of the crate does not know, kept verbatim.
    Other(String),
}

impl Scope {
    /// The scope's wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Trading => "trading",
            Self::AccountCreation => "account_creation",
            Self::DelegatedSigning => "delegated_signing",
            Self::Withdrawal => "withdrawal",
            Self::Other(s) => s,
        }
    }

    /// Parses a wire name; unknown names become [`Scope::Other`].
    pub fn parse(name: &str) -> Self {
        match name {
            "trading" => Self::Trading,
            "account_creation" => Self::AccountCreation,
            "delegated_signing" => Self::DelegatedSigning,
            "withdrawal" => Self::Withdrawal,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Parses a comma-separated scope list (`trading, withdrawal`), as `LMTS_TOKEN_SCOPES` and
    /// `LMTS_DENY_SCOPES` hold it; empty items are skipped.
    ///
    /// ```
    /// use limitless_auth::Scope;
    /// assert_eq!(Scope::parse_list("trading, withdrawal,"), [Scope::Trading, Scope::Withdrawal]);
    /// ```
    pub fn parse_list(text: &str) -> Vec<Self> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Whether this is one of the scopes this crate knows.
    #[cfg(any(test, feature = "mock"))]
    pub(crate) fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Scope {
    fn from(name: &str) -> Self {
        Self::parse(name)
    }
}

#[cfg(any(feature = "client", feature = "mock"))]
impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(any(feature = "client", feature = "mock"))]
impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Ok(Self::parse(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_split_on_commas_and_trimmed() {
        assert_eq!(
            Scope::parse_list(" trading, withdrawal,,market_making "),
            [
                Scope::Trading,
                Scope::Withdrawal,
                Scope::Other("market_making".into())
            ]
        );
        assert!(Scope::parse_list(" , ").is_empty());
        assert!(Scope::Trading.is_known());
        assert!(!Scope::Other("x".into()).is_known());
    }
}
