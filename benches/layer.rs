//! The policy, identity and HMAC layers over a `service_fn`, against the signing floor, and the
//! heap allocations each signed request costs.
//!
//! `cargo bench --bench layer`

mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::{GET_TARGET, Ratio, SECRET, TIMESTAMP, TOKEN_ID, alloc, now};
use criterion::{BatchSize, Criterion};
use hmac::{Hmac, KeyInit as _, Mac as _};
use http::{Method, Request, Uri};
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use limitless_auth::sign::canonical_message;
use limitless_auth::{
    AuthLayer, BoxError, Credentials, HmacCredentials, HmacSigningLayer, IdentityToken,
};
use sha2::Sha256;
use tower::{Layer as _, Service, ServiceExt as _};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

type Chunks =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// The inner service: takes the signed request and drops it.
fn sink() -> impl Service<
    Request<Full<Bytes>>,
    Response = (),
    Error = Infallible,
    Future = Ready<Result<(), Infallible>>,
> + Clone {
    tower::service_fn(|req: Request<Full<Bytes>>| {
        drop(req);
        ready(Ok::<_, Infallible>(()))
    })
}

fn credentials() -> Credentials {
    Credentials::new()
        .with_hmac(HmacCredentials::new(TOKEN_ID, SECRET).expect("valid"))
        .with_identity(IdentityToken::new("privy-identity-token").expect("valid"))
}

/// policy → identity → hmac → sink, for any request body type.
fn full_stack<B>() -> impl Service<Request<B>, Response = (), Error = BoxError> + Clone
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    AuthLayer::new(credentials()).layer(sink())
}

fn get(uri: &Uri) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri.clone();
    req
}

fn post(uri: &Uri, body: &Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    req
}

fn post_chunked(uri: &Uri, body: &Bytes) -> Request<Chunks> {
    let quarter = body.len() / 4;
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..4)
        .map(|i| Ok(Frame::data(body.slice(i * quarter..(i + 1) * quarter))))
        .collect();
    let mut req = Request::new(StreamBody::new(futures_util::stream::iter(chunks)));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    req
}

/// One request through a ready service, to completion.
fn call<S, B>(svc: &mut S, req: Request<B>)
where
    S: Service<Request<B>, Response = (), Error = BoxError>,
{
    now(svc.ready()).expect("ready");
    now(svc.call(req)).expect("signed");
}

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
    let mut svc = full_stack::<Full<Bytes>>();
    group.bench_function("stack_get_full", |b| {
        b.iter_batched(
            || get(&get_uri),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("stack_post_512_full", |b| {
        b.iter_batched(
            || post(&post_uri, &body),
            |req| call(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
    let mut chunked = full_stack::<Chunks>();
    group.bench_function("stack_post_512_chunked", |b| {
        b.iter_batched(
            || post_chunked(&post_uri, &body),
            |req| call(&mut chunked, req),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn allocations() {
    let get_uri: Uri = GET_TARGET.parse().expect("uri");
    let post_uri: Uri = "/orders".parse().expect("uri");
    let body = Bytes::from(common::json_512());
    let creds = HmacCredentials::new(TOKEN_ID, SECRET).expect("valid");
    let mut signing = HmacSigningLayer::new(creds).layer(sink());
    let mut stack = full_stack::<Full<Bytes>>();
    let mut chunked = full_stack::<Chunks>();
    const N: u64 = 1000;
    let per = |n: u64| n as f64 / N as f64;
    println!("\nheap allocations per request (counting allocator, {N} requests each)");
    let measure = |what: &str, f: &mut dyn FnMut()| {
        let (_, n) = alloc::count(|| {
            for _ in 0..N {
                f();
            }
        });
        println!("  {what:<48} {:.2}", per(n));
    };
    // The request is built outside the count: only the layers' own allocations are counted.
    let mut reqs: Vec<Request<Full<Bytes>>> = (0..N).map(|_| get(&get_uri)).collect();
    measure("signing layer alone, GET", &mut || {
        call(&mut signing, reqs.pop().expect("prepared"))
    });
    let mut reqs: Vec<Request<Full<Bytes>>> = (0..N).map(|_| post(&post_uri, &body)).collect();
    measure("signing layer alone, POST 512 B Full", &mut || {
        call(&mut signing, reqs.pop().expect("prepared"))
    });
    let mut reqs: Vec<Request<Full<Bytes>>> = (0..N).map(|_| get(&get_uri)).collect();
    measure("policy + identity + signing, GET", &mut || {
        call(&mut stack, reqs.pop().expect("prepared"))
    });
    let mut reqs: Vec<Request<Chunks>> = (0..N).map(|_| post_chunked(&post_uri, &body)).collect();
    measure(
        "policy + identity + signing, POST 512 B in 4 chunks",
        &mut || call(&mut chunked, reqs.pop().expect("prepared")),
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    allocations();
    common::report(
        "layer ratios (this run)",
        &[
            Ratio {
                what: "policy+identity+hmac, Full<Bytes> GET vs floor",
                numerator: "layer/stack_get_full",
                denominator: "layer/floor_get",
                target: 2.0,
                at_least: false,
            },
            Ratio {
                what: "policy+identity+hmac, Full<Bytes> POST 512 B vs floor",
                numerator: "layer/stack_post_512_full",
                denominator: "layer/floor_post_512",
                target: 2.0,
                at_least: false,
            },
            Ratio {
                what: "512 B body in 4 chunks vs the Full<Bytes> POST",
                numerator: "layer/stack_post_512_chunked",
                denominator: "layer/stack_post_512_full",
                target: 1.5,
                at_least: false,
            },
        ],
    );
}
