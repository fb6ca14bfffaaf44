//! The command end to end on the small scenario: the same seed gives the same bytes (whatever
//! the number of threads), `summary.json` has exactly the documented keys, a bad command line
//! exits 2 with one line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scenario() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.json")
}

fn run(out: &Path, extra: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_tandem-sim"))
        .arg(scenario())
        .args(["--out", out.to_str().expect("a UTF-8 temporary path")])
        .args(extra)
        .status()
        .expect("the simulator runs");
    assert!(status.success(), "{status}");
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const FILES: [&str; 4] = ["summary.json", "details.json", "chart.svg", "table.md"];

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let (a, b, c) = (out_dir("sim-a"), out_dir("sim-b"), out_dir("sim-c"));
    run(&a, &["--seed", "42"]);
    run(&b, &["--seed", "42", "--threads", "1"]);
    run(&c, &["--seed", "43"]);
    for file in FILES {
        let first = std::fs::read(a.join(file)).expect("written");
        let second = std::fs::read(b.join(file)).expect("written");
        assert!(!first.is_empty());
        assert!(
            first == second,
            "{file} differs between two runs with seed 42"
        );
    }
    let other = std::fs::read(c.join("summary.json")).expect("written");
    assert!(
        other != std::fs::read(a.join("summary.json")).expect("written"),
        "another seed, another run"
    );
}

#[test]
fn the_summary_has_exactly_the_documented_keys() {
    let dir = out_dir("sim-keys");
    run(&dir, &[]);
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("written");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut top = keys(&summary);
    top.sort();
    assert_eq!(top, ["policies", "scenario", "seed"]);
    assert_eq!(summary["scenario"], "smoke");
    assert_eq!(summary["seed"], 1);
    let mut policies = keys(&summary["policies"]);
    policies.sort();
    assert_eq!(
        policies,
        ["dns_client_retries", "dns_only", "edge", "edge_no_budget"]
    );
    for policy in policies {
        let mut fields = keys(&summary["policies"][&policy]);
        fields.sort();
        assert_eq!(
            fields,
            [
                "client_error_rate",
                "p50_ms",
                "p99_ms",
                "recovered",
                "requests",
                "retry_amplification",
                "survivor_peak_load_ratio",
                "time_to_shift_s",
            ],
            "{policy}"
        );
    }
    let chart = std::fs::read_to_string(dir.join("chart.svg")).expect("written");
    assert!(chart.starts_with("<svg ") && chart.ends_with("</svg>\n"));
}

#[test]
fn a_bad_command_line_exits_2_with_one_line() {
    for args in [
        vec![],
        vec!["x.json", "--seed", "nope"],
        vec!["x.json", "--frobnicate"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem-sim"))
            .args(&args)
            .output()
            .expect("the simulator runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
