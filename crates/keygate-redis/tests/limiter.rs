//! `RedisRateLimiter`: the rate-limiter conformance suite, unchanged, one test per case.
//!
//! Set `KEYGATE_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`) to run it; without it
//! the cases are skipped, unless `KEYGATE_REQUIRE_SERVICES=1`, when that is a failure.
//! The suite's key ids carry random suffixes, so a shared Redis is fine. Its cases move
//! time by hand, so the limiter uses the caller's time (`with_caller_time`) here;
//! `redis_time.rs` tests Redis' own.

mod common;

use keygate_core::conformance::Case;
use keygate_redis::RedisRateLimiter;

/// Each case on a limiter of its own, with the suite's time; skipped without a server.
async fn on_redis(case: Case<RedisRateLimiter>) {
    let Some(url) = common::redis_url() else {
        return;
    };
    let limiter = RedisRateLimiter::connect(&url)
        .await
        .expect("the test Redis answers")
        // The concurrency case queues 64 calls on one connection of a shared machine.
        .timeout(std::time::Duration::from_secs(5))
        .with_caller_time();
    case(limiter).await;
}

keygate_core::limiter_tests!(harness = on_redis);
