//! [`Gate`]: the one place where requests are admitted or refused, and the protocol
//! every adapter speaks to it.
//!
//! # The adapter protocol
//!
//! An adapter makes two calls per request and decides nothing itself:
//!
//! 1. [`Gate::decide`] with the request's headers and the route's [`RoutePolicy`]. The
//!    answer is a [`Decision`]: decided now ([`Decision::Now`]: a cached key, or a
//!    refusal from memory), or a future of the same ([`Decision::Later`]: a cold key,
//!    which owns what it needs, so the adapter may move the request meanwhile). Admitted,
//!    the [`Admission`] splits into the principal to insert into the request and the
//!    [`After`] to keep for the response; refused, the [`Rejection`] is the response.
//! 2. Once the handler has answered, [`After::finish`] gives the headers to add
//!    ([`RateHeaders`](crate::headers::RateHeaders): as `http` values, or as names and
//!    numbers for adapters that make their own) and the [`Charge`] to await, if any.
//!
//! When [`After::is_empty`], there is nothing to do after the handler, and the adapter
//! may return the handler's own future.
//!
//! # Example
//! ```
//! use keygate_core::gate::Decision;
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};
//! use http::{HeaderMap, StatusCode};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let created = gate.keys().create(NewKey::new("acct_1", "demo")).await.unwrap();
//!
//! let mut headers = HeaderMap::new();
//! let value = format!("Bearer {}", created.key.expose_secret());
//! headers.insert("authorization", value.parse().unwrap());
//! // The first request with a key is cold: it is verified by a future.
//! let admission = match gate.decide(&headers, &RoutePolicy::new()) {
//!     Decision::Now(decided) => decided,
//!     Decision::Later(cold) => cold.await,
//! }
//! .unwrap();
//! let (principal, after) = admission.into_parts();
//! assert_eq!(principal.unwrap().owner().as_str(), "acct_1");
//! assert!(after.is_empty(), "no limits, no spend: nothing to do after the handler");
//!
//! // The next is decided at once, from the cache.
//! assert!(matches!(gate.decide(&headers, &RoutePolicy::new()), Decision::Now(Ok(_))));
//!
//! let refused = gate.admit(&HeaderMap::new(), &RoutePolicy::new()).await.unwrap_err();
//! assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use http::HeaderName;

use crate::backend::{BackendError, FailMode};
use crate::background::{self, Background, BackgroundTask, UsageBuffer};
use crate::clock::Clock;
use crate::credential::{CredentialSource, HeaderSource, Lookup};
use crate::key::{Environment, KeyId};
use crate::manage::KeyManager;
use crate::policy::RoutePolicy;
use crate::rate::DynRateLimiter;
use crate::record::RateLimit;
use crate::reject::{Denial, Rejection, Renderer};
use crate::spend::{DynSpendMeter, Month};
use crate::verify::Verifier;

mod builder;
mod pipeline;
mod settle;

pub use builder::GateBuilder;
pub use settle::{Admission, After, Charge, Finish};

/// The answer to [`Gate::decide`].
pub enum Decision {
    /// Decided from memory: a cached key, or a refusal that needs no I/O.
    Now(Result<Admission, Rejection>),
    /// A key that needs the store, argon2 or a backend: await the future, which owns
    /// what it needs.
    Later(Cold),
}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Now(decided) => f.debug_tuple("Now").field(decided).finish(),
            Decision::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// The future of a cold [`Decision`]: `Send` and `'static`, so an adapter boxes it
/// with the request and the inner service.
pub struct Cold(Pin<Box<dyn Future<Output = Result<Admission, Rejection>> + Send>>);

impl Future for Cold {
    type Output = Result<Admission, Rejection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

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
    /// The environments accepted, as a set of [`Environment::bit`]s.
    environments: u8,
}

