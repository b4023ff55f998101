//! Conformance suites: one test suite per trait, run unchanged against every backend.
//! A new backend is done when it passes them. Enabled by the `conformance` feature.

pub mod limiter;
pub mod store;
