//! What `axum_service` and `actix_service` share, so that the two serve the same API:
//! settings from the environment, the store, the gate with its policies, the demo key,
//! and the stand-in bodies of the example routes. Copy it along with either example.

use std::error::Error;

use keygate::background::{Background, BackgroundTask};
use keygate::hash::Argon2Hasher;
use keygate::rate::MemoryRateLimiter;
use keygate::reject::ErrorFormatKind;
use keygate::spend::RecordSpendMeter;
use keygate::store::Page;
use keygate::{Gate, GateBuilder, NewKey, RateLimit, RoutePolicy, SqlStore};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::{json, Value};

/// What `POST /v1/chat/completions` costs, in micro-cents, declared by its handler.
pub const CHAT_COST: u64 = 1000;

/// The example's settings (the example-service contract in `docs/ARCHITECTURE.md`).
pub struct Settings {
    /// `KEYGATE_ADDR`, default `127.0.0.1:3000`.
    pub addr: String,
    /// `KEYGATE_DATABASE_URL`, default `sqlite://keygate.db`.
    pub database_url: String,
    /// `KEYGATE_ERROR_FORMAT`: `default`, `openai` or `problem`.
    pub error_format: ErrorFormatKind,
    /// `KEYGATE_REDIS_URL` (`redis://HOST:PORT`), unset by default: when set, rate limits,
    /// spend and revocations are shared with every other instance through Redis (the
    /// `redis` feature).
    pub redis_url: Option<String>,
}

