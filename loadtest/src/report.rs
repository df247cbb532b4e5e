//! Presenting results: a terminal table, CSV, JSON, and an SVG plot of throughput against
//! p99 latency (and images/s/W against the load level).

use std::fmt::Write;

use crate::runner::LevelResult;

/// A fixed-width table, one row per level.
pub fn table(results: &[LevelResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>10} {:>7}",
        "level",
        "req/s",
        "tokens/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "batch",
        "queue ms",
        "compute ms",
        "img/J"
    );
    for r in results {
        // Without the server's own metrics (another server), its columns read "-".
        let server = r.server.map_or_else(
            || format!("{:>8} {:>9} {:>10} {:>7}", "-", "-", "-", "-"),
            |s| {
                format!(
                    "{:>8.2} {:>9.3} {:>10.3} {:>7.1}",
                    s.avg_batch, s.queue_ms, s.compute_ms, s.items_per_joule
                )
            },
        );
        let _ = writeln!(
            out,
            "{:<12} {:>10.1} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {server}",
            r.level,
            r.throughput,
            r.tokens_per_second
                .map_or("-".to_string(), |t| format!("{t:.0}")),
            r.latency.p50_ms,
            r.latency.p90_ms,
            r.latency.p95_ms,
            r.latency.p99_ms,
            r.measured_errors,
        );
    }
    if let Some(source) = results
        .iter()
        .find_map(|r| r.server.and_then(|s| s.power_source))
    {
        let _ = writeln!(
            out,
            "img/J = images per second per watt; power source: {source}"
        );
    }
    out
}

pub fn csv(results: &[LevelResult]) -> String {
    let mut out = String::from(
        "level,level_value,throughput,p50_ms,p90_ms,p95_ms,p99_ms,mean_ms,measured_ok,measured_errors,windows,stable,sent,ok,errors,avg_batch,queue_ms,compute_ms,joules,items_per_joule,power_source,tokens_per_second\n",
    );
    for r in results {
        let s = r.server.unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{},{:.3},{:.4},{:.4},{:.4},{:.4},{},{}",
            r.level,
            r.level_value,
            r.throughput,
            r.latency.p50_ms,
            r.latency.p90_ms,
            r.latency.p95_ms,
            r.latency.p99_ms,
            r.latency.mean_ms,
            r.measured_ok,
            r.measured_errors,
            r.windows,
            r.stable,
            r.sent,
            r.ok,
            r.errors,
            s.avg_batch,
            s.queue_ms,
            s.compute_ms,
            s.joules,
            s.items_per_joule,
            s.power_source.unwrap_or(""),
            r.tokens_per_second
                .map_or(String::new(), |t| format!("{t:.1}"))
        );
    }
    out
}

pub fn json(results: &[LevelResult]) -> String {
    serde_json::to_string_pretty(results).unwrap_or_else(|_| "[]".into())
}

/// Two line charts side by side: p99 latency against throughput, and images per joule
/// against the load level.
pub fn svg(results: &[LevelResult], title: &str) -> String {
    let throughput_vs_p99: Vec<(f64, f64)> = results
        .iter()
        .map(|r| (r.throughput, r.latency.p99_ms))
        .collect();
    let efficiency: Vec<(f64, f64)> = results
        .iter()
        .map(|r| (r.level_value, r.server.map_or(0.0, |s| s.items_per_joule)))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="960" height="420" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="960" height="420" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="480" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        escape(title)
    );
    chart(
        &mut out,
        60.0,
        "throughput (req/s)",
        "p99 latency (ms)",
        &throughput_vs_p99,
    );
    chart(
        &mut out,
        540.0,
        "load level",
        "images/s per watt",
        &efficiency,
    );
    out.push_str("</svg>\n");
    out
}

fn chart(out: &mut String, left: f64, x_label: &str, y_label: &str, points: &[(f64, f64)]) {
    let (top, width, height) = (50.0, 380.0, 300.0);
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
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
            r#"<text x="{}" y="{}" text-anchor="middle">{:.0}</text><text x="{}" y="{}" text-anchor="end">{:.1}</text>"#,
            left + f * width,
            top + height + 16.0,
            f * max_x,
            left - 4.0,
            top + height - f * height + 4.0,
            f * max_y
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        left + width / 2.0,
        top + height + 34.0,
        escape(x_label),
        left - 42.0,
        top + height / 2.0,
        left - 42.0,
        top + height / 2.0,
        escape(y_label)
    );
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
        .collect();
    let _ = write!(
        out,
        r##"<polyline points="{}" fill="none" stroke="#d9480f" stroke-width="2"/>"##,
        path.join(" ")
    );
    for &(x, y) in points {
        let _ = write!(
            out,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#d9480f"/>"##,
            px(x),
            py(y)
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
