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
