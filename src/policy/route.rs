//! Route patterns and the route table: which modes a route accepts, which scopes it needs of an
//! HMAC token, and which headers it must not receive.

use std::borrow::Cow;

use http::{HeaderName, Method};

use super::Accepts;
use super::error::RouteError;
use crate::scope::Scope;

/// One segment of a pattern.
#[derive(Clone, Debug)]
enum Segment {
    /// Matched ASCII case-insensitively, as Express routes match by default; held in lower
    /// case.
    Literal(Box<[u8]>),
    /// `{name}`: exactly one non-empty segment.
    Param,
}

/// A path pattern: `/literal/{param}/…`, optionally ending in `/**` (this path and everything
/// below it).
#[derive(Clone, Debug)]
struct Pattern {
    segments: Box<[Segment]>,
    rest: bool,
}

impl Pattern {
    fn parse(pattern: &str) -> Result<Self, RouteError> {
        let err = |reason| RouteError {
            pattern: pattern.to_owned(),
            reason,
        };
        let body = pattern
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/'"))?;
        let (body, rest) = match body.strip_suffix("**") {
            Some(b) if b.is_empty() => (b, true),
            Some(b) => match b.strip_suffix('/') {
                Some(b) => (b, true),
                None => return Err(err("'**' must be a whole final segment")),
            },
            None => (body, false),
        };
        let mut segments = Vec::new();
        if !body.is_empty() {
            for seg in body.split('/') {
                if seg.is_empty() {
                    return Err(err("empty segment"));
                }
                if seg.len() > 2 && seg.starts_with('{') && seg.ends_with('}') {
                    segments.push(Segment::Param);
                } else if seg.contains(['{', '}', '*', '?', '#']) {
                    return Err(err("segments are literals, '{name}' or a final '**'"));
                } else {
                    segments.push(Segment::Literal(
                        seg.to_ascii_lowercase().into_bytes().into(),
                    ));
                }
            }
        }
        Ok(Self {
            segments: segments.into(),
            rest,
        })
    }

    /// Matches a request's route. Literals compare ASCII case-insensitively: the server's
    /// router treats those as the same route.
    #[inline(always)]
    fn matches(&self, route: &Route<'_>) -> bool {
        let Some(mut rest) = route.segments else {
            return false;
        };
        // Whether a segment is left in `rest` (an empty one counts: `//` has one).
        let mut left = !rest.is_empty();
        for seg in &self.segments {
            if !left {
                return false;
            }
            let end = match seg {
                // The segment's end is checked before its bytes: most literals that do not
                // match end elsewhere.
                Segment::Literal(lit) => {
                    let n = lit.len();
                    let fits = rest.get(n).is_none_or(|b| *b == b'/')
                        && rest.get(..n).is_some_and(|s| s.eq_ignore_ascii_case(lit));
                    if !fits {
                        return false;
                    }
                    n
                }
                Segment::Param => match rest.iter().position(|&b| b == b'/') {
                    Some(0) => return false,
                    Some(end) => end,
                    None if rest.is_empty() => return false,
                    None => rest.len(),
                },
            };
            (rest, left) = match rest[end..].split_first() {
                Some((_, tail)) => (tail, true),
                None => (&rest[end..], false),
            };
        }
        self.rest || !left
    }
}

/// A request as the table reads it: its method as the rules compare it, and its path (no
/// query) without the leading `/` and one trailing `/` (the server routes `/orders/` as
/// `/orders`); `None` for a path that does not start with `/`, which no pattern matches.
pub(crate) struct Route<'a> {
    method: MethodKey,
    segments: Option<&'a [u8]>,
}

impl<'a> Route<'a> {
    pub(crate) fn new(method: &Method, path: &'a str) -> Self {
        let segments = path
            .as_bytes()
            .strip_prefix(b"/")
            .map(|rest| rest.strip_suffix(b"/").unwrap_or(rest));
        Self {
            method: MethodKey::of(method),
            segments,
        }
    }
}

