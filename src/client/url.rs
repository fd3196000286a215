//! Where requests go: the base URL, request-targets, and path segments.

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Uri};

use super::Error;
use crate::RoutePrefix;

/// The scheme, authority and path prefix requests are sent to.
#[derive(Clone, Debug)]
pub(crate) struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The path before the Limitless routes (`/x` in `https://gw.example/x`), if any.
    pub(crate) prefix: Option<RoutePrefix>,
}

/// `url` with any user-info (`user:password@`) replaced by `***@`, for error messages.
pub(crate) fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

impl BaseUrl {
    pub(crate) fn parse(url: &str, sign_prefix: bool) -> Result<Self, Error> {
        let bad =
            |why: &str| Error::InvalidRequest(format!("base URL {:?} {why}", redact_url(url)));
        let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("must be http or https"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not contain credentials"));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let path = uri.path().trim_end_matches('/');
        let prefix = if path.is_empty() {
            None
        } else {
            let prefix = RoutePrefix::new(path).map_err(|e| bad(e.reason))?;
            Some(if sign_prefix {
                prefix
            } else {
                prefix.unsigned()
            })
        };
        Ok(Self {
            scheme,
            authority,
            prefix,
        })
    }

    pub(crate) fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    fn port(scheme: &Scheme, authority: &Authority) -> Option<u16> {
        authority.port_u16().or(if *scheme == Scheme::HTTPS {
            Some(443)
        } else if *scheme == Scheme::HTTP {
            Some(80)
        } else {
            None
        })
    }

    /// Whether `authority` (on this base's scheme) names this base's host and port.
    fn same_authority(&self, authority: &Authority) -> bool {
        authority.host().eq_ignore_ascii_case(self.authority.host())
            && Self::port(&self.scheme, authority) == Self::port(&self.scheme, &self.authority)
            && !authority.as_str().contains('@')
    }

    fn same_origin(&self, uri: &Uri) -> bool {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                *scheme == self.scheme && self.same_authority(authority)
            }
            _ => false,
        }
    }

    /// The absolute URI for a request-target given as a path (and query).
    fn join(&self, pq: PathAndQuery) -> Result<Uri, Error> {
        let target = match &self.prefix {
            None => pq,
            Some(prefix) => format!("{}{}", prefix.as_str(), pq.as_str())
                .parse()
                .map_err(|_| Error::InvalidRequest(format!("cannot join {pq} to the base URL")))?,
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(target);
        Uri::from_parts(parts).map_err(|e| Error::InvalidRequest(format!("invalid URI: {e}")))
    }

    /// Resolves a request's URI: paths join the base; absolute URIs must be on its origin.
    /// Raw non-ASCII bytes in the request-target are percent-encoded first, so that what is
    /// signed is what is sent.
    pub(crate) fn resolve(&self, uri: Uri) -> Result<Uri, Error> {
        match (uri.scheme(), uri.authority()) {
            (None, None) => {
                if !uri.path().starts_with('/') {
                    return Err(Error::InvalidRequest(format!(
                        "{uri} is not a path starting with '/'"
                    )));
                }
                let pq = uri
                    .into_parts()
                    .path_and_query
                    .unwrap_or_else(|| PathAndQuery::from_static("/"));
                if pq.as_str().is_ascii() {
                    self.join(pq)
                } else {
                    self.join(parse_target(pq.as_str())?)
                }
            }
            (Some(_), Some(authority)) => {
                if !self.same_origin(&uri) {
                    let scheme = uri.scheme_str().unwrap_or_default();
                    return Err(Error::ForeignOrigin {
                        origin: format!("{scheme}://{}", authority.host()),
                        base: self.origin(),
                    });
                }
                match uri.path_and_query() {
                    Some(pq) if !pq.as_str().is_ascii() => Uri::builder()
                        .scheme(self.scheme.clone())
                        .authority(authority.clone())
                        .path_and_query(parse_target(pq.as_str())?)
                        .build()
                        .map_err(|e| Error::InvalidRequest(format!("invalid URI: {e}"))),
                    _ => Ok(uri),
                }
            }
            _ => Err(Error::InvalidRequest(format!(
                "{uri} is neither a path nor an absolute http(s) URL"
            ))),
        }
    }

    /// A caller-set `Host` header must name the base URL's authority: credentials go only there.
    pub(crate) fn check_host(&self, headers: &HeaderMap) -> Result<(), Error> {
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let Some(host) = hosts.next() else {
            return Ok(());
        };
        let same = hosts.next().is_none()
            && host
                .to_str()
                .ok()
                .and_then(|h| h.parse::<Authority>().ok())
                .is_some_and(|a| self.same_authority(&a));
        if same {
            Ok(())
        } else {
            Err(Error::ForeignOrigin {
                origin: format!(
                    "Host: {}",
                    String::from_utf8_lossy(host.as_bytes()).escape_debug()
                ),
                base: self.origin(),
            })
        }
    }
}

