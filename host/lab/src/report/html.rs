//! report.html: one self-contained page (inline CSS, charts as inline SVG drawn in Rust,
//! no script, no font or network reference) that opens from disk and can be shared as is.

mod charts;
mod format;

use std::fmt::Write as _;
use std::path::Path;

use self::charts::{latency_chart, saved_chart, size_chart, tradeoff_chart};
use self::format::{bytes, count, list_or_none, ns, points, rate, ratio, scale};
pub(crate) use self::format::{ms, pct};
use self::format::{signed_ms, signed_ns, timestamp};
use super::svg::{Marker, escape};
use crate::LabError;
use crate::results::{Change, LabReport, PolicyRun, RunKind, ShadowSummary};

/// Okabe and Ito's colour-blind-safe palette, without its yellow (too pale on white),
/// plus one dark wine, in the order policies get them.
const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#882255",
];
/// Bounds are drawn in black and greys so they never read as one more policy.
const BELADY_COLOR: &str = "#111111";
const BOUND_COLORS: [&str; 2] = ["#57606a", "#8c959f"];

/// The page's only styles. System fonts only: the page must not fetch anything.
const STYLE: &str = "
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --soft: #f6f8fa;
  --good: #1a7f37; --bad: #cf222e; --page: #f3f4f6; }
* { box-sizing: border-box; }
html { background: var(--page); }
body { margin: 0; color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial,
    'Noto Sans', 'Liberation Sans', 'DejaVu Sans', sans-serif;
  font-variant-numeric: tabular-nums; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 28px 40px; }
header { margin-bottom: 18px; }
.eyebrow { margin: 0; color: var(--muted); font-size: 12px; font-weight: 600;
  letter-spacing: .08em; text-transform: uppercase; }
h1 { margin: 2px 0 4px; font-size: 28px; line-height: 1.2; }
h2 { margin: 0 0 6px; font-size: 17px; }
.subtitle { margin: 0; color: var(--muted); overflow-wrap: anywhere; }
.source { font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, 'DejaVu Sans Mono', monospace;
  font-size: 13px; color: var(--ink); overflow-wrap: anywhere; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.tile-label { color: var(--muted); font-size: 12px; font-weight: 600; letter-spacing: .04em;
  text-transform: uppercase; }
.tile-value { font-size: 21px; font-weight: 650; margin-top: 2px; overflow-wrap: anywhere; }
.tile-note { color: var(--muted); font-size: 12px; min-height: 18px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 12px;
  padding: 18px 22px 16px; margin-top: 18px; }
.settings dl { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr));
  gap: 6px 24px; margin: 8px 0 0; }
