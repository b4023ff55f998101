//! The rate-limiter conformance suite, run against [`MemoryRateLimiter`]. Needs the
//! `conformance` feature: `cargo test -p keygate-core --features conformance --test limiter`.

use keygate_core::conformance::limiter;
use keygate_core::rate::MemoryRateLimiter;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limiter_passes_the_conformance_suite() {
    limiter::run_all(|| async { MemoryRateLimiter::new() }).await;
}
