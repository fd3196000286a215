//! Inputs shared by the benchmarks and the ratio report printed after them.
#![allow(dead_code)]

pub mod alloc;
pub mod floors;
pub mod requests;

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const TOKEN_ID: &str = "dGVzdC10b2tlbi0x";
pub const TIMESTAMP: &str = "2026-03-23T12:34:56.789Z";
pub const GET_TARGET: &str = "/orders/all/btc-100k?onBehalfOf=42";

/// A 512-byte compact JSON order body.
pub fn json_512() -> Vec<u8> {
    let mut body = br#"{"order":{"salt":1742733296789,"maker":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","signer":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","taker":"0x0000000000000000000000000000000000000000","tokenId":"19633204485790857949828516737993423758628930235371629943999544859324645414627","makerAmount":5000000,"takerAmount":10000000,"expiration":"0","nonce":0,"feeRateBps":300,"side":0,"signatureType":0,"price":0.5},"ownerId":42,"orderType":"GTC","marketSlug":"btc-100k","note":""#.to_vec();
    while body.len() < 510 {
        body.push(b'x');
    }
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), 512);
    body
}

/// A 64 KiB body.
pub fn body_64k() -> Vec<u8> {
    let mut body = b"{\"blob\":\"".to_vec();
    while body.len() < 65_534 {
        body.push(b'a' + (body.len() % 26) as u8);
    }
    body.extend_from_slice(b"\"}");
    assert_eq!(body.len(), 65_536);
    body
}

/// Polls a future that completes without waiting (the layers over a `service_fn`).
pub fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the benchmarked future was expected to complete at once"),
    }
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("criterion")
        })
}

/// The median, in nanoseconds, criterion recorded for `id` ("group/function").
pub fn median_ns(id: &str) -> Option<f64> {
    let path = criterion_dir().join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// One line of the ratio report: `numerator / denominator` against a target.
pub struct Ratio<'a> {
    pub what: &'a str,
    pub numerator: &'a str,
    pub denominator: &'a str,
    /// The ratio must be at most this (or at least, with `at_least`).
    pub target: f64,
    pub at_least: bool,
}

/// Prints medians and ratios from this run's criterion estimates.
pub fn report(title: &str, rows: &[Ratio<'_>]) {
    println!("\n{title}");
    println!(
        "{:<58} {:>12} {:>12} {:>7}  target",
        "case", "median ns", "vs ns", "ratio"
    );
    for r in rows {
        match (median_ns(r.numerator), median_ns(r.denominator)) {
            (Some(n), Some(d)) => {
                let ratio = n / d;
                let ok = if r.at_least {
                    ratio >= r.target
                } else {
                    ratio <= r.target
                };
                println!(
                    "{:<58} {:>12.1} {:>12.1} {:>7.3}  {} {:.2} {}",
                    r.what,
                    n,
                    d,
                    ratio,
                    if r.at_least { ">=" } else { "<=" },
                    r.target,
                    if ok { "met" } else { "MISSED" }
                );
            }
            _ => println!("{:<58} (not measured in this run)", r.what),
        }
    }
}

/// `case / floor` measured in interleaved rounds: each round times `iters` runs of the floor,
/// then of the case, then of the floor again, and divides the case's time by the mean of the
/// two floors around it, so that the machine's speed drifting from minute to minute falls on
/// both alike. Returns the median, minimum and maximum over `rounds`.
pub fn interleaved(
    rounds: usize,
    iters: u32,
    mut floor: impl FnMut(),
    mut case: impl FnMut(),
) -> (f64, f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            f();
        }
        start.elapsed().as_secs_f64()
    };
    // Warm both up once.
    time(&mut floor);
    time(&mut case);
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|_| {
            let a = time(&mut floor);
            let c = time(&mut case);
            let b = time(&mut floor);
            c / ((a + b) / 2.0)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    )
}

/// Whether the interleaved report runs: not when a filter other than "interleaved" picks some
/// criterion cases only.
pub fn interleaved_wanted() -> bool {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    filter.is_none_or(|f| "interleaved".contains(f.as_str()))
}

/// One line of an interleaved report, judged on the median.
pub fn interleaved_row(what: &str, (median, lo, hi): (f64, f64, f64), target: Option<f64>) {
    let verdict = match target {
        Some(t) if median <= t => format!("<= {t:.2} met"),
        Some(t) => format!("<= {t:.2} MISSED"),
        None => "(reference)".to_owned(),
    };
    println!("{what:<48} {median:>7.3} {lo:>7.3} - {hi:<7.3} {verdict}");
}

/// The transport of the client's signed floor: hyper-util's pooled client over hyper-rustls
/// with the ring provider, HTTP/1.1 and HTTP/2, as the client builds its own.
#[cfg(feature = "client")]
pub type Transport = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

#[cfg(feature = "client")]
pub fn transport() -> Transport {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .expect("TLS set-up")
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .build(https)
}
