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

/// The client benchmark's cases, `n` requests, `in_flight` at a time, client and mock on one
/// thread.
fn loopback(case: &str, n: u64, in_flight: u64) {
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
        let client = Client::builder()
            .base_url(mock.base_url())
            .credentials(Credentials::new().with_hmac(creds.clone()))
            .build()
            .expect("client");
        let transport = common::transport();
        let token_id = http::HeaderValue::from_str(PARTNER_TOKEN_ID).expect("visible ASCII");
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
        _ => layers(&case, n),
    }
}
