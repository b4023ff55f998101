//! `keygate`: create, list, show, revoke and rotate API keys in a SQLite or PostgreSQL
//! store.
//!
//! ```text
//! keygate keys create --owner acct_1 --name "CI Pipeline" --scopes read,write --expires-in 90d
//! keygate keys list --owner acct_1
//! keygate keys revoke kg_live_a1b2c3d4
//! keygate owners set acct_1 --spend-cap 5000000 --rate 100/min,10000/day
//! keygate owners show acct_1 --json
//! ```
//!
//! The store is `--database-url` or `KEYGATE_DATABASE_URL` (default `sqlite://keygate.db`);
//! every command migrates it first, so a fresh file works. With `--redis-url` or
//! `KEYGATE_REDIS_URL`, every revoke, rotation and expiry change is also published on
//! Redis, so that running instances forget the key at once
//! (`keygate_redis::RedisBroadcast`). Input is checked before the
//! store is opened: a malformed value writes nothing. Errors are one line on stderr and
//! a non-zero exit. A plaintext key is printed once, by `create` and `rotate`, and never
//! stored.

#![forbid(unsafe_code)]

mod output;
mod owners;

use std::fmt;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::Environment;
use keygate_core::manage::{KeyManager, ManageError};
use keygate_core::record::{parse_duration, InvalidValue};
use keygate_core::store::{Page, StoreError};
use keygate_core::{KeyId, NewKey, OwnerId, RateLimit, Scopes};
use keygate_redis::RedisBroadcast;
use keygate_sqlx::SqlStore;

#[derive(Parser, Debug)]
#[command(
    name = "keygate",
    version,
    about = "Manage keygate API keys in a SQLite or PostgreSQL store"
)]
struct Cli {
    /// The store: `sqlite://FILE` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "KEYGATE_DATABASE_URL",
        default_value = "sqlite://keygate.db",
        global = true,
        hide_env_values = true
    )]
    database_url: String,

    /// Also publish every revoke, rotation and expiry change on this Redis
    /// (`redis://HOST:PORT`), so that running instances forget the key at once; without
    /// it they read the change from the store within a second.
    #[arg(long, env = "KEYGATE_REDIS_URL", global = true, hide_env_values = true)]
    redis_url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or update keygate's tables (every other command does this first).
    Migrate,
    /// Create, list, show, revoke and rotate keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Set and show owners' (accounts') limits, shared by all their keys.
    #[command(subcommand)]
    Owners(owners::OwnersCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a key and print it, once.
    Create(CreateArgs),
    /// List keys, oldest first.
    List {
        /// Only the keys of this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one key's record (never its secret).
    Show {
        /// The key id, e.g. `kg_live_a1b2c3d4`.
        key_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The key id.
        key_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a key with a new one with the same settings; the old one keeps working for
    /// the grace period.
    Rotate {
        /// The key id.
        key_id: String,
        /// How long the old key keeps working: `24h`, `30m`, `0` for not at all.
        #[arg(
            long,
            default_value = "24h",
            value_name = "DURATION",
            allow_hyphen_values = true
        )]
        grace: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// The account the key belongs to.
    #[arg(long)]
    owner: String,
    /// A human name for the key.
    #[arg(long)]
    name: String,
    /// Comma-separated scopes: `read,write`.
    #[arg(long, value_name = "SCOPES")]
    scopes: Option<String>,
    /// Lifetime: `90d`, `24h`, `30m`; no expiry when absent.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    expires_in: Option<String>,
    /// Per-key rate limits: `100/min,1000/h`.
    #[arg(long, value_name = "RATES", allow_hyphen_values = true)]
    rate: Option<String>,
    /// Monthly spend cap in micro-cents.
    #[arg(long, value_name = "MICRO_CENTS", allow_hyphen_values = true)]
    spend_cap: Option<String>,
    /// `live` or `test`.
    #[arg(long, default_value = "live", value_name = "ENV")]
    env: String,
    /// Print JSON (the record's fields plus `key`).
    #[arg(long)]
    json: bool,
}

/// A failure, reported as one line on stderr.
#[derive(Debug)]
struct Failure(String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever a driver put in its message.
        let line: Vec<&str> = self.0.split_whitespace().collect();
        f.write_str(&line.join(" "))
    }
}

