//! Allocation budgets (upper bounds): none for a signature or a timestamp, at most four per
//! signed request in the signing layer and in `AuthLayer`. Requests are built before counting.

#[path = "../benches/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::requests::{auth, call, get, get_with_user_agent, post, signing};
use common::{GET_TARGET, SECRET, TIMESTAMP, TOKEN_ID, alloc};
use http::Uri;
use http_body_util::Full;
use limitless_auth::SystemClock;
use limitless_auth::{HmacCredentials, Timestamp};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[test]
fn signing_and_timestamps_do_not_allocate() {
    let creds = HmacCredentials::new(TOKEN_ID, SECRET).expect("valid");
    let body = common::json_512();
    let big = common::body_64k();
    let (_, n) = alloc::count(|| {
        for _ in 0..100 {
            std::hint::black_box(creds.sign(TIMESTAMP, "GET", GET_TARGET, b""));
            std::hint::black_box(creds.sign(TIMESTAMP, "post", "/orders", &body));
            std::hint::black_box(creds.sign(TIMESTAMP, "POST", "/orders", &big));
            std::hint::black_box(Timestamp::now(&SystemClock).expect("in range"));
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn signed_requests_stay_within_their_allocation_budgets() {
    let get_uri: Uri = GET_TARGET.parse().expect("uri");
    let post_uri: Uri = "/orders".parse().expect("uri");
    let body = Bytes::from(common::json_512());
    let mut signing = signing::<Full<Bytes>>();
    let mut auth = auth::<Full<Bytes>>();
    for (what, req, budget) in [
        ("bare GET", get(&get_uri), 4),
        ("GET with user-agent", get_with_user_agent(&get_uri), 4),
        ("POST 512 B", post(&post_uri, &body), 4),
    ] {
        // Warm up once (first clones of shared bytes promote them), then count.
        call(&mut signing, get(&get_uri));
        call(&mut auth, get(&get_uri));
        let clone = || {
            let mut r = http::Request::new(req.body().clone());
            *r.method_mut() = req.method().clone();
            *r.uri_mut() = req.uri().clone();
            *r.headers_mut() = req.headers().clone();
            r
        };
        let (r1, r2) = (clone(), clone());
        let (_, n) = alloc::count(|| call(&mut signing, r1));
        assert!(n <= budget, "signing layer, {what}: {n} allocations");
        let (_, n) = alloc::count(|| call(&mut auth, r2));
        assert!(n <= budget, "AuthLayer, {what}: {n} allocations");
    }
}
