//! Tests of report.csv and report.html against a hand-built report: quoting, escaping,
//! self-containment, one chart per figure, finite coordinates and the baseline section.

use super::svg::{self, Axis, Marker, Point, ScaleKind, Series, XyChart};
use super::{csv, html};
use crate::results::{
    BaselineDiff, Change, DiffRow, LabReport, PolicyRun, REPORT_VERSION, ReplayMetrics,
    ReplaySettings, RunKind, SweepPoint, TraceSummary,
};

/// Plausible metrics for a policy with this hit ratio and stale-hit ratio.
fn metrics(hit_ratio: f64, stale_hit_ratio: f64, decision_ns: f64) -> ReplayMetrics {
    let reads = 2400u64;
    let writes = 600u64;
    let hits = (reads as f64 * hit_ratio).round() as u64;
    let stale_hits = (reads as f64 * stale_hit_ratio).round() as u64;
    ReplayMetrics {
        reads,
        writes,
        hits,
        misses: reads - hits,
        bypasses: 0,
        stale_hits,
        unverified_hits: 3,
        hit_ratio,
        stale_hit_ratio,
        stale_share_of_hits: if hits > 0 {
            stale_hits as f64 / hits as f64
        } else {
            0.0
        },
        staleness_p50_ms: if stale_hits > 0 { 850.0 } else { 0.0 },
        staleness_p99_ms: if stale_hits > 0 { 14_500.0 } else { 0.0 },
        backend_calls: reads - hits + writes,
        backend_calls_saved: hits,
        backend_time_ms: (reads - hits + writes) as f64 * 42.0,
        backend_time_saved_ms: hits as f64 * 42.0,
        latency_mean_ms: 42.0 * (1.0 - hit_ratio * 0.8) + 0.05,
        latency_p99_ms: 180.0 * (1.0 - hit_ratio * 0.3),
        peak_entries: 500,
        peak_bytes: 1_850_000,
        final_entries: 480,
        final_bytes: 1_700_000,
        evictions: 120,
        invalidated: 45,
        policy_calls: if decision_ns > 0.0 { 3600 } else { 0 },
        decision_ns,
        shaped_by_plugin: if decision_ns > 0.0 { 2000 } else { 0 },
        shaped_by_config: 600,
        shaped_by_default: if decision_ns > 0.0 { 400 } else { 2400 },
        decisions_reused: 0,
    }
}

fn run(name: &str, kind: RunKind, metrics: ReplayMetrics) -> PolicyRun {
    PolicyRun {
        name: name.to_owned(),
        kind,
        source: match kind {
            RunKind::Builtin => "builtin".to_owned(),
            RunKind::Wasm => format!("build/plugins/{name}.wasm"),
            RunKind::Bound => "computed from the trace".to_owned(),
            RunKind::Live => "the live cache".to_owned(),
        },
        metrics,
        events_per_second: 1_250_000.0,
    }
}

