//! Client log levels: processes are shared by many clients, so the bridge applies each
//! client's level itself (from `logging/setLevel` on a session, or the per-request
//! `_meta` level in 2026-07-28) to the `notifications/message` lines it relays.

use serde_json::Value;

/// The spec's levels (syslog's), least severe first.
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The rank of a level name, or `None` for a name the spec does not define.
pub(crate) fn rank(level: &str) -> Option<u8> {
    LEVELS
        .iter()
        .position(|known| *known == level)
        .map(|index| index as u8)
}

/// The least severe level a client wants; everything passes until it says otherwise.
pub(crate) const ALL_LEVELS: u8 = 0;

/// Whether a `notifications/message` is at or above `minimum`. Lines without a known
/// level pass, so nothing a server meant as important is lost to a typo.
pub(crate) fn passes(notification: &Value, minimum: u8) -> bool {
    notification
        .get("params")
        .and_then(|params| params.get("level"))
        .and_then(Value::as_str)
        .and_then(rank)
        .is_none_or(|level| level >= minimum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_below_the_minimum() {
        let info = json!({"method":"notifications/message","params":{"level":"info","data":"x"}});
        let error = json!({"method":"notifications/message","params":{"level":"error","data":"x"}});
        let warning = rank("warning").unwrap_or(u8::MAX);
        assert!(!passes(&info, warning));
        assert!(passes(&error, warning));
        assert!(passes(&info, ALL_LEVELS));
        assert_eq!(rank("verbose"), None);
    }
}
