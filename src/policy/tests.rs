//! `decide`, as a table of hard-coded cases: for each set of credentials, route and requested
//! mode, the outcome written out by hand from the protocol's route list (SPEC §3), not computed.

use http::{Extensions, HeaderName, Method};

use super::*;

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn hmac(id: &str) -> HmacCredentials {
    HmacCredentials::new(id, SECRET).expect("valid")
}

/// Credentials from letters: `H` HMAC (`token-1`), `P` Privy, `K` the legacy key.
fn creds(letters: &str) -> Credentials {
    let mut c = Credentials::new();
    for l in letters.chars() {
        c = match l {
            'H' => c.with_hmac(hmac("token-1")),
            'P' => c.with_identity(IdentityToken::new("privy-1").expect("valid")),
            'K' => c.with_api_key(ApiKey::new("lmts_key").expect("valid")),
            other => panic!("{other}"),
        };
    }
    c
}

/// The outcome as a short word: the mode chosen, or why it was refused.
fn outcome(r: &Result<Decision<'_>, PolicyError>) -> String {
    match r {
        Ok(d) => match &d.credential {
            Credential::Hmac(h) => format!("HMAC {}", h.token_id()),
            Credential::Privy(t) => format!("Privy {}", t.expose_secret()),
            Credential::ApiKey(k) => format!("key {}", k.expose_secret()),
            Credential::None => "none".to_owned(),
        },
        Err(PolicyError::MissingCredential { accepts, .. }) => format!("missing {accepts}"),
        Err(PolicyError::ModeNotAccepted { requested, .. }) => format!("refused {requested}"),
        Err(PolicyError::MissingScope { scope, .. }) => format!("scope {scope}"),
        Err(other) => format!("other {other}"),
    }
}

fn run(letters: &str, method: &str, target: &str, ext: &Extensions) -> String {
    let table = RouteTable::limitless();
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    outcome(&decide(&table, &method, target, ext, &creds(letters)))
}

const MISSING_PRIVY: &str = "missing Privy only";
const MISSING_HMAC: &str = "missing HMAC only";
const MISSING_EITHER: &str = "missing Privy or HMAC";
const MISSING_DEFAULT: &str = "missing HMAC or API key";

#[test]
fn each_route_kind_with_each_set_of_credentials() {
    // Columns: no credentials, H, P, K, HP, HPK, PK.
    let sets = ["", "H", "P", "K", "HP", "HPK", "PK"];
    let privy = [
        MISSING_PRIVY,
        MISSING_PRIVY,
        "Privy privy-1",
        MISSING_PRIVY,
        "Privy privy-1",
        "Privy privy-1",
        "Privy privy-1",
    ];
    let either = [
        MISSING_EITHER,
        "HMAC token-1",
        "Privy privy-1",
        MISSING_EITHER,
        "HMAC token-1",
        "HMAC token-1",
        "Privy privy-1",
    ];
    let hmac_only = [
        MISSING_HMAC,
        "HMAC token-1",
        MISSING_HMAC,
        MISSING_HMAC,
        "HMAC token-1",
        "HMAC token-1",
        MISSING_HMAC,
    ];
    let default = [
        MISSING_DEFAULT,
        "HMAC token-1",
        MISSING_DEFAULT,
        "key lmts_key",
        "HMAC token-1",
        "HMAC token-1",
        "key lmts_key",
    ];
    let routes: [(&str, &str, &[&str; 7]); 19] = [
        ("GET", "/auth/api-tokens/capabilities", &privy),
        ("POST", "/auth/api-tokens/derive", &privy),
        ("POST", "/portfolio/withdrawal-addresses", &privy),
        ("DELETE", "/portfolio/withdrawal-addresses/0xabc", &privy),
        ("POST", "/auth/api-keys/rotate", &privy),
        ("DELETE", "/auth/api-keys/k1", &privy),
        ("get", "/AUTH/api-tokens/Capabilities/", &privy),
        ("POST", "/amm/buy", &either),
        ("POST", "/amm/allowances/check", &either),
        ("POST", "/portfolio/withdraw", &either),
        ("POST", "/portfolio/redeem", &either),
        ("GET", "/profiles/partner-accounts", &hmac_only),
        ("DELETE", "/profiles/partner-accounts/7/x", &hmac_only),
        ("GET", "/orders/all/btc?onBehalfOf=42", &default),
        ("GET", "/auth/api-tokens/capabilities/extra", &default),
        ("DELETE", "/portfolio/withdrawal-addresses", &default),
        ("GET", "/auth/api-tokens/capabilities?x=1", &privy),
        // The server answers HEAD with the GET handler.
        ("HEAD", "/auth/api-tokens/capabilities", &privy),
        ("HEAD", "/profiles/partner-accounts", &hmac_only),
    ];
    let none = Extensions::new();
    for (method, target, expected) in routes {
        for (letters, want) in sets.iter().zip(expected.iter()) {
            assert_eq!(
                run(letters, method, target, &none),
                *want,
                "{method} {target} with {letters:?}"
            );
        }
    }
}