/// Three policies, three bounds, a size sweep (policies and Belady), a TTL sweep and a
/// baseline: every part of the page has something to draw.
pub(super) fn fixture() -> LabReport {
    let policies = [
        ("builtin", RunKind::Builtin, 0.42, 0.010, 180.0),
        ("seed-ttl-table", RunKind::Wasm, 0.55, 0.030, 2100.0),
        ("crud-invalidation", RunKind::Wasm, 0.51, 0.004, 2600.0),
    ];
    let fractions: [f64; 6] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0];
    let scales: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];
    let mut size_sweep = Vec::new();
    let mut ttl_sweep = Vec::new();
    for (name, kind, hit, stale, ns) in policies {
        for fraction in fractions {
            // Hit ratio grows with size and saturates at the policy's base level.
            let hit_ratio = hit * (1.0 - (-6.0 * fraction).exp()) / (1.0 - (-6.0f64).exp());
            size_sweep.push(SweepPoint {
                policy: name.to_owned(),
                kind,
                size_fraction: fraction,
                cache_bytes: (fraction * 100_000.0) as u64,
                ttl_scale: 1.0,
                metrics: metrics(hit_ratio.min(hit * 1.05), stale, ns),
            });
        }
        for scale in scales {
            let factor = scale.ln() / 4.0;
            ttl_sweep.push(SweepPoint {
                policy: name.to_owned(),
                kind,
                size_fraction: 0.25,
                cache_bytes: 25_000,
                ttl_scale: scale,
                metrics: metrics(
                    (hit * (1.0 + factor)).clamp(0.0, 1.0),
                    (stale * scale).clamp(0.0, 1.0),
                    ns,
                ),
            });
        }
    }
    for fraction in fractions {
        size_sweep.push(SweepPoint {
            policy: "belady".to_owned(),
            kind: RunKind::Bound,
            size_fraction: fraction,
            cache_bytes: (fraction * 100_000.0) as u64,
            ttl_scale: 1.0,
            metrics: metrics((0.78 * fraction.powf(0.25)).min(0.78), 0.0, 0.0),
        });
    }
    let change = |before: f64, after: f64| Change { before, after };
    LabReport {
        version: REPORT_VERSION,
        created_at: 1_790_000_000,
        trace: TraceSummary {
            source: "workload:seed-tasks (seed 7)".to_owned(),
            events: 3000,
            reads: 2400,
            writes: 600,
            servers: 2,
            working_set_entries: 1000,
            working_set_bytes: 3_700_000,
            duration_ms: 512_000.0,
            unverifiable_reads: 3,
        },
        settings: ReplaySettings {
            cache_bytes: 25_000,
            max_entries: 10_000,
            size_fraction: 0.25,
            hit_latency_us: 50.0,
            size_fractions: fractions.to_vec(),
            ttl_scales: scales.to_vec(),
            eviction: "lru".to_owned(),
        },
        policies: policies
            .iter()
            .map(|&(name, kind, hit, stale, ns)| run(name, kind, metrics(hit, stale, ns)))
            .collect(),
        // Alone, without the config's rules, each policy keeps a little more.
        alone: policies
            .iter()
            .map(|&(name, kind, hit, stale, ns)| {
                run(name, kind, metrics((hit + 0.05).min(1.0), stale, ns))
            })
            .collect(),
        bounds: vec![
            run("no-cache", RunKind::Bound, metrics(0.0, 0.0, 0.0)),
            run(
                "perfect-invalidation",
                RunKind::Bound,
                metrics(0.61, 0.0, 0.0),
            ),
            run("belady", RunKind::Bound, metrics(0.74, 0.0, 0.0)),
        ],
        size_sweep,
        ttl_sweep,
        baseline: Some(BaselineDiff {
            source: "runs/monday/report.json".to_owned(),
            created_at: 1_789_000_000,
            rows: vec![DiffRow {
                policy: "builtin".to_owned(),
                hit_ratio: change(0.40, 0.42),
                stale_hit_ratio: change(0.010, 0.010),
                backend_time_saved_ms: change(40_000.0, 42_336.0),
                latency_p99_ms: change(120.0, 125.0),
                decision_ns: change(200.0, 180.0),
            }],
            only_in_baseline: vec!["old-policy".to_owned()],
            only_in_this_run: vec!["seed-ttl-table".to_owned(), "crud-invalidation".to_owned()],
        }),
        shadow: None,
    }
}

/// Splits an RFC 4180 document into records of unquoted fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, _) => field.push(ch),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, _) => field.push(ch),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "the CSV ends mid-record"
    );
    records
}

/// The markup of the chart with this id.
fn chart<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}""#
        ))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let end = page[start..].find("</svg>").expect("an unclosed svg") + start;
    &page[start..end]
}

