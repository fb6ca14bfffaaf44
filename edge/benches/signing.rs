//! The cost of signing one origin attempt with SigV4 (`OriginCredentials::sign`): what
//! `ORIGIN_AUTH = "sigv4"` adds to every attempt the edge sends to a region (a retry in another
//! region is signed again, for that region).
//!
//! - `get`: `GET /items/{id}` with the headers a client's read carries after the edge's own are
//!   added (request id, deadline, subject; `accept` and `user-agent` are passed but not signed),
//!   empty body.
//! - `post_4k`: `POST /items` with a 4 KiB JSON body (hashed with SHA-256 for the signature),
//!   `content-type`, an `Idempotency-Key` and the same edge headers.
//!
//! Both sign for an API Gateway URL in eu-west-1 at a fixed time, as the adapter does with the
//! platform clock. (Since the header allow-list the adapter no longer passes `accept` or
//! `user-agent`; they are kept here so the figures compare with the earlier ones.)
//!
//! Two more steps of every attempt's preparation, in group `request_path`:
//! - `subject_header_value`: the SHA-256 of a token's `sub` sent as `x-tandem-subject`;
//! - `canonical_query`: the query re-spelled for the regions (`limit` and an 88-character
//!   cursor, as a listing's next page sends).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge::core::Millis;
use edge::core::client_request::canonical_query;
use edge::core::origin_signing::{OriginCredentials, subject_header_value};

/// 2026-12-03T07:15:00Z, in ms since the epoch.
const NOW: Millis = 1_796_282_100_000;
const ORIGIN: &str = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com";

fn credentials() -> OriginCredentials {
    OriginCredentials::new(
        "AKIDBENCH0123456789",
        "bench/secret+access+key/0123456789abcdefghij",
    )
}

/// The headers of one attempt (lowercase, as the adapter passes them): the client's, then the
/// edge's own.
fn headers(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut headers = vec![
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("user-agent", "bench-client/1.0"),
    ];
    headers.extend_from_slice(extra);
    headers.extend_from_slice(&[
        ("x-request-id", "8f14e45fceea167a5a36dedd4bea2543"),
        ("x-tandem-deadline-ms", "1500"),
        ("x-tandem-subject", "user-4242"),
    ]);
    headers
}

/// A JSON item of exactly 4,096 bytes.
fn body_4k() -> Vec<u8> {
    let head = br#"{"name":"bench","n":42,"note":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(4096 - tail.len(), b'x');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), 4096);
    body
}

fn signing(c: &mut Criterion) {
    let credentials = credentials();
    let mut group = c.benchmark_group("signing");

    let get_url = format!("{ORIGIN}/items/01JQ8Z7Y3K2M4N5P6Q7R8S9T0V");
    let get_headers = headers(&[]);
    group.bench_function("get", |b| {
        b.iter(|| {
            black_box(
                credentials
                    .sign(
                        "eu-west-1",
                        "GET",
                        black_box(&get_url),
                        get_headers.iter().copied(),
                        b"",
                        NOW,
                    )
                    .expect("signs"),
            )
        })
    });

    let post_url = format!("{ORIGIN}/items");
    let post_headers = headers(&[
        ("content-type", "application/json"),
        ("idempotency-key", "edge-5d41402abc4b2a76b9719d911017c592"),
    ]);
    let body = body_4k();
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("post_4k", |b| {
        b.iter(|| {
            black_box(
                credentials
                    .sign(
                        "eu-west-1",
                        "POST",
                        black_box(&post_url),
                        post_headers.iter().copied(),
                        black_box(&body),
                        NOW,
                    )
                    .expect("signs"),
            )
        })
    });

    group.finish();
}

fn request_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_path");
    let sub = "auth0|5f7c8ec7c33c6c004bbafe82";
    group.bench_function("subject_header_value", |b| {
        b.iter(|| black_box(subject_header_value(black_box(sub))))
    });
    let query = format!(
        "limit=100&cursor={}",
        "QWJjRGVmR2hpSmtsTW5vUHFyU3R1Vnd4WXo".repeat(3)
    );
    let query = &query[..query.len().min(17 + 88)];
    group.bench_function("canonical_query", |b| {
        b.iter(|| black_box(canonical_query(black_box(query))))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = signing, request_path
}
criterion_main!(benches);
