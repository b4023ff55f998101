//! [`Gate`]: the one place where requests are admitted or refused.
//!
//! # Example
//! ```
//! use keygate_core::{Argon2Hasher, Gate, MemoryStore, NewKey, RoutePolicy};
//! use http::{HeaderMap, StatusCode};
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let created = gate.keys().create(NewKey::new("acct_1", "demo")).await.unwrap();
//!
//! let mut headers = HeaderMap::new();
//! let value = format!("Bearer {}", created.key.expose_secret());
//! headers.insert("authorization", value.parse().unwrap());
//! let admission = gate.admit(&headers, &RoutePolicy::new()).await.unwrap();
//! assert_eq!(admission.principal().unwrap().owner().as_str(), "acct_1");
//!
//! let refused = gate.admit(&HeaderMap::new(), &RoutePolicy::new()).await.unwrap_err();
//! assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::background::{self, Background, BackgroundTask, UsageBuffer};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::credential::{extract, lookups, CredentialSource, HeaderSource, Lookup, Presented};
use crate::error::{Denial, ErrorFormat, Rejection, Renderer};
use crate::hash::{Argon2Hasher, KeyHasher};
use crate::key::{KeyFormat, KeyId, ParsedKey};
use crate::manage::KeyManager;
use crate::policy::{
    BackendError, Bucket, DynRateLimiter, DynSpendMeter, Month, RateDecision, RateLimiter, RoutePolicy,
    SpendMeter, WindowState,
};
use crate::principal::Principal;
use crate::record::RateLimit;
use crate::store::KeyStore;
use crate::verify::{digest, Failure, Verified, Verifier, VerifierConfig};

/// What to do when the rate limiter or spend meter cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// Refuse with 503 and `Retry-After` (the default: limits are a promise).
    #[default]
    Closed,
    /// Admit the request as if the limit were not there.
    Open,
}

/// An admitted request: the principal (none in optional mode without a credential)
/// and the headers to add to the response.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    principal: Option<Principal>,
    rate: Option<RateShown>,
    cost: Option<u64>,
}

/// The presented key, and the request's user agent when usage is recorded.
type KeyAndAgent<'h> = (&'h [u8], Option<&'h [u8]>);

/// The tightest window of an admitted request, kept as numbers: header values are
/// made once, straight into the response.
#[derive(Clone, Copy, Debug)]
struct RateShown {
    window: WindowState,
    now_secs: u64,
    ietf: bool,
}

