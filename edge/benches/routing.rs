//! The cost of one routing decision for five regions: what the edge adds to every request before
//! the first byte goes to a region.
//!
//! - `plan_record_5_regions`: `plan`, `on_attempt` and `record` of a success, as the adapter calls
//!   them for a request served at the first try.
//! - `plan_only_5_regions`: `plan` alone.
//!
//! Requests vary as real traffic does: clients on several continents (coordinates, or only a
//! continent), mostly reads, about a third of them carrying an affinity token, some writes. The
//! router is warmed up first so every region has a latency estimate. Time is simulated: with
//! `record`, the clock moves 1 ms per request (the records keep the estimates fresh); with `plan`
//! alone it stands still, so the warm-up estimates stay current.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge::core::Millis;
use edge::core::config::EdgeConfig;
use edge::core::geo::Coordinates;
use edge::core::outcome::Outcome;
use edge::core::router::{EdgeRouter, RequestFacts};

const REGIONS: &str = r#"[
    {"name":"eu-west-1","origin":"https://eu-west-1.api.example.com","lat":53.35,"lon":-6.26},
    {"name":"eu-central-1","origin":"https://eu-central-1.api.example.com","lat":50.11,"lon":8.68},
    {"name":"us-east-1","origin":"https://us-east-1.api.example.com","lat":39.0,"lon":-77.5},
    {"name":"us-west-2","origin":"https://us-west-2.api.example.com","lat":45.6,"lon":-121.2},
    {"name":"ap-northeast-1","origin":"https://ap-northeast-1.api.example.com","lat":35.68,"lon":139.77,"weight":1.5}
]"#;

/// Simulated start time (a date in 2026, in ms since the epoch).
const START: Millis = 1_780_000_000_000;

fn router() -> EdgeRouter {
    let config = EdgeConfig::from_vars(|name| match name {
        "REGIONS" => Some(REGIONS.to_owned()),
        "ROUTING" => Some(r#"{"ejection_jitter_ms":1000}"#.to_owned()),
        "AFFINITY_SECRET" => Some("bench-affinity-secret-0123456789abcdef".to_owned()),
        _ => None,
    })
    .expect("bench configuration is valid");
    let mut router = EdgeRouter::new(config);
    // Every region answered recently, at about its usual latency.
    for (i, ms) in [18.0, 15.0, 22.0, 25.0, 30.0].into_iter().enumerate() {
        router.on_attempt(i, START);
        router.record(i, ok(), ms, START, 0.5);
    }
    router
}

fn ok() -> Outcome {
    Outcome::Answered {
        status: 200,
        region_status: Some(200),
        at_limit: false,
    }
}

/// A mix of requests; `tokens` must outlive the facts that borrow them.
/// Client addresses and edge locations (the near-equal-region hash key).
const CLIENT_KEYS: [&str; 4] = [
    "198.51.100.7|FRA",
    "203.0.113.40|LHR",
    "2001:db8::1|IAD",
    "192.0.2.99|NRT",
];

fn traffic(tokens: &[String]) -> Vec<RequestFacts<'_>> {
    let clients = [
        Coordinates {
            lat: 50.0,
            lon: 8.27,
        }, // Mainz
        Coordinates {
            lat: 51.51,
            lon: -0.13,
        }, // London
        Coordinates {
            lat: 40.71,
            lon: -74.0,
        }, // New York
        Coordinates {
            lat: 37.77,
            lon: -122.42,
        }, // San Francisco
        Coordinates {
            lat: 35.68,
            lon: 139.69,
        }, // Tokyo
        Coordinates {
            lat: -33.87,
            lon: 151.21,
        }, // Sydney
        Coordinates {
            lat: 48.86,
            lon: 2.35,
        }, // Paris
    ];
    let mut facts = Vec::new();
    for (n, client) in clients.into_iter().enumerate() {
        for k in 0..8 {
            let (method, affinity) = match k {
                0 => ("POST", None),
                1 => ("PUT", None),
                2 | 3 => ("GET", Some(tokens[(n + k) % tokens.len()].as_str())),
                _ => ("GET", None),
            };
            facts.push(RequestFacts {
                method,
                client: Some(client),
                affinity,
                client_key: Some(CLIENT_KEYS[(n + k) % CLIENT_KEYS.len()]),
                has_idempotency_key: method == "POST",
                ..RequestFacts::default()
            });
        }
    }
    // Some clients come without coordinates, with only a continent.
    for continent in ["EU", "NA", "AS"] {
        facts.push(RequestFacts {
            method: "GET",
            continent: Some(continent),
            ..RequestFacts::default()
        });
    }
    facts
}

/// Signed affinity tokens for every region, issued at the start (each is verified, HMAC
/// included, on every plan; they expire 10 simulated seconds in).
fn tokens(router: &EdgeRouter) -> Vec<String> {
    (0..router.config().regions.len())
        .filter_map(|i| router.affinity_token_for_write(i, START))
        .collect()
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");

    let mut router = router();
    let tokens = tokens(&router);
    let facts = traffic(&tokens);
    let mut now = START;
    let mut n = 0;
    group.bench_function("plan_record_5_regions", |b| {
        b.iter(|| {
            now += 1;
            n = (n + 1) % facts.len();
            let plan = router.plan(black_box(&facts[n]), now);
            let first = plan.order[0];
            router.on_attempt(first, now);
            let latency = 15.0 + (n % 7) as f64;
            black_box(router.record(first, ok(), latency, now, 0.5))
        })
    });

    let mut router = self::router();
    let now = START + 1;
    let mut n = 0;
    group.bench_function("plan_only_5_regions", |b| {
        b.iter(|| {
            n = (n + 1) % facts.len();
            black_box(router.plan(black_box(&facts[n]), now))
        })
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = routing
}
criterion_main!(benches);
