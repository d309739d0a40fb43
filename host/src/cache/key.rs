//! Cache keys: canonical JSON for arguments (keys sorted, no whitespace, numbers
//! normalised) and the key layout server / method / name / partition / arguments.

use serde_json::{Map, Value};

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
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() < 9.0e15 => {
                out.push_str(&(float as i64).to_string());
            }
            _ => out.push_str(&number.to_string()),
        },
        other => out.push_str(&other.to_string()),
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
