//! The tower service's own mechanics: readiness, the ready service taken for a body read
//! later, bodies that arrive later, the size of its future.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Request;
use http_body::{Body as _, Frame};
use http_body_util::Full;
use tower::{Layer as _, Service as _, ServiceExt as _};

use crate::{BodyError, FixedClock, HmacCredentials, HmacSigningLayer, SignedBody, SigningError};

const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// 2026-03-23T12:34:56.789Z
const NOW: i64 = 1_774_269_296_789;

fn layer() -> HmacSigningLayer<FixedClock> {
    HmacSigningLayer::new(HmacCredentials::new("token-1", SECRET).expect("valid"))
        .with_clock(FixedClock::new(NOW))
}

/// The signature of a request signed at [`NOW`], computed from the protocol with `hmac`
/// directly.
fn expected_signature(method: &str, target: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(SECRET).expect("valid");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any length");
    mac.update(format!("2026-03-23T12:34:56.789Z\n{method}\n{target}\n").as_bytes());
    mac.update(body);
    engine.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn readiness_is_the_inner_services_and_the_ready_one_is_called() {
    // A tower-test mock is ready only once allowed, and a clone of it starts not ready:
    // calling anything but the very service that was made ready panics inside the mock.
    let (mock, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, &'static str>();
    let mut svc = layer().layer(mock);
    handle.allow(0);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(
        tower::Service::<Request<Full<Bytes>>>::poll_ready(&mut svc, &mut cx).is_pending(),
        "not ready while the inner service is not"
    );
    handle.allow(2);
    for body in [Bytes::new(), Bytes::from_static(b"{\"a\":1}")] {
        tower::ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .expect("ready");
        let req = Request::post("/orders")
            .body(Full::new(body.clone()))
            .expect("request");
        let fut = svc.call(req);
        let server = async {
            let (req, send) = handle.next_request().await.expect("request arrives");
            assert_eq!(req.headers()["lmts-timestamp"], "2026-03-23T12:34:56.789Z");
            let got = http_body_util::BodyExt::collect(req.into_body())
                .await
                .map(|c| c.to_bytes());
            assert_eq!(got.ok(), Some(body.clone()), "the body arrives unchanged");
            send.send_response("ok");
        };
        let (res, ()) = tokio::join!(fut, server);
        assert_eq!(res.expect("response"), "ok");
    }
}

type Stream = http_body_util::StreamBody<
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>,
>;

/// A body whose chunks are sent later, through the returned channel.
fn later() -> (
    SignedBody<Stream>,
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        SignedBody::new(http_body_util::StreamBody::new(Box::pin(stream))),
        tx,
    )
}

type Seen = Arc<Mutex<Vec<Request<SignedBody<Stream>>>>>;

fn recorder() -> (
    impl tower::Service<Request<SignedBody<Stream>>, Response = (), Error = Infallible> + Clone,
    Seen,
) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let svc = tower::service_fn(move |req: Request<SignedBody<Stream>>| {
        log.lock().expect("lock").push(req);
        std::future::ready(Ok::<_, Infallible>(()))
    });
    (svc, seen)
}

#[tokio::test]
async fn a_body_that_arrives_later_is_read_then_signed() {
    let (inner, seen) = recorder();
    let mut svc = layer().layer(inner);
    let (body, tx) = later();
    let req = Request::post("/orders?x=1").body(body).expect("req");
    svc.ready().await.expect("ready");
    let fut = svc.call(req);
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing is sent before the body is read"
    );
    let feed = async move {
        for part in [&b"{\"a\":"[..], b"1}"] {
            tokio::task::yield_now().await;
            tx.send(Ok(Frame::data(Bytes::from_static(part))))
                .await
                .expect("send");
        }
    };
    let (res, ()) = tokio::join!(fut, feed);
    res.expect("ok");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers()["lmts-signature"],
        expected_signature("POST", "/orders?x=1", b"{\"a\":1}").as_str()
    );
    assert_eq!(seen[0].body().size_hint().exact(), Some(7));
}

#[tokio::test]
async fn an_unsignable_target_is_refused_before_its_body_is_read() {
    let (inner, seen) = recorder();
    let mut svc = layer().layer(inner);
    let (body, tx) = later();
    let req = Request::builder()
        .method("OPTIONS")
        .uri("*")
        .body(body)
        .expect("req");
    svc.ready().await.expect("ready");
    // No chunk is ever sent: a layer that read the body first would wait forever.
    let call = tokio::time::timeout(std::time::Duration::from_secs(5), svc.call(req));
    let err = call.await.expect("refused at once").expect_err("refused");
    assert!(matches!(
        err.downcast_ref::<SigningError>(),
        Some(SigningError::InvalidTarget { .. })
    ));
    drop(tx);
    assert!(seen.lock().expect("lock").is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_body_that_fails_while_read_later_sends_nothing() {
    let (inner, seen) = recorder();
    let svc = layer().body_limit(4).layer(inner);
    let (body, tx) = later();
    let req = Request::post("/orders").body(body).expect("req");
    let feed = async move {
        tokio::task::yield_now().await;
        let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"12345")))).await;
    };
    let (res, ()) = tokio::join!(svc.oneshot(req), feed);
    let err = res.expect_err("too large");
    assert!(matches!(
        err.downcast_ref::<BodyError>(),
        Some(BodyError::TooLarge { limit: 4 })
    ));
    assert!(seen.lock().expect("lock").is_empty());
}

#[test]
fn the_future_of_an_in_memory_request_stays_small() {
    let inner = tower::service_fn(|_: Request<Full<Bytes>>| async { Ok::<_, Infallible>(()) });
    let mut svc = layer().layer(inner);
    let fut = svc.call(Request::new(Full::new(Bytes::new())));
    assert!(
        std::mem::size_of_val(&fut) <= 64,
        "{}",
        std::mem::size_of_val(&fut)
    );
}
