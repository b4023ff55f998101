//! The pipeline, steps 1 to 6: the credential, its parse, its verification (cache, or
//! store and argon2), the key's state and scopes, the spend cap and the rate limits.
//! Each step that may need a backend has its two forms side by side: from memory
//! (`*_now`, `None` when I/O is needed) and awaited.

use std::borrow::Cow;

use secrecy::{ExposeSecret, SecretSlice};

use super::settle::{After, Pending};
use super::{Admission, Cold, Decision, Gate};
use crate::account::Holder;
use crate::backend::{BackendError, FailMode};
use crate::background::Refusal;
use crate::clock::Timestamp;
use crate::credential::{extract, HeaderSource, Presented};
use crate::headers::RateHeaders;
use crate::key::{KeyId, ParsedKey};
use crate::observe::{Counters, Path};
use crate::policy::RoutePolicy;
use crate::principal::Principal;
use crate::rate::{Bucket, RateDecision};
use crate::reject::{Denial, Rejection};
use crate::spend::Month;
use crate::verify::{digest, Failure, Verified};

/// The presented key, and the request's user agent when usage is recorded.
type KeyAndAgent<'h> = (&'h [u8], Option<&'h [u8]>);

/// The longest value that can be a key: the key parser's limit (`MAX_KEY_LEN` in
/// `key/format.rs`). A longer one is refused before its SHA-256 is taken, with the
/// answer the parser gives it.
const LONGEST_KEY: usize = 256;

