//! Requests and the layer stacks shared by the layer benchmark, the allocation count and its
//! test.

use std::convert::Infallible;
use std::future::{Ready, ready};
use tower::BoxError;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use limitless_auth::{
    AuthLayer, Credentials, HmacCredentials, HmacSigningLayer, IdentityToken, SignedBody,
};
use tower::{Layer as _, Service, ServiceExt as _};

use super::{SECRET, TOKEN_ID, now};

pub type Chunks = SignedBody<
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

/// The inner service, standing in for a transport: it consumes the request (a transport frees
/// it once written) and answers at once.
pub fn sink<B>()
-> impl Service<Request<B>, Response = (), Error = Infallible, Future = Ready<Result<(), Infallible>>>
+ Clone {
    tower::service_fn(|req: Request<B>| {
        drop(req);
        ready(Ok::<_, Infallible>(()))
    })
}

pub fn creds() -> Credentials {
    Credentials::new()
        .with_hmac(HmacCredentials::new(TOKEN_ID, SECRET).expect("valid"))
        .with_identity(IdentityToken::new("privy-identity-token").expect("valid"))
}

/// `AuthLayer` over the sink.
pub fn auth<B>() -> impl Service<Request<B>, Response = (), Error = BoxError> + Clone
where
    B: http_body::Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    AuthLayer::new(creds()).layer(sink())
}

/// The signing layer alone over the sink.
pub fn signing<B>() -> impl Service<Request<B>, Response = (), Error = BoxError> + Clone
where
    B: http_body::Body + From<Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    HmacSigningLayer::new(HmacCredentials::new(TOKEN_ID, SECRET).expect("valid")).layer(sink())
}

pub fn get(uri: &Uri) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri.clone();
    req
}

/// As the crate's client sends it: with a `user-agent` header.
pub fn get_with_user_agent(uri: &Uri) -> Request<Full<Bytes>> {
    let mut req = get(uri);
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("limitless-auth/0.1.0"),
    );
    req
}

pub fn post(uri: &Uri, body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    req
}

/// The same body as four chunks of a stream.
pub fn post_chunked(uri: &Uri, body: &Bytes) -> Request<Chunks> {
    let quarter = body.len() / 4;
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..4)
        .map(|i| Ok(Frame::data(body.slice(i * quarter..(i + 1) * quarter))))
        .collect();
    let mut req = Request::new(SignedBody::new(StreamBody::new(
        futures_util::stream::iter(chunks),
    )));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    req
}

/// One request through a ready service, to completion.
pub fn call<S, B>(svc: &mut S, req: Request<B>)
where
    S: Service<Request<B>, Response = (), Error = BoxError>,
{
    now(svc.ready()).expect("ready");
    now(svc.call(req)).expect("signed");
}
