//! Rate-limiter conformance suite (being written).