impl Gate {
    /// [`Gate::decide`]: the whole pipeline from memory when it can be (a key in the
    /// cache, or refused from memory: malformed, failed lately, its id throttled; and a
    /// limiter and meter that need no I/O), else a [`Cold`] future with nothing counted.
    pub(super) fn decide_request<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        policy: &RoutePolicy,
    ) -> Decision {
        let (key, agent) = match self.presented(headers, policy) {
            Ok(found) => found,
            Err(answered) => return self.decided(Path::Memory, answered),
        };
        // One clock read serves the cache, the key's expiry and the limits.
        let now = self.inner.clock.timestamp();
        if key.len() > LONGEST_KEY {
            tracing::debug!("malformed key: longer than any key");
            return self.decided(
                Path::Memory,
                Err(self.deny_at(Denial::InvalidKey { key_id: None }, now)),
            );
        }
        // A hit needs no parsing: only keys whose secret was proven are cached, under
        // the SHA-256 of the whole key.
        let digest = digest(key);
        // A cached key is decided on its entry in place, under the cache's read lock
        // (nothing below touches the verifier's caches).
        let decide = |verified: &Verified| self.decide_now(verified, policy, agent, now);
        match self.inner.verifier.with_fresh(&digest, now, decide) {
            Some(Some(decided)) => return self.decided(Path::Cache, decided),
            // Cached, but the meter or the limiter needs I/O.
            Some(None) => return Decision::Later(self.cold(key, agent, policy, Path::Cache)),
            None => {}
        }
        // Not cached. A malformed key is refused here, with no I/O; a well-formed one
        // at once if it failed lately or its id is throttled, and is cold otherwise.
        let parsed = match self.parse(key, now) {
            Ok(parsed) => parsed,
            Err(rejection) => return self.decided(Path::Memory, Err(rejection)),
        };
        match self.inner.verifier.refused_at_once(&digest, parsed.key_id(), now) {
            Some(refused) => self.decided(Path::Memory, Err(self.verify_failed(refused, &parsed, now))),
            None => Decision::Later(self.cold(key, agent, policy, Path::Cold)),
        }
    }

    /// A decision made now, counted.
    fn decided(&self, path: Path, decided: Result<Admission, Rejection>) -> Decision {
        self.inner.verifier.counters.count(path, outcome(&decided));
        Decision::Now(decided)
    }

    /// The future of a cold key. It owns a copy of the key, zeroed when dropped, so
    /// that the adapter may move the request meanwhile.
    fn cold(&self, key: &[u8], agent: Option<&[u8]>, policy: &RoutePolicy, path: Path) -> Cold {
        let gate = self.clone();
        let policy = policy.clone();
        let key = SecretSlice::from(key.to_vec());
        let agent: Option<Box<[u8]>> = agent.map(Into::into);
        Cold(Box::pin(async move {
            let decided = gate
                .admit_cold(key.expose_secret(), agent.as_deref(), &policy)
                .await;
            gate.inner.verifier.counters.count(path, outcome(&decided));
            decided
        }))
    }

    /// The pipeline for a key the cache could not decide: parse, verify (one coalesced
    /// store lookup and argon2 verify), then the rest, awaiting backends as needed.
    async fn admit_cold(
        &self,
        key: &[u8],
        agent: Option<&[u8]>,
        policy: &RoutePolicy,
    ) -> Result<Admission, Rejection> {
        let clock = &self.inner.clock;
        let parsed = self.parse(key, clock.timestamp())?;
        let verified = self
            .inner
            .verifier
            .verify(digest(key), parsed.key_id(), parsed.secret(), clock.timestamp())
            .await
            .map_err(|failure| self.verify_failed(failure, &parsed, clock.timestamp()))?;
        let now = clock.timestamp();
        let counted = |rejection| self.refused_usage(&verified, rejection, now);
        self.check_state(&verified, policy, now).map_err(counted)?;
        match self.spend_now(&verified, policy, now) {
            Some(checked) => checked.map_err(counted)?,
            None => self.spend(&verified, policy, now).await.map_err(counted)?,
        }
        let rate = match self.rate_now(&verified, policy, now) {
            Some(checked) => checked.map_err(counted)?,
            None => self.rate(&verified, policy, now).await.map_err(counted)?,
        };
        Ok(self.admitted(&verified, rate, policy, agent, now))
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
            return Some(Err(self.refused_usage(verified, rejection, now)));
        }
        if let Err(rejection) = self.spend_now(verified, policy, now)? {
            return Some(Err(self.refused_usage(verified, rejection, now)));
        }
        // Last: the limiter counts the request, so nothing may return `None` after it.
        let rate = match self.rate_now(verified, policy, now)? {
            Ok(rate) => rate,
            Err(rejection) => return Some(Err(self.refused_usage(verified, rejection, now))),
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
        let parsed = self.inner.keys.key_format().parse(key).map_err(|e| {
            tracing::debug!(
                key_id = e.key_id.as_ref().map(KeyId::as_str),
                reason = e.reason,
                "malformed key"
            );
            self.deny_at(Denial::InvalidKey { key_id: e.key_id }, now)
        })?;
        // A brand that names an environment this gate does not accept: no I/O for it.
        if parsed.environment().is_some_and(|env| !self.inner.accepts(env)) {
            tracing::debug!(key_id = parsed.key_id(), "key of an environment not accepted");
            let key_id = Some(KeyId::from(parsed.key_id()));
            return Err(self.deny_at(Denial::InvalidKey { key_id }, now));
        }
        Ok(parsed)
    }

    /// Steps 3 and 4 failed: the verifier's answer as a refusal.
    fn verify_failed(&self, failure: Failure, parsed: &ParsedKey<'_>, now: Timestamp) -> Rejection {
        let denial = match failure {
            Failure::Invalid => Denial::InvalidKey {
                key_id: Some(KeyId::from(parsed.key_id())),
            },
            // 503, not 401: a client retries it, where it would drop a key answered 401.
            // Guesses at unknown ids are throttled alike, so it reveals no id's existence.
            Failure::Throttled { retry_after } => Denial::Unavailable { retry_after },
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
        // Revoked, or of an environment this gate does not accept: the same bytes as an
        // unknown key.
        if verified.revoked || !self.inner.accepts(verified.principal.environment()) {
            tracing::debug!(key_id = %key_id, "revoked key, or of an environment not accepted");
            // The same bytes as an unknown key: never reveal that the id exists.
            let key_id = Some(key_id.clone());
            return Err(self.deny_at(Denial::InvalidKey { key_id }, now));
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
        let required = policy.scopes().clone();
        Err(self.deny_at(Denial::InsufficientScope { required }, now))
    }

    /// Step 6, the spend caps (the key's, then its owner's), from memory; `None` when
    /// the meter needs I/O.
    fn spend_now(
        &self,
        verified: &Verified,
        policy: &RoutePolicy,
        now: Timestamp,
    ) -> Option<Result<(), Rejection>> {
        let Some(meter) = self.inner.meter.as_ref().filter(|_| !policy.is_free()) else {
            return Some(Ok(()));
        };
        let month = Month::of(now.to_datetime());
        for (id, cap, holder) in caps(verified) {
            let spent = meter.spent_now(id, month)?;
            if let Err(rejection) = self.spend_verdict(spent, cap, holder, month, now) {
                return Some(Err(rejection));
            }
        }
        Some(Ok(()))
    }

    /// Step 6, the spend caps, awaiting the meter.
    async fn spend(
        &self,
        verified: &Verified,
        policy: &RoutePolicy,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let Some(meter) = self.inner.meter.as_ref().filter(|_| !policy.is_free()) else {
            return Ok(());
        };
        let month = Month::of(now.to_datetime());
        for (id, cap, holder) in caps(verified) {
            let spent = meter.spent(id, month).await;
            self.spend_verdict(spent, cap, holder, month, now)?;
        }
        Ok(())
    }

    fn spend_verdict(
        &self,
        spent: Result<u64, BackendError>,
        cap: u64,
        holder: Holder,
        month: Month,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        match spent {
            Ok(spent) if spent >= cap => {
                let resets_at = month.next().start();
                Err(self.deny_at(Denial::QuotaExceeded { resets_at, holder }, now))
            }
            Ok(_) => Ok(()),
            Err(error) => self.backend_failed(&error, now),
        }
    }

    /// Step 6, the rate limits, from memory; `None` when the limiter needs I/O (nothing
    /// counted).
    fn rate_now(
        &self,
        verified: &Verified,
        policy: &RoutePolicy,
        now: Timestamp,
    ) -> Option<Result<Option<RateHeaders>, Rejection>> {
        let Some(limiter) = &self.inner.limiter else {
            return Some(Ok(None));
        };
        let principal = &verified.principal;
        let buckets = self.buckets(verified, policy);
        if buckets.is_empty() {
            return Some(Ok(None));
        }
        let answer = limiter.acquire_now(principal.key_id(), &buckets, now)?;
        Some(self.rate_verdict(principal, answer, now))
    }

    /// Step 6, the rate limits, awaiting the limiter.
    async fn rate(
        &self,
        verified: &Verified,
        policy: &RoutePolicy,
        now: Timestamp,
    ) -> Result<Option<RateHeaders>, Rejection> {
        let Some(limiter) = &self.inner.limiter else {
            return Ok(None);
        };
        let principal = &verified.principal;
        let buckets = self.buckets(verified, policy);
        if buckets.is_empty() {
            return Ok(None);
        }
        let answer = limiter.acquire(principal.key_id(), &buckets, now).await;
        self.rate_verdict(principal, answer, now)
    }

    /// The key's windows on this route, and its owner's when the owner has any (one
    /// allocation per request for such keys; none otherwise).
    fn buckets<'p>(&self, verified: &Verified, policy: &'p RoutePolicy) -> Cow<'p, [Bucket]> {
        let key = match verified.principal.rate_limits() {
            Some(own) => policy.buckets(self.inner.id, own, false),
            None => policy.buckets(self.inner.id, &self.inner.default_limits, true),
        };
        match verified.account.as_ref().map(|a| &a.buckets[..]) {
            None | Some([]) => key,
            Some(account) => Cow::Owned(key.iter().chain(account).cloned().collect()),
        }
    }

    /// The limiter's answer as headers, or the refusal. An admission is made here, in
    /// line; anything else in [`rate_answer`](Self::rate_answer), out of line.
    #[inline]
    fn rate_verdict(
        &self,
        principal: &Principal,
        answer: Result<RateDecision, BackendError>,
        now: Timestamp,
    ) -> Result<Option<RateHeaders>, Rejection> {
        match answer {
            Ok(decision) if decision.allowed => Ok(Some(RateHeaders::new(
                decision.tightest,
                now,
                self.inner.ietf_headers,
            ))),
            answer => self.rate_answer(principal, answer, now),
        }
    }

    #[cold]
    fn rate_answer(
        &self,
        principal: &Principal,
        answer: Result<RateDecision, BackendError>,
        now: Timestamp,
    ) -> Result<Option<RateHeaders>, Rejection> {
        let decision = match answer {
            Ok(decision) => decision,
            Err(error) => return self.backend_failed(&error, now).map(|()| None),
        };
        let shown = RateHeaders::new(decision.tightest, now, self.inner.ietf_headers);
        if decision.allowed {
            return Ok(Some(shown));
        }
        tracing::debug!(key_id = %principal.key_id(), "rate limited");
        let denial = Denial::RateLimited {
            holder: decision.holder,
            retry_after: decision.retry_after.max(1),
        };
        Err(self
            .inner
            .renderer
            .render(denial, now.to_datetime(), Some(shown.pairs().collect())))
    }

    fn backend_failed(&self, error: &BackendError, now: Timestamp) -> Result<(), Rejection> {
        Counters::bump(&self.inner.verifier.counters.backend_errors);
        tracing::error!(%error, "policy backend failed");
        match self.inner.fail_mode {
            FailMode::Open => Ok(()),
            FailMode::Closed => Err(self.deny_at(Denial::Unavailable { retry_after: 1 }, now)),
        }
    }

    /// The admission of a verified key, its usage counted (`agent`: the request's user
    /// agent, read with its credential). The principal goes to the request; what the
    /// response needs (the headers, and the charge when this gate meters) to [`After`].
    fn admitted(
        &self,
        verified: &Verified,
        rate: Option<RateHeaders>,
        policy: &RoutePolicy,
        agent: Option<&[u8]>,
        now: Timestamp,
    ) -> Admission {
        if let Some(usage) = &self.inner.usage {
            usage.record(&verified.usage, now, agent);
        }
        let principal = &verified.principal;
        let charge = (self.inner.meter.is_some() && !policy.is_free()).then(|| Pending {
            gate: self.clone(),
            key_id: principal.key_id().clone(),
            account: verified.account.as_ref().map(|a| a.subject.clone()),
            usage: self.inner.usage.is_some().then(|| verified.usage.clone()),
            fixed: policy.fixed_cost(),
            at: now,
        });
        Admission {
            principal: Some(principal.clone()),
            after: After { rate, charge },
        }
    }

    /// Counts a refusal of a verified key in its daily usage (when usage is kept), by
    /// code; revoked keys and other environments are not counted. Returns the refusal.
    fn refused_usage(&self, verified: &Verified, rejection: Rejection, now: Timestamp) -> Rejection {
        if let Some(usage) = &self.inner.usage {
            let kind = match rejection.denial() {
                Denial::ExpiredKey { .. } => Some(Refusal::Expired),
                Denial::InsufficientScope { .. } => Some(Refusal::Scope),
                Denial::QuotaExceeded { .. } => Some(Refusal::Quota),
                Denial::RateLimited { .. } => Some(Refusal::Rate),
                _ => None,
            };
            if let Some(kind) = kind {
                usage.refused(&verified.usage, kind, now);
            }
        }
        rejection
    }

    fn deny(&self, denial: Denial) -> Rejection {
        self.inner.renderer.render(denial, self.inner.clock.now(), None)
    }

    fn deny_at(&self, denial: Denial, now: Timestamp) -> Rejection {
        self.inner.renderer.render(denial, now.to_datetime(), None)
    }
}