fn asking(mode: AuthMode) -> Extensions {
    let mut ext = Extensions::new();
    ext.insert(mode);
    ext
}

#[test]
fn a_requested_mode_is_honoured_only_where_the_route_accepts_it() {
    let cases: [(&str, &str, &str, AuthMode, &str); 12] = [
        (
            "HPK",
            "GET",
            "/auth/api-tokens/capabilities",
            AuthMode::Hmac,
            "refused HMAC",
        ),
        (
            "HPK",
            "GET",
            "/auth/api-tokens/capabilities",
            AuthMode::ApiKey,
            "refused API key",
        ),
        (
            "HPK",
            "GET",
            "/auth/api-tokens/capabilities",
            AuthMode::None,
            "refused no",
        ),
        (
            "HPK",
            "GET",
            "/auth/api-tokens/capabilities",
            AuthMode::Privy,
            "Privy privy-1",
        ),
        ("HPK", "POST", "/orders", AuthMode::Privy, "refused Privy"),
        ("HPK", "POST", "/orders", AuthMode::ApiKey, "key lmts_key"),
        ("HPK", "POST", "/orders", AuthMode::Hmac, "HMAC token-1"),
        ("HPK", "POST", "/amm/buy", AuthMode::Privy, "Privy privy-1"),
        ("P", "POST", "/amm/buy", AuthMode::Hmac, MISSING_HMAC),
        (
            "H",
            "POST",
            "/orders",
            AuthMode::ApiKey,
            "missing API key only",
        ),
        (
            "HPK",
            "GET",
            "/profiles/partner-accounts/1",
            AuthMode::ApiKey,
            "refused API key",
        ),
        (
            "",
            "GET",
            "/profiles/partner-accounts/1",
            AuthMode::None,
            "refused no",
        ),
    ];
    for (letters, method, target, mode, want) in cases {
        assert_eq!(
            run(letters, method, target, &asking(mode)),
            want,
            "{method} {target} asking {mode:?} with {letters:?}"
        );
    }
}

#[test]
fn credentials_in_the_extensions_replace_those_at_hand_for_one_request() {
    let mut ext = Extensions::new();
    ext.insert(hmac("token-2"));
    assert_eq!(run("", "POST", "/orders", &ext), "HMAC token-2");
    assert_eq!(run("H", "POST", "/orders", &ext), "HMAC token-2");
    let mut ext = Extensions::new();
    ext.insert(IdentityToken::new("privy-2").expect("valid"));
    assert_eq!(
        run("H", "GET", "/auth/api-tokens/capabilities", &ext),
        "Privy privy-2"
    );
    // An override of one mode does not change the choice on a route that prefers another.
    assert_eq!(run("H", "POST", "/amm/buy", &ext), "HMAC token-1");
    let mut ext = Extensions::new();
    ext.insert(ApiKey::new("lmts_other").expect("valid"));
    assert_eq!(run("P", "GET", "/orders", &ext), "key lmts_other");
}

#[test]
fn a_route_prefix_is_left_out_of_the_route() {
    let mut ext = Extensions::new();
    ext.insert(RoutePrefix::new("/x").expect("valid"));
    assert_eq!(
        run("HP", "GET", "/x/auth/api-tokens/capabilities", &ext),
        "Privy privy-1"
    );
    // Without the prefix the same path is an ordinary route.
    let none = Extensions::new();
    assert_eq!(
        run("HP", "GET", "/x/auth/api-tokens/capabilities", &none),
        "HMAC token-1"
    );
    // A path that is not under the prefix is classified as it is.
    assert_eq!(
        run("HP", "GET", "/auth/api-tokens/capabilities", &ext),
        "Privy privy-1"
    );
}

/// An outcome and the body scope rule left to check.
type Scoped = (String, Option<(String, Scope)>);

/// `decide` with an HMAC token known to hold `scopes` (and an identity token).
fn scoped(scopes: &[Scope], method: Method, target: &str) -> Scoped {
    let table = RouteTable::limitless();
    let c = Credentials::new()
        .with_hmac(hmac("token-1").with_scopes(scopes.iter().cloned()))
        .with_identity(IdentityToken::new("privy-1").expect("valid"));
    let r = decide(&table, &method, target, &Extensions::new(), &c);
    let body = r
        .as_ref()
        .ok()
        .and_then(|d| d.body_scope)
        .map(|(f, s)| (f.to_owned(), s.clone()));
    (outcome(&r), body)
}

