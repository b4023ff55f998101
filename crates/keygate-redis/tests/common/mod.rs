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