/// What the counters record of a decision (`observe.rs`).
fn outcome(decided: &Result<Admission, Rejection>) -> Result<bool, &Denial> {
    match decided {
        Ok(admission) => Ok(admission.principal().is_some()),
        Err(rejection) => Err(rejection.denial()),
    }
}

/// The caps a request is checked against, each with the id it is metered under: the
/// key's own, then its owner's.
fn caps(verified: &Verified) -> impl Iterator<Item = (&KeyId, u64, Holder)> {
    let principal = &verified.principal;
    let key = principal
        .spend_cap()
        .map(|cap| (principal.key_id(), cap, Holder::Key));
    let account = verified
        .account
        .as_ref()
        .and_then(|a| Some((&a.subject, a.spend_cap?, Holder::Account)));
    key.into_iter().chain(account)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, StatusCode};

    use super::LONGEST_KEY;
    use crate::gate::Decision;
    use crate::hash::Argon2Hasher;
    use crate::key::{Environment, KeyFormat};
    use crate::verify::HASHED;
    use crate::{Denial, Gate, MemoryStore, NewKey, RoutePolicy};

    fn decide_alone(gate: &Gate, value: &[u8]) -> (Decision, usize) {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_bytes(value).unwrap());
        let before = HASHED.with(|n| n.get());
        let decision = gate.decide(&headers, &RoutePolicy::new());
        (decision, HASHED.with(|n| n.get()) - before)
    }

    #[test]
    fn a_value_longer_than_any_key_is_refused_before_its_sha256_is_taken() {
        let gate = Gate::builder(MemoryStore::new()).build();
        let (decision, hashed) = decide_alone(&gate, &vec![b'k'; 64 * 1024]);
        let Decision::Now(Err(refused)) = decision else {
            panic!("refused from memory");
        };
        assert_eq!(hashed, 0, "bytes put through SHA-256");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(refused.denial(), &Denial::InvalidKey { key_id: None });
        // The same bytes as any value the parser cannot read.
        let (Decision::Now(Err(unreadable)), _) = decide_alone(&gate, b"garbage") else {
            panic!("refused from memory");
        };
        assert_eq!(refused.body(), unreadable.body());
        assert_eq!(refused.headers(), unreadable.headers());
    }

    #[tokio::test]
    async fn a_key_as_long_as_the_parser_takes_is_still_verified() {
        // The longest secret, and a brand as long as it takes to fill the rest.
        let short = KeyFormat::new("_").secret_len(128).generate(Environment::Live).1;
        let brand = "x".repeat(LONGEST_KEY - short.expose_secret().len()) + "_";
        let gate = Gate::builder(MemoryStore::new())
            .key_format(KeyFormat::new(brand).secret_len(128))
            .hasher(Argon2Hasher::insecure_fast())
            .build();
        let created = gate.keys().create(NewKey::new("acct_1", "long")).await.unwrap();
        let key = created.key.expose_secret().as_bytes();
        assert_eq!(key.len(), LONGEST_KEY);
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_bytes(key).unwrap());
        assert!(gate.admit(&headers, &RoutePolicy::new()).await.is_ok());
    }
}
