//! The policy, identity and HMAC layers over a `service_fn`, against the signing floor.
//!
//! `cargo bench --bench layer`
//!
//! Each layer case is timed with the request built inside the loop, and the building alone is
//! timed beside it; the report charges the layers only the difference.

mod common;

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::requests::{Chunks, call, get, get_with_user_agent, post, post_chunked, stack};
use common::{GET_TARGET, SECRET, TIMESTAMP};
use criterion::Criterion;
use hmac::{Hmac, KeyInit as _, Mac as _};
use http::Uri;
use http_body_util::Full;
use limitless_auth::sign::canonical_message;
use sha2::Sha256;

fn bench(c: &mut Criterion) {
    let get_uri: Uri = GET_TARGET.parse().expect("uri");
    let post_uri: Uri = "/orders".parse().expect("uri");
    let body = Bytes::from(common::json_512());

    let key = STANDARD.decode(SECRET).expect("valid");
    let floor_mac = Hmac::<Sha256>::new_from_slice(&key).expect("any length");
    let get_message = canonical_message(TIMESTAMP, "GET", GET_TARGET, b"");
    let post_message = canonical_message(TIMESTAMP, "POST", "/orders", &body);

    let mut group = c.benchmark_group("layer");
    for (name, message) in [
        ("floor_get", &get_message),
        ("floor_post_512", &post_message),
    ] {
        // The pre-keyed floor: clone, update, finalize, base64 into a stack buffer.
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut mac = floor_mac.clone();
                mac.update(black_box(message));
                let tag = mac.finalize().into_bytes();
                let mut out = [0u8; 44];
                STANDARD.encode_slice(tag, &mut out).expect("44 bytes");
                black_box(out)
            })
        });
    }
    // The same floor with base64 into a String, as most code writes it.
    group.bench_function("floor_get_string", |b| {
        b.iter(|| {
            let mut mac = floor_mac.clone();
            mac.update(black_box(&get_message));
            black_box(STANDARD.encode(mac.finalize().into_bytes()))
        })
    });

    group.bench_function("build_get", |b| b.iter(|| black_box(get(&get_uri))));
    group.bench_function("build_get_user_agent", |b| {
        b.iter(|| black_box(get_with_user_agent(&get_uri)))
    });
    group.bench_function("build_post_512", |b| {
        b.iter(|| black_box(post(&post_uri, &body)))
    });
    group.bench_function("build_post_512_chunked", |b| {
        b.iter(|| black_box(post_chunked(&post_uri, &body)))
    });

    let mut svc = stack::<Full<Bytes>>();
    group.bench_function("stack_get", |b| b.iter(|| call(&mut svc, get(&get_uri))));
    group.bench_function("stack_get_user_agent", |b| {
        b.iter(|| call(&mut svc, get_with_user_agent(&get_uri)))
    });
    group.bench_function("stack_post_512", |b| {
        b.iter(|| call(&mut svc, post(&post_uri, &body)))
    });
    let mut chunked = stack::<Chunks>();
    group.bench_function("stack_post_512_chunked", |b| {
        b.iter(|| call(&mut chunked, post_chunked(&post_uri, &body)))
    });
    group.finish();
}

/// `(stack - build) / denominator`, from this run's medians.
fn layer_ratio(what: &str, stack: &str, build: &str, denominator: &str, target: f64) {
    let m = |id: &str| common::median_ns(&format!("layer/{id}"));
    match (m(stack), m(build), m(denominator)) {
        (Some(s), Some(b), Some(d)) => {
            let layers = s - b;
            let ratio = layers / d;
            println!(
                "{what:<58} {layers:>9.1} {d:>9.1} {ratio:>7.3}  <= {target:.2} {}",
                if ratio <= target { "met" } else { "MISSED" }
            );
        }
        _ => println!("{what:<58} (not measured in this run)"),
    }
}

/// The layers' cost with a denominator that is itself a layer cost.
fn layer_vs_layer(what: &str, num: (&str, &str), den: (&str, &str), target: f64) {
    let m = |id: &str| common::median_ns(&format!("layer/{id}"));
    match (m(num.0), m(num.1), m(den.0), m(den.1)) {
        (Some(a), Some(b), Some(c), Some(d)) => {
            let (n, dd) = (a - b, c - d);
            let ratio = n / dd;
            println!(
                "{what:<58} {n:>9.1} {dd:>9.1} {ratio:>7.3}  <= {target:.2} {}",
                if ratio <= target { "met" } else { "MISSED" }
            );
        }
        _ => println!("{what:<58} (not measured in this run)"),
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    println!("\nlayer ratios (this run; the layers' cost is the case minus building its request)");
    println!(
        "{:<58} {:>9} {:>9} {:>7}  target",
        "case", "layers ns", "vs ns", "ratio"
    );
    layer_ratio(
        "policy+identity+hmac, Full<Bytes> GET vs floor",
        "stack_get",
        "build_get",
        "floor_get",
        2.0,
    );
    layer_ratio(
        "  the same, request with a user-agent header",
        "stack_get_user_agent",
        "build_get_user_agent",
        "floor_get",
        2.0,
    );
    layer_ratio(
        "  the same, vs the floor with base64 into a String",
        "stack_get",
        "build_get",
        "floor_get_string",
        2.0,
    );
    layer_ratio(
        "policy+identity+hmac, Full<Bytes> POST 512 B vs floor",
        "stack_post_512",
        "build_post_512",
        "floor_post_512",
        2.0,
    );
    layer_vs_layer(
        "512 B body in 4 chunks vs the Full<Bytes> POST",
        ("stack_post_512_chunked", "build_post_512_chunked"),
        ("stack_post_512", "build_post_512"),
        1.5,
    );
}