impl RateShown {
    fn pairs(self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        self.numbers().into_iter().chain(self.ietf())
    }

    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset`, each with its number: the one
    /// place that names them, for `http` values and for adapters that make their own.
    fn named_numbers(self) -> [(&'static HeaderName, u64); 3] {
        let w = self.window;
        [
            (&X_RATELIMIT_LIMIT, w.limit.into()),
            (&X_RATELIMIT_REMAINING, w.remaining.into()),
            (&X_RATELIMIT_RESET, w.reset_at),
        ]
    }

    /// The three rate-limit headers as `http` values.
    fn numbers(self) -> [(HeaderName, HeaderValue); 3] {
        let [(limit, l), (remaining, r), (reset, t)] = self.named_numbers();
        let [l, r, t] = number_values([l, r, t]);
        [(limit.clone(), l), (remaining.clone(), r), (reset.clone(), t)]
    }

    /// The IETF fields, when switched on; nothing otherwise.
    fn ietf(self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        self.ietf
            .then(|| self.ietf_pairs())
            .into_iter()
            .flatten()
            .flatten()
    }

    /// `RateLimit` and `RateLimit-Policy` (the IETF draft), when switched on.
    fn ietf_pairs(self) -> [Option<(HeaderName, HeaderValue)>; 2] {
        let w = self.window;
        let reset = w.reset_at.saturating_sub(self.now_secs);
        let field = format!("limit={}, remaining={}, reset={}", w.limit, w.remaining, reset);
        let policy = format!("{};w={}", w.limit, w.period_secs);
        [
            HeaderValue::try_from(field).ok().map(|v| (RATELIMIT.clone(), v)),
            HeaderValue::try_from(policy)
                .ok()
                .map(|v| (RATELIMIT_POLICY.clone(), v)),
        ]
    }
}

/// Numbers below this have a static header value: limits and remaining counts of
/// ordinary windows (100/min, 1000/h) are shown with no allocation and no atomics.
const STATIC_NUMBERS: u64 = 1024;

/// The header values of `numbers` (limit, remaining, reset). Small numbers come from a
/// static table (built once; cloning a static value copies two words). A larger number
/// is kept per thread and header once it repeats: a limit never changes and a reset
/// time once a second, so most responses share theirs (a reference count) instead of
/// allocating. A number seen once, as a remaining count usually is, gets a value of its
/// own: one allocation, freed with the response, where sharing it would cost a second
/// allocation and the reference counts.
fn number_values(numbers: [u64; 3]) -> [HeaderValue; 3] {
    thread_local! {
        static LAST: std::cell::RefCell<[Shared; 3]> = std::cell::RefCell::new(Default::default());
    }
    let small = small_numbers();
    let [l, r, t] = numbers;
    // Three plain calls rather than `array::from_fn`, whose closure the compiler may
    // leave out of line (it did, for ~120 instructions a response).
    LAST.with_borrow_mut(|[a, b, c]| [a.value_of(small, l), b.value_of(small, r), c.value_of(small, t)])
}

/// One header's last large number, and its shared value once it has repeated.
#[derive(Default)]
struct Shared {
    seen: u64,
    value: Option<HeaderValue>,
}

impl Shared {
    /// The value of `n`: from the static table `small` when it has it, else this slot's.
    #[inline]
    fn value_of(&mut self, small: &'static [HeaderValue], n: u64) -> HeaderValue {
        if let Some(value) = usize::try_from(n).ok().and_then(|i| small.get(i)) {
            return value.clone();
        }
        if self.seen != n {
            self.seen = n;
            self.value = None;
            return HeaderValue::from(n);
        }
        self.value.get_or_insert_with(|| HeaderValue::from(n)).clone()
    }
}

/// The values of 0 to [`STATIC_NUMBERS`] − 1, static.
fn small_numbers() -> &'static [HeaderValue] {
    static SMALL: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    SMALL.get_or_init(|| {
        // One string of every number, leaked once so that its slices are static.
        let text: &'static str = Box::leak(
            (0..STATIC_NUMBERS)
                .map(|i| i.to_string())
                .collect::<String>()
                .into_boxed_str(),
        );
        let mut at = 0;
        (0..STATIC_NUMBERS)
            .map(|i| {
                let len = if i == 0 { 1 } else { i.ilog10() as usize + 1 };
                let value = HeaderValue::from_static(&text[at..at + len]);
                at += len;
                value
            })
            .collect()
    })
}

impl Admission {
    /// The authenticated caller; `None` only in optional mode without a credential.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Takes the principal out: for an adapter that hands it to the handler and needs
    /// no more of it, which it does not when the gate [meters](Gate::meters) nothing.
    /// What is left charges nothing in [`Gate::settle`].
    pub fn take_principal(&mut self) -> Option<Principal> {
        self.principal.take()
    }

    /// Whether the response gets headers from [`append_headers`](Self::append_headers).
    pub fn has_headers(&self) -> bool {
        self.rate.is_some()
    }

    /// The names and numbers of `X-RateLimit-Limit`, `-Remaining` and `-Reset`, for an
    /// adapter whose header values are not `http`'s (actix-web's): it makes its own
    /// values, without allocating for those [`static_number_text`](Self::static_number_text)
    /// has. `None` when the response gets no rate-limit headers.
    pub fn rate_limit_numbers(&self) -> Option<[(&'static str, u64); 3]> {
        let rate = self.rate?;
        Some(rate.named_numbers().map(|(name, n)| (name.as_str(), n)))
    }

    /// The IETF draft's `RateLimit` and `RateLimit-Policy` fields, when switched on: the
    /// rest of [`response_headers`](Self::response_headers) after the three numbers.
    pub fn ietf_headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        self.rate.into_iter().flat_map(RateShown::ietf)
    }

    /// The text of `n` from a static table when `n` is below 1024 (the limits and
    /// remaining counts of ordinary windows), so that a header value of it needs no
    /// allocation.
    pub fn static_number_text(n: u64) -> Option<&'static str> {
        let small: &'static [HeaderValue] = small_numbers();
        let value = usize::try_from(n).ok().and_then(|i| small.get(i))?;
        value.to_str().ok()
    }

    /// The headers to add to the response (`X-RateLimit-*`, and the IETF fields when
    /// switched on), made on the fly: adapters write them straight into the response.
    pub fn response_headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        self.rate.into_iter().flat_map(RateShown::pairs)
    }

    /// Appends the same headers to `headers`: what an adapter on `http` types calls on
    /// each response, with no iterator in between.
    pub fn append_headers(&self, headers: &mut HeaderMap) {
        let Some(rate) = self.rate else {
            return;
        };
        headers.reserve(if rate.ietf { 5 } else { 3 });
        // Two loops, not a chain: the chained iterator cost ~500 instructions a response.
        for (name, value) in rate.numbers() {
            headers.append(name, value);
        }
        if rate.ietf {
            for (name, value) in rate.ietf_pairs().into_iter().flatten() {
                headers.append(name, value);
            }
        }
    }

    /// The same headers, collected in a map.
    pub fn headers(&self) -> HeaderMap {
        self.response_headers().collect()
    }

    /// The route's fixed cost, charged when the handler declares none.
    pub fn fixed_cost(&self) -> Option<u64> {
        self.cost
    }
}

/// A request's cost in micro-cents, declared by a handler as a response extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost(pub u64);

struct Inner {
    /// Unique per built gate: keys the route policies' bucket caches.
    id: usize,
    verifier: Arc<Verifier>,
    keys: KeyManager,
    renderer: Renderer,
    sources: Vec<CredentialSource>,
    /// `sources`, parsed for lookups.
    lookups: Vec<Lookup>,
    clock: Arc<dyn Clock>,
    limiter: Option<Arc<dyn DynRateLimiter>>,
    default_limits: Vec<RateLimit>,
    meter: Option<Arc<dyn DynSpendMeter>>,
    admin_grants_all: bool,
    ietf_headers: bool,
    fail_mode: FailMode,
    usage: Option<Arc<UsageBuffer>>,
}

/// Admits or refuses requests. Cheap to clone; every clone shares one cache.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("format", self.inner.keys.key_format())
            .field("sources", &self.inner.sources)
            .finish_non_exhaustive()
    }
}

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

    /// The error format ([`DefaultFormat`](crate::DefaultFormat) by default).
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

    /// Cache, negative cache and hash pool settings.
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
        let verifier = Arc::new(Verifier::new(
            keys.store_ref().clone(),
            keys.hasher_ref().clone(),
            self.clock.clone(),
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
                usage: self.track_usage.then(Arc::default),
            }),
        }
    }
}

static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

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
        }
    }

    /// Key management. Revocations and rotations through it reach this gate's cache
    /// before they return.
    pub fn keys(&self) -> &KeyManager {
        &self.inner.keys
    }

    /// Forgets what the cache knows of `key_id`, for a change made elsewhere (another
    /// instance, the CLI): the next request with it re-reads the store.
    pub fn invalidate(&self, key_id: &KeyId) {
        self.inner.verifier.invalidate(key_id);
    }

    /// Forgets every cached key.
    pub fn invalidate_all(&self) {
        self.inner.verifier.invalidate_all();
    }

    /// Starts the background work on the current tokio runtime: usage written behind in
    /// batches, and the store's change feed polled so that revocations made by other
    /// processes reach this gate's cache. Call [`BackgroundTask::shutdown`] on graceful
    /// shutdown to write the last batch.
    pub fn spawn_background(&self, config: Background) -> BackgroundTask {
        let verifier = Arc::downgrade(&self.inner.verifier);
        background::spawn(
            self.inner.keys.store_ref().clone(),
            self.inner.usage.clone().unwrap_or_default(),
            move |key_id| {
                if let Some(verifier) = verifier.upgrade() {
                    verifier.invalidate(key_id);
                }
            },
            config,
        )
    }

    /// Writes pending usage now; returns how many keys were written.
    pub async fn flush_usage(&self) -> usize {
        match &self.inner.usage {
            Some(usage) => usage.flush(&**self.inner.keys.store_ref()).await,
            None => 0,
        }
    }

    /// Keys currently cached as verified (approximate).
    pub fn cached_keys(&self) -> u64 {
        self.inner.verifier.cached_len()
    }

    /// The clock the gate reads.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Renders a denial in this gate's format, for refusals an adapter must make itself
    /// (a `Principal` extractor used where no layer ran, say).
    pub fn reject(&self, denial: Denial) -> Rejection {
        self.inner.renderer.render(denial, self.now(), None)
    }

    /// Runs the pipeline: credential, parse, verify, state, scopes, spend cap, rate
    /// limits. An adapter calls this once per request and does what it says; it may
    /// first try [`Gate::try_admit_now`], which answers cached keys (and keys refused
    /// from memory) without a future, and on `None` await [`Gate::admit_cold`].
    pub async fn admit<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        policy: &RoutePolicy,
    ) -> Result<Admission, Rejection> {
        if let Some(answer) = self.try_admit_now(headers, policy) {
            return answer;
        }
        self.admit_cold(headers, policy).await
    }

    /// [`admit`](Self::admit) for a request [`try_admit_now`](Self::try_admit_now) just
    /// answered `None` for: the same pipeline without trying the caches first again.
    /// Called on its own, it still answers every request right, only slower.
    pub async fn admit_cold<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        policy: &RoutePolicy,
    ) -> Result<Admission, Rejection> {
        let (key, agent) = match self.presented(headers, policy) {
            Ok(found) => found,
            Err(answered) => return answered,
        };
        let parsed = self.parse(key, self.inner.clock.timestamp())?;
        let verified = match self
            .inner
            .verifier
            .verify(
                digest(key),
                parsed.key_id(),
                parsed.secret(),
                self.inner.clock.timestamp(),
            )
            .await
        {
            Ok(verified) => verified,
            Err(failure) => return Err(self.verify_failed(failure, &parsed, self.inner.clock.timestamp())),
        };
        let now = self.inner.clock.timestamp();
        self.check_state(&verified, policy, now)?;
        let principal = &verified.principal;
        match self.spend_now(principal, now) {
            Some(checked) => checked?,
            None => self.spend(principal, now).await?,
        }
        let rate = match self.rate_now(principal, policy, now) {
            Some(checked) => checked?,
            None => self.rate(principal, policy, now).await?,
        };
        Ok(self.admitted(&verified, rate, policy, agent, now))
    }

    /// The whole pipeline without awaiting, when it can be decided from memory: a key
    /// in the cache (or refused from memory: malformed, failed lately, its id
    /// throttled), and a limiter and meter that need no I/O. `None` means "await
    /// [`Gate::admit_cold`]"; nothing was counted then.
    pub fn try_admit_now<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        policy: &RoutePolicy,
    ) -> Option<Result<Admission, Rejection>> {
        let (key, agent) = match self.presented(headers, policy) {
            Ok(found) => found,
            Err(answered) => return Some(answered),
        };
        // One clock read serves the cache, the key's expiry and the limits.
        let now = self.inner.clock.timestamp();
        // A hit needs no parsing: only keys whose secret was proven are cached, under
        // the SHA-256 of the whole key.
        let digest = digest(key);
        // A cached key is decided on its entry in place, under the cache's read lock
        // (nothing below touches the verifier's caches).
        let decide = |verified: &Verified| self.decide_now(verified, policy, agent, now);
        if let Some(decided) = self.inner.verifier.with_fresh(&digest, now, decide) {
            return decided;
        }
        // Not cached. A malformed key is refused here, with no I/O; a well-formed one
        // at once if it failed lately or its id is throttled, and is cold otherwise.
        let parsed = match self.parse(key, now) {
            Ok(parsed) => parsed,
            Err(rejection) => return Some(Err(rejection)),
        };
        let refused = self.inner.verifier.refused_at_once(&digest, parsed.key_id())?;
        Some(Err(self.verify_failed(refused, &parsed, now)))
    }

    /// The rest of the pipeline for a verified key, from memory; `None` when the meter
    /// or the limiter needs I/O (nothing counted then).
    fn decide_now(
        &self,
        verified: &Verified,
        policy: &RoutePolicy,
        agent: Option<&[u8]>,
        now: Timestamp,
    ) -> Option<Result<Admission, Rejection>> {
        if let Err(rejection) = self.check_state(verified, policy, now) {
            return Some(Err(rejection));
        }
        let principal = &verified.principal;
        if let Err(rejection) = self.spend_now(principal, now)? {
            return Some(Err(rejection));
        }
        // Last: the limiter counts the request, so nothing may return `None` after it.
        let rate = match self.rate_now(principal, policy, now)? {
            Ok(rate) => rate,
            Err(rejection) => return Some(Err(rejection)),
        };
        Some(Ok(self.admitted(verified, rate, policy, agent, now)))
    }

    /// Step 1: the credential (and the user agent, when usage is recorded), or the
    /// answer when there is none to check.
    #[allow(clippy::result_large_err)] // The `Err` side is an answer, not an error.
    fn presented<'h, H: HeaderSource + ?Sized>(
        &self,
        headers: &'h H,
        policy: &RoutePolicy,
    ) -> Result<KeyAndAgent<'h>, Result<Admission, Rejection>> {
        let inner = &*self.inner;
        let format = inner.keys.key_format();
        let ours = |value: &str| format.is_branded(value);
        let only_ours: Option<&dyn Fn(&str) -> bool> = if policy.is_optional() { Some(&ours) } else { None };
        let (presented, agent) = extract(headers, &inner.lookups, only_ours, inner.usage.is_some());
        match presented {
            Presented::One(key) => Ok((key, agent)),
            Presented::Nothing if policy.is_optional() => Err(Ok(Admission::default())),
            Presented::Nothing => {
                let header = inner.sources[0].header_name();
                Err(Err(self.deny(Denial::MissingKey { header })))
            }
            Presented::Unusable => Err(Err(self.deny(Denial::InvalidKey { key_id: None }))),
        }
    }

    /// Step 2: the key's parts, with no I/O.
    fn parse<'k>(&self, key: &'k [u8], now: Timestamp) -> Result<ParsedKey<'k>, Rejection> {
        let Ok(key) = std::str::from_utf8(key) else {
            tracing::debug!("malformed key: not UTF-8");
            return Err(self.deny_at(Denial::InvalidKey { key_id: None }, now));
        };
        self.inner.keys.key_format().parse(key).map_err(|e| {
            tracing::debug!(
                key_id = e.key_id.as_ref().map(KeyId::as_str),
                reason = e.reason,
                "malformed key"
            );
            self.deny_at(Denial::InvalidKey { key_id: e.key_id }, now)
        })
    }

    fn verify_failed(&self, failure: Failure, parsed: &ParsedKey<'_>, now: Timestamp) -> Rejection {
        let denial = match failure {
            // Throttled answers like any invalid key: never reveal that the id exists.
            Failure::Invalid | Failure::Throttled => Denial::InvalidKey {
                key_id: Some(KeyId::from(parsed.key_id())),
            },
            Failure::Unavailable => Denial::Unavailable { retry_after: 1 },
        };
        self.deny_at(denial, now)
    }

    /// Step 5 and the scopes: revoked, expired (on every request), scopes.
    fn check_state(
        &self,
        verified: &Verified,
        policy: &RoutePolicy,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let key_id = verified.principal.key_id();
        if verified.revoked {
            tracing::debug!(key_id = %key_id, "revoked key");
            // The same bytes as an unknown key: never reveal that the id exists.
            return Err(self.deny_at(
                Denial::InvalidKey {
                    key_id: Some(key_id.clone()),
                },
                now,
            ));
        }
        if verified.expiry.is_some_and(|at| at <= now) {
            if let Some(expired_at) = verified.expires_at {
                return Err(self.deny_at(Denial::ExpiredKey { expired_at }, now));
            }
        }
        if policy.scopes().is_empty() {
            return Ok(());
        }
        let scopes = verified.principal.scopes();
        if scopes.covers(policy.scopes(), self.inner.admin_grants_all) {
            return Ok(());
        }
        let missing = scopes.missing(policy.scopes(), self.inner.admin_grants_all);
        tracing::debug!(key_id = %key_id, missing = %missing, "insufficient scope");
        Err(self.deny_at(
            Denial::InsufficientScope {
                required: policy.scopes().clone(),
            },
            now,
        ))
    }

    /// The admission of a verified key, its usage counted (`agent`: the request's user
    /// agent, read with its credential).
    fn admitted(
        &self,
        verified: &Verified,
        rate: Option<RateShown>,
        policy: &RoutePolicy,
        agent: Option<&[u8]>,
        now: Timestamp,
    ) -> Admission {
        if let Some(usage) = &self.inner.usage {
            usage.record(&verified.usage, now, agent);
        }
        Admission {
            principal: Some(verified.principal.clone()),
            rate,
            cost: policy.fixed_cost(),
        }
    }

    fn spend_verdict(
        &self,
        spent: Result<u64, BackendError>,
        cap: u64,
        month: Month,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        match spent {
            Ok(spent) if spent >= cap => Err(self.deny_at(
                Denial::QuotaExceeded {
                    resets_at: month.next().start(),
                },
                now,
            )),
            Ok(_) => Ok(()),
            Err(error) => self.backend_failed(&error, now),
        }
    }

    /// The spend cap, from memory; `None` when the meter needs I/O.
    fn spend_now(&self, principal: &Principal, now: Timestamp) -> Option<Result<(), Rejection>> {
        let (Some(meter), Some(cap)) = (&self.inner.meter, principal.spend_cap()) else {
            return Some(Ok(()));
        };
        let month = Month::of(now.to_datetime());
        let spent = meter.spent_now(principal.key_id(), month)?;
        Some(self.spend_verdict(spent, cap, month, now))
    }

    async fn spend(&self, principal: &Principal, now: Timestamp) -> Result<(), Rejection> {
        let (Some(meter), Some(cap)) = (&self.inner.meter, principal.spend_cap()) else {
            return Ok(());
        };
        let month = Month::of(now.to_datetime());
        let spent = meter.spent(principal.key_id(), month).await;
        self.spend_verdict(spent, cap, month, now)
    }

    fn buckets<'p>(&self, principal: &Principal, policy: &'p RoutePolicy) -> Cow<'p, [Bucket]> {
        match principal.rate_limits() {
            Some(own) => policy.buckets(self.inner.id, own, false),
            None => policy.buckets(self.inner.id, &self.inner.default_limits, true),
        }
    }

    fn rate_verdict(
        &self,
        principal: &Principal,
        answer: Result<RateDecision, BackendError>,
        now: Timestamp,
    ) -> Result<Option<RateShown>, Rejection> {
        let decision = match answer {
            Ok(decision) => decision,
            Err(error) => return self.backend_failed(&error, now).map(|()| None),
        };
        let shown = RateShown {
            window: decision.tightest,
            now_secs: u64::try_from(now.unix_secs()).unwrap_or(0),
            ietf: self.inner.ietf_headers,
        };
        if decision.allowed {
            return Ok(Some(shown));
        }
        tracing::debug!(key_id = %principal.key_id(), "rate limited");
        let denial = Denial::RateLimited {
            retry_after: decision.retry_after.max(1),
        };
        Err(self
            .inner
            .renderer
            .render(denial, now.to_datetime(), Some(shown.pairs().collect())))
    }

    /// The rate limits, from memory; `None` when the limiter needs I/O (nothing counted).
    fn rate_now(
        &self,
        principal: &Principal,
        policy: &RoutePolicy,
        now: Timestamp,
    ) -> Option<Result<Option<RateShown>, Rejection>> {
        let Some(limiter) = &self.inner.limiter else {
            return Some(Ok(None));
        };
        let buckets = self.buckets(principal, policy);
        if buckets.is_empty() {
            return Some(Ok(None));
        }
        let answer = limiter.acquire_now(principal.key_id(), &buckets, now)?;
        Some(self.rate_verdict(principal, answer, now))
    }

    async fn rate(
        &self,
        principal: &Principal,
        policy: &RoutePolicy,
        now: Timestamp,
    ) -> Result<Option<RateShown>, Rejection> {
        let Some(limiter) = &self.inner.limiter else {
            return Ok(None);
        };
        let buckets = self.buckets(principal, policy);
        if buckets.is_empty() {
            return Ok(None);
        }
        let answer = limiter.acquire(principal.key_id(), &buckets, now).await;
        self.rate_verdict(principal, answer, now)
    }

    fn backend_failed(&self, error: &crate::policy::BackendError, now: Timestamp) -> Result<(), Rejection> {
        tracing::error!(%error, "policy backend failed");
        match self.inner.fail_mode {
            FailMode::Open => Ok(()),
            FailMode::Closed => Err(self.deny_at(Denial::Unavailable { retry_after: 1 }, now)),
        }
    }

    /// Whether this gate meters spend: when it does not, [`settle`](Self::settle) never
    /// charges, and an adapter need not keep the gate or the admission for it.
    pub fn meters(&self) -> bool {
        self.inner.meter.is_some()
    }

    /// The principal for the request's extensions: moved out of `admission` when this
    /// gate meters nothing (then [`settle`](Self::settle) needs no principal after the
    /// handler), else a clone. What adapters put in the request.
    pub fn principal_for_request(&self, admission: &mut Admission) -> Option<Principal> {
        if self.meters() {
            admission.principal().cloned()
        } else {
            admission.take_principal()
        }
    }

    /// What [`settle`](Self::settle) would charge: `None` when there is nothing to
    /// charge (no meter, no principal, or a zero cost), so adapters can skip awaiting it.
    pub fn charge_due(&self, admission: &Admission, declared: Option<Cost>) -> Option<u64> {
        self.inner.meter.as_ref()?;
        admission.principal.as_ref()?;
        declared.map(|c| c.0).or(admission.cost).filter(|c| *c > 0)
    }

    /// Charges an admitted request: the handler's declared cost, or the route's fixed
    /// cost. Adapters call it once the response is ready.
    pub async fn settle(&self, admission: &Admission, declared: Option<Cost>) {
        let Some(cost) = self.charge_due(admission, declared) else {
            return;
        };
        let (Some(meter), Some(principal)) = (&self.inner.meter, &admission.principal) else {
            return;
        };
        let month = Month::of(self.now());
        if let Err(error) = meter.charge(principal.key_id(), month, cost).await {
            tracing::error!(key_id = %principal.key_id(), %error, "could not record spend");
        }
    }

    /// [`settle`](Self::settle) as a future that owns what it needs, for an adapter's
    /// response future to await after the handler: `None` when there is nothing to
    /// charge. The admission is taken (what is left charges nothing).
    pub fn into_charge(
        self,
        admission: &mut Admission,
        declared: Option<Cost>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.charge_due(admission, declared)?;
        let admission = std::mem::take(admission);
        Some(async move { self.settle(&admission, declared).await })
    }

    fn deny(&self, denial: Denial) -> Rejection {
        self.inner.renderer.render(denial, self.inner.clock.now(), None)
    }

    fn deny_at(&self, denial: Denial, now: Timestamp) -> Rejection {
        self.inner.renderer.render(denial, now.to_datetime(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_number_text_covers_the_table_and_nothing_beyond_it() {
        for n in [0, 1, 9, 10, 99, 100, 999, 1000, 1023] {
            assert_eq!(Admission::static_number_text(n), Some(n.to_string().as_str()));
        }
        for n in [1024, 1_795_000_000, u64::MAX] {
            assert_eq!(Admission::static_number_text(n), None);
        }
    }

    #[test]
    fn number_values_read_as_their_numbers_from_the_table_and_beyond_it() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            1023,
            1024,
            1_795_000_000,
            u64::MAX,
        ] {
            // Each header alone, then all three (from the table and beyond it at once),
            // and again (reused values): still right.
            for numbers in [[n, 0, 0], [0, n, 0], [0, 0, n], [n, 7, n], [n, 7, n]] {
                let values = number_values(numbers);
                for (value, number) in values.iter().zip(numbers) {
                    assert_eq!(value, number.to_string().as_str(), "{numbers:?}");
                }
            }
        }
    }
}
