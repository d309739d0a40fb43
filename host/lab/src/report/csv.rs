//! report.csv: one row per policy run and sweep point, every measured number in a column,
//! for spreadsheets and notebooks (RFC 4180: CRLF line ends, quoted fields where needed).
//! Text cells (policy names come from file names and config) are defused against formula
//! injection: one a spreadsheet would evaluate starts with an apostrophe.

use std::path::Path;

use serde_json::Value;

use crate::LabError;
use crate::results::{LabReport, PolicyRun, ReplayMetrics, RunKind, SweepPoint};

/// The columns before the metrics: where the row comes from and at which setting.
const SETTING_COLUMNS: [&str; 6] = [
    "section",
    "policy",
    "kind",
    "size_fraction",
    "cache_bytes",
    "ttl_scale",
];

/// Writes `render(report)` to `path`.
pub fn write(report: &LabReport, path: &Path) -> Result<(), LabError> {
    std::fs::write(path, render(report)).map_err(|source| LabError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The whole CSV document: a header, then the policies, the bounds, the size sweep and
/// the TTL sweep, in the report's order.
pub fn render(report: &LabReport) -> String {
    // The metric columns are the fields of `ReplayMetrics` in declaration order (the
    // JSON map keeps insertion order), so a field added there gets a column here
    // without anyone having to remember this file.
    let metric_names: Vec<String> = metrics_map(&ReplayMetrics::default())
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default();

    let mut out = String::new();
    let header: Vec<String> = SETTING_COLUMNS
        .iter()
        .map(|name| (*name).to_owned())
        .chain(metric_names.iter().cloned())
        .collect();
    push_record(&mut out, &header);

    let base_fraction = report.settings.size_fraction;
    let base_bytes = report.settings.cache_bytes;
    for (section, runs) in [("policy", &report.policies), ("bound", &report.bounds)] {
        for run in runs {
            push_run(
                &mut out,
                &metric_names,
                section,
                run,
                base_fraction,
                base_bytes,
            );
        }
    }
    for (section, points) in [
        ("size_sweep", &report.size_sweep),
        ("ttl_sweep", &report.ttl_sweep),
    ] {
        for point in points {
            push_point(&mut out, &metric_names, section, point);
        }
    }
    out
}

fn push_run(
    out: &mut String,
    metric_names: &[String],
    section: &str,
    run: &PolicyRun,
    base_fraction: f64,
    base_bytes: u64,
) {
    // A base run is by definition at the base size and TTL scale 1, so the row says so
    // and can be filtered like a sweep point.
    let mut fields = vec![
        section.to_owned(),
        text_cell(&run.name),
        kind_name(run.kind).to_owned(),
        float_cell(base_fraction),
        base_bytes.to_string(),
        float_cell(1.0),
    ];
    fields.extend(metric_cells(metric_names, &run.metrics));
    push_record(out, &fields);
}

fn push_point(out: &mut String, metric_names: &[String], section: &str, point: &SweepPoint) {
    let mut fields = vec![
        section.to_owned(),
        text_cell(&point.policy),
        kind_name(point.kind).to_owned(),
        float_cell(point.size_fraction),
        point.cache_bytes.to_string(),
        float_cell(point.ttl_scale),
    ];
    fields.extend(metric_cells(metric_names, &point.metrics));
    push_record(out, &fields);
}

/// The metrics as a JSON object in field order, or `None` if they cannot be serialized
/// (they always can; the caller then writes empty cells rather than failing).
fn metrics_map(metrics: &ReplayMetrics) -> Option<serde_json::Map<String, Value>> {
    match serde_json::to_value(metrics) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// One cell per metric column, looked up by name so that the row always lines up with
/// the header even if a value is missing.
fn metric_cells(metric_names: &[String], metrics: &ReplayMetrics) -> Vec<String> {
    let map = metrics_map(metrics).unwrap_or_default();
    metric_names
        .iter()
        .map(|name| match map.get(name) {
            Some(Value::Number(number)) => match number.as_f64() {
                // Integers keep their exact text; floats go through the same writer
                // as the setting columns.
                Some(value) if !number.is_u64() && !number.is_i64() => float_cell(value),
                _ => number.to_string(),
            },
            Some(Value::String(text)) => text_cell(text),
            Some(Value::Bool(flag)) => flag.to_string(),
            // `null` is how serde_json writes a NaN or an infinity: an empty cell.
            _ => String::new(),
        })
        .collect()
}

fn kind_name(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Builtin => "builtin",
        RunKind::Wasm => "wasm",
        RunKind::Bound => "bound",
        RunKind::Live => "live",
    }
}

/// Characters that make a spreadsheet read a cell as a formula (or, for tab and carriage
/// return, that some spreadsheets strip before doing so).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell a spreadsheet shows as text: one that would start a formula gets a leading
/// apostrophe (OWASP's advice for CSV injection). Numbers never go through here, so a
/// negative number stays a number.
fn text_cell(text: &str) -> String {
    if text.starts_with(FORMULA_STARTS) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A float as the shortest text that reads back to the same value; a non-finite value
/// (which a spreadsheet would take for text) as an empty cell.
fn float_cell(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        String::new()
    }
}

/// Appends one record, quoting fields as RFC 4180 requires, ended by CRLF.
fn push_record(out: &mut String, fields: &[String]) {
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_field(out, field);
    }
    out.push_str("\r\n");
}

/// A field is quoted when it holds a comma, a quote or a line break, or starts or ends
/// with a space (which some readers would trim); quotes inside are doubled.
fn push_field(out: &mut String, field: &str) {
    let needs_quotes =
        field.contains([',', '"', '\r', '\n']) || field.starts_with(' ') || field.ends_with(' ');
    if needs_quotes {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod injection_tests {
    use super::text_cell;

    #[test]
    fn text_that_would_be_a_formula_is_defused_and_other_text_is_kept() {
        for formula in [
            "=HYPERLINK(\"x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tcmd",
            "\rcmd",
        ] {
            let cell = text_cell(formula);
            assert!(cell.starts_with('\''), "{formula:?} became {cell:?}");
            assert_eq!(&cell[1..], formula);
        }
        for plain in ["builtin", "ttl-table.wasm", "a=b", "", "x-y"] {
            assert_eq!(text_cell(plain), plain);
        }
    }
}
