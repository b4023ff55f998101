//! Two instances, one PostgreSQL, one Redis, as the README's "Running many instances"
//! starts them: `axum_service` and `actix_service` as real processes on a database of
//! their own, called over TCP. Limits and spend are shared exactly; a revocation by the
//! `keygate` CLI in another process reaches both within half a second, through Redis
//! (with LISTEN/NOTIFY, and alone on one SQLite file) and through PostgreSQL's
//! LISTEN/NOTIFY alone.
//!
//! Needs `KEYGATE_TEST_POSTGRES_URL` and `KEYGATE_TEST_REDIS_URL` (skipped without them,
//! unless `KEYGATE_REQUIRE_SERVICES=1`, when that is a failure).
#![cfg(all(
    feature = "axum",
    feature = "actix",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]

#[path = "support/processes.rs"]
mod processes;

use std::process::Stdio;
use std::time::{Duration, Instant};

use keygate::hash::Argon2Hasher;
use keygate::keygate_sqlx::sqlx::{self, PgPool};
use keygate::manage::KeyManager;
use keygate::{KeyStore, NewKey, RateLimit, SqlStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use processes::{free_port, required};

/// The most a revocation may take to reach every instance (issue 12's acceptance).
const REVOCATION_BUDGET: Duration = Duration::from_millis(500);

/// `name`'s value, or `None` (the test skips) when unset.
fn service_url(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(!required(), "KEYGATE_REQUIRE_SERVICES=1 but {name} is not set");
            println!("skipped: set {name} to run the many-instances tests");
            None
        }
    }
}

/// A database of its own on the server of `KEYGATE_TEST_POSTGRES_URL`, dropped after.
struct ScratchDatabase {
    admin: PgPool,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(base: &str) -> ScratchDatabase {
        let admin = PgPool::connect(base)
            .await
            .expect("connect to KEYGATE_TEST_POSTGRES_URL");
        let name = format!("keygate_many_{:016x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create scratch database");
        let (server, _) = base.rsplit_once('/').expect("a database in the URL");
        let url = format!("{server}/{name}");
        ScratchDatabase { admin, name, url }
    }

    async fn drop(self) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await;
    }
}

/// One running example.
struct Service {
    child: Child,
    addr: String,
}

impl Service {
    /// Starts `example` on `database_url` (and Redis, when given); waits until it listens.
    async fn start(example: &str, database_url: &str, redis_url: Option<&str>) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(processes::example(example));
        command
            .env("KEYGATE_ADDR", &addr)
            .env("KEYGATE_DATABASE_URL", database_url)
            .env("KEYGATE_INSECURE_FAST_HASH", "1")
            .env("RUST_LOG", "warn")
            .env_remove("KEYGATE_REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(redis_url) = redis_url {
            command.env("KEYGATE_REDIS_URL", redis_url);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("start {example}: {e}"));
        let started = Instant::now();
        while TcpStream::connect(&addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{example} did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Service { child, addr }
    }

    async fn status(&self, method: &str, path: &str, key: &str, body: Option<&str>) -> u16 {
        http(&self.addr, method, path, key, body).await
    }

    async fn whoami(&self, key: &str) -> u16 {
        self.status("GET", "/v1/whoami", key, None).await
    }

    async fn chat(&self, key: &str) -> u16 {
        let body = r#"{"model":"kova-chat-1","messages":[{"role":"user","content":"hi"}]}"#;
        self.status("POST", "/v1/chat/completions", key, Some(body)).await
    }

    /// SIGTERM, as a process manager stops a service; waits for the graceful exit (the
    /// last usage and spend batches written).
    async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(exited.is_ok(), "no graceful exit within 30 s of SIGTERM");
    }
}

/// One HTTP/1.1 request with `Connection: close`; its status.
async fn http(addr: &str, method: &str, path: &str, key: &str, body: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n"
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line")
}