.settings dl div { display: flex; gap: 10px; border-bottom: 1px solid #eef1f4; padding: 4px 0; }
.settings dt { color: var(--muted); min-width: 90px; }
.settings dd { margin: 0; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; margin-top: 8px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 7px 9px; border-bottom: 1px solid #eaeef2; text-align: right; white-space: nowrap; }
thead th { color: var(--muted); font-size: 12px; font-weight: 600; vertical-align: bottom;
  white-space: normal; border-bottom: 1px solid var(--line); }
th:first-child, td:first-child { text-align: left; white-space: normal; overflow-wrap: anywhere;
  min-width: 200px; max-width: 280px; }
tr.group th { text-align: left; background: var(--soft); color: var(--muted); font-size: 12px;
  font-weight: 600; letter-spacing: .04em; text-transform: uppercase; padding: 5px 9px; }
tbody tr:not(.group):hover { background: #f8fafc; }
tr.bound td { color: var(--muted); }
tr.bound .name { font-style: italic; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 7px; }
.name { font-weight: 600; }
.kind { color: var(--muted); font-size: 11px; border: 1px solid var(--line); border-radius: 8px;
  padding: 0 6px; margin-left: 4px; white-space: nowrap; }
.diff td { vertical-align: top; }
.before { color: var(--muted); }
.after { font-weight: 600; }
.delta { font-size: 12px; font-weight: 600; }
.delta.better { color: var(--good); }
.delta.worse { color: var(--bad); }
.delta.same { color: var(--muted); font-weight: 400; }
.only { margin: 8px 0 0; overflow-wrap: anywhere; }
.charts { display: grid; grid-template-columns: 1fr; }
.chart-panel svg { display: block; width: 100%; height: auto; margin: 12px 0 0; }
svg text { font-family: inherit; font-size: 12px; fill: var(--ink); }
svg .tick { font-size: 11px; fill: var(--muted); }
svg .axis-label { font-size: 12px; font-weight: 600; }
svg .point-label { font-size: 11px; font-weight: 600; paint-order: stroke; stroke: #fff;
  stroke-width: 3px; stroke-linejoin: round; }
svg .bar-label { font-size: 12px; }
svg .bar-label.bound { fill: var(--muted); font-style: italic; }
svg .bar-value { font-size: 11px; fill: var(--muted); }
.how { color: var(--muted); font-size: 13px; margin: 10px 0 0; max-width: 900px; }
.empty { color: var(--muted); font-style: italic; background: var(--soft); border-radius: 8px;
  padding: 14px 16px; margin: 10px 0 0; }
footer { color: var(--muted); font-size: 12px; margin-top: 22px; }
@media print { html { background: #fff; } .panel, .tile { break-inside: avoid; } }
";

/// Writes `render(report)` to `path`.
pub fn write(report: &LabReport, path: &Path) -> Result<(), LabError> {
    std::fs::write(path, render(report)).map_err(|source| LabError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The whole page.
pub fn render(report: &LabReport) -> String {
    let styles = Styles::new(report);
    let mut out = String::with_capacity(64 * 1024);
    let (title, source) = match &report.shadow {
        Some(shadow) => (
            "Shadow evaluation on live traffic",
            format!("live calls since {}", timestamp(shadow.since)),
        ),
        None => ("Cache policy report", report.trace.source.clone()),
    };
    let source = escape(&source);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: {source}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header>
<p class="eyebrow">mcp-bridge · policy lab</p>
<h1>{title}</h1>
<p class="subtitle"><span class="source">{source}</span> · generated {created}</p>
</header>
"#,
        created = escape(&timestamp(report.created_at)),
    );
    summary(&mut out, report);
    if let Some(shadow) = &report.shadow {
        shadow_panel(&mut out, shadow);
    }
    headline(&mut out, report, &styles);
    shapers(&mut out, report, &styles);
    if let Some(diff) = &report.baseline {
        baseline(&mut out, diff);
    }
    out.push_str(r#"<div class="charts">"#);
    // A shadow evaluation sweeps nothing: every row runs at production's size.
    if report.shadow.is_none() {
        size_chart(&mut out, report, &styles);
        tradeoff_chart(&mut out, report, &styles);
    }
    saved_chart(&mut out, report, &styles);
    latency_chart(&mut out, report, &styles);
    out.push_str("</div>\n");
    let footer = match report.shadow {
        Some(_) => {
            "Written by <code>mcp-bridge serve</code> with <code>[lab.shadow]</code>: each candidate decided every live call in a simulated cache of its own, off the request path; <code>production</code> is what the live cache did. This page reloads itself; it is self-contained: no scripts, no network."
        }
        None => {
            "Written by <code>mcp-bridge bench policies</code>. Replayed in virtual time: only the cache and the clock are simulated; the policies ran as they would in <code>serve</code>. This page is self-contained: no scripts, no network."
        }
    };
    let _ = write!(
        out,
        "<footer>{footer}</footer>\n</main>\n</body>\n</html>\n"
    );
    out
}

/// How the shadow saw the live calls, and how to read its rows.
fn shadow_panel(out: &mut String, shadow: &ShadowSummary) {
    let sampled = shadow.truth_fresh + shadow.truth_stale;
    let truth = if sampled + shadow.truth_failed + shadow.truth_skipped == 0 {
        "off: a hit counts as stale only when an earlier answer of the same call, with no write since, differed".to_owned()
    } else {
        format!(
            "{} hits re-fetched: {} fresh, {} stale, {} failed, {} skipped",
            count(sampled + shadow.truth_failed),
            count(shadow.truth_fresh),
            count(shadow.truth_stale),
            count(shadow.truth_failed),
            count(shadow.truth_skipped)
        )
    };
    let rows = [
        (
            "Rows",
            "production: the live cache · production-simulated: the configured production chain in a simulated cache (its gap to production is the simulation's) · then each candidate".to_owned(),
        ),
        ("Dropped calls", count(shadow.dropped)),
        ("Window restarts", count(shadow.window_resets)),
        ("Truth sampling", truth),
    ];
    settings_panel(out, "Shadow", &rows);
}

/// A panel of labelled values, as the settings are shown.
fn settings_panel(out: &mut String, title: &str, rows: &[(&str, String)]) {
    let _ = write!(
        out,
        r#"<section class="panel settings"><h2>{}</h2><dl>"#,
        escape(title)
    );
    for (label, value) in rows {
        let _ = write!(
            out,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            escape(label),
            escape(value)
        );
    }
    out.push_str("</dl></section>\n");
}

/// How each name is drawn (colour, marker, dashed), the same in every chart and table.
struct Styles {
    policies: Vec<String>,
    bounds: Vec<String>,
}

struct Style {
    color: &'static str,
    marker: Marker,
    dashed: bool,
}

impl Styles {
    fn new(report: &LabReport) -> Styles {
        let mut policies: Vec<String> = Vec::new();
        let mut bounds: Vec<String> = Vec::new();
        let runs = report.policies.iter().chain(&report.bounds);
        let named = runs
            .map(|run| (run.name.as_str(), run.kind))
            .chain(
                report
                    .size_sweep
                    .iter()
                    .map(|p| (p.policy.as_str(), p.kind)),
            )
            .chain(report.ttl_sweep.iter().map(|p| (p.policy.as_str(), p.kind)));
        for (name, kind) in named {
            let list = if kind == RunKind::Bound {
                &mut bounds
            } else {
                &mut policies
            };
            if !list.iter().any(|known| known == name) {
                list.push(name.to_owned());
            }
        }
        Styles { policies, bounds }
    }

    fn get(&self, name: &str, kind: RunKind) -> Style {
        if kind == RunKind::Bound {
            if name.to_ascii_lowercase().contains("belady") {
                return Style {
                    color: BELADY_COLOR,
                    marker: Marker::Diamond,
                    dashed: true,
                };
            }
            let index = self
                .bounds
                .iter()
                .filter(|bound| !bound.to_ascii_lowercase().contains("belady"))
                .position(|bound| bound == name)
                .unwrap_or(0);
            return Style {
                color: BOUND_COLORS[index % BOUND_COLORS.len()],
                marker: [Marker::Square, Marker::TriangleDown][index % 2],
                dashed: true,
            };
        }
        let index = self
            .policies
            .iter()
            .position(|policy| policy == name)
            .unwrap_or(0);
        // Colour and marker cycle at different lengths, so a tenth policy still differs
        // from the third by its marker.
        Style {
            color: PALETTE[index % PALETTE.len()],
            marker: Marker::ALL[index % Marker::ALL.len()],
            dashed: false,
        }
    }
}

fn summary(out: &mut String, report: &LabReport) {
    let trace = &report.trace;
    let settings = &report.settings;
    let tiles = [
        ("Events", count(trace.events), String::new()),
        (
            "Reads / writes",
            format!("{} / {}", count(trace.reads), count(trace.writes)),
            format!(
                "{} writes",
                pct(ratio(trace.writes as f64, trace.events as f64))
            ),
        ),
        ("Servers", count(trace.servers), String::new()),
        (
            "Working set",
            format!("{} keys", count(trace.working_set_entries)),
            bytes(trace.working_set_bytes as f64),
        ),
        ("Duration", ms(trace.duration_ms), "virtual time".to_owned()),
        (
            "Unverifiable reads",
            count(trace.unverifiable_reads),
            "neither fresh nor stale".to_owned(),
        ),
    ];
    out.push_str(r#"<section class="tiles" aria-label="Trace summary">"#);
    for (label, value, note) in tiles {
        let _ = write!(
            out,
            r#"<div class="tile"><div class="tile-label">{}</div><div class="tile-value">{}</div><div class="tile-note">{}</div></div>"#,
            escape(label),
            escape(&value),
            escape(&note)
        );
    }
    out.push_str("</section>\n");

    let fractions: Vec<String> = settings.size_fractions.iter().map(|f| pct(*f)).collect();
    let scales: Vec<String> = settings.ttl_scales.iter().map(|s| scale(*s)).collect();
    let rows = [
        (
            "Cache size",
            format!(
                "{} ({} of the working set's bytes), at most {} entries",
                bytes(settings.cache_bytes as f64),
                pct(settings.size_fraction),
                count(settings.max_entries)
            ),
        ),
        ("Eviction", settings.eviction.clone()),
        ("Hit cost", ms(settings.hit_latency_us / 1000.0)),
        ("Size sweep", list_or_none(&fractions)),
        ("TTL sweep", list_or_none(&scales)),
        ("Trace", trace.source.clone()),
    ];
    settings_panel(out, "Settings", &rows);
}

fn headline(out: &mut String, report: &LabReport, styles: &Styles) {
    out.push_str(
        r#"<section class="panel"><h2>Headline</h2><p class="how">Each policy and bound replayed over the whole trace at the base setting. Ratios are over reads; latency is per call (reads and writes).</p><div class="table-wrap"><table class="headline"><thead><tr><th>Policy</th><th>Hit ratio</th><th>Stale-hit ratio</th><th>Stale share of hits</th><th>Staleness p50 / p99</th><th>Backend calls saved</th><th>Backend time saved</th><th>Latency mean / p99</th><th>Peak entries / bytes</th><th>Decision cost</th><th>Replay speed</th></tr></thead>"#,
    );
    if report.policies.is_empty() && report.bounds.is_empty() {
        out.push_str(r#"<tbody><tr><td colspan="11" class="empty">This run replayed no policy.</td></tr></tbody>"#);
    }
    for (runs, class, caption) in [
        (&report.policies, "policy", "Policies"),
        (&report.bounds, "bound", "Bounds (references, not policies)"),
    ] {
        if runs.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            r#"<tbody class="{class}"><tr class="group"><th colspan="11">{caption}</th></tr>"#
        );
        for run in runs.iter() {
            headline_row(out, run, class, styles);
        }
        out.push_str("</tbody>");
    }
    out.push_str("</table></div></section>\n");
}

/// Who decided each policy's calls as deployed, and what the policy achieves alone (before
/// the built-in defaults only): rows that look the same above are explained here.
fn shapers(out: &mut String, report: &LabReport, styles: &Styles) {
    if report.alone.is_empty() {
        return;
    }
    out.push_str(
        r#"<section class="panel" id="shapers"><h2>Who decided, and each policy alone</h2><p class="how">As deployed, a plugin runs before the built-in policy of the given config, whose <code>[cache.ttl]</code> rows and <code>[[cache.invalidate]]</code> rules join every chain: where they decide, every plugin looks the same. <em>Plugin</em>, <em>config rules</em> and <em>defaults</em> are the shares of calls each part shaped (the decision, the TTL, or a write's invalidations). <em>Alone</em> replays the policy before the built-in defaults only, without the config's rules.</p><div class="table-wrap"><table class="headline"><thead><tr><th>Policy</th><th>Plugin</th><th>Config rules</th><th>Defaults</th><th>Alone: hit ratio</th><th>Alone: stale-hit ratio</th><th>Alone: backend time saved</th></tr></thead><tbody class="policy">"#,
    );
    for run in &report.policies {
        let metrics = &run.metrics;
        let calls = (metrics.shaped_by_plugin
            + metrics.shaped_by_config
            + metrics.shaped_by_default)
            .max(1) as f64;
        let share = |count: u64| pct(count as f64 / calls);
        let alone = report.alone.iter().find(|alone| alone.name == run.name);
        let (hit, stale, saved) = match alone {
            Some(alone) => (
                pct(alone.metrics.hit_ratio),
                pct(alone.metrics.stale_hit_ratio),
                ms(alone.metrics.backend_time_saved_ms),
            ),
            None => ("—".to_owned(), "—".to_owned(), "—".to_owned()),
        };
        let style = styles.get(&run.name, run.kind);
        let _ = write!(
            out,
            r#"<tr class="policy"><td><span class="swatch" style="background:{}"></span><span class="name">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{hit}</td><td>{stale}</td><td>{saved}</td></tr>"#,
            style.color,
            escape(&run.name),
            share(metrics.shaped_by_plugin),
            share(metrics.shaped_by_config),
            share(metrics.shaped_by_default),
        );
    }
    out.push_str("</tbody></table></div></section>\n");
}

fn headline_row(out: &mut String, run: &PolicyRun, class: &str, styles: &Styles) {
    let m = &run.metrics;
    let style = styles.get(&run.name, run.kind);
    let staleness = if m.stale_hits == 0 {
        "—".to_owned()
    } else {
        format!("{} / {}", ms(m.staleness_p50_ms), ms(m.staleness_p99_ms))
    };
    let decision = if m.policy_calls == 0 {
        "—".to_owned()
    } else {
        ns(m.decision_ns)
    };
    let cells = [
        pct(m.hit_ratio),
        pct(m.stale_hit_ratio),
        pct(m.stale_share_of_hits),
        staleness,
        count(m.backend_calls_saved),
        ms(m.backend_time_saved_ms),
        format!("{} / {}", ms(m.latency_mean_ms), ms(m.latency_p99_ms)),
        format!("{} / {}", count(m.peak_entries), bytes(m.peak_bytes as f64)),
        decision,
        rate(run.events_per_second),
    ];
    let _ = write!(
        out,
        r#"<tr class="{class}"><td title="{title}"><span class="swatch" style="background:{color}"></span><span class="name">{name}</span> <span class="kind">{kind}</span></td>"#,
        title = escape(&run.source),
        color = style.color,
        name = escape(&run.name),
        kind = kind_name(run.kind),
    );
    for cell in cells {
        let _ = write!(out, "<td>{}</td>", escape(&cell));
    }
    out.push_str("</tr>");
}

fn kind_name(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Builtin => "built-in",
        RunKind::Wasm => "wasm",
        RunKind::Bound => "bound",
        RunKind::Live => "live",
    }
}

/// Whether a larger value of a metric is an improvement.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

fn baseline(out: &mut String, diff: &crate::results::BaselineDiff) {
    let _ = write!(
        out,
        r#"<section class="panel baseline" id="baseline"><h2>Change against baseline</h2><p class="how">Baseline <span class="source">{}</span>, made {}. Each cell reads before → after; green is better, red is worse.</p>"#,
        escape(&diff.source),
        escape(&timestamp(diff.created_at)),
    );
    if diff.rows.is_empty() {
        out.push_str(
            r#"<p class="empty">No policy is in both runs, so there is nothing to compare.</p>"#,
        );
    } else {
        out.push_str(r#"<div class="table-wrap"><table class="diff"><thead><tr><th>Policy</th><th>Hit ratio</th><th>Stale-hit ratio</th><th>Backend time saved</th><th>Latency p99</th><th>Decision cost</th></tr></thead><tbody>"#);
        for row in &diff.rows {
            let _ = write!(out, "<tr><td>{}</td>", escape(&row.policy));
            change_cell(out, &row.hit_ratio, Better::Higher, pct, points);
            change_cell(out, &row.stale_hit_ratio, Better::Lower, pct, points);
            change_cell(
                out,
                &row.backend_time_saved_ms,
                Better::Higher,
                ms,
                signed_ms,
            );
            change_cell(out, &row.latency_p99_ms, Better::Lower, ms, signed_ms);
            change_cell(out, &row.decision_ns, Better::Lower, ns, signed_ns);
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>");
    }
    for (label, names) in [
        ("Only in the baseline", &diff.only_in_baseline),
        ("Only in this run", &diff.only_in_this_run),
    ] {
        let list = if names.is_empty() {
            "none".to_owned()
        } else {
            names
                .iter()
                .map(|name| escape(name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            out,
            r#"<p class="only"><strong>{label}:</strong> {list}</p>"#
        );
    }
    out.push_str("</section>\n");
}

fn change_cell(
    out: &mut String,
    change: &Change,
    better: Better,
    value: fn(f64) -> String,
    delta: fn(f64) -> String,
) {
    let difference = change.delta();
    let scale = change.before.abs().max(change.after.abs());
    let (class, arrow, word) =
        if !difference.is_finite() || difference.abs() <= 1e-9 * scale.max(1e-12) {
            ("same", "=", "no change")
        } else {
            let improved = match better {
                Better::Higher => difference > 0.0,
                Better::Lower => difference < 0.0,
            };
            let arrow = if difference > 0.0 { "▲" } else { "▼" };
            if improved {
                ("better", arrow, "better")
            } else {
                ("worse", arrow, "worse")
            }
        };
    let relative = if change.before.abs() > 0.0 && class != "same" {
        format!(" ({:+.1}%)", difference / change.before.abs() * 100.0)
    } else {
        String::new()
    };
    let relative = if relative.contains("NaN") || relative.contains("inf") {
        String::new()
    } else {
        relative
    };
    let _ = write!(
        out,
        r#"<td><span class="before">{}</span> → <span class="after">{}</span><br><span class="delta {class}" title="{word}">{arrow} {}{}</span></td>"#,
        escape(&value(change.before)),
        escape(&value(change.after)),
        escape(&delta(difference)),
        escape(&relative),
    );
}

/// A chart panel: the title, the chart or a sentence saying why there is none, and how
/// to read it.
fn chart_panel(
    out: &mut String,
    id: &str,
    title: &str,
    chart: Option<String>,
    empty: &str,
    how: &str,
) {
    let _ = write!(
        out,
        r#"<section class="panel chart-panel" id="{id}-panel"><h2>{}</h2>"#,
        escape(title)
    );
    match chart {
        Some(svg) => out.push_str(&svg),
        None => {
            let _ = write!(out, r#"<p class="empty">{}</p>"#, escape(empty));
        }
    }
    let _ = write!(out, r#"<p class="how">{}</p></section>"#, escape(how));
}