/// A request's method as the rules compare it: one bit for each common method, one for all
/// others, which are then compared by their upper-case name (`purge` is `PURGE`, as the signer
/// upper-cases it and the server routes it). Only `GET` and `HEAD` need bits of their own for
/// what matches; the other common methods have theirs so that a rule is told apart by one AND
/// rather than a name compare (`decide` on a POST: 664 instructions, 865 with those methods
/// compared by name; `benches/instructions.rs`).
#[derive(Clone, Debug)]
struct MethodKey {
    bit: u8,
    /// The upper-case name of a method under [`MethodKey::OTHER`].
    other: Option<Method>,
}

impl MethodKey {
    const GET: u8 = 1;
    const HEAD: u8 = 1 << 1;
    const POST: u8 = 1 << 2;
    const PUT: u8 = 1 << 3;
    const PATCH: u8 = 1 << 4;
    const DELETE: u8 = 1 << 5;
    const OPTIONS: u8 = 1 << 6;
    const OTHER: u8 = 1 << 7;

    fn of(method: &Method) -> Self {
        let bit = match method {
            m if *m == Method::GET => Self::GET,
            m if *m == Method::POST => Self::POST,
            m if *m == Method::DELETE => Self::DELETE,
            m if *m == Method::HEAD => Self::HEAD,
            m if *m == Method::PUT => Self::PUT,
            m if *m == Method::PATCH => Self::PATCH,
            m if *m == Method::OPTIONS => Self::OPTIONS,
            m => {
                return match upper_ref(m) {
                    // `get` is `GET`.
                    Cow::Owned(upper) => Self::of(&upper),
                    Cow::Borrowed(m) => Self {
                        bit: Self::OTHER,
                        other: Some(m.clone()),
                    },
                };
            }
        };
        Self { bit, other: None }
    }
}

/// The methods a rule applies to. A `GET` rule covers `HEAD` as well: the server's router
/// answers `HEAD` with the `GET` handler, so the two must be authenticated alike.
#[derive(Clone, Debug)]
struct MethodRule {
    bits: u8,
    /// For a rule on one method outside the common ones: its upper-case name.
    other: Option<Method>,
}

impl MethodRule {
    fn new(method: Option<Method>) -> Self {
        let Some(method) = method else {
            return Self {
                bits: u8::MAX,
                other: None,
            };
        };
        let key = MethodKey::of(&method);
        let bits = match key.bit {
            MethodKey::GET => MethodKey::GET | MethodKey::HEAD,
            bit => bit,
        };
        Self {
            bits,
            other: key.other,
        }
    }

    #[inline]
    fn matches(&self, method: &MethodKey) -> bool {
        self.bits & method.bit != 0
            && (method.bit != MethodKey::OTHER
                || self.other.is_none()
                || self.other == method.other)
    }
}

/// `method` in upper case: `get` is `GET`, as the signer upper-cases it and the server routes it.
pub(crate) fn upper(method: Method) -> Method {
    match upper_ref(&method) {
        Cow::Borrowed(_) => method,
        Cow::Owned(upper) => upper,
    }
}

/// [`upper`], borrowing a method that is in upper case already.
#[inline]
pub(crate) fn upper_ref(method: &Method) -> Cow<'_, Method> {
    if !method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Cow::Borrowed(method);
    }
    // An upper-cased method token is still a method token.
    match Method::from_bytes(method.as_str().to_ascii_uppercase().as_bytes()) {
        Ok(upper) => Cow::Owned(upper),
        Err(_) => Cow::Borrowed(method),
    }
}

/// One entry of a table: a method and a pattern, and what they are given.
#[derive(Clone, Debug)]
struct Rule<T> {
    method: MethodRule,
    pattern: Pattern,
    value: T,
}

/// The value of the most recent rule that matches, if any.
fn latest<'t, T>(rules: &'t [Rule<T>], route: &Route<'_>) -> Option<&'t T> {
    rules
        .iter()
        .rev()
        .find(|r| r.method.matches(&route.method) && r.pattern.matches(route))
        .map(|r| &r.value)
}

