//! Backends failing under the examples, as real processes: a private PostgreSQL cluster
//! stopped and started again under `axum_service` and `actix_service` (cached keys keep
//! working, unknown keys get 503 with `Retry-After`, nothing answers 500, and new keys
//! work once it is back); and a private Redis hung by `DEBUG SLEEP` under two instances
//! (every answer the `Local` policy's, each request's latency printed, and the shared
//! limits exact again once Redis answers).
//!
//! Each test starts its own servers (`initdb`/`pg_ctl`, `redis-server`) and ends them on
//! drop, a failing assertion included; the machine's shared servers are never touched.
//! Without the binaries a test skips, unless `KEYGATE_REQUIRE_SERVICES=1`, when that is a
//! failure. Build the examples first (`cargo build --examples --all-features`): `cargo
//! test` does not.
#![cfg(all(
    feature = "axum",
    feature = "actix",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]

#[path = "support/processes.rs"]
mod processes;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate::hash::Argon2Hasher;
use keygate::keygate_redis::redis;
use keygate::manage::KeyManager;
use keygate::{NewKey, RateLimit, SqlStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use processes::{example, free_port, required};

/// The timeout of every Redis call on the request path (`keygate_redis::DEFAULT_TIMEOUT`).
const BUDGET: Duration = keygate::keygate_redis::DEFAULT_TIMEOUT;

/// Skips (returns `None`) with `why`, or fails under `KEYGATE_REQUIRE_SERVICES=1`.
fn skip<T>(why: &str) -> Option<T> {
    assert!(!required(), "KEYGATE_REQUIRE_SERVICES=1 but {why}");
    println!("skipped: {why}");
    None
}

/// One running example, killed on drop.
struct Service {
    child: Child,
    addr: String,
}

impl Service {
    async fn start(example_name: &str, database_url: &str, redis_url: Option<&str>) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(example(example_name));
        command
            .env("KEYGATE_ADDR", &addr)
            .env("KEYGATE_DATABASE_URL", database_url)
            .env("KEYGATE_INSECURE_FAST_HASH", "1")
            .env("RUST_LOG", "error")
            .env_remove("KEYGATE_REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(redis_url) = redis_url {
            command.env("KEYGATE_REDIS_URL", redis_url);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {example_name}: {e}"));
        let started = Instant::now();
        while TcpStream::connect(&addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{example_name} did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Service { child, addr }
    }

    /// `GET /v1/whoami` with `key`: the status and the response head.
    async fn whoami(&self, key: &str) -> (u16, String) {
        http(&self.addr, key).await
    }

    /// SIGTERM, and the graceful exit.
    async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(exited.is_ok(), "no graceful exit within 30 s of SIGTERM");
    }
}

/// `GET /v1/whoami` over HTTP/1.1 with `Connection: close`: the status and the head.
async fn http(addr: &str, key: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /v1/whoami HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let head = response.split("\r\n\r\n").next().unwrap_or("").to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    (status, head)
}

fn has_retry_after(head: &str) -> bool {
    head.lines()
        .any(|l| l.to_ascii_lowercase().starts_with("retry-after:"))
}

/// Keys written straight into the store (cheap hashes).
async fn key_manager(database_url: &str) -> KeyManager {
    let store = SqlStore::connect(database_url).await.expect("connect");
    store.migrate().await.expect("migrate");
    KeyManager::new(store).hasher(Argon2Hasher::insecure_fast())
}

async fn new_key(keys: &KeyManager, name: &str, limits: &[RateLimit]) -> (String, String) {
    let created = keys
        .create(NewKey::new("acct_faults", name).rate_limits(limits.to_vec()))
        .await
        .expect("create a key");
    (
        created.record.key_id.as_str().to_string(),
        created.key.expose_secret().to_string(),
    )
}

/// A PostgreSQL cluster of the test's own (`initdb` in a temporary directory, `pg_ctl`
/// on a free port), stopped on drop, its directory removed.
struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

/// PostgreSQL's server binaries: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` with an `initdb`.
fn postgres_bin() -> Option<PathBuf> {
    let configured = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|dir| dir.join("initdb").exists());
    configured.or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|dir| dir.join("initdb").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl PrivatePostgres {
    /// `initdb` and a start; `None` (the test skips) without the binaries.
    fn start() -> Option<PrivatePostgres> {
        let Some(bin) = postgres_bin() else {
            return skip("no PostgreSQL server binaries (initdb, pg_ctl)");
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // initdb refuses to run as root: as root, the cluster is postgres'.
        if is_root() {
            let owned = std::process::Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status();
            if !owned.is_ok_and(|s| s.success()) {
                return skip("running as root, and no postgres user to run initdb as");
            }
        }
        let mut postgres = PrivatePostgres {
            bin,
            dir,
            port: free_port(),
            running: false,
        };
        let data = postgres.data();
        let init = postgres
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        postgres.pg_ctl_start();
        Some(postgres)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// One of the server binaries, as postgres when we are root.
    fn command(&self, name: &str) -> std::process::Command {
        let program = self.bin.join(name);
        if is_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        }
    }

    fn pg_ctl_start(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-w", "-t", "30", "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        assert!(
            output.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&output.stdout),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
        self.running = true;
    }

    /// Stops it at once, as a crash would (`-m immediate`).
    fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The key store stopped under both examples: each cached key still answers 200, a key
/// not in the cache 503 with `Retry-After`, none 500; once it is back, that key and a
/// key created since are admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_cached_keys_200_unknown_keys_503_and_back() {
    let Some(mut postgres) = PrivatePostgres::start() else {
        return;
    };
    let url = postgres.url();
    let keys = key_manager(&url).await;
    let (_, cached) = new_key(&keys, "cached", &[]).await;
    let (_, unknown) = new_key(&keys, "never seen", &[]).await;
    let instances = [
        Service::start("axum_service", &url, None).await,
        Service::start("actix_service", &url, None).await,
    ];
    for instance in &instances {
        assert_eq!(instance.whoami(&cached).await.0, 200, "warm");
    }

    postgres.stop();
    for (instance, name) in instances.iter().zip(["axum", "actix"]) {
        for i in 0..5 {
            let (status, _) = instance.whoami(&cached).await;
            assert_eq!(status, 200, "{name}: cached key, request {i}, store down");
        }
        let started = Instant::now();
        let (status, head) = instance.whoami(&unknown).await;
        println!(
            "{name}: a key not in the cache, store down: {status} after {:?}",
            started.elapsed()
        );
        assert_eq!(status, 503, "{name}: an unknown key with the store down");
        assert!(has_retry_after(&head), "{name}: 503 without Retry-After: {head}");
        assert_eq!(instance.whoami(&cached).await.0, 200, "{name}: cached, after");
    }

    postgres.pg_ctl_start();
    let again = key_manager(&url).await;
    let (_, fresh) = new_key(&again, "created after", &[]).await;
    let back = Instant::now();
    for (instance, name) in instances.iter().zip(["axum", "actix"]) {
        // The pool reconnects on a later request: until then the answer is still 503.
        loop {
            match instance.whoami(&fresh).await.0 {
                200 => break,
                503 => {}
                other => panic!("{name}: a new key, store back: {other}"),
            }
            assert!(
                back.elapsed() < Duration::from_secs(30),
                "{name}: a new key still refused 30 s after the store is back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(instance.whoami(&unknown).await.0, 200, "{name}: refused earlier");
        assert_eq!(instance.whoami(&cached).await.0, 200, "{name}: cached");
    }
    println!("store back: new keys admitted after {:?}", back.elapsed());
    for instance in instances {
        instance.terminate().await;
    }
}

/// A private `redis-server` keeping nothing on disk, with `DEBUG` allowed from loopback
/// (the test hangs it with `DEBUG SLEEP`). Killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> Option<PrivateRedis> {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut redis = match child {
            Ok(child) => PrivateRedis { child, port },
            Err(e) => return skip(&format!("redis-server cannot start: {e}")),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return skip(&format!("redis-server exited: {status}"));
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn at(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Whether Redis holds a counter of `key_id` (its hash tag), i.e. a call of some
/// instance with that key reached Redis.
async fn counted_in_redis(connection: &mut redis::aio::MultiplexedConnection, key_id: &str) -> bool {
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{key_id}}}:rl:*"))
        .query_async(connection)
        .await
        .expect("KEYS");
    !found.is_empty()
}

/// Redis hung for 3 s (`DEBUG SLEEP 3`) under two instances: every request answered as
/// the `Local` policy does (200, none 500), each within a generous bound (its latency
/// printed against the budget + 20 ms); within 5 s of Redis answering again, both
/// instances count in Redis again and a key limited to 10/min gets exactly 10 of 30.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_costs_the_budget_and_limits_are_exact_once_it_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let redis_url = redis.url();
    let keys = key_manager(&database_url).await;
    let busy = [RateLimit::per_minute(100_000)];
    let (_, warm) = new_key(&keys, "warm", &busy).await;
    let probes = [
        new_key(&keys, "probe 0", &busy).await,
        new_key(&keys, "probe 1", &busy).await,
    ];
    let (_, limited) = new_key(&keys, "limited", &[RateLimit::per_minute(10)]).await;
    let instances = Arc::new([
        Service::start("axum_service", &database_url, Some(&redis_url)).await,
        Service::start("actix_service", &database_url, Some(&redis_url)).await,
    ]);
    for instance in instances.iter() {
        assert_eq!(instance.whoami(&warm).await.0, 200, "warm");
    }

    let mut sleep = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "DEBUG", "SLEEP", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli");
    let hung = Arc::new(AtomicBool::new(true));
    let mut load = Vec::new();
    for i in 0..2 {
        let (instances, hung, warm) = (Arc::clone(&instances), Arc::clone(&hung), warm.clone());
        load.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while hung.load(Ordering::Acquire) {
                let started = Instant::now();
                let (status, _) = instances[i].whoami(&warm).await;
                answers.push((status, started.elapsed()));
            }
            answers
        }));
    }
    let slept = sleep.wait().await.expect("redis-cli DEBUG SLEEP");
    let ended = Instant::now();
    hung.store(false, Ordering::Release);
    assert!(slept.success(), "DEBUG SLEEP failed: {slept}");
    let mut answers = Vec::new();
    for task in load {
        answers.extend(task.await.expect("load task"));
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (status, _) in &answers {
        *statuses.entry(*status).or_default() += 1;
    }
    let mut took: Vec<Duration> = answers.iter().map(|(_, t)| *t).collect();
    took.sort_unstable();
    let max = at(&took, 1.0);
    println!(
        "Redis hung 3 s: {} requests over both instances, statuses {statuses:?}, p50 {:?}, p99 {:?}, max {max:?}; \
         max within the budget + 20 ms ({:?}): {}",
        took.len(),
        at(&took, 0.50),
        at(&took, 0.99),
        BUDGET + Duration::from_millis(20),
        max <= BUDGET + Duration::from_millis(20)
    );
    assert_eq!(
        statuses.get(&200),
        Some(&answers.len()),
        "every request answered by the Local policy: {statuses:?}"
    );
    assert!(max < Duration::from_secs(1), "a request took {max:?}");

    // Redis back: each instance's breaker closes on its first answered call, which
    // counts a probe key's request in Redis.
    let client = redis::Client::open(redis_url.as_str()).expect("redis url");
    let mut connection = client.get_multiplexed_async_connection().await.expect("redis");
    let mut back = [false, false];
    while back != [true, true] {
        for (i, (key_id, key)) in probes.iter().enumerate() {
            if !back[i] {
                assert_eq!(instances[i].whoami(key).await.0, 200, "probe {i}");
                back[i] = counted_in_redis(&mut connection, key_id).await;
            }
        }
        assert!(
            ended.elapsed() < Duration::from_secs(5),
            "an instance still not counting in Redis 5 s after it answers again: {back:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = ended.elapsed();
    let mut admitted = 0;
    for i in 0..30 {
        match instances[i % 2].whoami(&limited).await.0 {
            200 => admitted += 1,
            429 => {}
            other => panic!("request {i}: {other}"),
        }
    }
    println!(
        "Redis back: both instances counting in Redis {closed:?} after the sleep, 30 requests counted by {:?}",
        ended.elapsed()
    );
    assert_eq!(admitted, 10, "a limit of 10/min across both instances");
    match Arc::try_unwrap(instances) {
        Ok(instances) => {
            for instance in instances {
                instance.terminate().await;
            }
        }
        Err(_) => panic!("the load tasks still hold the instances"),
    }
    drop(redis);
}
