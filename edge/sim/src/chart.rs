//! The scenario's chart: one SVG, written by hand (no dependency), three panels over simulated
//! time, one line per policy, the fault windows shaded. Numbers are printed with fixed
//! decimals, so the same run gives the same bytes.

use std::fmt::Write;

use crate::engine::Policy;
use crate::metrics::Recorder;
use crate::summary::Series;
use crate::world::World;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const PANEL: f64 = 170.0;
const GAP: f64 = 50.0;

fn colour(policy: Policy) -> (&'static str, &'static str) {
    match policy {
        Policy::Edge => ("#1f6fb4", ""),
        Policy::EdgeNoBudget => ("#4fb3c8", " stroke-dasharray=\"6 3\""),
        Policy::DnsOnly => ("#c8342c", ""),
        Policy::DnsClientRetries => ("#e8892b", " stroke-dasharray=\"6 3\""),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least `floor`.
fn nice_max(value: f64, floor: f64) -> f64 {
    let v = value.max(floor);
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&m| m >= v)
        .unwrap_or(10.0 * power)
}

/// One panel: a title, a y axis from 0 to `y_max`, lines per policy, optional reference line.
struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    lines: Vec<(Policy, Vec<Option<f64>>)>,
    reference: Option<f64>,
}

/// Seconds per plotted point (at most 300 points per line; each point is the worst second of
/// its bucket, so a one-second spike still shows).
fn bucket(duration_s: usize) -> usize {
    duration_s.div_ceil(300).max(1)
}

fn draw_panel(svg: &mut String, panel: &Panel<'_>, top: f64, duration_s: usize) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max_seen = panel
        .lines
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(panel.reference.unwrap_or(0.0), |a, &b| a.max(b));
    let y_max = nice_max(
        max_seen,
        1e-9_f64.max(if panel.unit == "%" { 0.1 } else { 1.0 }),
    );
    let x = |s: f64| LEFT + plot_w * s / duration_s.max(1) as f64;
    let y = |v: f64| top + PANEL - PANEL * (v / y_max).clamp(0.0, 1.05);
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT:.1}\" y=\"{:.1}\" class=\"title\">{}</text>",
        top - 8.0,
        escape(panel.title)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT:.1}\" y=\"{top:.1}\" width=\"{plot_w:.1}\" height=\"{PANEL:.1}\" class=\"frame\"/>"
    );
    for k in 0..=4 {
        let v = y_max * f64::from(k) / 4.0;
        let yy = y(v);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            trim(v),
            panel.unit
        );
    }
    if let Some(r) = panel.reference {
        let yy = y(r);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" class=\"limit\"/>",
            LEFT + plot_w
        );
    }
    let step = bucket(duration_s);
    for (policy, values) in &panel.lines {
        let (stroke, dash) = colour(*policy);
        let mut points = String::new();
        for (i, chunk) in values.chunks(step).enumerate() {
            let known: Vec<f64> = chunk.iter().flatten().copied().collect();
            if known.is_empty() {
                continue;
            }
            let v = known.iter().fold(0.0f64, |a, &b| a.max(b));
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x((i * step) as f64 + step as f64 / 2.0),
                y(v)
            );
        }
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.6\"{dash} points=\"{}\"/>",
            points.trim_end()
        );
    }
}