/// The token scopes a route requires of an HMAC token: all of a list, plus one more when a
/// JSON body field is set (creating a partner account with a server wallet needs
/// `delegated_signing` on top of `account_creation`).
///
/// ```
/// use http::Method;
/// use limitless_auth::{RouteTable, Scope, ScopeRequirement};
///
/// let create = ScopeRequirement::all([Scope::AccountCreation])
///     .when_body_flag("createServerWallet", Scope::DelegatedSigning);
/// let table = RouteTable::limitless()
///     .with_scopes(Some(Method::POST), "/profiles/partner-accounts", create)?;
/// # Ok::<(), limitless_auth::RouteError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeRequirement {
    scopes: Vec<Scope>,
    body_flag: Option<(Box<str>, Scope)>,
}

impl ScopeRequirement {
    /// Every scope in `scopes`.
    pub fn all(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            scopes: scopes.into_iter().collect(),
            body_flag: None,
        }
    }

    /// Also `scope` when the request's JSON body sets `field` (`true`, or any value but
    /// `false`, `null`, `0` and `""`).
    pub fn when_body_flag(mut self, field: &str, scope: Scope) -> Self {
        self.body_flag = Some((field.into(), scope));
        self
    }

    /// The first scope always required that `held` lacks.
    pub(crate) fn missing(&self, held: &[Scope]) -> Option<&Scope> {
        self.scopes.iter().find(|s| !held.contains(s))
    }

    /// The body field and the scope it adds, when `held` lacks that scope.
    pub(crate) fn flag_missing(&self, held: &[Scope]) -> Option<(&str, &Scope)> {
        self.body_flag
            .as_ref()
            .filter(|(_, scope)| !held.contains(scope))
            .map(|(field, scope)| (&**field, scope))
    }
}

/// Which authentication modes each route accepts, which scopes it needs of an HMAC token, and
/// which headers it must not receive.
///
/// Each aspect is a list of rules that match a method (or any method) and a path pattern; the
/// rule added last that matches a request applies, and requests no accepts-rule matches get the
/// fallback. Methods and path literals match ASCII case-insensitively, one trailing slash is
/// ignored, and a `GET` rule covers `HEAD`, because the server routes those variants to the
/// same handler.
///
/// Patterns are `/literal/{param}/…`, where `{param}` is one non-empty segment, optionally
/// ending in `/**`: the path and everything below it.
///
/// ```
/// use http::Method;
/// use limitless_auth::{Accepts, AuthMode, RouteTable};
///
/// let table = RouteTable::limitless()
///     .with_route(Some(Method::GET), "/markets/**", Accepts::DEFAULT | Accepts::ANONYMOUS)?;
/// assert_eq!(table.accepts(&Method::GET, "/auth/api-tokens/capabilities"), Accepts::PRIVY);
/// assert!(table.accepts(&Method::GET, "/markets/active").contains(AuthMode::None));
/// assert_eq!(table.accepts(&Method::POST, "/orders"), Accepts::DEFAULT);
/// # Ok::<(), limitless_auth::RouteError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RouteTable {
    routes: Vec<Rule<Accepts>>,
    scopes: Vec<Rule<ScopeRequirement>>,
    strips: Vec<Rule<Box<[HeaderName]>>>,
    fallback: Accepts,
}

impl RouteTable {
    /// An empty table whose every route accepts `fallback`.
    pub fn new(fallback: Accepts) -> Self {
        Self {
            routes: Vec::new(),
            scopes: Vec::new(),
            strips: Vec::new(),
            fallback,
        }
    }

    fn rule<T>(method: Option<Method>, pattern: &str, value: T) -> Result<Rule<T>, RouteError> {
        Ok(Rule {
            method: MethodRule::new(method),
            pattern: Pattern::parse(pattern)?,
            value,
        })
    }

    /// Adds a rule: `method` (or any method, for `None`) on `pattern` accepts `accepts`. It
    /// takes precedence over the rules added before it.
    pub fn with_route(
        mut self,
        method: Option<Method>,
        pattern: &str,
        accepts: Accepts,
    ) -> Result<Self, RouteError> {
        self.routes.push(Self::rule(method, pattern, accepts)?);
        Ok(self)
    }

