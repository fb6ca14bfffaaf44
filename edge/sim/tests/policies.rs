//! The small outage scenario through the library: the figures say what the model must show
//! (the real core fails over within seconds and loses nothing; DNS alone fails the faulted
//! region's clients until its checks and TTL catch up; everyone recovers).

use std::path::Path;

use tandem_sim::scenario::Scenario;

#[test]
fn an_outage_costs_dns_its_clients_and_the_edge_nothing() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.json");
    let text = std::fs::read_to_string(path).expect("the smoke scenario");
    let scenario = Scenario::parse(&text).expect("valid");
    let output = tandem_sim::simulate(&scenario, 7, 2).expect("runs");
    let summary: serde_json::Value = serde_json::from_str(&output.summary_json).expect("JSON");
    let policy = |name: &str, key: &str| summary["policies"][name][key].clone();
    let rate = |name: &str| policy(name, "client_error_rate").as_f64().unwrap_or(1.0);
    assert_eq!(rate("edge"), 0.0, "{summary}");
    assert!(rate("dns_only") > 0.05, "{summary}");
    assert!(
        policy("edge", "time_to_shift_s")
            .as_f64()
            .is_some_and(|t| t <= 5.0),
        "{summary}"
    );
    for name in ["edge", "edge_no_budget", "dns_only", "dns_client_retries"] {
        assert_eq!(policy(name, "recovered"), true, "{name}: {summary}");
        assert!(
            policy(name, "requests")
                .as_u64()
                .is_some_and(|n| n > 10_000)
        );
    }
    assert!(
        policy("dns_client_retries", "retry_amplification")
            .as_f64()
            .is_some_and(|a| a > 1.1),
        "clients retry the dead region: {summary}"
    );
}

/// `survivor-at-capacity`, scaled down (a fifth of the rates, 16 edge locations, 5 minutes):
/// the survivor gets 105 % of its stage throttle's first attempts. The edge sheds at the limit
/// instead of piling its clients' re-sends on top, and its own retries almost never meet the
/// limit; the same edge with shedding off (`shed_k` 0) pushes the survivor well past it.
#[test]
fn the_edge_never_pushes_a_survivor_at_capacity_past_its_limit_by_retries() {
    let scenario = |routing: &str| {
        let capacity = r#"{"api_rps": 400, "api_burst": 200, "dynamo_previous_peak_rps": 300}"#;
        let text = format!(
            r#"{{"name": "survivor-small", "duration_s": 300,
            "regions": [
              {{"name": "us-east-1", "lat": 39.0, "lon": -77.5,
                "latency_ms": {{"median": 25, "p99": 150}}, "capacity": {capacity}}},
              {{"name": "eu-west-1", "lat": 53.35, "lon": -6.26,
                "latency_ms": {{"median": 25, "p99": 150}}, "capacity": {capacity}}}],
            "clients": [
              {{"name": "NA", "lat": 40.0, "lon": -95.0, "spread_deg": 15, "rate_rps": 210}},
              {{"name": "EU", "lat": 50.0, "lon": 10.0, "spread_deg": 8, "rate_rps": 210}}],
            "edge": {{"locations": 16, "routing": {routing}}},
            "faults": [{{"region": "eu-west-1", "from_s": 60, "until_s": 150,
                        "effect": {{"kind": "outage", "failure": "connect_error"}}}}]}}"#
        );
        let scenario = Scenario::parse(&text).expect("valid");
        let output = tandem_sim::simulate(&scenario, 3, 2).expect("runs");
        let summary: serde_json::Value = serde_json::from_str(&output.summary_json).expect("JSON");
        let details: serde_json::Value = serde_json::from_str(&output.details_json).expect("JSON");
        (summary, details)
    };
    let (summary, details) = scenario("{}");
    let edge = &summary["policies"]["edge"];
    let peak = edge["survivor_peak_load_ratio"]
        .as_f64()
        .unwrap_or(f64::MAX);
    let edge_details = &details["policies"]["edge"];
    let over_limit = edge_details["edge_retries_over_limit"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let requests = edge["requests"].as_u64().unwrap_or(0);
    eprintln!("shedding: peak {peak}, edge retries over the limit {over_limit} of {requests}");
    assert!(peak <= 1.35, "{summary}");
    assert!(over_limit * 1000 <= requests, "{details}");
    assert_eq!(edge["recovered"], true, "{summary}");

    let (unshed, _) = scenario(r#"{"shed_k": 0}"#);
    let unshed_peak = unshed["policies"]["edge"]["survivor_peak_load_ratio"]
        .as_f64()
        .unwrap_or(0.0);
    eprintln!("no shedding: peak {unshed_peak}");
    assert!(unshed_peak > peak + 0.2, "{unshed}");
}
