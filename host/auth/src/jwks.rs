//! The authorization server's signing keys (a JWKS), from a file or a URL.
//!
//! OWNED BY THE JWT HELPER.