    /// Requires `scopes` of the HMAC tokens sent to matching routes, in place of any earlier
    /// requirement for the same requests. Checked when a token's scopes are known
    /// ([`HmacCredentials::with_scopes`](crate::HmacCredentials::with_scopes)): a request whose
    /// token lacks one fails locally with [`PolicyError::MissingScope`](crate::PolicyError).
    pub fn with_scopes(
        mut self,
        method: Option<Method>,
        pattern: &str,
        scopes: ScopeRequirement,
    ) -> Result<Self, RouteError> {
        self.scopes.push(Self::rule(method, pattern, scopes)?);
        Ok(self)
    }

    /// Never sends the headers `names` to matching routes: every front door removes them. Like
    /// the other rules, the last one that matches a request applies, so name every header a
    /// route must not receive in one rule.
    pub fn with_stripped_headers(
        mut self,
        method: Option<Method>,
        pattern: &str,
        names: impl IntoIterator<Item = HeaderName>,
    ) -> Result<Self, RouteError> {
        let names = names.into_iter().collect();
        self.strips.push(Self::rule(method, pattern, names)?);
        Ok(self)
    }

    /// Sets what routes no rule matches accept.
    pub fn with_fallback(mut self, fallback: Accepts) -> Self {
        self.fallback = fallback;
        self
    }

    /// The modes a route accepts: `method` (in any case) on `path` (without the query).
    pub fn accepts(&self, method: &Method, path: &str) -> Accepts {
        self.accepts_route(&Route::new(method, path))
    }

    /// [`RouteTable::accepts`] for a request read once.
    pub(crate) fn accepts_route(&self, route: &Route<'_>) -> Accepts {
        latest(&self.routes, route).map_or(self.fallback, |a| *a)
    }

    /// The scopes an HMAC token needs for a request, if the route requires any.
    pub(crate) fn required_scopes(&self, route: &Route<'_>) -> Option<&ScopeRequirement> {
        latest(&self.scopes, route)
    }

    /// The headers a request must not carry.
    pub(crate) fn stripped_headers(&self, route: &Route<'_>) -> &[HeaderName] {
        latest(&self.strips, route).map_or(&[], |names| names)
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::limitless()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        let route = Route::new(&Method::GET, path);
        Pattern::parse(pattern).expect("valid").matches(&route)
    }

    #[test]
    fn patterns_match_segment_by_segment() {
        let cases: &[(&str, &str, bool)] = &[
            ("/orders", "/orders", true),
            ("/orders", "/ORDERS/", true),
            ("/orders", "/orders//", false),
            ("/orders", "/orders/1", false),
            ("/orders", "/order", false),
            ("/orders", "/ordersx", false),
            ("/orders", "orders", false),
            ("/orders/**", "/orders", true),
            ("/orders/**", "/orders/", true),
            ("/orders/**", "/orders/a/b", true),
            ("/orders/**", "/ordersx/a", false),
            ("/a/{id}/c", "/a/1/c", true),
            ("/a/{id}/c", "/a//c", false),
            ("/a/{id}/c", "/a/1/2/c", false),
            ("/a/{id}", "/a/", false),
            ("/a/{id}", "/a//", false),
            ("/a/{id}", "/a", false),
            ("/**", "/", true),
            ("/**", "/anything/at/all", true),
            ("/", "/", true),
            ("/", "/x", false),
            ("/", "", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(matches(pattern, path), *expected, "{pattern} on {path:?}");
        }
    }

    #[test]
    fn the_fallback_is_what_unmatched_routes_accept() {
        let table = RouteTable::new(Accepts::HMAC)
            .with_route(Some(Method::GET), "/a", Accepts::ANONYMOUS)
            .expect("valid")
            .with_fallback(Accepts::PRIVY);
        assert_eq!(table.accepts(&Method::GET, "/b"), Accepts::PRIVY);
        assert_eq!(table.accepts(&Method::GET, "/a"), Accepts::ANONYMOUS);
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("orders", "must start with '/'"),
            ("/a//b", "empty segment"),
            ("/a/b**", "'**' must be a whole final segment"),
            ("/a/**/b", "segments are literals, '{name}' or a final '**'"),
            ("/a/{}", "segments are literals, '{name}' or a final '**'"),
            ("/a?b", "segments are literals, '{name}' or a final '**'"),
        ];
        for (pattern, reason) in cases {
            let err = Pattern::parse(pattern).expect_err(pattern);
            assert_eq!(err.reason, *reason, "{pattern}");
            assert_eq!(err.pattern, *pattern);
        }
    }