impl Settings {
    pub fn from_env() -> Result<Self, Box<dyn Error>> {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        Ok(Self {
            addr: var("KEYGATE_ADDR", "127.0.0.1:3000"),
            database_url: var("KEYGATE_DATABASE_URL", "sqlite://keygate.db"),
            error_format: var("KEYGATE_ERROR_FORMAT", "default").parse()?,
            redis_url: std::env::var("KEYGATE_REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty()),
        })
    }
}

/// Everything before routing: logs, settings, the gate, the demo key on a new store,
/// and the background work (usage written behind, revocations from other processes).
pub async fn start() -> Result<(Settings, Gate, BackgroundTask), Box<dyn Error>> {
    // Logs go to stderr: stdout carries only the demo key and its curl line.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let settings = Settings::from_env()?;
    let gate = gate(&settings).await?;
    mint_demo_key(&gate, &settings.addr).await?;
    let background = gate.spawn_background(Background::default());
    Ok((settings, gate, background))
}

/// Opens the store (creating and migrating it if needed) and builds the gate: every
/// key limited to 100 requests/minute and 1000/hour unless its record says otherwise,
/// spend metered against each key's monthly cap and recorded in the store. With
/// `KEYGATE_REDIS_URL`, limits, spend and revocations go through Redis.
pub async fn gate(settings: &Settings) -> Result<Gate, Box<dyn Error>> {
    let store = SqlStore::connect(&settings.database_url).await?;
    store.migrate().await?;
    let defaults = [RateLimit::per_minute(100), RateLimit::per_hour(1000)];
    let mut builder = match &settings.redis_url {
        Some(url) => shared(store, url, defaults)?,
        None => {
            // Spend is counted in memory and written to the store behind (the background
            // task flushes it with usage, and at shutdown), so a restart keeps every cap.
            // Limits are this instance's own; revocations arrive by PostgreSQL's
            // LISTEN/NOTIFY (or SQLite's change feed, polled every second).
            let meter = RecordSpendMeter::new(store.clone());
            Gate::builder(store)
                .rate_limiter(MemoryRateLimiter::new(), defaults)
                .spend_meter(meter)
        }
    };
    builder = builder.error_format(settings.error_format);
    // For the end-to-end tests, which create many keys: never set this in production.
    if std::env::var_os("KEYGATE_INSECURE_FAST_HASH").is_some() {
        builder = builder.hasher(Argon2Hasher::insecure_fast());
    }
    Ok(builder.build())
}

/// Many instances on one Redis: limits counted there (one Lua script per request),
/// spend totalled there and written behind to the store (which reseeds Redis after a
/// restart), and every revoke, rotation and expiry change published there, so that every
/// instance forgets the key at once. Connections are made on first use, so an instance
/// starts while Redis is down; while it is unreachable, each instance enforces limits and
/// meters spend from its own memory (`local_fallback`) and reconciles spend when Redis
/// is back.
#[cfg(feature = "redis")]
fn shared(store: SqlStore, url: &str, defaults: [RateLimit; 2]) -> Result<GateBuilder, Box<dyn Error>> {
    use keygate::keygate_redis::{RedisBroadcast, RedisRateLimiter, RedisSpendMeter};
    let meter = RedisSpendMeter::connect_lazy(url)?
        .record_to(store.clone())
        .local_fallback();
    let limiter = RedisRateLimiter::connect_lazy(url)?.local_fallback();
    Ok(Gate::builder(RedisBroadcast::connect_lazy(store, url)?)
        .rate_limiter(limiter, defaults)
        .spend_meter(meter))
}

#[cfg(not(feature = "redis"))]
fn shared(_: SqlStore, _: &str, _: [RateLimit; 2]) -> Result<GateBuilder, Box<dyn Error>> {
    Err("KEYGATE_REDIS_URL is set, but this example was built without the `redis` feature".into())
}

/// On a store with no key at all, mints a demo key and prints it once, alone on its
/// line. It is the account's admin key (owner `demo`, scopes `read,write,admin`), so a new
/// user can call every route with it and manage the owner's keys at `/api/v1/api-keys`.
pub async fn mint_demo_key(gate: &Gate, addr: &str) -> Result<(), Box<dyn Error>> {
    if !gate.keys().list(None, Page::new(0, 1)).await?.is_empty() {
        return Ok(());
    }
    let created = gate
        .keys()
        .create(NewKey::new("demo", "demo key").scopes(["read", "write", "admin"]))
        .await?;
    // The one place a plaintext key is printed: shown once, never stored.
    println!("demo key: {}", created.key.expose_secret());
    println!("dashboard: http://{addr}/app/keys (sign in with the demo key)");
    println!(
        "try: curl -H 'Authorization: Bearer {}' http://{addr}/v1/whoami \
         (the account's admin key, scopes read,write,admin: it also manages owner demo's keys at /api/v1/api-keys)",
        created.key.expose_secret()
    );
    Ok(())
}

/// The policies of the example's routes.
pub struct Policies {
    pub whoami: RoutePolicy,
    pub models: RoutePolicy,
    pub translate: RoutePolicy,
    pub chat: RoutePolicy,
    pub hello: RoutePolicy,
}

impl Policies {
    pub fn new() -> Self {
        Self {
            whoami: RoutePolicy::new(),
            models: RoutePolicy::new().require(["read"]),
            translate: RoutePolicy::new()
                .require(["read"])
                .limits_for("translation", [RateLimit::per_minute(100)]),
            chat: RoutePolicy::new()
                .require(["write"])
                .limits_for("chat", [RateLimit::per_minute(50)]),
            // Optional mode: keys coexist with another scheme (a JWT layer) here.
            hello: RoutePolicy::new().optional(true),
        }
    }
}

/// Installs the Prometheus recorder of the `metrics` facade, for `GET /metrics`.
pub fn metrics_recorder() -> Result<PrometheusHandle, Box<dyn Error>> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// `GET /metrics`: the gate's counters (requests admitted and refused by code, cache
/// hits and misses, shed verifications, wrong secrets, backend errors) and the cold
/// verifications' latency, in Prometheus text format. No key id or owner is a label.
pub fn render_metrics(gate: &Gate, metrics: &PrometheusHandle) -> String {
    gate.stats().publish();
    metrics.render()
}

pub fn health() -> Value {
    json!({ "status": "ok" })
}

pub fn models() -> Value {
    json!({
        "object": "list",
        "data": [
            { "id": "kova-translate-1", "object": "model", "owned_by": "keygate" },
            { "id": "kova-chat-1", "object": "model", "owned_by": "keygate" }
        ]
    })
}

#[derive(Deserialize)]
pub struct TranslateRequest {
    pub text: String,
    pub source_language: String,
    pub target_language: String,
}

/// A stand-in translation: the text, tagged with the language pair.
pub fn translate(request: &TranslateRequest) -> Value {
    json!({
        "translated_text": format!("[{}->{}] {}", request.source_language, request.target_language, request.text),
        "source_language": request.source_language,
        "target_language": request.target_language,
    })
}

#[derive(Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    #[serde(default)]
    pub messages: Vec<Value>,
}

/// A stand-in completion in the OpenAI shape.
pub fn chat(request: &ChatRequest) -> Value {
    let last = request
        .messages
        .last()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("");
    json!({
        "id": "chatcmpl-keygate",
        "object": "chat.completion",
        "model": request.model.as_deref().unwrap_or("kova-chat-1"),
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": format!("You said: {last}") },
            "finish_reason": "stop"
        }]
    })
}

/// Who `GET /v1/hello` greets: the key's owner, or a guest when no key was sent.
pub fn hello(owner: Option<&str>) -> Value {
    json!({ "hello": owner.unwrap_or("guest") })
}
