//! Replay: a trace against one policy chain in virtual time, with a simulated cache.
