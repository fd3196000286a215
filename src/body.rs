//! Bounded request-body collection.
//!
//! The signature covers the exact body bytes, so the signing layer reads the whole body before
//! it signs, within a byte limit ([`DEFAULT_BODY_LIMIT`] unless set): an empty body is never
//! polled, a `Full<Bytes>` is taken as the very `Bytes` it holds (no copy), and a body of
//! several chunks is joined into one buffer sized from its size hint.

#[cfg(any(feature = "client", test))]
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::BoxError;

/// The default request-body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A request body could not be collected; nothing was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// `Content-Length` (or the body's own size hint) announces more than the limit.
    #[error("request body of {declared} bytes exceeds the {limit}-byte limit; nothing was sent")]
    TooLargeDeclared {
        /// The announced length.
        declared: u64,
        /// The limit.
        limit: usize,
    },
    /// The body grew past the limit while it was read.
    #[error("request body exceeds the {limit}-byte limit; nothing was sent")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// `Content-Length` is not a single decimal number.
    #[error("request Content-Length header is not a valid length; nothing was sent")]
    InvalidContentLength,
    /// `Content-Length` disagrees with the bytes the body produced.
    #[error(
        "request Content-Length says {declared} bytes but the body has {actual}; nothing was sent"
    )]
    LengthMismatch {
        /// The announced length.
        declared: u64,
        /// The bytes read.
        actual: u64,
    },
    /// The body stream failed.
    #[error("reading the request body failed; nothing was sent: {0}")]
    Stream(#[source] BoxError),
}

/// Checks `Content-Length` and the size hint against `limit` before anything is read.
/// Returns the declared length, if any.
pub(crate) fn check_declared<B: Body>(
    headers: &HeaderMap,
    body: &B,
    limit: usize,
) -> Result<Option<u64>, BodyError> {
    let declared = match headers.get(http::header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(BodyError::InvalidContentLength)?,
        ),
    };
    let hinted = body.size_hint().lower();
    let at_least = declared.unwrap_or(0).max(hinted);
    if at_least > limit as u64 {
        return Err(BodyError::TooLargeDeclared {
            declared: at_least,
            limit,
        });
    }
    Ok(declared)
}

/// The state of reading a whole body into one `Bytes` within a byte limit, apart from the body
/// itself: a body can be read in place (through `&mut`) and handed on afterwards.
pub(crate) struct Gather {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
    len: usize,
    limit: usize,
    declared: Option<u64>,
}

impl Gather {
    pub(crate) fn new(limit: usize, declared: Option<u64>) -> Self {
        Self {
            first: None,
            joined: None,
            len: 0,
            limit,
            declared,
        }
    }

    /// Reads `body` on, to its end: the whole body (a single chunk is kept without a copy).
    pub(crate) fn poll_body<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Bytes, BodyError>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        loop {
            if body.is_end_stream() {
                break;
            }
            let Some(frame) = ready!(body.as_mut().poll_frame(cx)) else {
                break;
            };
            let frame = frame.map_err(|e| BodyError::Stream(e.into()))?;
            // Trailers cannot be signed; only data frames are part of the body.
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let n = data.remaining();
            if n == 0 {
                continue;
            }
            self.len = self.len.saturating_add(n);
            if self.len > self.limit {
                return Poll::Ready(Err(BodyError::TooLarge { limit: self.limit }));
            }
            match (self.first.take(), self.joined.as_mut()) {
                (None, None) => self.first = Some(data.copy_to_bytes(n)),
                (first, joined) => {
                    let buf = match joined {
                        Some(buf) => buf,
                        None => {
                            let hint = body.size_hint();
                            let want = hint.upper().unwrap_or(hint.lower());
                            let want = usize::try_from(want).unwrap_or(usize::MAX);
                            let cap = self.len.saturating_add(want).min(self.limit);
                            self.joined.insert(BytesMut::with_capacity(cap))
                        }
                    };
                    if let Some(first) = first {
                        buf.extend_from_slice(&first);
                    }
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        let k = chunk.len();
                        buf.extend_from_slice(chunk);
                        data.advance(k);
                    }
                }
            }
        }
        if let Some(declared) = self.declared
            && declared != self.len as u64
        {
            return Poll::Ready(Err(BodyError::LengthMismatch {
                declared,
                actual: self.len as u64,
            }));
        }
        let bytes = match (self.first.take(), self.joined.take()) {
            (_, Some(buf)) => buf.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        };
        Poll::Ready(Ok(bytes))
    }
}

#[cfg(any(feature = "client", test))]
pin_project! {
    /// Reads a whole body into one `Bytes`, failing past a byte limit.
    pub(crate) struct Collect<B> {
        #[pin]
        body: B,
        gather: Gather,
    }
}

#[cfg(any(feature = "client", test))]
impl<B: Body> Collect<B> {
    pub(crate) fn new(body: B, limit: usize, declared: Option<u64>) -> Self {
        Self {
            body,
            gather: Gather::new(limit, declared),
        }
    }
}

#[cfg(any(feature = "client", test))]
impl<B> Future for Collect<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, BodyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.gather.poll_body(this.body, cx)
    }
}

