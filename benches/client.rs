//! The whole client against the signed floor, on loopback.
//!
//! `cargo bench --bench client --features client,mock`
//!
//! What is compared (requests per second, all over the same kind of hyper-util client and
//! connector as the client builds, `common::transport`):
//!
//! - `floor`: the *signed floor*, the least any client must do to send a signed GET: a bare
//!   hyper-util client that signs inline (pre-keyed HMAC, a timestamp from the clock, the three
//!   `lmts-*` headers inserted), with no layers, then reads the body. The baseline of the
//!   targets.
//! - `client`: `Client::request`, the whole client: retry, per-attempt timeout, clock-skew
//!   observer, `AuthLayer`, the shared transport, the response collected.
//! - `bare`: the same hyper-util client sending the GET unsigned (reference).
//! - `layers`: `AuthLayer` alone over the same hyper-util client (reference).
//! - in the interleaved rounds only, one more reference: the client given the same parsed
//!   `Uri` as the floor (`Client::send`).
//!
//! Wall-clock ratios on a shared 2-core machine move by 20 % between runs, so they are
//! reported, not judged: the budget is an instruction count (`benches/instructions.rs`).
//!
//! All send `GET /markets/active` to the embedded mock server on 127.0.0.1 (a route it answers
//! without verifying anything), so they differ only by their own work. The server runs on one
//! runtime thread, the clients on the other. "64 in flight" keeps 64 requests outstanding at all
//! times: a new one starts as soon as one ends. The interleaved rounds time the floor and then
//! each case back to back, 31 times, so that a slow phase of the machine falls on all alike.
//!
//! Over TLS (a hyper test server with a test certificate, trusted through `tls_config`), the
//! client sends 256 requests in flight with HTTP/2 (after one request has opened the
//! connection; the run reports how many connections the server accepted) and with HTTP/1.1.

