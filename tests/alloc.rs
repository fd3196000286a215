//! Allocation budgets: none for a signature or a timestamp, at most four per signed request in
//! the signing layer (requests are built before counting).

#[path = "../benches/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::requests::{call, get, get_with_user_agent, post, sink};
use common::{GET_TARGET, SECRET, TIMESTAMP, TOKEN_ID, alloc};
use http::Uri;
use limitless_auth::clock::SystemClock;
use limitless_auth::{HmacCredentials, HmacSigningLayer, Timestamp};
use tower::Layer as _;

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
fn the_signing_layer_allocates_at_most_four_times_per_request() {
    let creds = HmacCredentials::new(TOKEN_ID, SECRET).expect("valid");
    let mut signing = HmacSigningLayer::new(creds).layer(sink());
    let get_uri: Uri = GET_TARGET.parse().expect("uri");
    let post_uri: Uri = "/orders".parse().expect("uri");
    let body = Bytes::from(common::json_512());
    for (what, req) in [
        ("bare GET", get(&get_uri)),
        ("GET with user-agent", get_with_user_agent(&get_uri)),
        ("POST 512 B", post(&post_uri, &body)),
    ] {
        // Warm up once (first clones of shared bytes promote them), then count.
        call(&mut signing, get(&get_uri));
        let (_, n) = alloc::count(|| call(&mut signing, req));
        assert!(n <= 4, "{what}: {n} allocations");
        assert!(n >= 2, "{what}: the two header values are allocated ({n})");
    }
}
