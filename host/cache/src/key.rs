//! Cache keys: canonical JSON for arguments (keys sorted, no whitespace, numbers
//! normalised) and the key layout server / method / name / partition / arguments.

use mcp_bridge_policy::CallKind;
use serde_json::{Map, Number, Value};

/// Appends `value` to `out` as canonical JSON: object keys sorted, no whitespace, and
/// numbers that are whole written as integers (`1.0` and `1` are the same argument).
pub fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => canonical_object(map, &[], out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Number(number) => canonical_number(number, out),
        other => out.push_str(&other.to_string()),
    }
}

/// Appends a number in its canonical spelling. Numbers keep the text they arrived as
/// (serde_json's `arbitrary_precision`), so the spelling is normalised here: integers
/// in decimal, whole floats below 9e15 as integers, other floats in the shortest form
/// that reads back as the same `f64` (`1.50` and `15e-1` are both `1.5`), and integers
/// beyond 64 bits exactly as written, so two different large integers never share a
/// key (they did when every number went through `f64`).
fn canonical_number(number: &Number, out: &mut String) {
    if let Some(integer) = number.as_i64() {
        out.push_str(&integer.to_string());
        return;
    }
    if let Some(integer) = number.as_u64() {
        out.push_str(&integer.to_string());
        return;
    }
    let text = number.as_str();
    if mcp_bridge_jsonrpc::is_integer_text(text) {
        out.push_str(text);
        return;
    }
    match number.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < 9.0e15 => {
            out.push_str(&(float as i64).to_string());
        }
        Some(float) => match Number::from_f64(float) {
            Some(shortest) => out.push_str(shortest.as_str()),
            None => out.push_str(text),
        },
        // Beyond the range of f64 (such as 1e400): the text is all there is.
        None => out.push_str(text),
    }
}

/// Canonical JSON of an arguments object, leaving out the named top-level keys.
pub fn canonical_arguments(arguments: Option<&Value>, ignore: &[String]) -> String {
    let mut out = String::new();
    match arguments {
        Some(Value::Object(map)) => canonical_object(map, ignore, &mut out),
        Some(other) => canonical_json(other, &mut out),
        None => out.push_str("{}"),
    }
    out
}

fn canonical_object(map: &Map<String, Value>, ignore: &[String], out: &mut String) {
    let mut keys: Vec<&String> = map.keys().filter(|key| !ignore.contains(key)).collect();
    keys.sort_unstable();
    out.push('{');
    for (index, key) in keys.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&Value::String((*key).clone()).to_string());
        out.push(':');
        if let Some(value) = map.get(*key) {
            canonical_json(value, out);
        }
    }
    out.push('}');
}

/// The key's kind and name of a request the cache has a part in: a `tools/call` (its
/// tool), a `resources/read` (its URI) or a list (the method itself); `None` for any
/// other method, or a request without its name or URI. The router keys live calls and
/// explanations key the calls they are given with this one reading.
pub fn keyed_call<'m>(method: &'m str, params: Option<&'m Value>) -> Option<(CallKind, &'m str)> {
    match method {
        "tools/call" => Some((CallKind::Tool, params?.get("name")?.as_str()?)),
        "resources/read" => Some((CallKind::ReadResource, params?.get("uri")?.as_str()?)),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            Some((CallKind::ListRequest, method))
        }
        _ => None,
    }
}

/// The arguments part of a request's key, as canonical JSON: a tool call's `arguments`
/// without the top-level names in `ignore` (a policy's `ignore_arguments`), a list's
/// params without `_meta`, nothing for a resource read (its URI is its name).
pub fn key_arguments(kind: CallKind, params: Option<&Value>, ignore: &[String]) -> String {
    match kind {
        CallKind::Tool => {
            canonical_arguments(params.and_then(|params| params.get("arguments")), ignore)
        }
        CallKind::ReadResource => String::new(),
        CallKind::ListRequest => canonical_arguments(params, &["_meta".to_owned()]),
    }
}

/// The full key. Fields are separated by a byte that cannot appear in JSON text or in
/// server and method names, so two different calls never share a key.
pub fn cache_key(
    server: &str,
    method: &str,
    name: &str,
    partition: &str,
    arguments: &str,
) -> String {
    let mut key = String::with_capacity(
        server.len() + method.len() + name.len() + partition.len() + arguments.len() + 4,
    );
    for (index, part) in [server, method, name, partition, arguments]
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            key.push('\u{1f}');
        }
        key.push_str(part);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_ignores_order_whitespace_and_number_spelling() {
        let a = json!({"b": [1.0, {"y": 2, "x": 1}], "a": "s"});
        let b = json!({"a": "s", "b": [1, {"x": 1.0, "y": 2}]});
        assert_eq!(
            canonical_arguments(Some(&a), &[]),
            canonical_arguments(Some(&b), &[])
        );
        assert_eq!(
            canonical_arguments(Some(&a), &[]),
            r#"{"a":"s","b":[1,{"x":1,"y":2}]}"#
        );
        assert_eq!(
            canonical_arguments(Some(&json!({"x": 1.5})), &[]),
            r#"{"x":1.5}"#
        );
    }

    /// Canonical JSON of arguments given as text, the way they arrive from a client.
    fn canonical_text(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap_or_default();
        canonical_arguments(Some(&value), &[])
    }

    #[test]
    fn numbers_keep_their_meaning_whatever_their_spelling() {
        for (spellings, canonical) in [
            (&["1", "1.0", "1e0", "10e-1", "1.00"][..], "1"),
            (&["-0", "0", "-0.0", "0e5"][..], "0"),
            (&["1.5", "1.50", "15e-1", "0.15e1"][..], "1.5"),
            (&["-2.25", "-225e-2"][..], "-2.25"),
            // Whole floats from 9e15 on keep the float spelling they always had.
            (&["1e16", "1.0e16", "10e15"][..], "1e+16"),
            (&["18446744073709551615"][..], "18446744073709551615"),
            (&["-9223372036854775808"][..], "-9223372036854775808"),
        ] {
            for spelling in spellings {
                assert_eq!(
                    canonical_text(&format!(r#"{{"n":{spelling}}}"#)),
                    format!(r#"{{"n":{canonical}}}"#),
                    "{spelling}"
                );
            }
        }
    }

    #[test]
    fn large_integers_are_keyed_exactly() {
        let a = canonical_text(r#"{"n":18446744073709551617}"#);
        let b = canonical_text(r#"{"n":18446744073709551616}"#);
        assert_eq!(a, r#"{"n":18446744073709551617}"#);
        assert_ne!(a, b, "two different integers must not share a key");
        // Beyond f64: kept as text, so still told apart.
        assert_ne!(
            canonical_text(r#"{"n":1e400}"#),
            canonical_text(r#"{"n":2e400}"#)
        );
    }

    #[test]
    fn ignored_arguments_leave_the_key() {
        let call = json!({"status": "active", "request_id": "r-1"});
        let ignore = vec!["request_id".to_owned()];
        assert_eq!(
            canonical_arguments(Some(&call), &ignore),
            r#"{"status":"active"}"#
        );
        assert_ne!(
            cache_key("a", "m", "t", "", "{}"),
            cache_key("a", "m", "t", "p", "{}")
        );
    }
}