impl Inner {
    fn accepts(&self, environment: Environment) -> bool {
        self.environments & environment.bit() != 0
    }
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

impl Gate {
    /// Step one of the adapter protocol: decides a request from its headers under
    /// `policy`, at once when it can (see [`Decision`]). Nothing is counted when the
    /// answer is [`Decision::Later`] until its future runs.
    pub fn decide<H: HeaderSource + ?Sized>(&self, headers: &H, policy: &RoutePolicy) -> Decision {
        self.decide_request(headers, policy)
    }

    /// [`decide`](Self::decide), awaited: for code that calls the gate directly rather
    /// than through an adapter.
    pub async fn admit<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        policy: &RoutePolicy,
    ) -> Result<Admission, Rejection> {
        match self.decide(headers, policy) {
            Decision::Now(decided) => decided,
            Decision::Later(cold) => cold.await,
        }
    }

    /// Key management. Revocations and rotations through it reach this gate's cache
    /// before they return.
    pub fn keys(&self) -> &KeyManager {
        &self.inner.keys
    }

    /// The headers the gate reads, in the order it reads them: its credential sources',
    /// then `User-Agent` when usage is recorded. For an adapter whose header names are
    /// not `http`'s (actix-web's) to convert once, not per request.
    pub fn header_names(&self) -> impl Iterator<Item = &HeaderName> {
        let agent = self.inner.usage.as_ref().map(|_| &http::header::USER_AGENT);
        self.inner.lookups.iter().map(Lookup::name).chain(agent)
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
            self.inner.meter.clone(),
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

    /// Writes the spend meter's pending charges now (a meter that records them behind,
    /// as [`RecordSpendMeter`](crate::spend::RecordSpendMeter) does); returns how many
    /// (key, month) totals were written.
    pub async fn flush_spend(&self) -> usize {
        match &self.inner.meter {
            Some(meter) => meter.flush().await,
            None => 0,
        }
    }

    /// What `key_id` has spent in `month`, as this gate's meter counts it (live, with
    /// its charges not yet written behind); as the store recorded it when the gate
    /// meters nothing. An owner's spend is under
    /// [`spend_subject`](crate::account::spend_subject).
    pub async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, BackendError> {
        match &self.inner.meter {
            Some(meter) => meter.spent(key_id, month).await,
            None => self
                .inner
                .keys
                .store_ref()
                .spent(key_id, month)
                .await
                .map_err(|e| BackendError(e.to_string())),
        }
    }

    /// What this gate has counted since it was built: requests by outcome and where they
    /// were decided, shed verifications, wrong secrets, backend errors. Export it with
    /// [`Stats::publish`](crate::observe::Stats::publish) (the `metrics` facade).
    pub fn stats(&self) -> crate::observe::Stats {
        self.inner.verifier.counters.snapshot()
    }

    /// Wrong secrets this gate saw lately for the existing key `key_id` (how many, the
    /// first and the latest), kept a day in a bounded map: what the usage route flags.
    pub fn wrong_secrets(&self, key_id: &KeyId) -> Option<crate::verify::WrongSecrets> {
        self.inner.verifier.wrong_secrets(key_id)
    }

    /// Keys currently cached as verified (approximate).
    pub fn cached_keys(&self) -> u64 {
        self.inner.verifier.cached_len()
    }

    /// The clock the gate reads.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// Whether `admin` grants every scope on this gate
    /// ([`GateBuilder::admin_grants_all`], on by default), for keygate's own APIs to
    /// judge scopes as the gate does.
    pub fn admin_grants_all(&self) -> bool {
        self.inner.admin_grants_all
    }

    /// Whether this gate meters spend: when it does not, no [`After`] ever charges.
    pub fn meters(&self) -> bool {
        self.inner.meter.is_some()
    }

    /// Renders a denial in this gate's format, for refusals an adapter must make itself
    /// (a `Principal` extractor used where no layer ran, say) and for keygate's own APIs
    /// ([`Denial::BadRequest`], [`Denial::NotFound`]).
    pub fn reject(&self, denial: Denial) -> Rejection {
        self.inner.renderer.render(denial, self.now(), None)
    }
}
