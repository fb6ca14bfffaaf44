//! What the service adds on top of DynamoDB: `GET /items/{id}` through a running `regional` vs the
//! same GetItem (strongly consistent, as the service reads) called directly with the SDK, at 1 and
//! 32 concurrent clients, against the same local server. Run by `scripts/bench.sh`; configured by
//! environment: BENCH_DYNAMODB_ENDPOINT, BENCH_SERVICE_ADDR (host:port), BENCH_TABLE,
//! BENCH_ITEM_ID, BENCH_REQUESTS (per concurrency level, default 20000).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (see scripts/bench.sh)"))
}

/// One keep-alive HTTP/1.1 connection doing sequential GETs; returns each latency.
async fn http_client(addr: String, path: String, count: usize) -> Vec<Duration> {
    let stream = TcpStream::connect(&addr)
        .await
        .expect("connect to the service");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    let mut latencies = Vec::with_capacity(count);
    let mut line = String::new();
    for _ in 0..count {
        let started = Instant::now();
        write.write_all(request.as_bytes()).await.expect("send");
        let mut length = 0usize;
        let mut status_ok = false;
        loop {
            line.clear();
            read.read_line(&mut line).await.expect("read header");
            if line.starts_with("HTTP/1.1 200") {
                status_ok = true;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("content-length");
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await.expect("read body");
        assert!(status_ok, "service did not answer 200");
        latencies.push(started.elapsed());
    }
    latencies
}

async fn sdk_client(
    client: aws_sdk_dynamodb::Client,
    table: String,
    id: String,
    count: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let out = client
            .get_item()
            .table_name(&table)
            .key("item_id", AttributeValue::S(id.clone()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        assert!(out.item().is_some());
        latencies.push(started.elapsed());
    }
    latencies
}

fn report(mode: &str, concurrency: usize, wall: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{mode:<8} c={concurrency:<3} requests={:<6} req/s={:>8.0} p50={:>7.3}ms p99={:>7.3}ms",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `cargo bench -- --list` probe bench binaries.
    }
    let endpoint = env("BENCH_DYNAMODB_ENDPOINT");
    let addr = env("BENCH_SERVICE_ADDR");
    let table = env("BENCH_TABLE");
    let id = env("BENCH_ITEM_ID");
    let total: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(regional::store::http_client())
        .region(aws_config::Region::new("eu-west-1"))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&shared);
    let path = format!("/items/{id}");

    for concurrency in [1usize, 32] {
        let per_client = total / concurrency;
        for mode in ["direct", "service"] {
            // Warm-up: connections, caches, the JIT of the local server.
            let warm = run(mode, concurrency, 100, &client, &table, &id, &addr, &path).await;
            drop(warm);
            let started = Instant::now();
            let latencies = run(
                mode,
                concurrency,
                per_client,
                &client,
                &table,
                &id,
                &addr,
                &path,
            )
            .await;
            report(mode, concurrency, started.elapsed(), latencies);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    mode: &str,
    concurrency: usize,
    per_client: usize,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
    addr: &str,
    path: &str,
) -> Vec<Duration> {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            if mode == "direct" {
                tokio::spawn(sdk_client(
                    client.clone(),
                    table.to_owned(),
                    id.to_owned(),
                    per_client,
                ))
            } else {
                tokio::spawn(http_client(addr.to_owned(), path.to_owned(), per_client))
            }
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all
}
