//! Heap allocations per signature and per signed request, with a counting global allocator.
//!
//! `cargo bench --bench alloc`

mod common;

use std::hint::black_box;

use bytes::Bytes;
use common::requests::{Chunks, auth, call, get, get_with_user_agent, post, post_chunked, signing};
use common::{GET_TARGET, SECRET, TIMESTAMP, TOKEN_ID, alloc};
use http::{Request, Uri};
use http_body_util::Full;
use limitless_auth::SystemClock;
use limitless_auth::{HmacCredentials, Timestamp};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const N: u64 = 10_000;

/// Allocations per call of `f`, over `N` calls with inputs prepared beforehand.
fn per_call<I>(inputs: impl Fn() -> I, mut f: impl FnMut(I)) -> f64 {
    let mut prepared: Vec<I> = (0..N).map(|_| inputs()).collect();
    let (_, n) = alloc::count(|| {
        while let Some(input) = prepared.pop() {
            f(input);
        }
    });
    n as f64 / N as f64
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here is timed.
    let get_uri: Uri = GET_TARGET.parse().expect("uri");
    let post_uri: Uri = "/orders".parse().expect("uri");
    let body = Bytes::from(common::json_512());
    let creds = HmacCredentials::new(TOKEN_ID, SECRET).expect("valid");
    let mut signing = signing::<Full<Bytes>>();
    let mut full = auth::<Full<Bytes>>();
    let mut chunked = auth::<Chunks>();

    let rows: Vec<(&str, f64)> = vec![
        (
            "pure signer, GET (target 0)",
            per_call(
                || (),
                |()| {
                    black_box(creds.sign(TIMESTAMP, "GET", GET_TARGET, b""));
                },
            ),
        ),
        (
            "pure signer, POST 512 B (target 0)",
            per_call(
                || (),
                |()| {
                    black_box(creds.sign(TIMESTAMP, "POST", "/orders", &body));
                },
            ),
        ),
        (
            "timestamp from the clock (target 0)",
            per_call(
                || (),
                |()| {
                    black_box(Timestamp::now(&SystemClock).expect("in range"));
                },
            ),
        ),
        (
            "signing layer, GET, bare request (target <= 4)",
            per_call(
                || get(&get_uri),
                |r: Request<Full<Bytes>>| call(&mut signing, r),
            ),
        ),
        (
            "signing layer, GET with user-agent (target <= 4)",
            per_call(|| get_with_user_agent(&get_uri), |r| call(&mut signing, r)),
        ),
        (
            "signing layer, POST 512 B Full<Bytes> (target <= 4)",
            per_call(|| post(&post_uri, &body), |r| call(&mut signing, r)),
        ),
        (
            "AuthLayer, GET (target <= 4)",
            per_call(|| get(&get_uri), |r| call(&mut full, r)),
        ),
        (
            "AuthLayer, POST 512 B in 4 chunks",
            per_call(|| post_chunked(&post_uri, &body), |r| call(&mut chunked, r)),
        ),
    ];
    println!("heap allocations per call (counting global allocator, {N} calls each)");
    for (what, n) in rows {
        println!("  {what:<56} {n:.2}");
    }
}
