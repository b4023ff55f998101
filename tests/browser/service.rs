//! An example service as a real process on a free port, and plain HTTP calls to it.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub use crate::processes::{free_port, target_profile_dir};

pub struct Service {
    _child: Child,
    pub addr: String,
    pub demo_key: String,
    /// The `dashboard: …` line it printed next to the demo key.
    pub dashboard_line: String,
}

impl Service {
    /// Starts `example` on a new SQLite file in `dir`, waits until it listens, and reads
    /// the demo key and the dashboard line it prints on a new store.
    pub async fn start(example: &str, dir: &Path) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let database = format!("sqlite://{}", dir.join("keygate.db").display());
        let mut child = Command::new(crate::processes::example(example))
            .env("KEYGATE_ADDR", &addr)
            .env("KEYGATE_DATABASE_URL", &database)
            .env("KEYGATE_INSECURE_FAST_HASH", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {example}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut demo_key, mut dashboard_line) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        // The two lines come before the service listens; read until both are in and it does.
        while demo_key.is_none() || dashboard_line.is_none() || TcpStream::connect(&addr).await.is_err() {
            assert!(Instant::now() < deadline, "{example} did not start");
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(100), lines.next_line()).await
            {
                if let Some(key) = line.strip_prefix("demo key: ") {
                    demo_key = Some(key.to_string());
                } else if line.starts_with("dashboard: ") {
                    dashboard_line = Some(line);
                }
            }
        }
        Service {
            _child: child,
            addr,
            demo_key: demo_key.expect("demo key"),
            dashboard_line: dashboard_line.expect("dashboard line"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` with `key` as a bearer token; the status and body.
    pub async fn get(&self, path: &str, key: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: keygate-e2e/1\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}
