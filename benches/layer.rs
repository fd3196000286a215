//! The authentication layers over a `service_fn`, against `floor_request`: the least any layer
//! must do to sign a request.
//!
//! `cargo bench --bench layer`
//!
//! `floor_request` (in `common/floors.rs`) is written out by hand: a timestamp from the clock,
//! formatted on the stack (this crate's `Timestamp`); a pre-keyed `Hmac<Sha256>` cloned and fed
//! the canonical message part by part, base64 into a stack buffer; the three `HeaderValue`s
//! created and inserted into the request's `HeaderMap`. It is timed with the request built
//! inside the loop exactly as in the layer cases (and consumed by the same kind of sink), so the
//! ratios compare whole cases:
//!
//! - `auth_*`: `AuthLayer` holding an HMAC token and an identity token;
//! - `signing_*`: `HmacSigningLayer::new` alone;
//! - `auth_post_512_chunked`: the 512-byte body as a stream of four chunks.
//!
//! Wall-clock ratios on a shared 2-core machine move by 20 % between runs, so they are
//! reported, not judged: the budgets are instruction counts (`benches/instructions.rs`).

mod common;

use bytes::Bytes;
use common::floors::{Inputs, floor_request, inputs};
use common::requests::{Chunks, auth, call, get, post, post_chunked, signing};
use criterion::Criterion;
use http_body_util::Full;

/// Interleaved rounds per case: many short ones, so that the machine's drift falls within a
/// round on the floor and the case alike.
const ROUNDS: usize = 201;

fn bench(c: &mut Criterion, inputs: &Inputs) {
    let (mac, token_id, body) = (&inputs.mac, &inputs.token_id, &inputs.body);
    let (get_uri, post_uri) = (&inputs.get_uri, &inputs.post_uri);

    let mut group = c.benchmark_group("layer");
    group.bench_function("floor_request_get", |b| {
        b.iter(|| floor_request(mac, token_id, get(get_uri), b""))
    });
    group.bench_function("floor_request_post_512", |b| {
        b.iter(|| floor_request(mac, token_id, post(post_uri, body), body))
    });
    let mut svc = auth::<Full<Bytes>>();
    group.bench_function("auth_get", |b| b.iter(|| call(&mut svc, get(get_uri))));
    group.bench_function("auth_post_512", |b| {
        b.iter(|| call(&mut svc, post(post_uri, body)))
    });
    let mut svc = signing::<Full<Bytes>>();
    group.bench_function("signing_get", |b| b.iter(|| call(&mut svc, get(get_uri))));
    group.bench_function("signing_post_512", |b| {
        b.iter(|| call(&mut svc, post(post_uri, body)))
    });
    let mut chunked = auth::<Chunks>();
    group.bench_function("auth_post_512_chunked", |b| {
        b.iter(|| call(&mut chunked, post_chunked(post_uri, body)))
    });
    group.finish();
}

fn ratio(what: &str, case: &str, floor: &str) {
    let m = |id: &str| common::median_ns(&format!("layer/{id}"));
    match (m(case), m(floor)) {
        (Some(c), Some(f)) => println!("{what:<44} {c:>9.1} {f:>9.1} {:>7.3}", c / f),
        _ => println!("{what:<44} (not measured in this run)"),
    }
}

fn main() {
    let inputs = inputs();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &inputs);
    c.final_summary();
    println!("\nlayer ratios (this run), each case against floor_request built the same way");
    println!(
        "{:<44} {:>9} {:>9} {:>7}",
        "case", "ns", "floor ns", "ratio"
    );
    let rows = [
        ("AuthLayer, GET", "auth_get", "floor_request_get"),
        (
            "AuthLayer, POST 512 B",
            "auth_post_512",
            "floor_request_post_512",
        ),
        ("HmacSigningLayer, GET", "signing_get", "floor_request_get"),
        (
            "HmacSigningLayer, POST 512 B",
            "signing_post_512",
            "floor_request_post_512",
        ),
        (
            "AuthLayer, POST 512 B in 4 chunks",
            "auth_post_512_chunked",
            "floor_request_post_512",
        ),
    ];
    for (what, case, floor) in rows {
        ratio(what, case, floor);
    }

    if !common::interleaved_wanted() {
        return;
    }
    let Inputs {
        get_uri,
        post_uri,
        body,
        mac,
        token_id,
    } = &inputs;
    let n = 2_000;
    println!(
        "\nthe same in {ROUNDS} interleaved rounds of {n} calls (floor_request, case, floor_request)"
    );
    println!("{:<48} {:>7} {:>17}", "case", "median", "min - max");
    let floor_get = || floor_request(mac, token_id, get(get_uri), b"");
    let floor_post = || floor_request(mac, token_id, post(post_uri, body), body);
    let mut a = auth::<Full<Bytes>>();
    let mut s = signing::<Full<Bytes>>();
    let r = common::interleaved(ROUNDS, n, floor_get, || call(&mut a, get(get_uri)));
    common::interleaved_row("AuthLayer, GET", r, None);
    let r = common::interleaved(ROUNDS, n, floor_post, || call(&mut a, post(post_uri, body)));
    common::interleaved_row("AuthLayer, POST 512 B", r, None);
    let r = common::interleaved(ROUNDS, n, floor_get, || call(&mut s, get(get_uri)));
    common::interleaved_row("HmacSigningLayer, GET", r, None);
    let r = common::interleaved(ROUNDS, n, floor_post, || call(&mut s, post(post_uri, body)));
    common::interleaved_row("HmacSigningLayer, POST 512 B", r, None);
}
