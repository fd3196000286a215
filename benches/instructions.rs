//! Repeats one case many times, for counting its instructions under valgrind's callgrind
//! (deterministic, unlike time on a shared machine). Run a case twice, with 500 and 1,500
//! repetitions, and divide the difference of the totals by 1,000:
//!
//! ```sh
//! cargo bench --bench instructions --features client,mock --no-run
//! B=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B floor_get 500
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B floor_get 1500
//! ```
//!
//! A repetition is one request in every case. Cases:
//! - `decide_get`, `decide_post`: the decision alone, for the same requests as below;
//! - over a `service_fn` that drops the request, as in the layer benchmark: `floor_get`,
//!   `floor_post` (`floor_request` for a GET and a 512 B POST), `auth_get`, `auth_post`
//!   (`AuthLayer`), `hmac_get`, `hmac_post` (`HmacSigningLayer` alone);
//! - one GET at a time to the embedded mock on loopback, client and server on one thread, as in
//!   the client benchmark: `signed_floor` (hyper-util signing inline), `client`;
//! - the same with 64 requests in flight: `signed_floor_64`, `client_64` (give repetition
//!   counts that are multiples of 64, such as 640 and 1,920).
//!
//! - with the `reqwest` feature, one GET at a time over reqwest to the mock, as above:
//!   `reqwest_floor` (plain reqwest, signed inline), `reqwest_auth` (reqwest-middleware with
//!   `AuthMiddleware`), `reqwest_middleware_floor` (reqwest-middleware with no middleware, the
//!   request signed inline), `reqwest_bare` (plain reqwest, unsigned; reference).
//!
//! - with the `ws` feature, `ws_upgrade`: the signed upgrade request for the socket
//!   (`ws::upgrade_request`: the URL parsed, the handshake headers with a fresh key, the
//!   signature); `ws_floor`: the same request-target signed inline, as `floor_request` signs.
//!
//! Without arguments (as `cargo bench` runs it) it does nothing.

mod common;

use bytes::Bytes;
use common::floors::{Inputs, floor_request, inputs, sign_inline};
use common::requests::{auth, call, get, post, signing};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use limitless_auth::client::Client;
use limitless_auth::mock::{MockServer, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::{Credentials, HmacCredentials};

fn decisions(case: &str, n: u64) {
    let Inputs {
        get_uri, post_uri, ..
    } = inputs();
    let table = limitless_auth::RouteTable::limitless();
    let creds = common::requests::creds();
    let ext = http::Extensions::new();
    let (method, target) = match case {
        "decide_get" => (Method::GET, get_uri.path().to_owned()),
        _ => (Method::POST, post_uri.path().to_owned()),
    };
    for _ in 0..n {
        let d = limitless_auth::decide(&table, &method, &target, &ext, &creds);
        std::hint::black_box(d.expect("decided"));
    }
}

fn layers(case: &str, n: u64) {
    let Inputs {
        get_uri,
        post_uri,
        body,
        mac,
        token_id,
    } = inputs();
    let mut a = auth::<Full<Bytes>>();
    let mut s = signing::<Full<Bytes>>();
    for _ in 0..n {
        match case {
            "floor_get" => floor_request(&mac, &token_id, get(&get_uri), b""),
            "floor_post" => floor_request(&mac, &token_id, post(&post_uri, &body), &body),
            "auth_get" => call(&mut a, get(&get_uri)),
            "auth_post" => call(&mut a, post(&post_uri, &body)),
            "hmac_get" => call(&mut s, get(&get_uri)),
            "hmac_post" => call(&mut s, post(&post_uri, &body)),
            other => panic!("unknown case {other}"),
        }
    }
}

/// Runs `f` on a current-thread runtime with a mock that records nothing, given the partner
/// token and its id as a header value.
fn on_mock(f: impl AsyncFnOnce(MockServer, HmacCredentials, http::HeaderValue)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mock = MockServer::builder()
            .record_requests(false)
            .start()
            .await
            .expect("mock");
        let creds = HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid");
        let token_id = http::HeaderValue::from_str(PARTNER_TOKEN_ID).expect("visible ASCII");
        f(mock, creds, token_id).await;
    });
}

/// The client benchmark's cases, `n` requests, `in_flight` at a time, client and mock on one
/// thread.
fn loopback(case: &str, n: u64, in_flight: u64) {
    on_mock(async |mock, creds, token_id| {
        let client = Client::builder()
            .base_url(mock.base_url())
            .credentials(Credentials::new().with_hmac(creds.clone()))
            .build()
            .expect("client");
        let transport = common::transport();
        let uri: Uri = format!("{}/markets/active", mock.base_url())
            .parse()
            .expect("uri");
        let one = || async {
            if case.starts_with("client") {
                let resp = client
                    .request(Method::GET, "/markets/active", None)
                    .await
                    .expect("response");
                std::hint::black_box(resp.body);
                return;
            }
            let mut req = Request::get(uri.clone())
                .body(Full::new(Bytes::new()))
                .expect("request");
            sign_inline(&mut req, &creds, &token_id);
            let resp = transport.request(req).await.expect("response");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            std::hint::black_box(body);
        };
        for _ in 0..n / in_flight {
            futures_util::future::join_all((0..in_flight).map(|_| one())).await;
        }
    });
}

