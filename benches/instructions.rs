//! Repeats one case many times, for counting its instructions under valgrind's callgrind
//! (deterministic, unlike time on a shared machine). Run a case twice, with 500 and 1,500
//! repetitions, and divide the difference of the totals by 1,000:
//!
//! ```sh
//! cargo bench --bench instructions --features client,mock --no-run
//! B=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B floor_request 500
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null $B floor_request 1500
//! ```
//!
//! Cases: `floor_request`, `auth`, `three_layers` (a GET over a `service_fn`, as in the layer
//! benchmark) and `signed_floor`, `client` (one GET at a time to the embedded mock on
//! loopback, as in the client benchmark, with client and server on one thread).
//!
//! Without arguments (as `cargo bench` runs it) it does nothing.

mod common;

use bytes::Bytes;
use common::floors::{Inputs, floor_request, inputs, sign_inline};
use common::requests::{auth, call, get, three_layers};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use limitless_auth::client::Client;
use limitless_auth::mock::{MockServer, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::{Credentials, HmacCredentials};

fn layers(case: &str, n: u64) {
    let Inputs {
        get_uri: uri,
        mac,
        token_id,
        ..
    } = inputs();
    let mut a = auth::<Full<Bytes>>();
    let mut l = three_layers::<Full<Bytes>>();
    for _ in 0..n {
        match case {
            "floor_request" => floor_request(&mac, &token_id, get(&uri), b""),
            "auth" => call(&mut a, get(&uri)),
            _ => call(&mut l, get(&uri)),
        }
    }
}

/// The client benchmark's cases, one request at a time, client and mock on one thread.
fn loopback(case: &str, n: u64) {
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
        let builder = Client::builder()
            .base_url(mock.base_url())
            .credentials(Credentials::new().with_hmac(creds.clone()));
        let transport = builder.transport().expect("transport");
        let client = builder.build().expect("client");
        let uri: Uri = format!("{}/markets/active", mock.base_url())
            .parse()
            .expect("uri");
        for _ in 0..n {
            if case == "client" {
                let resp = client
                    .request(Method::GET, "/markets/active", None)
                    .await
                    .expect("response");
                std::hint::black_box(resp.body);
                continue;
            }
            let mut req = Request::get(uri.clone())
                .body(Full::new(Bytes::new()))
                .expect("request");
            sign_inline(&mut req, &creds);
            let resp = transport.request(req).await.expect("response");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            std::hint::black_box(body);
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
        "floor_request" | "auth" | "three_layers" => layers(&case, n),
        "signed_floor" | "client" => loopback(&case, n),
        other => panic!("unknown case {other}"),
    }
}
