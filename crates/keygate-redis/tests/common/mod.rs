//! What the Redis tests share: the server they use, or the reason they skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn required() -> bool {
    std::env::var("KEYGATE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `KEYGATE_TEST_REDIS_URL`, or `None` (the test skips) when it is not set; a failure
/// when `KEYGATE_REQUIRE_SERVICES=1`.
pub fn redis_url() -> Option<String> {
    match std::env::var("KEYGATE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !required(),
                "KEYGATE_REQUIRE_SERVICES=1 but KEYGATE_TEST_REDIS_URL is not set"
            );
            eprintln!(
                "skipped: set KEYGATE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) to run the Redis tests"
            );
            None
        }
    }
}

/// A port nothing listens on (until a test starts something there).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A private `redis-server` on a free port, keeping nothing on disk, killed on drop:
/// fault tests stop it without touching the shared one.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
}

impl PrivateRedis {
    /// Starts one, or `None` (the test skips) without a `redis-server` binary; a failure
    /// when `KEYGATE_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<Self> {
        Self::start_on(free_port())
    }

    /// [`start`](Self::start) on `port`.
    pub fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    !required(),
                    "KEYGATE_REQUIRE_SERVICES=1 but redis-server cannot start: {e}"
                );
                eprintln!("skipped: redis-server cannot start ({e})");
                return None;
            }
        };
        let redis = Self {
            child: Some(child),
            port,
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

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private Redis Cluster of three masters on free ports, each keeping its cluster
/// state in a temporary directory; killed, and the directory removed, on drop.
pub struct PrivateCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// Starts three `redis-server --cluster-enabled yes`, joins them with
    /// `redis-cli --cluster create` (the 16384 slots split three ways) and waits until
    /// every node reports `cluster_state:ok`. `None` (the test skips) without
    /// `redis-server`; a failure when `KEYGATE_REQUIRE_SERVICES=1`.
    pub fn start() -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cluster = Self {
            nodes: Vec::new(),
            ports: Vec::new(),
            _dir: dir,
        };
        for _ in 0..3 {
            let port = free_port();
            let node = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(cluster._dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match node {
                Ok(node) => cluster.nodes.push(node),
                Err(e) => {
                    assert!(
                        !required(),
                        "KEYGATE_REQUIRE_SERVICES=1 but redis-server cannot start: {e}"
                    );
                    eprintln!("skipped: redis-server cannot start ({e})");
                    return None;
                }
            }
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let addresses: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match created {
            Ok(out) => assert!(
                out.status.success(),
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => {
                assert!(
                    !required(),
                    "KEYGATE_REQUIRE_SERVICES=1 but redis-cli cannot run: {e}"
                );
                eprintln!("skipped: redis-cli cannot run ({e})");
                return None;
            }
        }
        let started = Instant::now();
        for &port in &cluster.ports {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the cluster did not become ready"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(cluster)
    }

    /// One URL per master.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