/// The reqwest floor: a body-less request signed inline, as `sign_inline` signs one for
/// hyper-util.
#[cfg(feature = "reqwest")]
fn sign_reqwest_inline(
    req: &mut reqwest::Request,
    creds: &HmacCredentials,
    token_id: &http::HeaderValue,
) {
    use limitless_auth::headers::{LMTS_API_KEY, LMTS_SIGNATURE, LMTS_TIMESTAMP};
    use limitless_auth::{Clock as _, SystemClock, Timestamp};
    let ts = Timestamp::from_unix_millis(SystemClock.now_millis()).expect("clock");
    let url = req.url();
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let sig = creds.sign(ts.as_str(), req.method().as_str(), target, b"");
    let h = req.headers_mut();
    h.insert(LMTS_API_KEY, token_id.clone());
    h.insert(
        LMTS_TIMESTAMP,
        http::HeaderValue::from_str(ts.as_str()).expect("ascii"),
    );
    h.insert(
        LMTS_SIGNATURE,
        http::HeaderValue::from_str(sig.as_str()).expect("ascii"),
    );
}

/// The reqwest cases, `n` requests one at a time, client and mock on one thread.
#[cfg(feature = "reqwest")]
fn over_reqwest(case: &str, n: u64) {
    on_mock(async |mock, creds, token_id| {
        let url = format!("{}/markets/active", mock.base_url());
        let plain = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let empty = reqwest_middleware::ClientBuilder::new(plain.clone()).build();
        let with_auth = reqwest_middleware::ClientBuilder::new(plain.clone())
            .with(
                limitless_auth::reqwest::AuthMiddleware::new(
                    Credentials::new().with_hmac(creds.clone()),
                )
                .origin(&mock.base_url().parse().expect("url")),
            )
            .build();
        for _ in 0..n {
            let resp = match case {
                "reqwest_auth" => with_auth.get(&url).send().await.expect("response"),
                "reqwest_bare" => plain.get(&url).send().await.expect("response"),
                "reqwest_middleware_floor" => {
                    let mut req = plain.get(&url).build().expect("request");
                    sign_reqwest_inline(&mut req, &creds, &token_id);
                    empty.execute(req).await.expect("response")
                }
                _ => {
                    let mut req = plain.get(&url).build().expect("request");
                    sign_reqwest_inline(&mut req, &creds, &token_id);
                    plain.execute(req).await.expect("response")
                }
            };
            std::hint::black_box(resp.bytes().await.expect("body"));
        }
    });
}

/// The socket's upgrade request, signed: by the crate, or inline over a prebuilt request.
#[cfg(feature = "ws")]
fn upgrades(case: &str, n: u64) {
    let creds = HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid");
    let token_id = http::HeaderValue::from_str(PARTNER_TOKEN_ID).expect("visible ASCII");
    // A shared handle, as a socket holds its credentials: read, not copied, per request.
    let shared =
        limitless_auth::SharedCredentials::new(Credentials::new().with_hmac(creds.clone()));
    let url = limitless_auth::ws::DEFAULT_URL;
    let uri: Uri = format!("{url}{}", limitless_auth::ws::SOCKET_PATH)
        .parse()
        .expect("uri");
    for _ in 0..n {
        if case == "ws_upgrade" {
            let req =
                limitless_auth::ws::upgrade_request(url, &shared, &limitless_auth::SystemClock);
            std::hint::black_box(req.expect("signed"));
        } else {
            let mut req = Request::get(uri.clone())
                .body(Full::new(Bytes::new()))
                .expect("request");
            sign_inline(&mut req, &creds, &token_id);
            std::hint::black_box(req);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let (Some(case), Some(n)) = (args.next(), args.next()) else {
        return;
    };
    let n: u64 = n.parse().expect("a repetition count");
    match case.as_str() {
        "signed_floor" | "client" => loopback(&case, n, 1),
        "signed_floor_64" | "client_64" => loopback(&case, n, 64),
        "decide_get" | "decide_post" => decisions(&case, n),
        #[cfg(feature = "reqwest")]
        "reqwest_floor" | "reqwest_middleware_floor" | "reqwest_auth" | "reqwest_bare" => {
            over_reqwest(&case, n)
        }
        #[cfg(feature = "ws")]
        "ws_upgrade" | "ws_floor" => upgrades(&case, n),
        _ => layers(&case, n),
    }
}
