//! Load: 10,000 signed requests, 256 in flight, through one shared client into the mock, with
//! injected 429s and 503s. No request is lost or duplicated and every accepted request carried
//! a valid signature.
#![cfg(all(feature = "client", feature = "mock"))]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use limitless_auth::AuthMode;
use limitless_auth::Credentials;
use limitless_auth::HmacCredentials;
use limitless_auth::client::{Client, RetryConfig};
use limitless_auth::mock::{Fault, MockServer, PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET};
use tokio::sync::Semaphore;

const REQUESTS: usize = 10_000;
const IN_FLIGHT: usize = 256;

#[derive(Debug)]
struct Outcome {
    index: usize,
    post: bool,
    status: Option<StatusCode>,
    latency: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_signed_requests_with_injected_faults() {
    let mock = MockServer::start().await.expect("mock");
    mock.inject_every(7, Fault::Unavailable);
    mock.inject_every(
        11,
        Fault::TooManyRequests {
            retry_after: Some("0".into()),
            body_seconds: None,
        },
    );
    let client = Client::builder()
        .base_url(mock.base_url())
        .credentials(Credentials::new().with_hmac(
            HmacCredentials::new(PARTNER_TOKEN_ID, PARTNER_TOKEN_SECRET).expect("valid"),
        ))
        .retry(RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(10),
            ..RetryConfig::default()
        })
        .timeout(Some(Duration::from_secs(30)))
        .build()
        .expect("client");

    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..REQUESTS {
        let permit = limit.clone().acquire_owned().await.expect("semaphore");
        let client = client.clone();
        tasks.spawn(async move {
            let post = index % 2 == 0;
            let t = Instant::now();
            let result = if post {
                let body = format!(r#"{{"clientOrderId":"load-{index}","price":0.5}}"#);
                client
                    .request(Method::POST, "/orders", Some(Bytes::from(body)))
                    .await
            } else {
                client
                    .request(Method::GET, &format!("/auth/api-tokens?n={index}"), None)
                    .await
            };
            drop(permit);
            Outcome {
                index,
                post,
                status: result.ok().map(|r| r.status),
                latency: t.elapsed(),
            }
        });
    }
    let mut outcomes = Vec::with_capacity(REQUESTS);
    let collect = async {
        while let Some(done) = tasks.join_next().await {
            outcomes.push(done.expect("task"));
        }
    };
    tokio::time::timeout(Duration::from_secs(600), collect)
        .await
        .expect("the load test is bounded");
    let elapsed = started.elapsed();
    assert_eq!(outcomes.len(), REQUESTS);

    let records = mock.requests();
    // 201 answers per clientOrderId, read back from what the server received.
    let mut created: HashMap<usize, usize> = HashMap::new();
    for r in &records {
        assert_ne!(
            r.signature_valid,
            Some(false),
            "no invalid or stale signature ever reached the server: {} {}",
            r.method,
            r.target
        );
        if r.status.is_some_and(|s| s.is_success()) && !r.faulted {
            assert_eq!(r.mode, Some(AuthMode::Hmac));
            assert_eq!(r.signature_valid, Some(true));
        }
        if r.method == Method::POST && r.status == Some(StatusCode::CREATED) {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("order JSON");
            let id = v["clientOrderId"].as_str().expect("id");
            let index: usize = id.trim_start_matches("load-").parse().expect("index");
            *created.entry(index).or_default() += 1;
        }
    }
    let mut ok = 0;
    for o in &outcomes {
        if o.post {
            let n = created.get(&o.index).copied().unwrap_or(0);
            assert!(n <= 1, "order {} created {n} times", o.index);
            match o.status {
                Some(StatusCode::CREATED) => assert_eq!(n, 1, "order {} lost", o.index),
                _ => assert_eq!(n, 0, "order {} created but reported failed", o.index),
            }
        }
        if o.status.is_some_and(|s| s.is_success()) {
            ok += 1;
        }
    }
    let faulted = records.iter().filter(|r| r.faulted).count();
    assert!(faulted > REQUESTS / 10, "faults were injected: {faulted}");
    assert!(ok > REQUESTS * 9 / 10, "{ok} of {REQUESTS} succeeded");

    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "load: {REQUESTS} requests, {IN_FLIGHT} in flight, {} server arrivals ({faulted} faulted), \
         {ok} succeeded in {:.2} s; latency p50 {:.2} ms, p99 {:.2} ms",
        records.len(),
        elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}
