//! Presenting results: a terminal table, CSV, JSON, and an SVG plot of throughput against
//! p99 latency (and images/s/W against the load level).

use std::fmt::Write;

use crate::plot::{self, Chart, Line, PALETTE};
use crate::runner::LevelResult;

/// A fixed-width table, one row per level.
pub fn table(results: &[LevelResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>9} {:>10} {:>7} {:>8}",
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
        "img/J",
        "late ms"
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
            "{:<12} {:>10.1} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {server} {:>8.2}",
            r.level,
            r.throughput,
            r.tokens_per_second
                .map_or("-".to_string(), |t| format!("{t:.0}")),
            r.latency.p50_ms,
            r.latency.p90_ms,
            r.latency.p95_ms,
            r.latency.p99_ms,
            r.measured_errors,
            r.send_lag_p99_ms,
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
    let _ = writeln!(
        out,
        "late ms = p99 of how long after its scheduled time a request left (the load generator's own lag)"
    );
    out
}

/// One line per level at which the load generator fell behind its schedule, so that its
/// lateness is not read as the server's latency; empty when it kept up everywhere.
pub fn warnings(results: &[LevelResult]) -> String {
    let mut out = String::new();
    for r in results.iter().filter(|r| r.generator_fell_behind) {
        let _ = writeln!(
            out,
            "warning: at {} requests left up to {:.1} ms after their scheduled time (p99 of all \
             sent): the load generator fell behind its schedule, so the server saw them later \
             and more bunched than offered, and the latencies (p99 {:.1} ms) count that \
             lateness; give it a core of its own or offer less",
            r.level, r.send_lag_p99_ms, r.latency.p99_ms
        );
    }
    out
}

pub fn csv(results: &[LevelResult]) -> String {
    let mut out = String::from(
        "level,level_value,throughput,p50_ms,p90_ms,p95_ms,p99_ms,mean_ms,measured_ok,measured_errors,windows,stable,sent,ok,errors,avg_batch,queue_ms,compute_ms,joules,items_per_joule,power_source,tokens_per_second,p999_ms,max_ms,batch_size_at_end,target_share_at_end,send_lag_p99_ms\n",
    );
    for r in results {
        let s = r.server.unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},{},{},{},{:.3},{:.4},{:.4},{:.4},{:.4},{},{},{:.3},{:.3},{},{},{:.3}",
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
                .map_or(String::new(), |t| format!("{t:.1}")),
            r.latency.p999_ms,
            r.latency.max_ms,
            s.batch_size_at_end.map_or(String::new(), |b| b.to_string()),
            s.target_share_at_end
                .map_or(String::new(), |t| format!("{t:.3}")),
            r.send_lag_p99_ms,
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
    let line = |points: Vec<(f64, f64)>| Line {
        name: String::new(),
        colour: PALETTE[0],
        dashed: false,
        points,
    };
    plot::svg(
        title,
        &[
            Chart {
                x_label: "throughput (req/s)".into(),
                y_label: "p99 latency (ms)".into(),
                lines: vec![line(
                    results
                        .iter()
                        .map(|r| (r.throughput, r.latency.p99_ms))
                        .collect(),
                )],
                reference: None,
            },
            Chart {
                x_label: "load level".into(),
                y_label: "images/s per watt".into(),
                lines: vec![line(
                    results
                        .iter()
                        .map(|r| (r.level_value, r.server.map_or(0.0, |s| s.items_per_joule)))
                        .collect(),
                )],
                reference: None,
            },
        ],
    )
}
