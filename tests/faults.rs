//! Backends failing under the examples, as real processes: a private PostgreSQL cluster
//! stopped and started again under `axum_service` and `actix_service` (cached keys keep
//! working, unknown keys get 503 with `Retry-After`, nothing answers 500, and new keys
//! work once it is back); the same cluster hung behind a proxy that stops forwarding
//! (a key not in the cache gets its 503 within the store's budget, instead of never);
//! and a private Redis hung by `DEBUG SLEEP` under two instances
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

/// The timeout of every Redis and key store call on the request path
/// (`keygate::backend::DEFAULT_TIMEOUT`).
const BUDGET: Duration = keygate::backend::DEFAULT_TIMEOUT;

/// Longer than any answer may take: a request still unanswered then is hung, and fails
/// the test (this detects a hang; the latencies themselves are printed, not asserted).
const HUNG: Duration = Duration::from_secs(10);

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

    /// [`whoami`](Self::whoami), failing the test if no answer comes within [`HUNG`]:
    /// the status, the head and how long it took.
    async fn timed_whoami(&self, key: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let (status, head) = tokio::time::timeout(HUNG, self.whoami(key))
            .await
            .unwrap_or_else(|_| panic!("no answer within {HUNG:?}: the request hangs"));
        (status, head, started.elapsed())
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

/// The key store stopped under both examples: each cached key still answers 200, each
/// key not in the cache 503 with `Retry-After` (latencies printed), none 500, none
/// hangs; once it is back, those keys and a key created since are admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_cached_keys_200_unknown_keys_503_and_back() {
    let Some(mut postgres) = PrivatePostgres::start() else {
        return;
    };
    let url = postgres.url();
    let keys = key_manager(&url).await;
    let scenario = Scenario::warm(&url, &keys).await;
    postgres.stop();
    scenario.store_down("stopped").await;
    postgres.pg_ctl_start();
    // The pool reconnects on a later request: until then the answer is still 503.
    scenario.store_back(&key_manager(&url).await).await;
}

/// Both examples on the store at `url`, with a key each has cached and keys neither has
/// seen (created with `keys`).
struct Scenario {
    instances: [Service; 2],
    cached: String,
    unknown: Vec<String>,
}

impl Scenario {
    async fn warm(url: &str, keys: &KeyManager) -> Scenario {
        let (_, cached) = new_key(keys, "cached", &[]).await;
        let unknown = unknown_keys(keys).await;
        let instances = [
            Service::start("axum_service", url, None).await,
            Service::start("actix_service", url, None).await,
        ];
        // A fresh instance's first read may find the pool still connecting, on a loaded
        // machine longer than the budget: 503, then 200 once connected.
        let started = Instant::now();
        for (instance, name) in instances.iter().zip(["axum", "actix"]) {
            admitted_again(instance, name, &cached, started).await;
        }
        Scenario {
            instances,
            cached,
            unknown,
        }
    }

    /// What each instance answers while the store is down (`how`).
    async fn store_down(&self, how: &str) {
        for (instance, name) in self.instances.iter().zip(["axum", "actix"]) {
            store_down_answers(instance, name, &self.cached, &self.unknown, how).await;
        }
    }

    /// The store is back: a key created since (with `keys`) and the keys refused meanwhile
    /// are admitted by each instance within 30 s (a read that still times out, on a
    /// loaded machine, is answered 503 and retried), and the cached one; then both
    /// instances exit gracefully.
    async fn store_back(self, keys: &KeyManager) {
        let (_, fresh) = new_key(keys, "created after", &[]).await;
        let back = Instant::now();
        for (instance, name) in self.instances.iter().zip(["axum", "actix"]) {
            admitted_again(instance, name, &fresh, back).await;
            for key in &self.unknown {
                admitted_again(instance, name, key, back).await;
            }
            assert_eq!(instance.whoami(&self.cached).await.0, 200, "{name}: cached");
        }
        println!("store back: new keys admitted after {:?}", back.elapsed());
        for instance in self.instances {
            instance.terminate().await;
        }
    }
}

/// Keys that no instance has seen yet: one more than the failures in a row that open the
/// store's breaker.
async fn unknown_keys(keys: &KeyManager) -> Vec<String> {
    let mut unknown = Vec::new();
    for i in 0..=keygate::backend::THRESHOLD {
        unknown.push(new_key(keys, &format!("never seen {i}"), &[]).await.1);
    }
    unknown
}

/// What an instance answers while its store is down (`how`: stopped, hung): the cached
/// key 200 every time, each key not in the cache 503 with `Retry-After`, and no request
/// hangs. Each latency is printed beside the budget: the first keys not in the cache
/// cost the store's timeout at most; the last, once the breaker has opened, nothing.
async fn store_down_answers(instance: &Service, name: &str, cached: &str, unknown: &[String], how: &str) {
    for i in 0..5 {
        let (status, _, took) = instance.timed_whoami(cached).await;
        assert_eq!(status, 200, "{name}: cached key, request {i}, store {how}");
        println!("{name}: the cached key, store {how}: {status} after {took:?}");
    }
    for (i, key) in unknown.iter().enumerate() {
        let (status, head, took) = instance.timed_whoami(key).await;
        println!(
            "{name}: key {i} not in the cache, store {how}: {status} after {took:?} \
             (within the budget + 20 ms, {:?}: {})",
            BUDGET + Duration::from_millis(20),
            took <= BUDGET + Duration::from_millis(20)
        );
        assert_eq!(status, 503, "{name}: a key not in the cache, store {how}");
        assert!(has_retry_after(&head), "{name}: 503 without Retry-After: {head}");
    }
    assert_eq!(instance.whoami(cached).await.0, 200, "{name}: cached, after");
}

/// Until `key` is admitted by `instance` (503 meanwhile, while the pool connects or the
/// breaker waits for its probe), at most 30 s after `since`.
async fn admitted_again(instance: &Service, name: &str, key: &str, since: Instant) {
    loop {
        match instance.whoami(key).await.0 {
            200 => return,
            503 => {}
            other => panic!("{name}: store back: {other}"),
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{name}: a key still refused 30 s after the store is back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP proxy to a local port that can be hung: while it is, bytes are read but not
/// passed on, in either direction, and new connections are accepted but not served, as
/// by a server that stopped answering without closing anything. Aborted on drop.
struct Proxy {
    port: u16,
    hung: Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let hung = Arc::new(tokio::sync::watch::channel(false).0);
        let forwarding = Arc::clone(&hung);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, forwarding.subscribe()));
                tokio::spawn(pump(server_read, client_write, forwarding.subscribe()));
            }
        });
        Proxy { port, hung, task }
    }

    fn hang(&self, hung: bool) {
        self.hung.send_replace(hung);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding what it read while the proxy is hung.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hung: tokio::sync::watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if hung.wait_for(|hung| !*hung).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The key store hung under both examples (a proxy in front of a private cluster stops
/// forwarding: every connection stays open and nothing answers): cached keys 200, each
/// key not in the cache 503 with `Retry-After` within the budget (latencies printed),
/// none hangs, none 500; once the proxy forwards again, those keys and a new one are
/// admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_hung_costs_a_key_not_in_the_cache_the_budget_not_a_hang() {
    let Some(postgres) = PrivatePostgres::start() else {
        return;
    };
    let proxy = Proxy::start(postgres.port).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port);
    let keys = key_manager(&postgres.url()).await;
    let scenario = Scenario::warm(&url, &keys).await;
    proxy.hang(true);
    scenario.store_down("hung").await;
    proxy.hang(false);
    scenario.store_back(&keys).await;
    drop(proxy);
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
