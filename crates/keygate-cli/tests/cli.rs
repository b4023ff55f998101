//! The built `keygate` binary against a temporary SQLite file.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

struct Keygate {
    dir: tempfile::TempDir,
}

impl Keygate {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("keys.db")
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.db().display())
    }

    fn run_with_url(&self, url: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keygate"))
            .args(args)
            .env("KEYGATE_DATABASE_URL", url)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_url(&self.url(), args)
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Runs a command that must fail with one `error: …` line on stderr; that line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_one_line_error(&out, args);
        String::from_utf8(out.stderr).unwrap()
    }

    fn create(&self, extra: &[&str]) -> Value {
        let mut args = vec![
            "keys",
            "create",
            "--owner",
            "acct_1",
            "--name",
            "CI Pipeline",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.json(&args)
    }
}

fn assert_one_line_error(out: &Output, args: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr:?}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: one line, got {stderr:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_created_key_is_listed_shown_and_revoked() {
    let kg = Keygate::new();
    let created = kg.create(&[
        "--scopes",
        "read,write",
        "--expires-in",
        "90d",
        "--rate",
        "100/min,1000/h",
        "--spend-cap",
        "5000000",
        "--env",
        "test",
    ]);
    let key_id = created["key_id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap();
    assert!(key_id.starts_with("kg_test_"), "{key_id}");
    assert!(
        key.starts_with(&format!("{key_id}_")),
        "the key begins with its id"
    );
    assert_eq!(created["owner"], "acct_1");
    assert_eq!(created["name"], "CI Pipeline");
    assert_eq!(created["scopes"], serde_json::json!(["read", "write"]));
    assert_eq!(created["environment"], "test");
    assert_eq!(
        created["rate_limits"],
        serde_json::json!([{"limit": 100, "period": 60}, {"limit": 1000, "period": 3600}])
    );
    assert_eq!(created["spend_cap"], 5_000_000);
    assert_eq!(created["request_count"], 0);
    assert_eq!(created["status"], "active");
    assert!(created["expires_at"].is_string());
    assert!(created.get("secret_hash").is_none(), "the hash is never printed");

    let listed = kg.json(&["keys", "list", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["key_id"], key_id.as_str());
    assert_eq!(listed[0]["status"], "active");
    assert!(listed[0].get("key").is_none(), "list never prints a key");
    assert_eq!(
        kg.json(&["keys", "list", "--owner", "acct_2", "--json"]),
        serde_json::json!([])
    );

    let shown = kg.json(&["keys", "show", &key_id, "--json"]);
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("key");
    assert_eq!(shown, expected, "show prints the record as create stored it");

    let revoked = kg.json(&["keys", "revoke", &key_id, "--json"]);
    assert_eq!(revoked["status"], "revoked");
    let revoked_at = revoked["revoked_at"].as_str().unwrap().to_owned();
    let shown = kg.json(&["keys", "show", &key_id, "--json"]);
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revoked_at"], revoked_at.as_str());

    let again = kg.ok(&["keys", "revoke", &key_id]);
    assert!(again.contains(&key_id), "{again}");
    let shown = kg.json(&["keys", "show", &key_id, "--json"]);
    assert_eq!(
        shown["revoked_at"],
        revoked_at.as_str(),
        "revoking twice keeps the first time"
    );
}

#[test]
fn human_create_prints_the_key_alone_on_a_line_with_a_warning() {
    let kg = Keygate::new();
    let out = kg.ok(&[
        "keys",
        "create",
        "--owner",
        "acct_1",
        "--name",
        "CI Pipeline",
        "--scopes",
        "read",
    ]);
    let listed = kg.json(&["keys", "list", "--json"]);
    let key_id = listed[0]["key_id"].as_str().unwrap();
    let key_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(&format!("{key_id}_")))
        .collect();
    assert_eq!(
        key_lines.len(),
        1,
        "the key appears once, alone on its line: {out}"
    );
    assert!(
        out.contains("shown once"),
        "a warning says the key is shown once: {out}"
    );

    let table = kg.ok(&["keys", "list"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "KEY ID",
        "NAME",
        "OWNER",
        "SCOPES",
        "CREATED",
        "LAST USED",
        "EXPIRES",
        "STATUS",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(key_id) && row.contains("CI Pipeline") && row.ends_with("active"),
        "{row}"
    );
    assert!(!table.contains(key_lines[0]), "list never prints the key");
    let shown = kg.ok(&["keys", "show", key_id]);
    assert!(
        shown.contains("CI Pipeline") && !shown.contains(key_lines[0]),
        "{shown}"
    );
}

#[test]
fn rotate_prints_a_new_key_and_the_old_one_expires_after_the_grace_period() {
    let kg = Keygate::new();
    let old = kg.create(&["--scopes", "read", "--rate", "10/s", "--spend-cap", "7"]);
    let old_id = old["key_id"].as_str().unwrap();

    let rotated = kg.json(&["keys", "rotate", old_id, "--grace", "1h", "--json"]);
    let new = &rotated["new"];
    let new_id = new["key_id"].as_str().unwrap();
    assert_ne!(new_id, old_id);
    assert!(new["key"].as_str().unwrap().starts_with(&format!("{new_id}_")));
    for field in [
        "owner",
        "name",
        "scopes",
        "environment",
        "rate_limits",
        "spend_cap",
    ] {
        assert_eq!(new[field], old[field], "{field} carries over");
    }
    assert_eq!(rotated["old"]["key_id"], old_id);
    assert_eq!(
        rotated["old"]["status"], "active",
        "the old key works during the grace period"
    );
    assert!(
        rotated["old"]["expires_at"].is_string(),
        "the old key now expires"
    );
    assert!(
        rotated["old"].get("key").is_none(),
        "the old key's secret is never printed"
    );

    let again = kg.json(&["keys", "rotate", new_id, "--grace", "0", "--json"]);
    assert_eq!(
        again["old"]["status"], "expired",
        "grace 0 expires the old key at once"
    );
    assert_eq!(kg.json(&["keys", "list", "--json"]).as_array().unwrap().len(), 3);
    let err = kg.fails(&["keys", "rotate", new_id]);
    assert!(err.contains("expired"), "an expired key cannot be rotated: {err}");
}

#[test]
fn malformed_inputs_give_a_one_line_error_and_create_nothing() {
    let kg = Keygate::new();
    let cases: [(&[&str], &str); 8] = [
        (&["--expires-in", "10y"], "duration"),
        (&["--expires-in", "0"], "--expires-in"),
        (&["--expires-in", "-1h"], "duration"),
        (&["--rate", "10/fortnight"], "rate"),
        (&["--scopes", "read;drop"], "scopes"),
        (&["--env", "prod"], "environment"),
        (&["--spend-cap", "-5"], "spend cap"),
        (&["--spend-cap", "lots"], "spend cap"),
    ];
    for (extra, mentions) in cases {
        let mut args = vec!["keys", "create", "--owner", "acct_1", "--name", "x"];
        args.extend_from_slice(extra);
        let err = kg.fails(&args);
        assert!(err.contains(mentions), "{extra:?}: {err}");
    }
    let err = kg.fails(&["keys", "create", "--owner", " ", "--name", "x"]);
    assert!(err.contains("owner"), "{err}");
    assert!(
        !kg.db().exists(),
        "input is checked before the database is even opened"
    );
    assert_eq!(
        kg.json(&["keys", "list", "--json"]),
        serde_json::json!([]),
        "no key was created"
    );

    let created = kg.create(&[]);
    let err = kg.fails(&[
        "keys",
        "rotate",
        created["key_id"].as_str().unwrap(),
        "--grace",
        "soon",
    ]);
    assert!(err.contains("duration"), "{err}");
    assert_eq!(
        kg.json(&["keys", "list", "--json"]).as_array().unwrap().len(),
        1,
        "no rotation happened"
    );
}

#[test]
fn unknown_key_ids_give_a_one_line_error() {
    let kg = Keygate::new();
    for command in ["show", "revoke", "rotate"] {
        let err = kg.fails(&["keys", command, "kg_live_nosuchid"]);
        assert!(
            err.contains("no key with id `kg_live_nosuchid`"),
            "{command}: {err}"
        );
    }
}

#[test]
fn an_unreachable_or_unsupported_database_gives_a_one_line_error() {
    let kg = Keygate::new();
    let missing_dir = format!("sqlite://{}", kg.dir.path().join("no/such/dir/keys.db").display());
    for url in [missing_dir.as_str(), "mysql://user:hunter2@localhost/keys"] {
        let args = ["keys", "list"];
        let out = kg.run_with_url(url, &args);
        assert_one_line_error(&out, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unavailable"), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "the URL's password is never printed: {stderr}"
        );
    }
}

#[test]
fn migrate_is_idempotent_and_the_database_never_holds_the_plaintext_key() {
    let kg = Keygate::new();
    assert!(kg.ok(&["migrate"]).contains("up to date"));
    assert!(kg.ok(&["migrate"]).contains("up to date"));
    let created = kg.create(&[]);
    let key = created["key"].as_str().unwrap();
    let rest = key
        .strip_prefix(&format!("{}_", created["key_id"].as_str().unwrap()))
        .unwrap();
    // The default format ends with a 6-character checksum; the secret is what precedes it.
    let secret = &rest[..rest.len() - 6];

    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(kg.dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let stored = String::from_utf8_lossy(&bytes);
    assert!(
        stored.contains(created["key_id"].as_str().unwrap()),
        "the key id is stored"
    );
    assert!(
        stored.contains("$argon2id$v=19$m=19456,t=2,p=1$"),
        "hashed with argon2id, OWASP parameters"
    );
    assert!(
        !stored.contains(secret),
        "the secret is not stored, in any file of the database"
    );
}

#[test]
fn owners_set_and_show_an_accounts_limits_keeping_what_is_not_given() {
    let kg = Keygate::new();
    let unset = kg.json(&["owners", "show", "acct_1", "--json"]);
    assert_eq!(unset["spend_cap"], Value::Null);
    assert_eq!(unset["rate_limits"], serde_json::json!([]));
    assert_eq!(unset["spent"], 0);

    let set = kg.json(&[
        "owners",
        "set",
        "acct_1",
        "--spend-cap",
        "3000",
        "--rate",
        "10/min,1000/day",
        "--json",
    ]);
    assert_eq!(set["owner"], "acct_1");
    assert_eq!(set["spend_cap"], 3000);
    assert_eq!(set["rate_limits"], serde_json::json!(["10/min", "1000/day"]));
    // Only the cap changes: the windows are kept.
    kg.ok(&["owners", "set", "acct_1", "--spend-cap", "5000"]);
    let shown = kg.json(&["owners", "show", "acct_1", "--json"]);
    assert_eq!(shown["spend_cap"], 5000);
    assert_eq!(shown["rate_limits"], serde_json::json!(["10/min", "1000/day"]));
    assert!(shown["month"].as_str().unwrap().len() == 7, "{shown}");
    let text = kg.ok(&["owners", "show", "acct_1"]);
    assert!(text.contains("spend cap:   5000 micro-cents a month"), "{text}");
    assert!(text.contains("rate limits: 10/min,1000/day"), "{text}");
    // `none` lifts each.
    kg.ok(&["owners", "set", "acct_1", "--spend-cap", "none", "--rate", "none"]);
    let lifted = kg.json(&["owners", "show", "acct_1", "--json"]);
    assert_eq!(
        (lifted["spend_cap"].clone(), lifted["rate_limits"].clone()),
        (Value::Null, serde_json::json!([]))
    );
}

#[test]
fn owners_set_refuses_bad_input_and_writes_nothing() {
    let kg = Keygate::new();
    kg.ok(&["owners", "set", "acct_1", "--spend-cap", "100"]);
    for args in [
        &["owners", "set", "acct_1"][..],
        &["owners", "set", "acct_1", "--spend-cap", "-5"],
        &["owners", "set", "acct_1", "--spend-cap", "lots"],
        &["owners", "set", "acct_1", "--rate", "10/fortnight"],
        &["owners", "set", " ", "--spend-cap", "1"],
    ] {
        kg.fails(args);
    }
    assert_eq!(kg.json(&["owners", "show", "acct_1", "--json"])["spend_cap"], 100);
}

/// `--redis-url`: a revocation is published on keygate's channel, for running instances.
#[test]
fn revoke_with_a_redis_url_publishes_the_key_id() {
    use keygate_redis::redis;
    let Some(redis_url) = std::env::var("KEYGATE_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("KEYGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "KEYGATE_REQUIRE_SERVICES=1 but KEYGATE_TEST_REDIS_URL is not set"
        );
        eprintln!("skipped: set KEYGATE_TEST_REDIS_URL to run the --redis-url test");
        return;
    };
    let kg = Keygate::new();
    let created = kg.json(&["keys", "create", "--owner", "acct_1", "--name", "n", "--json"]);
    let key_id = created["key_id"].as_str().unwrap().to_string();

    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let mut pubsub = connection.as_pubsub();
    pubsub.subscribe(keygate_redis::DEFAULT_CHANNEL).unwrap();
    pubsub
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();

    kg.ok(&["--redis-url", &redis_url, "keys", "revoke", &key_id]);
    // Other tests publish on the channel too: wait for this key's message.
    loop {
        let message = pubsub
            .get_message()
            .expect("the revocation is published within 10 s");
        if message.get_payload::<String>().unwrap() == key_id {
            break;
        }
    }

    // A malformed URL is refused before anything is written.
    let other = kg.json(&["keys", "create", "--owner", "acct_1", "--name", "m", "--json"]);
    let other_id = other["key_id"].as_str().unwrap();
    let error = kg.fails(&["--redis-url", "not a url", "keys", "revoke", other_id]);
    assert!(error.contains("--redis-url"), "{error}");
    let shown = kg.json(&["keys", "show", other_id, "--json"]);
    assert!(shown["revoked_at"].is_null(), "{shown}");
}