/// Parses a path-and-query argument. Raw non-ASCII characters are percent-encoded as UTF-8
/// (`/markets/é` is sent and signed as `/markets/%C3%A9`); anything else that cannot stand in
/// a request-target (spaces, control characters, a fragment) is refused.
pub(crate) fn parse_target(text: &str) -> Result<PathAndQuery, Error> {
    use percent_encoding::{AsciiSet, utf8_percent_encode};
    // Only bytes outside ASCII are encoded.
    let target: std::borrow::Cow<'_, str> = if text.is_ascii() {
        text.into()
    } else {
        utf8_percent_encode(text, &AsciiSet::EMPTY).into()
    };
    target
        .parse::<PathAndQuery>()
        .ok()
        .filter(|pq| target.starts_with('/') && pq.as_str() == target)
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "{text:?} is not a request-target (a path starting with '/'; spaces, control \
                 characters and fragments must be percent-encoded)"
            ))
        })
}

/// Percent-encodes `segment` as one path segment: everything but unreserved characters, and the
/// dots of a segment that is `.` or `..` (which a proxy would resolve as a relative path), so
/// that no argument can make a request reach another route.
pub(crate) fn encode_segment(segment: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    if segment == "." || segment == ".." {
        return segment.replace('.', "%2E");
    }
    utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn segments_are_encoded_whole() {
        assert_eq!(encode_segment("tok+abc/="), "tok%2Babc%2F%3D");
        assert_eq!(encode_segment("a b?c#d%"), "a%20b%3Fc%23d%25");
        assert_eq!(encode_segment("Az09-._~"), "Az09-._~");
        assert_eq!(encode_segment("é"), "%C3%A9");
        assert_eq!(encode_segment("."), "%2E");
        assert_eq!(encode_segment(".."), "%2E%2E");
        assert_eq!(encode_segment("..."), "...");
        assert_eq!(
            encode_segment("%2E"),
            "%252E",
            "never decodes to a dot segment"
        );
    }

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("https://api.limitless.exchange", true).expect("valid");
        let pq: PathAndQuery = "/orders?x=1".parse().expect("pq");
        assert_eq!(
            b.join(pq.clone()).expect("join").to_string(),
            "https://api.limitless.exchange/orders?x=1"
        );
        let p = BaseUrl::parse("http://127.0.0.1:8080/api/", true).expect("valid");
        assert_eq!(
            p.join(pq.clone()).expect("join").to_string(),
            "http://127.0.0.1:8080/api/orders?x=1"
        );
        for bad in [
            "ftp://x",
            "api.limitless.exchange",
            "/path",
            "https://u:p@host",
            "https://h?q=1",
            "",
        ] {
            assert!(BaseUrl::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_base_origin_is_accepted() {
        let b = BaseUrl::parse("https://api.limitless.exchange", true).expect("valid");
        let ok = |s: &str| b.resolve(s.parse().expect("uri")).is_ok();
        assert!(ok("/orders"));
        assert!(ok("https://api.limitless.exchange/orders"));
        assert!(ok("https://API.Limitless.Exchange:443/orders"));
        assert!(!ok("http://api.limitless.exchange/orders"));
        assert!(!ok("https://api.limitless.exchange:8443/orders"));
        assert!(!ok("https://evil.example/orders"));
        assert!(!ok("https://api.limitless.exchange.evil.example/orders"));
        assert!(!ok("https://user@api.limitless.exchange/orders"));
        assert!(!ok("api.limitless.exchange:443"));
        assert!(!ok("*"));
        match b.resolve("https://evil.example/x".parse().expect("uri")) {
            Err(Error::ForeignOrigin { origin, base }) => {
                assert_eq!(origin, "https://evil.example");
                assert_eq!(base, "https://api.limitless.exchange");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_targets_are_checked() {
        assert!(parse_target("/orders?x=1").is_ok());
        for bad in [
            "orders",
            "/a b",
            "",
            "https://x/y",
            "/a#frag",
            "/a\r\nb",
            "/é b",
        ] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_target("/markets/é?q=ü").expect("encoded").as_str(),
            "/markets/%C3%A9?q=%C3%BC"
        );
    }

    #[test]
    fn foreign_host_headers_are_refused() {
        let b = BaseUrl::parse("https://api.limitless.exchange", true).expect("valid");
        let host = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::HOST, HeaderValue::from_static(v));
            b.check_host(&h)
        };
        assert!(b.check_host(&HeaderMap::new()).is_ok());
        assert!(host("api.limitless.exchange").is_ok());
        assert!(host("API.limitless.exchange:443").is_ok());
        assert!(matches!(
            host("evil.example"),
            Err(Error::ForeignOrigin { .. })
        ));
        assert!(host("api.limitless.exchange:8443").is_err());
        assert!(host("user@api.limitless.exchange").is_err());
        let mut two = HeaderMap::new();
        two.append(
            http::header::HOST,
            HeaderValue::from_static("api.limitless.exchange"),
        );
        two.append(http::header::HOST, HeaderValue::from_static("evil.example"));
        assert!(b.check_host(&two).is_err());
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(redact_url("https://user:pw@host/x"), "https://***@host/x");
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
        let err = BaseUrl::parse("https://user:hunter2@host", true).expect_err("refused");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