#[test]
fn csv_has_a_header_and_one_row_per_run_and_sweep_point() {
    let report = fixture();
    let records = parse_csv(&csv::render(&report));
    let metric_names: Vec<String> = match serde_json::to_value(ReplayMetrics::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        other => panic!("metrics are not an object: {other:?}"),
    };
    let mut expected = vec![
        "section",
        "policy",
        "kind",
        "size_fraction",
        "cache_bytes",
        "ttl_scale",
    ];
    expected.extend(metric_names.iter().map(String::as_str));
    assert_eq!(records[0], expected);
    assert_eq!(
        records.len(),
        1 + 3 + 3 + report.size_sweep.len() + report.ttl_sweep.len()
    );
    assert!(records.iter().all(|record| record.len() == expected.len()));

    let sections: Vec<&str> = records[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(sections.iter().filter(|s| **s == "policy").count(), 3);
    assert_eq!(sections.iter().filter(|s| **s == "bound").count(), 3);
    assert_eq!(sections.iter().filter(|s| **s == "size_sweep").count(), 24);
    assert_eq!(sections.iter().filter(|s| **s == "ttl_sweep").count(), 15);
    // A base run is at the base size and TTL scale 1, and its numbers read back.
    let builtin = &records[1];
    assert_eq!(
        builtin[..6],
        ["policy", "builtin", "builtin", "0.25", "25000", "1"]
    );
    let hit_ratio = expected.iter().position(|c| *c == "hit_ratio").unwrap();
    assert_eq!(builtin[hit_ratio], "0.42");
    let hits = expected.iter().position(|c| *c == "hits").unwrap();
    assert_eq!(builtin[hits], "1008");
    assert!(csv::render(&report).ends_with("\r\n"));
}

#[test]
fn csv_quotes_names_with_commas_quotes_and_line_breaks() {
    let mut report = fixture();
    report.policies[1].name = r#"ttl, "aggressive""#.to_owned();
    report.policies[2].name = "two\nlines".to_owned();
    let text = csv::render(&report);
    assert!(text.contains(r#","ttl, ""aggressive""","#), "{text}");
    let records = parse_csv(&text);
    assert_eq!(records[2][1], r#"ttl, "aggressive""#);
    assert_eq!(records[3][1], "two\nlines");
    assert!(
        records
            .iter()
            .all(|record| record.len() == records[0].len())
    );
}

#[test]
fn csv_writes_non_finite_numbers_as_empty_cells() {
    let mut report = fixture();
    report.policies[0].metrics.hit_ratio = f64::NAN;
    report.policies[0].metrics.latency_p99_ms = f64::INFINITY;
    let text = csv::render(&report);
    assert!(!text.contains("NaN") && !text.to_ascii_lowercase().contains("inf"));
    let records = parse_csv(&text);
    let column = records[0].iter().position(|c| c == "hit_ratio").unwrap();
    assert_eq!(records[1][column], "");
}

#[test]
fn csv_write_names_the_file_it_cannot_write() {
    let error = csv::write(
        &fixture(),
        std::path::Path::new("/nonexistent-dir/report.csv"),
    )
    .expect_err("a missing directory cannot be written");
    assert!(error.to_string().contains("/nonexistent-dir/report.csv"));
}

#[test]
fn html_is_self_contained() {
    let page = html::render(&fixture());
    let without_namespace = page.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
    assert!(!without_namespace.contains("http://"));
    assert!(!without_namespace.contains("https://"));
    assert!(!page.contains("<script"));
    assert!(!page.contains("<link"));
    assert!(!page.contains("<img"));
    assert!(!page.contains("@import"));
    assert!(!page.contains("src="));
    // The only url() references are the charts' own hatch patterns.
    assert_eq!(page.matches("url(").count(), page.matches("url(#").count());
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
}

#[test]
fn html_escapes_every_name_from_the_report() {
    let mut report = fixture();
    let evil = "<script>alert('x')</script>";
    report.policies[1].name = evil.to_owned();
    for point in report
        .size_sweep
        .iter_mut()
        .chain(report.ttl_sweep.iter_mut())
        .filter(|point| point.policy == "seed-ttl-table")
    {
        point.policy = evil.to_owned();
    }
    report.trace.source = "trace<&>\"file\".jsonl".to_owned();
    if let Some(diff) = report.baseline.as_mut() {
        diff.only_in_baseline = vec![evil.to_owned()];
    }
    let page = html::render(&report);
    assert!(!page.contains("<script"));
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(page.contains("trace&lt;&amp;&gt;&quot;file&quot;.jsonl"));
}

#[test]
fn html_has_one_svg_per_chart() {
    let page = html::render(&fixture());
    assert_eq!(page.matches("<svg").count(), 4);
    for id in [
        "chart-size",
        "chart-tradeoff",
        "chart-saved",
        "chart-latency",
    ] {
        assert!(chart(&page, id).contains("<title"), "{id} has no title");
    }
    // Chart 1: one line per policy plus Belady's dashed one.
    let size = chart(&page, "chart-size");
    assert_eq!(size.matches(r#"class="size-pt""#).count(), 24);
    assert_eq!(size.matches("stroke-dasharray=\"7 5\"").count(), 1);
    // Bars: one per policy and bound (chart 3), two per row (chart 4).
    assert_eq!(
        chart(&page, "chart-saved")
            .matches(r#"class="bar""#)
            .count(),
        6
    );
    assert_eq!(
        chart(&page, "chart-latency")
            .matches(r#"class="bar""#)
            .count(),
        12
    );
}

#[test]
fn tradeoff_chart_has_one_point_per_ttl_sweep_entry() {
    let report = fixture();
    let page = html::render(&report);
    let tradeoff = chart(&page, "chart-tradeoff");
    assert_eq!(
        tradeoff.matches(r#"class="ttl-pt""#).count(),
        report.ttl_sweep.len()
    );
    assert_eq!(tradeoff.matches(r#"class="bound-pt""#).count(), 3);
    assert!(tradeoff.contains("×0.5"));
}

#[test]
fn html_numbers_are_finite_even_for_degenerate_input() {
    let mut degenerate = fixture();
    for run in degenerate
        .policies
        .iter_mut()
        .chain(degenerate.bounds.iter_mut())
    {
        run.metrics = ReplayMetrics::default();
        run.events_per_second = 0.0;
    }
    degenerate.size_sweep.truncate(1);
    degenerate.size_sweep[0].metrics = ReplayMetrics::default();
    degenerate.ttl_sweep.truncate(1);
    degenerate.ttl_sweep[0].metrics.hit_ratio = f64::NAN;
    degenerate.trace = TraceSummary {
        source: String::new(),
        events: 0,
        reads: 0,
        writes: 0,
        servers: 0,
        working_set_entries: 0,
        working_set_bytes: 0,
        duration_ms: 0.0,
        unverifiable_reads: 0,
    };
    for report in [fixture(), degenerate] {
        let page = html::render(&report);
        assert!(!page.contains("NaN"), "NaN in the page");
        assert!(!page.contains("inf\"") && !page.contains("\"inf") && !page.contains("∞"));
        for id in ["chart-size", "chart-saved", "chart-latency"] {
            let svg = chart(&page, id);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{id}: {svg}");
        }
    }
}

#[test]
fn empty_sweeps_are_explained_instead_of_drawn() {
    let mut report = fixture();
    report.size_sweep.clear();
    report.ttl_sweep.clear();
    let page = html::render(&report);
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("No size sweep in this run"));
    assert!(page.contains("No TTL sweep in this run"));

    report.policies.clear();
    report.bounds.clear();
    let page = html::render(&report);
    assert_eq!(page.matches("<svg").count(), 0);
    assert!(page.contains("This run replayed no policy."));
}

#[test]
fn baseline_section_is_present_only_with_a_baseline() {
    let mut report = fixture();
    let page = html::render(&report);
    assert!(page.contains(r#"id="baseline""#));
    assert!(page.contains("Change against baseline"));
    // Hit ratio went up (better), p99 latency went up (worse), decisions got cheaper.
    assert!(page.contains(r#"<span class="delta better" title="better">▲ +2 pp"#));
    assert!(page.contains(r#"<span class="delta worse" title="worse">▲ +5 ms"#));
    assert!(page.contains(r#"<span class="delta better" title="better">▼ -20 ns"#));
    assert!(page.contains(r#"<span class="delta same""#));
    assert!(page.contains("old-policy"));
    assert!(page.contains("seed-ttl-table, crud-invalidation"));

    report.baseline = None;
    let page = html::render(&report);
    assert!(!page.contains(r#"id="baseline""#));
    assert!(!page.contains("Change against baseline"));
}

#[test]
fn long_names_are_cut_in_charts_but_kept_in_tooltips_and_tables() {
    let mut report = fixture();
    let long = "a-policy-with-a-name-far-too-long-to-fit-in-any-chart-legend-or-label";
    report.policies[0].name = long.to_owned();
    let page = html::render(&report);
    let saved = chart(&page, "chart-saved");
    assert!(saved.contains(&format!("<title>{long}</title>")));
    assert!(saved.contains("a-policy-with-a-name-far-too-…"));
    assert!(page.contains(&format!(r#"<span class="name">{long}</span>"#)));
}

#[test]
fn xy_chart_handles_a_single_point_and_non_positive_log_values() {
    let axis = |kind| Axis {
        label: "x".to_owned(),
        kind,
        format: html::pct,
        preferred_ticks: vec![0.0, 0.5],
        include_zero: false,
        flat_max: 1.0,
    };
    let series = |points: Vec<(f64, f64)>| Series {
        name: "only".to_owned(),
        color: "#000000",
        marker: Marker::Circle,
        dashed: false,
        connect: true,
        point_class: "p",
        points: points
            .into_iter()
            .map(|(x, y)| Point {
                x,
                y,
                label: Some("label".to_owned()),
                tooltip: String::new(),
            })
            .collect(),
    };
    for points in [
        vec![(0.5, 0.0)],
        vec![(0.0, 0.3), (0.5, 0.3)],
        vec![(1e-9, 1e9)],
    ] {
        let count = points.len();
        let drawn = svg::xy_chart(&XyChart {
            id: "c".to_owned(),
            title: "t".to_owned(),
            x: axis(ScaleKind::Log),
            y: axis(ScaleKind::Linear),
            series: vec![series(points)],
        })
        .expect("a chart with points");
        assert!(!drawn.contains("NaN") && !drawn.contains("inf"), "{drawn}");
        assert_eq!(drawn.matches(r#"class="p""#).count(), count);
    }
    let empty = svg::xy_chart(&XyChart {
        id: "c".to_owned(),
        title: "t".to_owned(),
        x: axis(ScaleKind::Log),
        y: axis(ScaleKind::Linear),
        series: vec![series(vec![(f64::NAN, 1.0)])],
    });
    assert!(empty.is_none());
}

#[test]
fn number_formats_read_well() {
    assert_eq!(html::pct(0.4213), "42.1%");
    assert_eq!(html::pct(0.05), "5%");
    assert_eq!(html::pct(0.0), "0%");
    assert_eq!(html::ms(0.05), "50 µs");
    assert_eq!(html::ms(42.0), "42 ms");
    assert_eq!(html::ms(512_000.0), "8.53 min");
    assert_eq!(html::ms(f64::NAN), "—");
    assert_eq!(svg::truncate("abcdef", 4), "abc…");
    assert_eq!(
        svg::escape(r#"<a href="x">&'"#),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
}
