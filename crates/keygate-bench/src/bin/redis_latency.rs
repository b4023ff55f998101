//! What Redis rate limits add to a cached key's request: `redis_latency [redis url]
//! [calls]` (defaults `redis://127.0.0.1:6379` and 20 000) admits one cached key with
//! `Gate::admit`, sequentially, first with the in-memory limiter and then with
//! `RedisRateLimiter`, the same windows in both (two defaults and a service window,
//! as the `policy` mode), and prints p50, p99 and max of each and their difference:
//! budget (c) of `docs/ARCHITECTURE.md` (p50 <= 100 µs, p99 <= 500 µs added). It also
//! reads `INFO commandstats` before and after, for the Redis CPU one check costs
//! (`cmdstat_evalsha`) and so the checks per second one Redis core serves.
//!
//! Each run uses a new key, so its counters (`{<key id>}:rl:…`, expiring after their
//! window) never meet another's on a shared Redis. Build it in release:
//! `cargo build --release -p keygate-bench --bin redis_latency`.

use std::error::Error;
use std::time::{Duration, Instant};

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use keygate_core::hash::Argon2Hasher;
use keygate_core::rate::{MemoryRateLimiter, RateLimiter};
use keygate_core::{Gate, MemoryStore, NewKey, RateLimit, RoutePolicy};
use keygate_redis::redis;
use keygate_redis::RedisRateLimiter;

/// Calls before the measured ones: connections made, caches and the script loaded.
const WARM_UP: usize = 2_000;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let calls: usize = args.next().unwrap_or_else(|| "20000".into()).parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(&url, calls))
}

async fn run(url: &str, calls: usize) -> Result<(), Box<dyn Error>> {
    let memory = measure(MemoryRateLimiter::new(), calls).await?;
    report("in-memory limiter", &memory);

    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let limiter = RedisRateLimiter::connect(url).await?;
    let before = evalsha_stats(&mut connection).await?;
    let redis = measure(limiter, calls).await?;
    let after = evalsha_stats(&mut connection).await?;
    report("Redis limiter", &redis);

    let added = |q: f64| {
        let (r, m) = (at(&redis, q), at(&memory, q));
        r.saturating_sub(m)
    };
    println!(
        "added by Redis: p50 {:?} (budget 100 µs), p99 {:?} (budget 500 µs), max {:?}",
        added(0.50),
        added(0.99),
        added(1.0)
    );
    let (calls_delta, usec_delta) = (after.0 - before.0, after.1 - before.1);
    if calls_delta > 0.0 {
        let per_call = usec_delta / calls_delta;
        println!(
            "EVALSHA during the run: {calls_delta} calls, {per_call:.2} µs of Redis CPU each: \
             {:.0} checks/s per Redis core",
            1e6 / per_call
        );
    }
    println!(
        "EVALSHA since Redis started (usec_per_call): {:.2} µs: {:.0} checks/s per Redis core",
        after.2,
        1e6 / after.2
    );
    Ok(())
}

/// The latency of each of `calls` sequential admissions of one cached key through a
/// gate limited by `limiter`, sorted.
async fn measure(limiter: impl RateLimiter, calls: usize) -> Result<Vec<Duration>, Box<dyn Error>> {
    // Limits that never refuse, and that divide their periods (exact in the script).
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .rate_limiter(
            limiter,
            [RateLimit::per_minute(1_000_000), RateLimit::per_hour(10_000_000)],
        )
        .build();
    let created = gate
        .keys()
        .create(NewKey::new("acct_bench", "redis latency").scopes(["read"]))
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        format!("Bearer {}", created.key.expose_secret()).parse()?,
    );
    let policy = RoutePolicy::new()
        .require(["read"])
        .limits_for("ping", [RateLimit::per_minute(1_000_000)]);
    let mut took = Vec::with_capacity(calls);
    for i in 0..WARM_UP + calls {
        let started = Instant::now();
        let admitted = gate.admit(&headers, &policy).await;
        let elapsed = started.elapsed();
        if let Err(rejection) = admitted {
            return Err(format!("call {i} refused: {}", rejection.status()).into());
        }
        if i >= WARM_UP {
            took.push(elapsed);
        }
    }
    took.sort_unstable();
    Ok(took)
}

fn at(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(name: &str, sorted: &[Duration]) {
    println!(
        "{name}: {} calls, p50 {:?}, p99 {:?}, max {:?}",
        sorted.len(),
        at(sorted, 0.50),
        at(sorted, 0.99),
        at(sorted, 1.0)
    );
}

/// `cmdstat_evalsha`'s calls, usec and usec_per_call (zeros before the first call).
async fn evalsha_stats(
    connection: &mut redis::aio::MultiplexedConnection,
) -> Result<(f64, f64, f64), Box<dyn Error>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await?;
    let Some(line) = info.lines().find(|l| l.starts_with("cmdstat_evalsha:")) else {
        return Ok((0.0, 0.0, 0.0));
    };
    let field = |name: &str| -> f64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    Ok((field("calls"), field("usec"), field("usec_per_call")))
}
