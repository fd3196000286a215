//! The whole client against a bare hyper-util client, on loopback, against the mock server.
//!
//! `cargo bench --bench client --features client,mock`
//!
//! Both clients send `GET /markets/active` to the same in-process mock server, which answers
//! that route the same way whatever the authentication (it does not verify there), so the two
//! differ only by the client's own work: route policy, signing, retry and timeout layers, clock
//! skew tracking and response collection. The server runs on its own runtime thread, the
//! clients on another.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use futures_util::stream::{self, StreamExt as _};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use limitless_auth::HmacCredentials;
use limitless_auth::client::Client;
use limitless_auth::mock::{MockServer, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use tower::Layer as _;

const PATH: &str = "/markets/active";

/// Interleaved rounds per case.
const ROUNDS: usize = 15;

type Rounds = Vec<(usize, Vec<f64>, Vec<f64>)>;

thread_local! {
    /// Per round, ours / bare and layers-alone / bare throughput, by requests in flight.
    static INTERLEAVED: std::cell::RefCell<Rounds> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Median, minimum and maximum.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    (
        median,
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

/// Runs `f` on the runtime's worker thread (not on the calling thread, as `block_on` would), so
/// that each side has one thread: the clients and their connections on one, the server on
/// the other.
fn on_worker<F, T>(rt: &tokio::runtime::Runtime, f: F) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(f).await.expect("benchmark task") })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

type Bare = HyperClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn bare_get(client: Bare, uri: Uri) {
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    assert!(resp.status().is_success());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    std::hint::black_box(body);
}

async fn ours_get(client: Client) {
    let resp = client
        .request(Method::GET, PATH, None)
        .await
        .expect("response");
    assert!(resp.status.is_success());
    std::hint::black_box(resp.body);
}

async fn layered_get<S>(svc: S, uri: Uri)
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt as _;
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = svc.oneshot(req).await.expect("response");
    assert!(resp.status().is_success());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    std::hint::black_box(body);
}