pin_project! {
    /// A request body for the signing step when it is not a `Full<Bytes>`: any body (a
    /// stream, say) passed through untouched when the request is not signed, or the bytes that
    /// were read and signed.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt as _, Empty};
    /// use limitless_auth::SignedBody;
    ///
    /// let streaming: SignedBody<Empty<Bytes>> = SignedBody::new(Empty::new());
    /// let signed: SignedBody<Empty<Bytes>> = SignedBody::from(Bytes::from_static(b"{}"));
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// assert_eq!(signed.collect().await.unwrap().to_bytes(), "{}");
    /// assert!(streaming.collect().await.unwrap().to_bytes().is_empty());
    /// # });
    /// ```
    pub struct SignedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Signed {
            #[pin]
            bytes: Full<Bytes>,
        },
        Body {
            #[pin]
            body: B,
        },
    }
}

impl<B> SignedBody<B> {
    /// Wraps `body`.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Body { body },
        }
    }
}

impl<B> From<Bytes> for SignedBody<B> {
    fn from(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Signed {
                bytes: Full::new(bytes),
            },
        }
    }
}

impl<B> Body for SignedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Signed { bytes } => bytes
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(|never| match never {}))),
            KindProj::Body { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Signed { bytes } => bytes.is_end_stream(),
            Kind::Body { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Signed { bytes } => bytes.size_hint(),
            Kind::Body { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};
    use std::convert::Infallible;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn chunks(parts: Vec<&'static [u8]>) -> impl Body<Data = Bytes, Error = Infallible> {
        StreamBody::new(futures_util::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p)))),
        ))
    }

    #[test]
    fn full_body_is_not_copied() {
        let original = Bytes::from(vec![7u8; 512]);
        let ptr = original.as_ptr();
        let out = block_on(Collect::new(Full::new(original), 1024, None)).expect("fits");
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(out.len(), 512);
    }

    #[test]
    fn chunks_are_joined_in_order() {
        let body = chunks(vec![b"ab", b"", b"cd", b"e"]);
        let out = block_on(Collect::new(body, 5, None)).expect("fits exactly");
        assert_eq!(&out[..], b"abcde");
    }

    /// Two chunks, with a size hint that claims the most a `u64` can hold.
    struct Boastful(Vec<&'static [u8]>);

    impl Body for Boastful {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            let next = (!self.0.is_empty()).then(|| self.0.remove(0));
            Poll::Ready(next.map(|p| Ok(http_body::Frame::data(Bytes::from_static(p)))))
        }

        fn size_hint(&self) -> http_body::SizeHint {
            let mut hint = http_body::SizeHint::new();
            hint.set_upper(u64::MAX);
            hint
        }
    }

    #[test]
    fn a_size_hint_of_any_size_is_only_a_hint() {
        let out = block_on(Collect::new(Boastful(vec![b"ab", b"cd"]), 16, None)).expect("fits");
        assert_eq!(&out[..], b"abcd");
    }

    #[test]
    fn streaming_past_the_limit_fails() {
        let body = chunks(vec![b"abc", b"def"]);
        let err = block_on(Collect::new(body, 5, None)).expect_err("too large");
        assert!(matches!(err, BodyError::TooLarge { limit: 5 }));
    }

    #[test]
    fn declared_length_is_checked_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_LENGTH,
            "2000000".parse().expect("num"),
        );
        let body = Full::new(Bytes::from_static(b"x"));
        assert!(matches!(
            check_declared(&headers, &body, DEFAULT_BODY_LIMIT),
            Err(BodyError::TooLargeDeclared {
                declared: 2_000_000,
                ..
            })
        ));
        headers.insert(http::header::CONTENT_LENGTH, "-1".parse().expect("hv"));
        assert!(matches!(
            check_declared(&headers, &body, 10),
            Err(BodyError::InvalidContentLength)
        ));
        headers.insert(http::header::CONTENT_LENGTH, "1".parse().expect("hv"));
        assert_eq!(check_declared(&headers, &body, 10).expect("fine"), Some(1));
        let big = Full::new(Bytes::from(vec![0u8; 11]));
        assert!(matches!(
            check_declared(&HeaderMap::new(), &big, 10),
            Err(BodyError::TooLargeDeclared { declared: 11, .. })
        ));
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let body = chunks(vec![b"abc"]);
        let err = block_on(Collect::new(body, 10, Some(4))).expect_err("mismatch");
        assert!(matches!(
            err,
            BodyError::LengthMismatch {
                declared: 4,
                actual: 3
            }
        ));
    }

    #[test]
    fn stream_errors_surface() {
        let body = StreamBody::new(futures_util::stream::iter(vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("disk on fire")),
        ]));
        let err = block_on(Collect::new(body, 10, None)).expect_err("stream error");
        assert!(matches!(err, BodyError::Stream(_)));
        assert!(err.to_string().contains("disk on fire"));
    }

    #[test]
    fn trailers_are_skipped() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", "1".parse().expect("hv"));
        let body =
            Full::new(Bytes::from_static(b"abc")).with_trailers(async { Some(Ok(trailers)) });
        let out = block_on(Collect::new(body, 10, None)).expect("fits");
        assert_eq!(&out[..], b"abc");
    }
}