/// Keys written straight into the scratch database (cheap hashes; the services verify
/// whatever parameters a stored hash names).
async fn keys(database_url: &str) -> KeyManager {
    let store = SqlStore::connect(database_url).await.expect("connect");
    store.migrate().await.expect("migrate");
    KeyManager::new(store).hasher(Argon2Hasher::insecure_fast())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_and_one_redis_share_limits_and_spend_exactly() {
    let (Some(postgres), Some(redis_url)) = (
        service_url("KEYGATE_TEST_POSTGRES_URL"),
        service_url("KEYGATE_TEST_REDIS_URL"),
    ) else {
        return;
    };
    let database = ScratchDatabase::create(&postgres).await;
    let keys = keys(&database.url).await;
    let limited = keys
        .create(NewKey::new("acct_many", "limited").rate_limits([RateLimit::per_minute(10)]))
        .await
        .unwrap();
    let capped = keys
        .create(
            NewKey::new("acct_many", "capped")
                .scopes(["write"])
                .spend_cap(3000),
        )
        .await
        .unwrap();
    let (limited, capped_id, capped) = (
        limited.key.expose_secret().to_string(),
        capped.record.key_id.clone(),
        capped.key.expose_secret().to_string(),
    );

    let start = || async {
        [
            Service::start("axum_service", &database.url, Some(&redis_url)).await,
            Service::start("actix_service", &database.url, Some(&redis_url)).await,
        ]
    };
    let instances = start().await;

    // 30 requests alternated between the instances: exactly 10 admitted.
    let mut admitted = 0;
    for i in 0..30 {
        match instances[i % 2].whoami(&limited).await {
            200 => admitted += 1,
            429 => {}
            other => panic!("request {i}: {other}"),
        }
    }
    assert_eq!(admitted, 10, "a limit of 10/min across both instances");

    // 3000 micro-cents at 1000 a completion: exactly 3 across both, then 402.
    let mut completions = 0;
    for i in 0..8 {
        match instances[i % 2].chat(&capped).await {
            200 => completions += 1,
            402 => {}
            other => panic!("completion {i}: {other}"),
        }
    }
    assert_eq!(completions, 3, "a cap of 3000 micro-cents across both instances");

    // Both restart (their charges written to PostgreSQL at shutdown): still 402, and
    // still 402 once Redis has forgotten the total (reseeded from PostgreSQL).
    for instance in instances {
        instance.terminate().await;
    }
    let instances = start().await;
    assert_eq!(instances[0].chat(&capped).await, 402);
    assert_eq!(instances[1].chat(&capped).await, 402);
    let month = keygate::spend::Month::of(chrono::Utc::now());
    let redis = keygate::keygate_redis::redis::Client::open(redis_url.as_str()).unwrap();
    let mut connection = redis.get_multiplexed_async_connection().await.unwrap();
    let forgotten: i64 = keygate::keygate_redis::redis::cmd("DEL")
        .arg(format!("{{{}}}:spend:{month}", capped_id.as_str()))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(forgotten, 1, "the shared total was in Redis");
    assert_eq!(instances[1].chat(&capped).await, 402, "reseeded from PostgreSQL");
    assert_eq!(instances[0].chat(&capped).await, 402);
    let store = SqlStore::connect(&database.url).await.unwrap();
    assert_eq!(
        store.spent(&capped_id, month).await.unwrap(),
        3000,
        "the record: exactly 3 charges"
    );

    for instance in instances {
        instance.terminate().await;
    }
    database.drop().await;
}

/// Waits until both instances listen: two LISTEN connections on the scratch database
/// (PostgreSQL) and, with Redis, at least two subscribers of keygate's channel.
async fn listening(database: Option<&ScratchDatabase>, redis_url: Option<&str>) {
    let started = Instant::now();
    loop {
        let listeners: i64 = match database {
            // SQLite pushes nothing.
            None => 2,
            Some(database) => sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
            )
            .bind(&database.name)
            .fetch_one(&database.admin)
            .await
            .expect("pg_stat_activity"),
        };
        let subscribers = match redis_url {
            None => 2,
            Some(url) => {
                use keygate::keygate_redis::{redis, DEFAULT_CHANNEL};
                let client = redis::Client::open(url).expect("redis url");
                let mut connection = client.get_multiplexed_async_connection().await.expect("redis");
                let (_, n): (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(DEFAULT_CHANNEL)
                    .query_async(&mut connection)
                    .await
                    .expect("PUBSUB NUMSUB");
                n
            }
        };
        if listeners >= 2 && subscribers >= 2 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the instances do not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 20 keys warmed on both instances, each revoked by `keygate keys revoke` in another
/// process: how long until each instance refuses it, measured from the CLI's exit. On
/// PostgreSQL (a scratch database), or on one SQLite file when `postgres` is false, so
/// that Redis is the only push.
async fn revocations_reach_every_instance(postgres: bool, redis_url: Option<&str>) {
    let cli = processes::binary("keygate");
    if !cli.exists() {
        assert!(!required(), "the keygate CLI is not built ({})", cli.display());
        println!("skipped: the keygate CLI is not built ({})", cli.display());
        return;
    }
    let sqlite_dir = tempfile::tempdir().expect("temp dir");
    let database = match postgres {
        true => {
            let Some(base) = service_url("KEYGATE_TEST_POSTGRES_URL") else {
                return;
            };
            Some(ScratchDatabase::create(&base).await)
        }
        false => None,
    };
    let database_url = match &database {
        Some(database) => database.url.clone(),
        None => format!("sqlite://{}", sqlite_dir.path().join("keygate.db").display()),
    };
    let keys = keys(&database_url).await;
    let mut created = Vec::new();
    for i in 0..20 {
        let key = keys
            .create(NewKey::new("acct_many", format!("key {i}")))
            .await
            .unwrap();
        created.push((
            key.record.key_id.as_str().to_string(),
            key.key.expose_secret().to_string(),
        ));
    }
    let instances = [
        Service::start("axum_service", &database_url, redis_url).await,
        Service::start("actix_service", &database_url, redis_url).await,
    ];
    for (_, key) in &created {
        for instance in &instances {
            assert_eq!(instance.whoami(key).await, 200, "warm");
        }
    }
    listening(database.as_ref(), redis_url).await;

    let mut took = Vec::new();
    for (key_id, key) in &created {
        let mut revoke = std::process::Command::new(&cli);
        revoke
            .args(["--database-url", &database_url, "keys", "revoke", key_id])
            .env_remove("KEYGATE_REDIS_URL");
        if let Some(redis_url) = redis_url {
            revoke.args(["--redis-url", redis_url]);
        }
        let output = revoke.output().expect("run keygate");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let revoked = Instant::now();
        for instance in &instances {
            while instance.whoami(key).await == 200 {
                assert!(
                    revoked.elapsed() < Duration::from_secs(10),
                    "still admitted after 10 s"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            took.push(revoked.elapsed());
        }
    }
    took.sort_unstable();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    let path = match (postgres, redis_url.is_some()) {
        (true, true) => "PostgreSQL, Redis and LISTEN/NOTIFY",
        (true, false) => "PostgreSQL, LISTEN/NOTIFY alone",
        (false, _) => "SQLite, Redis alone",
    };
    println!(
        "revocation by the CLI refused by every instance ({path}, {} refusals): p50 {:?}, p99 {:?}, max {:?}",
        took.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
    for instance in instances {
        instance.terminate().await;
    }
    if let Some(database) = database {
        database.drop().await;
    }
    assert!(at(1.0) <= REVOCATION_BUDGET, "a revocation took {:?}", at(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_both_instances_within_half_a_second_through_redis() {
    let Some(redis_url) = service_url("KEYGATE_TEST_REDIS_URL") else {
        return;
    };
    revocations_reach_every_instance(true, Some(&redis_url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_both_instances_within_half_a_second_through_listen_notify() {
    revocations_reach_every_instance(true, None).await;
}

/// On SQLite, which pushes nothing, the Redis broadcast is the only push: the feed's
/// poll is a second, twice the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_both_instances_within_half_a_second_through_redis_alone() {
    let Some(redis_url) = service_url("KEYGATE_TEST_REDIS_URL") else {
        return;
    };
    revocations_reach_every_instance(false, Some(&redis_url)).await;
}

/// A private `redis-server`, keeping nothing on disk: the fault test kills it, never the
/// shared one. Killed on drop, a failing assertion included.
struct PrivateRedis(std::process::Child);

impl PrivateRedis {
    /// Starts one on `port`; `None` (the test skips) without the binary.
    fn start(port: u16) -> Option<PrivateRedis> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let redis = match child {
            Ok(child) => PrivateRedis(child),
            Err(e) => {
                assert!(
                    !required(),
                    "KEYGATE_REQUIRE_SERVICES=1 but redis-server cannot start: {e}"
                );
                println!("skipped: redis-server cannot start ({e})");
                return None;
            }
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Redis killed under load and started again (empty): under the examples' `Local`
/// policy every request is answered as if Redis were there (no 500, no 503), and after
/// both instances stop, the record holds exactly the cost of every completion served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_costs_no_error_and_no_charge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let port = free_port();
    let Some(redis) = PrivateRedis::start(port) else {
        return;
    };
    let mut redis = Some(redis);
    let redis_url = format!("redis://127.0.0.1:{port}");
    let keys = keys(&database_url).await;
    let created = keys
        .create(
            NewKey::new("acct_many", "busy")
                .scopes(["write"])
                .spend_cap(1_000_000),
        )
        .await
        .unwrap();
    let (key_id, key) = (
        created.record.key_id.clone(),
        created.key.expose_secret().to_string(),
    );
    let instances = [
        Service::start("axum_service", &database_url, Some(&redis_url)).await,
        Service::start("actix_service", &database_url, Some(&redis_url)).await,
    ];

    let mut served = 0u64;
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..45 {
        if i == 15 {
            redis = None; // killed
        }
        if i == 30 {
            redis = Some(PrivateRedis::start(port).expect("redis-server restarts"));
        }
        let status = instances[i % 2].chat(&key).await;
        *statuses.entry(status).or_default() += 1;
        if status == 200 {
            served += 1;
        }
    }
    println!("statuses with Redis killed and started again: {statuses:?}");
    assert_eq!(
        statuses.get(&200),
        Some(&45),
        "every request served: {statuses:?}"
    );

    for instance in instances {
        instance.terminate().await;
    }
    drop(redis);
    let store = SqlStore::connect(&database_url).await.unwrap();
    let month = keygate::spend::Month::of(chrono::Utc::now());
    assert_eq!(
        store.spent(&key_id, month).await.unwrap(),
        served * 1000,
        "the record: every completion served, charged once"
    );
}
