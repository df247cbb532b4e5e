//! SVG line charts: one run's (throughput against p99, efficiency against load) and runs
//! compared (p50 and p99 against offered load, throughput against offered load, one line
//! per server or configuration), drawn from `results.json` files.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub colour: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A chart with axes from zero to the largest value plotted.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// A horizontal reference line (e.g. a latency target), labelled.
    pub reference: Option<(f64, String)>,
}

/// Colours for successive series, readable on white.
pub const PALETTE: [&str; 8] = [
    "#d9480f", "#1c7ed6", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#495057",
];

const CHART_WIDTH: f64 = 380.0;
const CHART_HEIGHT: f64 = 300.0;
const CHART_TOP: f64 = 50.0;

/// Charts side by side under a title, with a legend of every named line below.
pub fn svg(title: &str, charts: &[Chart]) -> String {
    let width = 60.0 + charts.len() as f64 * 480.0;
    let legend: Vec<&Line> = {
        let mut seen: Vec<&Line> = Vec::new();
        for line in charts.iter().flat_map(|c| &c.lines) {
            if !line.name.is_empty() && !seen.iter().any(|l| l.name == line.name) {
                seen.push(line);
            }
        }
        seen
    };
    let height = CHART_TOP + CHART_HEIGHT + 60.0 + 18.0 * legend.len() as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    for (index, chart) in charts.iter().enumerate() {
        draw(&mut out, 60.0 + index as f64 * 480.0, chart);
    }
    for (index, line) in legend.iter().enumerate() {
        let y = CHART_TOP + CHART_HEIGHT + 56.0 + 18.0 * index as f64;
        let _ = write!(
            out,
            r#"<line x1="60" y1="{y}" x2="90" y2="{y}" stroke="{}" stroke-width="2"{}/><text x="96" y="{}">{}</text>"#,
            line.colour,
            dash(line.dashed),
            y + 4.0,
            escape(&line.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn dash(dashed: bool) -> &'static str {
    if dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    }
}

fn draw(out: &mut String, left: f64, chart: &Chart) {
    let (top, width, height) = (CHART_TOP, CHART_WIDTH, CHART_HEIGHT);
    let points = chart.lines.iter().flat_map(|l| &l.points);
    let max_x = round_up(points.clone().map(|p| p.0).fold(0.0, f64::max));
    let max_y = round_up(
        points
            .map(|p| p.1)
            .chain(chart.reference.as_ref().map(|r| r.0))
            .fold(0.0, f64::max),
    );
    let px = |x: f64| left + x / max_x * width;
    let py = |y: f64| top + height - y / max_y * height;
    let _ = write!(
        out,
        r#"<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="black"/>"#
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left + f * width,
            top + height + 16.0,
            tick(f * max_x),
            left - 4.0,
            top + height - f * height + 4.0,
            tick(f * max_y)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        left + width / 2.0,
        top + height + 34.0,
        escape(&chart.x_label),
        left - 42.0,
        top + height / 2.0,
        left - 42.0,
        top + height / 2.0,
        escape(&chart.y_label)
    );
    if let Some((value, label)) = &chart.reference {
        let y = py(*value);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#868e96" stroke-dasharray="2 3"/><text x="{}" y="{:.1}" text-anchor="end" fill="#868e96">{}</text>"##,
            left + width,
            left + width - 4.0,
            y - 4.0,
            escape(label)
        );
    }
    for line in &chart.lines {
        let path: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
            path.join(" "),
            line.colour,
            dash(line.dashed)
        );
        for &(x, y) in &line.points {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                px(x),
                py(y),
                line.colour
            );
        }
    }
}

/// The axis end at or above `value`: 1, 2, 4, 5 or 8 times a power of ten, so quarter
/// ticks read as round numbers.
fn round_up(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 4.0, 5.0, 8.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|&end| end >= value)
        .unwrap_or(10.0 * power)
}

