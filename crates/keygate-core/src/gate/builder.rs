//! [`GateBuilder`]: a gate's settings, each with its default, and [`Gate::builder`].

use std::sync::Arc;

use super::{Gate, Inner};
use crate::backend::FailMode;
use crate::background::UsageBuffer;
use crate::clock::{Clock, SystemClock};
use crate::credential::{lookups, CredentialSource};
use crate::hash::{Argon2Hasher, KeyHasher};
use crate::key::{Environment, KeyFormat, KeyId};
use crate::manage::KeyManager;
use crate::rate::{DynRateLimiter, RateLimiter};
use crate::record::RateLimit;
use crate::reject::{ErrorFormat, Renderer};
use crate::spend::{DynSpendMeter, SpendMeter};
use crate::store::KeyStore;
use crate::verify::{HashPool, Verifier, VerifierConfig};

/// Builds a [`Gate`]; see [`Gate::builder`].
pub struct GateBuilder {
    keys: KeyManager,
    hasher: Arc<dyn KeyHasher>,
    format: KeyFormat,
    clock: Arc<dyn Clock>,
    renderer: Renderer,
    sources: Vec<CredentialSource>,
    verifier: VerifierConfig,
    limiter: Option<Arc<dyn DynRateLimiter>>,
    default_limits: Vec<RateLimit>,
    meter: Option<Arc<dyn DynSpendMeter>>,
    admin_grants_all: bool,
    ietf_headers: bool,
    fail_mode: FailMode,
    track_usage: bool,
    /// The environments accepted, as a set of [`Environment::bit`]s.
    environments: u8,
}

impl GateBuilder {
    /// The hasher (argon2id with OWASP parameters by default).
    pub fn hasher(mut self, hasher: impl KeyHasher) -> Self {
        self.hasher = Arc::new(hasher);
        self
    }

    /// The key format (`kg_live_…`/`kg_test_…` by default).
    pub fn key_format(mut self, format: KeyFormat) -> Self {
        self.format = format;
        self
    }

    /// The clock (the system clock by default).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The error format ([`DefaultFormat`](crate::reject::DefaultFormat) by default).
    pub fn error_format(mut self, format: impl ErrorFormat) -> Self {
        self.renderer.format = Arc::new(format);
        self
    }

    /// The realm of `WWW-Authenticate` (`api` by default). Quotes and control
    /// characters are dropped.
    pub fn realm(mut self, realm: &str) -> Self {
        let clean: String = realm
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        self.renderer = self.renderer.with_realm(&clean);
        self
    }

    /// Where credentials are read, in order (`Authorization: Bearer`, then `X-Api-Key`).
    pub fn sources(mut self, sources: impl Into<Vec<CredentialSource>>) -> Self {
        let sources = sources.into();
        if !sources.is_empty() {
            self.sources = sources;
        }
        self
    }

    /// Cache, negative cache and hash pool settings (the pool serves key creation and
    /// rotation through [`Gate::keys`] too).
    pub fn verifier(mut self, config: VerifierConfig) -> Self {
        self.verifier = config;
        self
    }

    /// Counts requests with `limiter` against `defaults` for every key whose record
    /// does not override them, plus each route's service limits.
    pub fn rate_limiter(mut self, limiter: impl RateLimiter, defaults: impl Into<Vec<RateLimit>>) -> Self {
        self.limiter = Some(Arc::new(limiter));
        self.default_limits = defaults.into();
        self
    }

    /// Meters spend against each key's monthly cap.
    pub fn spend_meter(mut self, meter: impl SpendMeter) -> Self {
        self.meter = Some(Arc::new(meter));
        self
    }

    /// Whether `admin` grants every scope (on by default).
    pub fn admin_grants_all(mut self, on: bool) -> Self {
        self.admin_grants_all = on;
        self
    }

    /// Also send the IETF draft's `RateLimit` and `RateLimit-Policy` fields.
    pub fn ietf_rate_limit_headers(mut self, on: bool) -> Self {
        self.ietf_headers = on;
        self
    }

    /// What to do when the limiter or meter fails ([`FailMode::Closed`] by default).
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// The environments whose keys this gate accepts (every one by default): a live
    /// service refuses `kg_test_` keys with `.environments([Environment::Live])`. A key
    /// of another environment is refused as an invalid key (401 `INVALID_API_KEY`); when
    /// its brand names its environment, at once, with no store read and no hash.
    pub fn environments(mut self, accepted: impl IntoIterator<Item = Environment>) -> Self {
        self.environments = accepted.into_iter().fold(0, |set, env| set | env.bit());
        self
    }

    /// Whether admitted requests are counted per key (`request_count`, `last_used_at`,
    /// last user agent) and written behind in batches (on by default; the writes happen
    /// in [`Gate::spawn_background`] and [`Gate::flush_usage`]).
    pub fn track_usage(mut self, on: bool) -> Self {
        self.track_usage = on;
        self
    }

    /// Builds the gate.
    pub fn build(self) -> Gate {
        let mut keys = self.keys;
        keys.set_hasher(self.hasher.clone());
        keys.set_format(self.format);
        keys.set_clock(self.clock.clone());
        // One pool for every argon2 call of this gate: creations and rotations through
        // `keys` hash on it too.
        let pool = Arc::new(HashPool::new(&self.verifier));
        keys.set_pool(pool.clone());
        let verifier = Arc::new(Verifier::new(
            keys.store_ref().clone(),
            keys.hasher_ref().clone(),
            self.clock.clone(),
            pool,
            &self.verifier,
        ));
        let weak = Arc::downgrade(&verifier);
        keys.set_invalidate(Arc::new(move |key_id: &KeyId| {
            if let Some(verifier) = weak.upgrade() {
                verifier.invalidate(key_id);
            }
        }));
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Gate {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                verifier,
                keys,
                renderer: self.renderer,
                lookups: lookups(&self.sources),
                sources: self.sources,
                clock: self.clock,
                limiter: self.limiter,
                default_limits: self.default_limits,
                meter: self.meter,
                admin_grants_all: self.admin_grants_all,
                ietf_headers: self.ietf_headers,
                fail_mode: self.fail_mode,
                usage: self.track_usage.then(|| Arc::new(UsageBuffer::default())),
                environments: self.environments,
            }),
        }
    }
}
impl Gate {
    /// Starts a gate over `store`.
    pub fn builder(store: impl KeyStore) -> GateBuilder {
        GateBuilder {
            keys: KeyManager::new(store),
            hasher: Arc::new(Argon2Hasher::default()),
            format: KeyFormat::default(),
            clock: Arc::new(SystemClock),
            renderer: Renderer::default(),
            sources: vec![CredentialSource::Bearer, CredentialSource::X_API_KEY],
            verifier: VerifierConfig::default(),
            limiter: None,
            default_limits: Vec::new(),
            meter: None,
            admin_grants_all: true,
            ietf_headers: false,
            fail_mode: FailMode::Closed,
            track_usage: true,
            environments: Environment::ALL.into_iter().fold(0, |set, env| set | env.bit()),
        }
    }
}
