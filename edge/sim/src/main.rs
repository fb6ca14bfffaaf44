//! `tandem-sim SCENARIO_FILE [--seed N] [--out DIR] [--threads N]`: runs the four policies on
//! a scenario and writes `summary.json`, `details.json`, `chart.svg` and `table.md` to DIR (default
//! `.state/sim/<scenario name>`). Wall times go to stderr, never into the files.

use std::path::PathBuf;
use std::process::ExitCode;

use tandem_sim::scenario::Scenario;

const USAGE: &str = "usage: tandem-sim SCENARIO_FILE [--seed N] [--out DIR] [--threads N]";

struct Args {
    scenario: PathBuf,
    seed: u64,
    out: Option<PathBuf>,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut seed = 1;
    let mut out = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seed" => {
                let v = value("--seed")?;
                seed = v
                    .parse()
                    .map_err(|_| format!("--seed: {v:?} is not a whole number"))?;
            }
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--threads" => {
                let v = value("--threads")?;
                threads = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--threads: {v:?} is not a positive number"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            path if scenario.is_none() => scenario = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    Ok(Args {
        scenario: scenario.ok_or("missing SCENARIO_FILE")?,
        seed,
        out,
        threads,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("tandem-sim: {e} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let path = args.scenario.display();
    let text = std::fs::read_to_string(&args.scenario).map_err(|e| format!("{path}: {e}"))?;
    let scenario = Scenario::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(".state/sim").join(&scenario.name));
    let started = std::time::Instant::now();
    let output =
        tandem_sim::simulate(&scenario, args.seed, args.threads).map_err(|e| e.to_string())?;
    let wall = started.elapsed();
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, text) in [
        ("summary.json", &output.summary_json),
        ("details.json", &output.details_json),
        ("chart.svg", &output.chart_svg),
        ("table.md", &output.table_md),
    ] {
        let file = out.join(name);
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    for (policy, elapsed, requests, events) in &output.timings {
        eprintln!(
            "tandem-sim: {:<19} {:>10} requests {:>11} events {:>8.2} s",
            policy.name(),
            requests,
            events,
            elapsed.as_secs_f64()
        );
    }
    eprintln!(
        "tandem-sim: {} (seed {}) in {:.2} s on {} thread(s); wrote {}",
        scenario.name,
        args.seed,
        wall.as_secs_f64(),
        args.threads,
        out.display()
    );
    Ok(())
}