/// `iters * in_flight` requests made by `one`, on the client runtime's worker, with
/// `in_flight` of them in flight at all times (a new one starts as soon as one ends); the time
/// they took.
fn batches<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, in_flight: usize, one: F) -> Duration
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    on_worker(rt, async move {
        let start = Instant::now();
        stream::iter(0..iters * in_flight as u64)
            .map(move |_| one())
            .buffer_unordered(in_flight)
            .for_each(|()| std::future::ready(()))
            .await;
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let server_rt = runtime();
    let mock = server_rt.block_on(async {
        MockServer::builder()
            .record_requests(false)
            .start()
            .await
            .expect("mock")
    });
    let uri: Uri = format!("{}{PATH}", mock.base_url()).parse().expect("uri");
    let rt = runtime();
    let bare: Bare = HyperClient::builder(TokioExecutor::new()).build_http();
    let ours = rt.block_on(async {
        Client::builder()
            .base_url(mock.base_url())
            .hmac(HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"))
            .build()
            .expect("client")
    });

    // For reference: the auth layers alone over the same hyper-util client, without the
    // client's retry, timeout, skew tracking and response handling.
    let layered =
        limitless_auth::AuthLayer::new(limitless_auth::Credentials::new().with_hmac(
            HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"),
        ))
        .layer(bare.clone());
    let mut group = c.benchmark_group("client");
    for in_flight in [1usize, 64] {
        group.throughput(Throughput::Elements(in_flight as u64));
        let (client, target) = (bare.clone(), uri.clone());
        let one = move || bare_get(client.clone(), target.clone());
        group.bench_function(format!("bare_{in_flight}"), |b| {
            b.iter_custom(|iters| batches(&rt, iters, in_flight, one.clone()))
        });
        let (svc, target) = (layered.clone(), uri.clone());
        let one = move || layered_get(svc.clone(), target.clone());
        group.bench_function(format!("layered_{in_flight}"), |b| {
            b.iter_custom(|iters| batches(&rt, iters, in_flight, one.clone()))
        });
        let client = ours.clone();
        let one = move || ours_get(client.clone());
        group.bench_function(format!("ours_{in_flight}"), |b| {
            b.iter_custom(|iters| batches(&rt, iters, in_flight, one.clone()))
        });
    }
    group.finish();

    // The same comparison in interleaved rounds: each round times bare, ours and the layers
    // alone back to back, so that a slow phase of the machine falls on all three alike.
    // Skipped when a filter other than "interleaved" picks some cases only.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"interleaved".contains(f.as_str())) {
        drop(mock);
        server_rt.shutdown_timeout(Duration::from_secs(1));
        return;
    }
    let mut report = Vec::new();
    for (in_flight, iters) in [(1usize, 2_000u64), (64, 300)] {
        let (client, target) = (bare.clone(), uri.clone());
        let bare_one = move || bare_get(client.clone(), target.clone());
        let client = ours.clone();
        let ours_one = move || ours_get(client.clone());
        let (svc, target) = (layered.clone(), uri.clone());
        let layered_one = move || layered_get(svc.clone(), target.clone());
        let (mut ours_ratios, mut layered_ratios) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let b = batches(&rt, iters, in_flight, bare_one.clone()).as_secs_f64();
            let o = batches(&rt, iters, in_flight, ours_one.clone()).as_secs_f64();
            let l = batches(&rt, iters, in_flight, layered_one.clone()).as_secs_f64();
            ours_ratios.push(b / o);
            layered_ratios.push(b / l);
        }
        report.push((in_flight, ours_ratios, layered_ratios));
    }
    INTERLEAVED.with(|r| *r.borrow_mut() = report);
    drop(mock);
    server_rt.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    println!("\nclient throughput (this run)");
    println!(
        "{:<40} {:>14} {:>14} {:>7}  target",
        "case", "ours req/s", "bare req/s", "ratio"
    );
    for (what, ours, bare, n, target) in [
        (
            "the client, 1 in flight",
            "client/ours_1",
            "client/bare_1",
            1.0,
            Some(0.93),
        ),
        (
            "the client, 64 in flight",
            "client/ours_64",
            "client/bare_64",
            64.0,
            Some(0.93),
        ),
        (
            "auth layers alone, 1 in flight",
            "client/layered_1",
            "client/bare_1",
            1.0,
            None,
        ),
        (
            "auth layers alone, 64 in flight",
            "client/layered_64",
            "client/bare_64",
            64.0,
            None,
        ),
    ] {
        match (common::median_ns(ours), common::median_ns(bare)) {
            (Some(o), Some(b)) => {
                let (o_rps, b_rps) = (n * 1e9 / o, n * 1e9 / b);
                let ratio = o_rps / b_rps;
                let verdict = match target {
                    Some(t) if ratio >= t => format!(">= {t:.2} met"),
                    Some(t) => format!(">= {t:.2} MISSED"),
                    None => "(reference)".to_owned(),
                };
                println!("{what:<40} {o_rps:>14.0} {b_rps:>14.0} {ratio:>7.3}  {verdict}");
            }
            _ => println!("{what:<40} (not measured in this run)"),
        }
    }
    INTERLEAVED.with(|r| {
        let rounds = r.borrow();
        if rounds.is_empty() {
            return;
        }
        println!(
            "\nthe same in {ROUNDS} interleaved rounds (bare, ours, layers alone back to back)"
        );
        println!("{:<40} {:>7} {:>15}  target", "case", "median", "min - max");
        for (in_flight, ours, layered) in rounds.iter() {
            let (m, lo, hi) = spread(ours);
            let verdict = if m >= 0.93 { "met" } else { "MISSED" };
            println!(
                "{:<40} {m:>7.3} {lo:>7.3} - {hi:<5.3}  >= 0.93 {verdict}",
                format!("the client, {in_flight} in flight")
            );
            let (m, lo, hi) = spread(layered);
            println!(
                "{:<40} {m:>7.3} {lo:>7.3} - {hi:<5.3}  (reference)",
                format!("auth layers alone, {in_flight} in flight")
            );
        }
    });
}