#[test]
fn known_scopes_are_checked_against_the_route() {
    use Scope::{AccountCreation, DelegatedSigning, Trading, Withdrawal};
    let ok = || ("HMAC token-1".to_owned(), None);
    let lacks = |s: &str| (format!("scope {s}"), None);
    let cases: Vec<(Vec<Scope>, Method, &str, Scoped)> = vec![
        (vec![], Method::POST, "/orders", lacks("trading")),
        (vec![Trading], Method::POST, "/orders", ok()),
        (vec![], Method::DELETE, "/orders/1", lacks("trading")),
        (vec![], Method::GET, "/orders/1", ok()),
        (vec![], Method::POST, "/portfolio/redeem", lacks("trading")),
        (
            vec![Trading],
            Method::POST,
            "/portfolio/withdraw",
            lacks("withdrawal"),
        ),
        (vec![Withdrawal], Method::POST, "/portfolio/withdraw", ok()),
        (
            vec![Trading],
            Method::POST,
            "/amm/buy",
            lacks("delegated_signing"),
        ),
        (vec![Trading, DelegatedSigning], Method::GET, "/amm/x", ok()),
        (
            vec![],
            Method::GET,
            "/profiles/partner-accounts",
            lacks("account_creation"),
        ),
        (
            vec![AccountCreation],
            Method::POST,
            "/profiles/partner-accounts",
            (
                "HMAC token-1".to_owned(),
                Some(("createServerWallet".to_owned(), DelegatedSigning)),
            ),
        ),
        (
            vec![AccountCreation, DelegatedSigning],
            Method::POST,
            "/profiles/partner-accounts",
            ok(),
        ),
        (
            vec![AccountCreation],
            Method::GET,
            "/profiles/partner-accounts/9/allowances",
            lacks("delegated_signing"),
        ),
        (
            vec![AccountCreation, DelegatedSigning],
            Method::POST,
            "/profiles/partner-accounts/9/allowances/retry",
            ok(),
        ),
        (vec![], Method::GET, "/profiles/partner-accounts/9", ok()),
    ];
    for (scopes, method, target, want) in cases {
        assert_eq!(
            scoped(&scopes, method.clone(), target),
            want,
            "{method} {target} with {scopes:?}"
        );
    }
    // Unknown scopes are not checked.
    assert_eq!(
        run("H", "POST", "/orders", &Extensions::new()),
        "HMAC token-1"
    );
}

#[test]
fn route_headers_to_strip() {
    let table = RouteTable::limitless();
    let c = creds("H");
    let none = Extensions::new();
    let strip = |method: Method, target: &str| {
        decide(&table, &method, target, &none, &c)
            .expect("decided")
            .strip
            .to_vec()
    };
    assert_eq!(
        strip(Method::GET, "/profiles/partner-accounts?limit=5"),
        [HeaderName::from_static("x-on-behalf-of")]
    );
    assert_eq!(
        strip(Method::HEAD, "/profiles/partner-accounts"),
        [HeaderName::from_static("x-on-behalf-of")]
    );
    assert!(strip(Method::POST, "/profiles/partner-accounts").is_empty());
    assert!(strip(Method::GET, "/profiles/partner-accounts/1").is_empty());
}

#[test]
fn anonymous_routes_need_no_credential() {
    let table = RouteTable::new(Accepts::DEFAULT | Accepts::ANONYMOUS);
    let none = Extensions::new();
    let d = decide(&table, &Method::GET, "/markets", &none, &creds("")).expect("decided");
    assert!(matches!(d.credential, Credential::None));
    let d = decide(&table, &Method::GET, "/markets", &none, &creds("K")).expect("decided");
    assert!(matches!(d.credential, Credential::ApiKey(_)));
}

#[test]
fn accepts_reads_as_a_sentence() {
    assert_eq!(Accepts::PRIVY.to_string(), "Privy only");
    assert_eq!(
        (Accepts::PRIVY | Accepts::HMAC).to_string(),
        "Privy or HMAC"
    );
    assert_eq!(Accepts::DEFAULT.to_string(), "HMAC or API key");
    assert_eq!(
        (Accepts::HMAC | Accepts::ANONYMOUS).to_string(),
        "HMAC only (or none)"
    );
    assert_eq!(Accepts::ANONYMOUS.to_string(), "no authentication");
    assert_eq!(
        format!("{:?}", Accepts::PRIVY | Accepts::HMAC),
        "Accepts(Privy or HMAC)"
    );
    // A union of sets that overlap holds each mode once.
    assert_eq!(Accepts::DEFAULT | Accepts::HMAC, Accepts::DEFAULT);
    assert!(!(Accepts::DEFAULT | Accepts::HMAC).contains(AuthMode::Privy));
}