/// An axis label with as many decimals as its size needs.
fn tick(value: f64) -> String {
    if value >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One measured level of a run, as a comparison plots it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPoint {
    /// Offered load: the request rate (open loop) or the concurrency (closed loop).
    pub offered: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A named run: one server or configuration's levels.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub name: String,
    pub points: Vec<RunPoint>,
}

impl Run {
    /// The levels of a `results.json` the load generator wrote.
    pub fn from_results_json(name: &str, json: &str) -> Result<Self, String> {
        let levels: Vec<serde_json::Value> =
            serde_json::from_str(json).map_err(|e| format!("{name}: not a results.json: {e}"))?;
        let number = |level: &serde_json::Value, path: &[&str]| {
            path.iter()
                .try_fold(level, |value, key| value.get(key))
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| format!("{name}: a level lacks {}", path.join(".")))
        };
        let points = levels
            .iter()
            .map(|level| {
                Ok(RunPoint {
                    offered: number(level, &["level_value"])?,
                    throughput: number(level, &["throughput"])?,
                    p50_ms: number(level, &["latency", "p50_ms"])?,
                    p99_ms: number(level, &["latency", "p99_ms"])?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            name: name.to_string(),
            points,
        })
    }
}

/// Runs compared: p99 (solid) and p50 (dashed) latency against offered load, and
/// throughput against offered load, one colour per run; `target_ms` draws a latency target.
pub fn compare(title: &str, offered_label: &str, runs: &[Run], target_ms: Option<f64>) -> String {
    let mut latency = Vec::new();
    let mut throughput = Vec::new();
    for (run, &colour) in runs.iter().zip(PALETTE.iter().cycle()) {
        let series = |pick: fn(&RunPoint) -> f64| -> Vec<(f64, f64)> {
            run.points.iter().map(|p| (p.offered, pick(p))).collect()
        };
        latency.push(Line {
            name: run.name.clone(),
            colour,
            dashed: false,
            points: series(|p| p.p99_ms),
        });
        latency.push(Line {
            name: format!("{} p50", run.name),
            colour,
            dashed: true,
            points: series(|p| p.p50_ms),
        });
        throughput.push(Line {
            name: run.name.clone(),
            colour,
            dashed: false,
            points: series(|p| p.throughput),
        });
    }
    svg(
        title,
        &[
            Chart {
                x_label: offered_label.to_string(),
                y_label: "latency (ms): p99 solid, p50 dashed".into(),
                lines: latency,
                reference: target_ms.map(|t| (t, format!("target {t} ms"))),
            },
            Chart {
                x_label: offered_label.to_string(),
                y_label: "throughput (req/s)".into(),
                lines: throughput,
                reference: None,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_read_back_from_results_json_and_plot_one_colour_each() {
        let json = r#"[
            {"level": "rate 100", "level_value": 100.0, "throughput": 99.5,
             "latency": {"p50_ms": 2.0, "p99_ms": 5.5}},
            {"level": "rate 200", "level_value": 200.0, "throughput": 180.0,
             "latency": {"p50_ms": 4.0, "p99_ms": 40.0}}
        ]"#;
        let a = Run::from_results_json("kiln", json).unwrap();
        assert_eq!(a.points.len(), 2);
        assert_eq!(a.points[1].p99_ms, 40.0);
        let b = Run {
            name: "fixed b=8".into(),
            points: vec![RunPoint {
                offered: 100.0,
                throughput: 100.0,
                p50_ms: 1.0,
                p99_ms: 3.0,
            }],
        };
        let svg = compare("LeNet", "offered load (req/s)", &[a, b], Some(20.0));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 6);
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[1]));
        assert!(svg.contains("target 20 ms") && svg.contains("fixed b=8 p50"));
        assert!(
            Run::from_results_json("bad", "[{}]")
                .unwrap_err()
                .contains("level_value")
        );
        assert!(Run::from_results_json("bad", "not json").is_err());
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(round_up(120.0), 200.0);
        assert_eq!(round_up(990.0), 1000.0);
        assert_eq!(round_up(31.0), 40.0);
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(0.3), 0.4);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