mod common;
#[path = "../tests/common/raw.rs"]
mod raw;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Transport as HttpsTransport;
use criterion::{Criterion, Throughput};
use futures_util::stream::{self, StreamExt as _};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use limitless_auth::client::Client;
use limitless_auth::mock::{MockServer, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use limitless_auth::{Credentials, HmacCredentials};
use tower::Layer as _;

const PATH: &str = "/markets/active";

/// Interleaved rounds per case.
const ROUNDS: usize = 31;

/// The cases of the interleaved rounds, in the order they run after the floor (the first is
/// the one judged).
const CASES: [&str; 4] = [
    "the client",
    "client, send(Uri)",
    "bare unsigned",
    "AuthLayer alone",
];

/// Per in-flight level: each case's floor / case ratio, per round.
type Rounds = Vec<(usize, Vec<(&'static str, Vec<f64>)>)>;

thread_local! {
    static INTERLEAVED: std::cell::RefCell<Rounds> = const { std::cell::RefCell::new(Vec::new()) };
    /// Connections the TLS server accepted for the HTTP/2 and HTTP/1.1 runs.
    static TLS_CONNECTIONS: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
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

fn creds() -> HmacCredentials {
    HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid")
}

/// The floor's credentials: the token and its id as a header value, built once.
type Signer = (HmacCredentials, http::HeaderValue);

fn signer() -> Signer {
    let token_id = http::HeaderValue::from_str(PARTNER_TOKEN_ID).expect("visible ASCII");
    (creds(), token_id)
}

async fn read(resp: http::Response<hyper::body::Incoming>) {
    assert!(resp.status().is_success());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    std::hint::black_box(body);
}

/// The unsigned GET over bare hyper-util.
async fn bare_get(client: HttpsTransport, uri: Uri) {
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    read(client.request(req).await.expect("response")).await;
}

/// The signed floor: the GET signed inline, no layers.
async fn floor_get(client: HttpsTransport, uri: Uri, (creds, token_id): Signer) {
    let mut req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    common::floors::sign_inline(&mut req, &creds, &token_id);
    read(client.request(req).await.expect("response")).await;
}

async fn client_get(client: Client) {
    let resp = client
        .request(Method::GET, PATH, None)
        .await
        .expect("response");
    assert!(resp.status.is_success());
    std::hint::black_box(resp.body);
}

/// The client given the same input as the floor: the parsed absolute `Uri`, through
/// `Client::send`.
async fn client_send(client: Client, uri: Uri) {
    let req = Request::get(uri).body(Bytes::new()).expect("request");
    let resp = client.send(req).await.expect("response");
    assert!(resp.status.is_success());
    std::hint::black_box(resp.body);
}

async fn layers_get<S>(svc: S, uri: Uri)
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt as _;
    let req = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    read(svc.oneshot(req).await.expect("response")).await;
}

/// `iters * in_flight` requests made by `one`, on the client runtime's worker, with
/// `in_flight` of them in flight at all times; the time they took.
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
    let (transport, client) = rt.block_on(async {
        let client = Client::builder()
            .base_url(mock.base_url())
            .credentials(Credentials::new().with_hmac(creds()))
            .build()
            .expect("client");
        (common::transport(), client)
    });
    let layers =
        limitless_auth::AuthLayer::new(limitless_auth::Credentials::new().with_hmac(creds()))
            .layer(transport.clone());

    let mut group = c.benchmark_group("client");
    for in_flight in [1usize, 64] {
        group.throughput(Throughput::Elements(in_flight as u64));
        let (t, u, k) = (transport.clone(), uri.clone(), signer());
        let one = move || floor_get(t.clone(), u.clone(), k.clone());
        group.bench_function(format!("floor_{in_flight}"), |b| {
            b.iter_custom(|iters| batches(&rt, iters, in_flight, one.clone()))
        });
        let cl = client.clone();
        let one = move || client_get(cl.clone());
        group.bench_function(format!("client_{in_flight}"), |b| {
            b.iter_custom(|iters| batches(&rt, iters, in_flight, one.clone()))
        });
        let (t, u) = (transport.clone(), uri.clone());
        let one = move || bare_get(t.clone(), u.clone());
        group.bench_function(format!("bare_{in_flight}"), |b| {
            b.iter_custom(|iters| batches(&rt, iters, in_flight, one.clone()))
        });
        let (s, u) = (layers.clone(), uri.clone());
        let one = move || layers_get(s.clone(), u.clone());
        group.bench_function(format!("layers_{in_flight}"), |b| {
            b.iter_custom(|iters| batches(&rt, iters, in_flight, one.clone()))
        });
    }

    // Over TLS: HTTP/2 against HTTP/1.1, 256 in flight.
    for (name, h2) in [("tls_h2_256", true), ("tls_h1_256", false)] {
        let (addr, accepted) = server_rt.block_on(raw::tls_server(&[b"h2", b"http/1.1"]));
        let tls_client = rt.block_on(async move {
            Client::builder()
                .base_url(format!("https://localhost:{}", addr.port()))
                .credentials(Credentials::new().with_hmac(creds()))
                .tls_config(raw::client_tls())
                .http2(h2)
                .pool_max_idle_per_host(256)
                .build()
                .expect("client")
        });
        // One request opens the connection (and, with HTTP/2, settles on it).
        let cl = tls_client.clone();
        batches(&rt, 1, 1, move || client_get(cl.clone()));
        group.throughput(Throughput::Elements(256));
        let cl = tls_client.clone();
        let one = move || client_get(cl.clone());
        group.bench_function(name, |b| {
            b.iter_custom(|iters| batches(&rt, iters, 256, one.clone()))
        });
        let n = accepted.load(Ordering::SeqCst);
        TLS_CONNECTIONS.with(|c| {
            let (a, b) = c.get();
            c.set(if h2 { (n, b) } else { (a, n) });
        });
    }
    group.finish();

    // The same comparison in interleaved rounds. Skipped when a filter other than
    // "interleaved" picks some cases only.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"interleaved".contains(f.as_str())) {
        drop(mock);
        server_rt.shutdown_timeout(Duration::from_secs(1));
        return;
    }
    let mut report = Vec::new();
    for (in_flight, iters) in [(1usize, 1_000u64), (64, 150)] {
        let (t, u, k) = (transport.clone(), uri.clone(), signer());
        let floor_one = move || floor_get(t.clone(), u.clone(), k.clone());
        let cl = client.clone();
        let client_one = move || client_get(cl.clone());
        let (t, u) = (transport.clone(), uri.clone());
        let bare_one = move || bare_get(t.clone(), u.clone());
        let (s, u) = (layers.clone(), uri.clone());
        let layers_one = move || layers_get(s.clone(), u.clone());
        let (cl, u) = (client.clone(), uri.clone());
        let send_one = move || client_send(cl.clone(), u.clone());
        let mut rows: Vec<(&'static str, Vec<f64>)> =
            CASES.iter().map(|c| (*c, Vec::new())).collect();
        for _ in 0..ROUNDS {
            let f = batches(&rt, iters, in_flight, floor_one.clone()).as_secs_f64();
            let times = [
                batches(&rt, iters, in_flight, client_one.clone()),
                batches(&rt, iters, in_flight, send_one.clone()),
                batches(&rt, iters, in_flight, bare_one.clone()),
                batches(&rt, iters, in_flight, layers_one.clone()),
            ];
            for ((_, ratios), t) in rows.iter_mut().zip(times) {
                ratios.push(f / t.as_secs_f64());
            }
        }
        report.push((in_flight, rows));
    }
    INTERLEAVED.with(|r| *r.borrow_mut() = report);
    drop(mock);
    server_rt.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    println!("\nclient throughput (this run), requests/s");
    println!(
        "{:<36} {:>12} {:>12} {:>7}",
        "case", "req/s", "floor req/s", "ratio"
    );
    let rows: [(&str, &str, &str, f64); 6] = [
        (
            "the client, 1 in flight",
            "client/client_1",
            "client/floor_1",
            1.0,
        ),
        (
            "the client, 64 in flight",
            "client/client_64",
            "client/floor_64",
            64.0,
        ),
        (
            "bare hyper-util unsigned, 1",
            "client/bare_1",
            "client/floor_1",
            1.0,
        ),
        (
            "bare hyper-util unsigned, 64",
            "client/bare_64",
            "client/floor_64",
            64.0,
        ),
        (
            "AuthLayer alone, 1 in flight",
            "client/layers_1",
            "client/floor_1",
            1.0,
        ),
        (
            "AuthLayer alone, 64 in flight",
            "client/layers_64",
            "client/floor_64",
            64.0,
        ),
    ];
    for (what, ours, floor, n) in rows {
        match (common::median_ns(ours), common::median_ns(floor)) {
            (Some(o), Some(f)) => {
                let (o_rps, f_rps) = (n * 1e9 / o, n * 1e9 / f);
                let ratio = o_rps / f_rps;
                println!("{what:<36} {o_rps:>12.0} {f_rps:>12.0} {ratio:>7.3}");
            }
            _ => println!("{what:<36} (not measured in this run)"),
        }
    }
    let (h2_conns, h1_conns) = TLS_CONNECTIONS.with(|c| c.get());
    for (what, id, conns) in [
        ("TLS, HTTP/2, 256 in flight", "client/tls_h2_256", h2_conns),
        (
            "TLS, HTTP/1.1, 256 in flight",
            "client/tls_h1_256",
            h1_conns,
        ),
    ] {
        match common::median_ns(id) {
            Some(ns) => println!(
                "{what:<36} {:>12.0}  connections accepted by the server: {conns}",
                256.0 * 1e9 / ns
            ),
            None => println!("{what:<36} (not measured in this run)"),
        }
    }
    INTERLEAVED.with(|r| {
        let rounds = r.borrow();
        if rounds.is_empty() {
            return;
        }
        println!("\nthe same in {ROUNDS} interleaved rounds, each against the floor of its round");
        println!("{:<36} {:>7} {:>15}", "case", "median", "min - max");
        for (in_flight, rows) in rounds.iter() {
            for (what, ratios) in rows {
                let (m, lo, hi) = spread(ratios);
                println!(
                    "{:<36} {m:>7.3} {lo:>7.3} - {hi:<5.3}",
                    format!("{what}, {in_flight} in flight")
                );
            }
        }
    });
}
