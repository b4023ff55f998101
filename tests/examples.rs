//! The example services as a user runs them: real processes on a real port, on a
//! SQLite file, called over TCP. Both examples must answer alike.
#![cfg(all(feature = "axum", feature = "actix", feature = "sqlite"))]

#[path = "support/processes.rs"]
mod processes;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use processes::free_port;

const MISSING: &str = r#"{"success":false,"error":{"code":"MISSING_API_KEY","message":"API key is required","details":{"header":"Authorization"}}}"#;

struct Service {
    child: Child,
    addr: String,
    demo_key: Option<String>,
}

impl Service {
    /// Starts `example` on `database`; waits until it listens. Returns the demo key if
    /// it printed one.
    async fn start(example: &str, database_url: &str) -> Service {
        Self::start_with(example, database_url, &[]).await
    }

    async fn start_with(example: &str, database_url: &str, env: &[(&str, &str)]) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(processes::example(example))
            .envs(env.iter().copied())
            .env("KEYGATE_ADDR", &addr)
            .env("KEYGATE_DATABASE_URL", database_url)
            .env("KEYGATE_INSECURE_FAST_HASH", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {example}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut demo_key = None;
        // Read what it prints until it accepts connections.
        loop {
            assert!(Instant::now() < deadline, "{example} did not start");
            if TcpStream::connect(&addr).await.is_ok() {
                break;
            }
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(50), lines.next_line()).await
            {
                if let Some(key) = line.strip_prefix("demo key: ") {
                    demo_key = Some(key.to_string());
                }
            }
        }
        // Whatever else was printed before listening.
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
        {
            if let Some(key) = line.strip_prefix("demo key: ") {
                demo_key = Some(key.to_string());
            }
        }
        Service {
            child,
            addr,
            demo_key,
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        http(&self.addr, "GET", path, key, None).await
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, as a process manager stops a service, and waits for a graceful exit.
    async fn terminate(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        assert!(exited.is_ok(), "no graceful exit within 30 s of SIGTERM");
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
async fn http(addr: &str, method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: keygate-e2e/1\r\nConnection: close\r\n"
    );
    if let Some(key) = key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The demo key with one character of its secret changed.
fn altered(key: &str) -> String {
    let mut bytes = key.as_bytes().to_vec();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("ascii")
}

async fn serves_the_contract(example: &str, database: &str) {
    let service = Service::start(example, database).await;
    let key = service.demo_key.clone().expect("a demo key on first start");
    let key_id: String = key.split('_').take(3).collect::<Vec<_>>().join("_");

    assert_eq!(
        service.get("/v1/health", None).await,
        (200, r#"{"status":"ok"}"#.to_string())
    );
    let (status, body) = service.get("/v1/whoami", Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!(r#""key_id":"{key_id}""#)), "{body}");
    assert!(body.contains(r#""owner":"demo""#), "{body}");
    assert!(!body.contains(&key), "whoami must not echo the key");

    assert_eq!(service.get("/v1/whoami", None).await, (401, MISSING.to_string()));
    let invalid = format!(
        r#"{{"success":false,"error":{{"code":"INVALID_API_KEY","message":"The provided API key is invalid","details":{{"key_id":"{key_id}"}}}}}}"#
    );
    assert_eq!(
        service.get("/v1/whoami", Some(&altered(&key))).await,
        (401, invalid)
    );

    let (status, body) = service.get("/v1/models", Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    let translate = r#"{"text":"hello","source_language":"en","target_language":"fr"}"#;
    let (status, body) = http(
        &service.addr,
        "POST",
        "/v1/translate",
        Some(&key),
        Some(translate),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello"), "{body}");

    // A graceful stop writes the last usage batch; a restart keeps the keys and does
    // not mint a second demo key.
    service.terminate().await;
    let cli = processes::binary("keygate");
    if cli.exists() {
        let output = std::process::Command::new(&cli)
            .args(["--database-url", database, "keys", "show", &key_id, "--json"])
            .output()
            .expect("run keygate");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&output.stdout).expect("show --json");
        // whoami, models and translate were admitted; refusals are not usage.
        assert_eq!(shown["request_count"], 3, "usage flushed on shutdown: {shown}");
        assert_eq!(shown["last_user_agent"], "keygate-e2e/1", "{shown}");
        assert!(shown["last_used_at"].is_string(), "{shown}");
    }
    let service = Service::start(example, database).await;
    assert_eq!(service.demo_key, None, "the demo key is printed only once");
    assert_eq!(service.get("/v1/whoami", Some(&key)).await.0, 200);

    // The demo key is the account's admin key: it manages the owner's keys at once; a key
    // it makes without `admin` gets 403 from the key API, and oversized metadata a 400.
    let keys = "/api/v1/api-keys";
    let (status, body) = service.get(keys, Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!(r#""key_id":"{key_id}""#)), "{body}");
    let reader = r#"{"name":"reader","scopes":["read"]}"#;
    let (status, body) = http(&service.addr, "POST", keys, Some(&key), Some(reader)).await;
    assert_eq!(status, 201, "{body}");
    let reader: serde_json::Value = serde_json::from_str(&body).expect("created json");
    let reader_key = reader["key"].as_str().expect("key");
    let (status, body) = service.get(keys, Some(reader_key)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(r#""code":"INSUFFICIENT_PERMISSIONS""#), "{body}");
    let big = format!(
        r#"{{"name":"big","metadata":{{"blob":"{}"}}}}"#,
        "x".repeat(10 * 1024)
    );
    let (status, body) = http(&service.addr, "POST", keys, Some(&key), Some(&big)).await;
    assert_eq!(status, 400, "{body}");

    // The CLI creates a key in the same store; the running service accepts it. Then the
    // CLI revokes it, and the running service refuses it within about a second.
    if cli.exists() {
        let keygate = |args: &[&str]| keygate_cli(database, args);
        let created: serde_json::Value = serde_json::from_str(&keygate(&[
            "keys",
            "create",
            "--owner",
            "acct_cli",
            "--name",
            "CI Pipeline",
            "--scopes",
            "read,write",
            "--json",
        ]))
        .expect("create --json");
        let cli_key = created["key"].as_str().expect("key").to_string();
        let cli_key_id = created["key_id"].as_str().expect("key_id").to_string();
        let (status, body) = service.get("/v1/whoami", Some(&cli_key)).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""owner":"acct_cli""#), "{body}");

        keygate(&["keys", "revoke", &cli_key_id]);
        let revoked = Instant::now();
        loop {
            if service.get("/v1/whoami", Some(&cli_key)).await.0 == 401 {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(10),
                "still admitted 10 s after revocation"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "{example}: revocation by the CLI refused after {:?}",
            revoked.elapsed()
        );
        assert_eq!(
            service.get("/v1/whoami", Some(&key)).await.0,
            200,
            "other keys unaffected"
        );
    } else {
        println!(
            "{example}: keygate CLI not built ({}); CLI steps skipped",
            cli.display()
        );
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_examples_answer_in_the_error_format_of_keygate_error_format() {
    for example in ["axum_service", "actix_service"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let service =
            Service::start_with(example, &sqlite_url(&dir), &[("KEYGATE_ERROR_FORMAT", "openai")]).await;
        let (status, body) = service.get("/v1/whoami", None).await;
        assert_eq!(status, 401, "{example}");
        assert!(body.starts_with(r#"{"error":{"message":"#), "{example}: {body}");
        assert!(
            body.contains(r#""type":"invalid_request_error""#),
            "{example}: {body}"
        );
        service.stop().await;
    }
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("keygate.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_example_serves_the_contract_over_tcp() {
    let dir = tempfile::tempdir().expect("temp dir");
    serves_the_contract("axum_service", &sqlite_url(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_example_serves_the_contract_over_tcp() {
    let dir = tempfile::tempdir().expect("temp dir");
    serves_the_contract("actix_service", &sqlite_url(&dir)).await;
}

/// The contract on PostgreSQL, when the facade has it (`--features postgres`).
#[cfg(feature = "postgres")]
mod on_postgres {
    use super::*;

    /// A database of its own on the server of `KEYGATE_TEST_POSTGRES_URL`, dropped after.
    struct ScratchDatabase {
        admin: keygate::keygate_sqlx::sqlx::PgPool,
        name: String,
        url: String,
    }

    impl ScratchDatabase {
        /// `None` (the test is skipped) without the URL, unless services are required.
        async fn create() -> Option<ScratchDatabase> {
            use keygate::keygate_sqlx::sqlx::PgPool;
            let Ok(base) = std::env::var("KEYGATE_TEST_POSTGRES_URL") else {
                assert!(
                    std::env::var("KEYGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "KEYGATE_REQUIRE_SERVICES=1 but KEYGATE_TEST_POSTGRES_URL is not set"
                );
                println!("skipped: set KEYGATE_TEST_POSTGRES_URL to run the PostgreSQL end-to-end test");
                return None;
            };
            let admin = PgPool::connect(&base)
                .await
                .expect("connect to KEYGATE_TEST_POSTGRES_URL");
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!("keygate_e2e_{}_{nanos}", std::process::id());
            keygate::keygate_sqlx::sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create scratch database");
            let (server, _) = base.rsplit_once('/').expect("a database in the URL");
            let url = format!("{server}/{name}");
            Some(ScratchDatabase { admin, name, url })
        }

        async fn drop(self) {
            let _ = keygate::keygate_sqlx::sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&self.admin)
            .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn actix_example_serves_the_contract_on_postgres() {
        let Some(database) = ScratchDatabase::create().await else {
            return;
        };
        serves_the_contract("actix_service", &database.url).await;
        database.drop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn axum_example_serves_the_contract_on_postgres() {
        let Some(database) = ScratchDatabase::create().await else {
            return;
        };
        serves_the_contract("axum_service", &database.url).await;
        database.drop().await;
    }
}

/// Runs the built `keygate` CLI on `database`; its stdout. Fails the test on an error.
fn keygate_cli(database: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(processes::binary("keygate"))
        .args(["--database-url", database])
        .args(args)
        .output()
        .expect("run keygate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A key of `owner` made by the CLI; the plaintext.
fn cli_key(database: &str, owner: &str, scopes: &str) -> String {
    let created = keygate_cli(
        database,
        &[
            "keys", "create", "--owner", owner, "--name", "e2e", "--scopes", scopes, "--json",
        ],
    );
    let created: serde_json::Value = serde_json::from_str(&created).expect("create --json");
    created["key"].as_str().expect("key").to_string()
}

/// The accounts issue's acceptance against an example: an owner capped at 3000
/// micro-cents gets 3 chat completions (1000 each) across its two keys, then 402 on both,
/// naming the account; an owner limited to 10/min gets exactly 10 of 30 requests split
/// across its two keys, the rest 429 naming the account. Limits are set with the CLI.
async fn accounts_share_their_limits(example: &str) {
    if !processes::binary("keygate").exists() {
        panic!("the keygate CLI is not built next to the tests");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let database = sqlite_url(&dir);
    // The store exists (migrated) before the CLI writes to it.
    keygate_cli(&database, &["migrate"]);
    keygate_cli(
        &database,
        &["owners", "set", "acct_capped", "--spend-cap", "3000"],
    );
    keygate_cli(&database, &["owners", "set", "acct_limited", "--rate", "10/min"]);
    let capped = [
        cli_key(&database, "acct_capped", "write"),
        cli_key(&database, "acct_capped", "write"),
    ];
    let limited = [
        cli_key(&database, "acct_limited", "read"),
        cli_key(&database, "acct_limited", "read"),
    ];
    let service = Service::start(example, &database).await;

    let chat = r#"{"model":"kova-chat-1","messages":[{"role":"user","content":"hi"}]}"#;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let key = &capped[i % 2];
        let (status, body) = http(
            &service.addr,
            "POST",
            "/v1/chat/completions",
            Some(key),
            Some(chat),
        )
        .await;
        if status == 402 {
            assert!(body.contains(r#""limit":"account""#), "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 402, 402, 402],
        "3 completions of 1000 within 3000"
    );

    let (mut admitted, mut refused) = (0, 0);
    for i in 0..30 {
        let (status, body) = service.get("/v1/models", Some(&limited[i % 2])).await;
        match status {
            200 => admitted += 1,
            429 => {
                assert!(body.contains(r#""limit":"account""#), "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        (admitted, refused),
        (10, 20),
        "an account of 10/min over two keys"
    );

    // The account route shows the cap and the month's spend of both keys together.
    let admin = cli_key(&database, "acct_capped", "admin");
    let (status, body) = service.get("/api/v1/account", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let shown: serde_json::Value = serde_json::from_str(&body).expect("account json");
    assert_eq!(shown["owner"], "acct_capped", "{shown}");
    assert_eq!(
        (shown["spend_cap"].as_u64(), shown["spent"].as_u64()),
        (Some(3000), Some(3000)),
        "{shown}"
    );
    // Raising its own cap is refused; lowering it is not.
    let raise = r#"{"spend_cap":1000000}"#;
    assert_eq!(
        http(&service.addr, "PUT", "/api/v1/account", Some(&admin), Some(raise))
            .await
            .0,
        403
    );
    let lower = r#"{"spend_cap":2000}"#;
    assert_eq!(
        http(&service.addr, "PUT", "/api/v1/account", Some(&admin), Some(lower))
            .await
            .0,
        200
    );
    // A key at the account's cap still reaches the (free) key API, to be told it lacks
    // admin; the account's window exhausted still answers 429 there.
    let (status, _) = service.get("/api/v1/account", Some(&capped[0])).await;
    assert_eq!(status, 403, "a key without admin");
    let (status, _) = service.get("/api/v1/account", Some(&limited[0])).await;
    assert_eq!(status, 429, "rate limits apply to the key API too");

    // /metrics counts what happened, by outcome and path, with no key id in a label.
    let (status, metrics) = service.get("/metrics", None).await;
    assert_eq!(status, 200, "{metrics}");
    let count = |outcome: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("keygate_requests_total{") && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(count("admitted") >= 13, "{metrics}");
    assert_eq!(count("INSUFFICIENT_QUOTA"), 3, "{metrics}");
    assert!(count("RATE_LIMIT_EXCEEDED") >= 20, "{metrics}");
    assert!(metrics.contains("keygate_cold_verification_seconds"), "{metrics}");
    assert!(
        !metrics.contains("kg_live_") && !metrics.contains("acct_"),
        "{metrics}"
    );

    // Every route the example mounts is reached, none shadowed by another's prefix
    // (actix's `/api/v1` scope once answered 404 for the OpenAPI document under it).
    let (status, document) = service.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200, "/api/v1/openapi.json: {document}");
    let document: serde_json::Value = serde_json::from_str(&document).expect("JSON");
    assert!(
        document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
        "{document}"
    );
    for path in ["/api/v1/api-keys", "/api/v1/account", "/api/v1/usage?days=30"] {
        let (status, body) = service.get(path, Some(&admin)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    for path in ["/app/keys", "/app/usage"] {
        let (status, body) = service.get(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_example_shares_an_accounts_cap_and_window_across_its_keys() {
    accounts_share_their_limits("axum_service").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_example_shares_an_accounts_cap_and_window_across_its_keys() {
    accounts_share_their_limits("actix_service").await;
}