/// A tick label without needless zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// The chart for one scenario's runs.
pub fn render(world: &World, runs: &[(Policy, Recorder)]) -> String {
    let duration_s = (world.duration_us / crate::region::SECOND) as usize;
    let series: Vec<(Policy, Series<'_>)> = runs
        .iter()
        .map(|(p, rec)| (*p, Series::new(world, rec)))
        .collect();
    let per_second =
        |f: &dyn Fn(&Series<'_>, usize) -> Option<f64>| -> Vec<(Policy, Vec<Option<f64>>)> {
            series
                .iter()
                .map(|(p, s)| (*p, (0..duration_s).map(|t| f(s, t)).collect()))
                .collect()
        };
    let errors = per_second(&|s, t| Some(100.0 * s.error_rate(t, t + 1)));
    let load = per_second(&|s, t| Some(s.survivor_load(t, true)));
    let has_affected = !world.affected_regions().is_empty();
    let third = if has_affected {
        Panel {
            title: "first attempts sent to the faulted region(s), % of all",
            unit: "%",
            lines: per_second(&|s, t| s.affected_share(t, t + 1).map(|v| 100.0 * v)),
            reference: None,
        }
    } else {
        Panel {
            title: "attempts sent to regions per client request",
            unit: "×",
            lines: per_second(&|s, t| Some(s.amplification(t, t + 1))),
            reference: Some(1.0),
        }
    };
    let panels = [
        Panel {
            title: "client errors, % of requests (by second of arrival)",
            unit: "%",
            lines: errors,
            reference: None,
        },
        Panel {
            title: "busiest survivor: requests reaching it / its capacity",
            unit: "×",
            lines: load,
            reference: Some(1.0),
        },
        third,
    ];
    let height = TOP + 3.0 * (PANEL + GAP) + 10.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    svg.push_str("<style>.title{font-weight:bold}.tick{fill:#555;font-size:11px}.frame{fill:none;stroke:#999}.grid{stroke:#e4e4e4}.limit{stroke:#333;stroke-dasharray:2 3}.fault{fill:#f2c4c0;opacity:0.45}</style>\n");
    svg.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT:.1}\" y=\"22\" font-size=\"15\" class=\"title\">{}: {} regions, {} edge locations × {} isolates, {:.0} requests/s</text>",
        escape(&world.scenario.name),
        world.scenario.regions.len(),
        world.locations.len(),
        world.scenario.edge.isolates_per_location,
        world.populations.iter().map(|p| p.rate_rps).sum::<f64>()
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    for (k, panel) in panels.iter().enumerate() {
        let top = TOP + k as f64 * (PANEL + GAP);
        for f in &world.faults {
            let from = f.from_us as f64 / 1e6;
            let until = (f.until_us as f64 / 1e6).min(duration_s as f64);
            let x0 = LEFT + plot_w * from / duration_s.max(1) as f64;
            let x1 = LEFT + plot_w * until / duration_s.max(1) as f64;
            let _ = writeln!(
                svg,
                "<rect x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{PANEL:.1}\" class=\"fault\"/>",
                (x1 - x0).max(0.5)
            );
        }
        draw_panel(&mut svg, panel, top, duration_s);
        let axis_y = top + PANEL + 16.0;
        for k in 0..=6 {
            let s = duration_s as f64 * f64::from(k) / 6.0;
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{axis_y:.1}\" class=\"tick\" text-anchor=\"middle\">{s:.0} s</text>",
                LEFT + plot_w * f64::from(k) / 6.0
            );
        }
    }
    for (k, (policy, _)) in runs.iter().enumerate() {
        let (stroke, dash) = colour(*policy);
        let yy = TOP + 20.0 + 20.0 * k as f64;
        let x0 = WIDTH - RIGHT + 15.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{x0:.1}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{stroke}\" stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x0 + 24.0,
            x0 + 30.0,
            yy + 4.0,
            policy.name()
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"24\" height=\"10\" class=\"fault\"/><text x=\"{:.1}\" y=\"{:.1}\">fault on</text>",
        WIDTH - RIGHT + 15.0,
        TOP + 20.0 + 20.0 * runs.len() as f64 - 5.0,
        WIDTH - RIGHT + 45.0,
        TOP + 20.0 + 20.0 * runs.len() as f64 + 4.0
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_max(0.37, 0.1), 0.5);
        assert_eq!(nice_max(1.2, 1.0), 2.0);
        assert_eq!(nice_max(0.0, 1.0), 1.0);
        assert_eq!(nice_max(730.0, 1.0), 1000.0);
        assert_eq!(trim(0.25), "0.25");
        assert_eq!(trim(2.0), "2");
        assert_eq!(escape("a<b&c"), "a&lt;b&amp;c");
    }
}
