//! A string that must never be printed: tokens and environment values, redacted in Debug, Display and errors.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// A secret value such as a bearer token or a server's environment variable.
///
/// `Debug` and `Display` both print `<redacted>`, so a secret cannot leak through logging a
/// configuration; code that needs the value calls [`Secret::expose`] on purpose. Equality
/// compares the values in ordinary (not constant) time, so request handlers comparing a client's
/// token should use a constant-time comparison on `expose()` instead of `==`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// What a secret prints as, wherever it is printed.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    /// Wraps a value; the value is only reachable again through [`Secret::expose`].
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself, for the code that must use it (spawning, comparing a token).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// A secret as read from a file, before `${VAR}` expansion.
///
/// It accepts only strings, and its type errors never quote the value: serde's usual message for
/// `API_KEY = 12345` would be "invalid type: integer `12345`", which would print the secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RawSecret(pub String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any` rather than `deserialize_string`: serde_json answers a string request
        // holding a number with its own error, which quotes the number.
        deserializer.deserialize_any(SecretVisitor).map(RawSecret)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    /// The error for any value that is not a string; it names the kind, never the value.
    fn wrong<E: de::Error>(kind: &str) -> E {
        E::custom(format!(
            "invalid type: {kind}, expected a string (the value is not shown because it may be secret)"
        ))
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(Self::wrong("boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(Self::wrong("integer"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(Self::wrong("integer"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(Self::wrong("float"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(Self::wrong("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Err(Self::wrong("null"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(Self::wrong("array"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<String, A::Error> {
        // serde_json's `arbitrary_precision` form of a float or a huge integer.
        match mcp_bridge_policy::units::number_in_map(map) {
            Some(_) => Err(Self::wrong("number")),
            None => Err(Self::wrong("table")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("s3cr3t-value");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(secret.expose(), "s3cr3t-value");
        assert_eq!(
            format!("{:?}", RawSecret("s3cr3t-value".into())),
            "<redacted>"
        );
    }

    #[test]
    fn type_errors_do_not_quote_the_value() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[allow(dead_code, reason = "only the error matters here")]
            s: RawSecret,
        }
        for text in [
            "s = 987654321",
            "s = 98765.4321",
            "s = [987654321]",
            "s = { a = 987654321 }",
        ] {
            let error = toml::from_str::<T>(text)
                .err()
                .map(|e| e.message().to_owned());
            let error = error.unwrap_or_default();
            assert!(error.contains("invalid type"), "{error}");
            assert!(
                !error.contains("987654321") && !error.contains("98765"),
                "{error}"
            );
        }
        for number in ["987654321", "9876.54321", "98765432109876543210987"] {
            let error = serde_json::from_str::<RawSecret>(number)
                .err()
                .map(|e| e.to_string());
            let error = error.unwrap_or_default();
            assert!(
                error.contains("invalid type") && !error.contains("98765"),
                "{error}"
            );
            assert!(!error.contains("table"), "{error}");
        }
    }
}
