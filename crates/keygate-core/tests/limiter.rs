//! The rate-limiter conformance suite against [`MemoryRateLimiter`], one test per case.
//! Needs the `conformance` feature: `cargo test -p keygate-core --features conformance --test limiter`.

use keygate_core::rate::MemoryRateLimiter;

keygate_core::limiter_tests!(|| async { MemoryRateLimiter::new() });
