//! The authentication layers over a `service_fn`, against `floor_request`: the least any layer
//! must do to sign a request.
//!
//! `cargo bench --bench layer`
//!
//! `floor_request` (in `common/floors.rs`) is written out by hand: a timestamp from the clock,
//! formatted on the stack (this crate's `Timestamp`); a pre-keyed `Hmac<Sha256>` cloned and fed
//! the canonical message part by part, base64 into a stack buffer; the three `HeaderValue`s
//! created and inserted into the request's `HeaderMap`. It is timed with the request built inside the loop exactly as in
//! the layer cases (and consumed by the same kind of sink), so the ratios compare whole cases:
//!
//! - `auth_*`: `AuthLayer` (policy, identity and signing in one service);
//! - `layers_*`: `AuthPolicyLayer` → `IdentityLayer::for_policy()` →
//!   `HmacSigningLayer::for_policy()`, stacked by hand;
//! - `signing_*`: `HmacSigningLayer::new` alone (reference);
//! - `auth_post_512_chunked`: the 512-byte body as a stream of four chunks (reference).
//!
//! `floor_request_decided_get` is the floor of any stack that decides in one service and signs
//! in another: `floor_request` plus the least a decision costs to travel in the request (one
//! `Copy` value inserted into its `http::Extensions`, read twice). The three layers are also
//! shown against it (reference).

mod common;

use bytes::Bytes;
use common::floors::{Inputs, floor_request, floor_request_decided, inputs};
use common::requests::{Chunks, auth, call, get, post, post_chunked, signing, three_layers};
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
    group.bench_function("floor_request_decided_get", |b| {
        b.iter(|| floor_request_decided(mac, token_id, get(get_uri), b""))
    });

    let mut svc = auth::<Full<Bytes>>();
    group.bench_function("auth_get", |b| b.iter(|| call(&mut svc, get(get_uri))));
    group.bench_function("auth_post_512", |b| {
        b.iter(|| call(&mut svc, post(post_uri, body)))
    });
    let mut svc = three_layers::<Full<Bytes>>();
    group.bench_function("layers_get", |b| b.iter(|| call(&mut svc, get(get_uri))));
    group.bench_function("layers_post_512", |b| {
        b.iter(|| call(&mut svc, post(post_uri, body)))
    });
    let mut svc = signing::<Full<Bytes>>();
    group.bench_function("signing_get", |b| b.iter(|| call(&mut svc, get(get_uri))));
    let mut chunked = auth::<Chunks>();
    group.bench_function("auth_post_512_chunked", |b| {
        b.iter(|| call(&mut chunked, post_chunked(post_uri, body)))
    });
    group.finish();
}

fn ratio(what: &str, case: &str, floor: &str, target: Option<f64>) {
    let m = |id: &str| common::median_ns(&format!("layer/{id}"));
    match (m(case), m(floor)) {
        (Some(c), Some(f)) => {
            let r = c / f;
            let verdict = match target {
                Some(t) if r <= t => format!("<= {t:.2} met"),
                Some(t) => format!("<= {t:.2} MISSED"),
                None => "(reference)".to_owned(),
            };
            println!("{what:<44} {c:>9.1} {f:>9.1} {r:>7.3}  {verdict}");
        }
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
        "{:<44} {:>9} {:>9} {:>7}  target",
        "case", "ns", "floor ns", "ratio"
    );
    ratio(
        "AuthLayer, Full<Bytes> GET",
        "auth_get",
        "floor_request_get",
        Some(1.15),
    );
    ratio(
        "three layers by hand, Full<Bytes> GET",
        "layers_get",
        "floor_request_get",
        Some(1.3),
    );
    ratio(
        "AuthLayer, POST 512 B",
        "auth_post_512",
        "floor_request_post_512",
        Some(1.15),
    );
    ratio(
        "three layers by hand, POST 512 B",
        "layers_post_512",
        "floor_request_post_512",
        Some(1.3),
    );
    ratio(
        "floor_request + decision in extensions, GET",
        "floor_request_decided_get",
        "floor_request_get",
        None,
    );
    ratio(
        "three layers, GET, vs that decided floor",
        "layers_get",
        "floor_request_decided_get",
        None,
    );
    ratio(
        "HmacSigningLayer alone, GET",
        "signing_get",
        "floor_request_get",
        None,
    );
    ratio(
        "AuthLayer, POST 512 B in 4 chunks",
        "auth_post_512_chunked",
        "floor_request_post_512",
        None,
    );

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
        "\nthe same in {ROUNDS} interleaved rounds of {n} calls (floor_request, case, floor_request), judged on the median"
    );
    println!("{:<48} {:>7} {:>17} target", "case", "median", "min - max");
    let floor_get = || floor_request(mac, token_id, get(get_uri), b"");
    let floor_post = || floor_request(mac, token_id, post(post_uri, body), body);
    let mut a = auth::<Full<Bytes>>();
    let mut l = three_layers::<Full<Bytes>>();
    let mut s = signing::<Full<Bytes>>();
    let r = common::interleaved(ROUNDS, n, floor_get, || call(&mut a, get(get_uri)));
    common::interleaved_row("AuthLayer, Full<Bytes> GET", r, Some(1.15));
    let r = common::interleaved(ROUNDS, n, floor_get, || call(&mut l, get(get_uri)));
    common::interleaved_row("three layers by hand, Full<Bytes> GET", r, Some(1.3));
    let r = common::interleaved(ROUNDS, n, floor_post, || call(&mut a, post(post_uri, body)));
    common::interleaved_row("AuthLayer, POST 512 B", r, Some(1.15));
    let r = common::interleaved(ROUNDS, n, floor_post, || call(&mut l, post(post_uri, body)));
    common::interleaved_row("three layers by hand, POST 512 B", r, Some(1.3));
    let r = common::interleaved(ROUNDS, n, floor_get, || call(&mut s, get(get_uri)));
    common::interleaved_row("HmacSigningLayer alone, GET", r, None);
    let floor_decided = || floor_request_decided(mac, token_id, get(get_uri), b"");
    let r = common::interleaved(ROUNDS, n, floor_get, floor_decided);
    common::interleaved_row("floor_request + decision in extensions, GET", r, None);
    let r = common::interleaved(ROUNDS, n, floor_decided, || call(&mut l, get(get_uri)));
    common::interleaved_row("three layers, GET, vs that decided floor", r, None);
}