    #[test]
    fn methods_are_upper_cased_once() {
        let m = |s: &str| upper(Method::from_bytes(s.as_bytes()).expect("method"));
        assert_eq!(m("get"), Method::GET);
        assert_eq!(m("Delete"), Method::DELETE);
        assert_eq!(m("purge").as_str(), "PURGE");
        assert_eq!(m("POST"), Method::POST);
    }

    #[test]
    fn the_latest_matching_rule_applies() {
        let t = RouteTable::new(Accepts::DEFAULT)
            .with_route(None, "/a/**", Accepts::HMAC)
            .and_then(|t| t.with_route(Some(Method::GET), "/a/b", Accepts::PRIVY))
            .expect("valid");
        assert_eq!(t.accepts(&Method::GET, "/a/b"), Accepts::PRIVY);
        assert_eq!(
            t.accepts(&Method::from_bytes(b"get").expect("m"), "/A/B/"),
            Accepts::PRIVY
        );
        assert_eq!(t.accepts(&Method::POST, "/a/b"), Accepts::HMAC);
        assert_eq!(t.accepts(&Method::GET, "/b"), Accepts::DEFAULT);
    }

    #[test]
    fn methods_outside_the_common_ones_compare_by_name() {
        let purge = Method::from_bytes(b"PURGE").expect("m");
        let t = RouteTable::new(Accepts::DEFAULT)
            .with_route(Some(purge.clone()), "/a", Accepts::PRIVY)
            .and_then(|t| t.with_route(None, "/b", Accepts::HMAC))
            .and_then(|t| {
                t.with_route(
                    Some(Method::from_bytes(b"patch").expect("m")),
                    "/c",
                    Accepts::PRIVY,
                )
            })
            .expect("valid");
        let m = |s: &str| Method::from_bytes(s.as_bytes()).expect("m");
        assert_eq!(t.accepts(&purge, "/a"), Accepts::PRIVY);
        assert_eq!(t.accepts(&m("purge"), "/a"), Accepts::PRIVY);
        assert_eq!(t.accepts(&m("PURGED"), "/a"), Accepts::DEFAULT);
        assert_eq!(t.accepts(&Method::GET, "/a"), Accepts::DEFAULT);
        // Any method, the common ones and the others.
        for method in [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE", "x",
        ] {
            assert_eq!(t.accepts(&m(method), "/b"), Accepts::HMAC, "{method}");
        }
        // A rule written in lower case is the method in upper case.
        assert_eq!(t.accepts(&Method::PATCH, "/c"), Accepts::PRIVY);
        assert_eq!(t.accepts(&Method::PUT, "/c"), Accepts::DEFAULT);
    }

    #[test]
    fn a_get_rule_covers_head_and_nothing_else() {
        let t = RouteTable::new(Accepts::DEFAULT)
            .with_route(Some(Method::GET), "/a", Accepts::PRIVY)
            .and_then(|t| t.with_route(Some(Method::POST), "/b", Accepts::PRIVY))
            .expect("valid");
        assert_eq!(t.accepts(&Method::HEAD, "/a"), Accepts::PRIVY);
        assert_eq!(
            t.accepts(&Method::from_bytes(b"head").expect("m"), "/a"),
            Accepts::PRIVY
        );
        assert_eq!(t.accepts(&Method::OPTIONS, "/a"), Accepts::DEFAULT);
        assert_eq!(t.accepts(&Method::HEAD, "/b"), Accepts::DEFAULT);
        assert_eq!(t.accepts(&Method::GET, "/b"), Accepts::DEFAULT);
    }
}
