//! API keys and the shared token: credentials compared by their SHA-256 digest in
//! constant time.