impl From<InvalidValue> for Failure {
    fn from(e: InvalidValue) -> Self {
        Failure(e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure(e.to_string())
    }
}

impl From<ManageError> for Failure {
    fn from(e: ManageError) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let url = cli.database_url.as_str();
    if let Some(redis_url) = cli.redis_url {
        keygate_redis::redis::Client::open(redis_url.as_str())
            .map_err(|e| Failure(format!("invalid --redis-url: {e}")))?;
        let _ = REDIS_URL.set(redis_url);
    }
    match cli.command {
        Command::Migrate => {
            let store = open(url).await?;
            println!("{} database is up to date", store.database());
            Ok(())
        }
        Command::Keys(KeysCommand::Create(args)) => {
            let json = args.json;
            let new = new_key(args)?;
            let keys = manager(open(url).await?);
            let created = keys.create(new).await?;
            output::created(&created, keys.status(&created.record), json)
        }
        Command::Keys(KeysCommand::List { owner, json }) => {
            let owner = owner.map(|o| OwnerId::new(o.as_str()));
            let keys = manager(open(url).await?);
            let mut records = Vec::new();
            loop {
                let page = Page::new(records.len() as u64, Page::MAX_LIMIT);
                let batch = keys.list(owner.as_ref(), page).await?;
                let done = batch.len() < page.limit as usize;
                records.extend(batch);
                if done {
                    break;
                }
            }
            output::list(&records, Utc::now(), json)
        }
        Command::Keys(KeysCommand::Show { key_id, json }) => {
            let keys = manager(open(url).await?);
            let key_id = KeyId::new(key_id.as_str());
            let record = keys
                .find(&key_id)
                .await?
                .ok_or_else(|| ManageError::NotFound(key_id.clone()))?;
            output::show(&record, keys.status(&record), json)
        }
        Command::Keys(KeysCommand::Revoke { key_id, json }) => {
            let keys = manager(open(url).await?);
            let record = keys.revoke(&KeyId::new(key_id.as_str())).await?;
            output::revoked(&record, keys.status(&record), json)
        }
        Command::Owners(command) => {
            command.check()?;
            command.run(manager(open(url).await?)).await
        }
        Command::Keys(KeysCommand::Rotate { key_id, grace, json }) => {
            let grace = parse_duration(&grace)?;
            let keys = manager(open(url).await?);
            let rotated = keys.rotate(&KeyId::new(key_id.as_str()), grace).await?;
            output::rotated(&rotated, Utc::now(), json)
        }
    }
}

/// Checks every input of `keys create`, before anything is opened or written.
fn new_key(args: CreateArgs) -> Result<NewKey, Failure> {
    if args.owner.trim().is_empty() {
        return Err(Failure("--owner must not be empty".into()));
    }
    let mut new = NewKey::new(args.owner.trim(), args.name).environment(Environment::from_str(&args.env)?);
    if let Some(scopes) = &args.scopes {
        new.scopes = Scopes::from_str(scopes)?;
    }
    if let Some(expires_in) = &args.expires_in {
        let lifetime = parse_duration(expires_in)?;
        if lifetime.is_zero() {
            return Err(Failure(format!(
                "invalid duration `{expires_in}` for --expires-in: a key must live longer than 0"
            )));
        }
        new = new.expires_at(expiry(lifetime)?);
    }
    if let Some(rate) = &args.rate {
        new = new.rate_limits(RateLimit::parse_list(rate)?);
    }
    if let Some(cap) = &args.spend_cap {
        let cap = cap.trim().parse::<u64>().map_err(|_| {
            Failure(format!(
                "invalid spend cap `{cap}`: expected a whole number of micro-cents"
            ))
        })?;
        new = new.spend_cap(cap);
    }
    Ok(new)
}

fn expiry(lifetime: Duration) -> Result<chrono::DateTime<Utc>, Failure> {
    chrono::Duration::from_std(lifetime)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .ok_or_else(|| Failure("--expires-in is too far in the future".into()))
}

/// The store at `url`, migrated.
async fn open(url: &str) -> Result<SqlStore, Failure> {
    let store = SqlStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// `--redis-url`, checked, for [`manager`]: set once in `run`, so that every command
/// that writes through a manager publishes its changes.
static REDIS_URL: OnceLock<String> = OnceLock::new();

fn manager(store: SqlStore) -> KeyManager {
    let keys = match REDIS_URL.get() {
        Some(redis_url) => match RedisBroadcast::connect_lazy(store.clone(), redis_url) {
            Ok(broadcast) => KeyManager::new(broadcast),
            // The URL was checked in `run`; the store's change feed still carries the change.
            Err(e) => {
                eprintln!("warning: changes are not broadcast on Redis: {e}");
                KeyManager::new(store)
            }
        },
        None => KeyManager::new(store),
    };
    // Real argon2id parameters: these keys guard production traffic.
    keys.hasher(Argon2Hasher::default())
}
