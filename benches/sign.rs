//! The pure signer against the pre-keyed HMAC floor, and timestamp formatting against chrono.
//!
//! `cargo bench --bench sign`

mod common;

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{GET_TARGET, Ratio, SECRET, TIMESTAMP, TOKEN_ID};
use criterion::Criterion;
use hmac::{Hmac, KeyInit as _, Mac as _};
use limitless_auth::SystemClock;
use limitless_auth::canonical_message;
use limitless_auth::{HmacCredentials, Timestamp};
use sha2::Sha256;

struct Case {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    body: Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "get",
            method: "GET",
            target: GET_TARGET,
            body: Vec::new(),
        },
        Case {
            name: "post_512",
            method: "POST",
            target: "/orders",
            body: common::json_512(),
        },
        Case {
            name: "post_64k",
            method: "POST",
            target: "/orders",
            body: common::body_64k(),
        },
    ]
}

fn bench_sign(c: &mut Criterion) {
    let key = STANDARD.decode(SECRET).expect("valid");
    let floor_mac = Hmac::<Sha256>::new_from_slice(&key).expect("any length");
    let creds = HmacCredentials::new(TOKEN_ID, SECRET).expect("valid");
    let mut group = c.benchmark_group("sign");
    for case in cases() {
        let message = canonical_message(TIMESTAMP, case.method, case.target, &case.body);
        // The floor: a pre-keyed MAC cloned, fed the whole prebuilt message, base64 on the stack.
        group.bench_function(format!("{}_floor", case.name), |b| {
            b.iter(|| {
                let mut mac = floor_mac.clone();
                mac.update(black_box(&message));
                let tag = mac.finalize().into_bytes();
                let mut out = [0u8; 44];
                STANDARD.encode_slice(tag, &mut out).expect("44 bytes");
                black_box(out)
            })
        });
        group.bench_function(format!("{}_signer", case.name), |b| {
            b.iter(|| {
                black_box(creds.sign(
                    black_box(TIMESTAMP),
                    black_box(case.method),
                    black_box(case.target),
                    black_box(&case.body),
                ))
            })
        });
    }
    group.finish();
}

fn bench_timestamp(c: &mut Criterion) {
    let mut group = c.benchmark_group("timestamp");
    group.bench_function("chrono", |b| {
        b.iter(|| {
            black_box(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        })
    });
    group.bench_function("ours", |b| {
        b.iter(|| black_box(Timestamp::now(&SystemClock).expect("in range")))
    });
    group.bench_function("clock_read_only", |b| {
        b.iter(|| black_box(limitless_auth::Clock::now_millis(&SystemClock)))
    });
    let mut ms = 1_774_269_296_789i64;
    group.bench_function("format_only", |b| {
        b.iter(|| {
            ms += 1;
            black_box(Timestamp::from_unix_millis(black_box(ms)).expect("in range"))
        })
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_sign(&mut c);
    bench_timestamp(&mut c);
    c.final_summary();
    let rows = [
        (
            "pure signer, GET no body",
            "sign/get_signer",
            "sign/get_floor",
        ),
        (
            "pure signer, POST 512 B JSON",
            "sign/post_512_signer",
            "sign/post_512_floor",
        ),
        (
            "pure signer, POST 64 KiB",
            "sign/post_64k_signer",
            "sign/post_64k_floor",
        ),
    ];
    let mut ratios: Vec<Ratio<'_>> = rows
        .iter()
        .map(|(what, n, d)| Ratio {
            what,
            numerator: n,
            denominator: d,
            target: 1.15,
            at_least: false,
        })
        .collect();
    ratios.push(Ratio {
        what: "timestamp from the clock vs chrono to_rfc3339_opts",
        numerator: "timestamp/ours",
        denominator: "timestamp/chrono",
        target: 0.5,
        at_least: false,
    });
    common::report("signer ratios (this run, criterion medians)", &ratios);

    if !common::interleaved_wanted() {
        return;
    }
    let key = STANDARD.decode(SECRET).expect("valid");
    let floor_mac = Hmac::<Sha256>::new_from_slice(&key).expect("any length");
    let creds = HmacCredentials::new(TOKEN_ID, SECRET).expect("valid");
    println!("\nthe same in 31 interleaved rounds (floor, signer, floor), judged on the median");
    println!("{:<48} {:>7} {:>17} target", "case", "median", "min - max");
    for case in cases() {
        let message = canonical_message(TIMESTAMP, case.method, case.target, &case.body);
        let iters = if case.body.len() > 4096 { 500 } else { 20_000 };
        let r = common::interleaved(
            31,
            iters,
            || {
                let mut mac = floor_mac.clone();
                mac.update(black_box(&message));
                let tag = mac.finalize().into_bytes();
                let mut out = [0u8; 44];
                STANDARD.encode_slice(tag, &mut out).expect("44 bytes");
                black_box(out);
            },
            || {
                black_box(creds.sign(
                    black_box(TIMESTAMP),
                    black_box(case.method),
                    black_box(case.target),
                    black_box(&case.body),
                ));
            },
        );
        common::interleaved_row(&format!("pure signer, {}", case.name), r, Some(1.15));
    }
}
