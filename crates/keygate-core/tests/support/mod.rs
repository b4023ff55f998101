//! Test doubles shared by the verifier's test files: a store that counts lookups, and a
//! hasher that counts its calls, can hold them until released, and records how many
//! ran at once. No test here waits on time: each waits on a count.
#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;

use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use keygate_core::hash::{Argon2Hasher, HashError, KeyHasher, SecretHash};
use keygate_core::key::{Environment, KeyFormat};
use keygate_core::manage::CreatedKey;
use keygate_core::record::{KeyRecord, SpendDelta, UsageDelta};
use keygate_core::spend::Month;
use keygate_core::store::{Changes, Page, StoreError};
use keygate_core::{Gate, KeyId, KeyStore, MemoryStore, NewKey, OwnerId, RoutePolicy};

/// A store that counts lookups, can hold them back until released, and can answer them
/// with another stored hash (as if the key's secret had been reset).
#[derive(Clone, Default)]
pub struct CountingStore {
    pub inner: MemoryStore,
    finds: Arc<AtomicUsize>,
    hash: Arc<Mutex<Option<SecretHash>>>,
    /// While lookups are held: what they wait on (closed to release them).
    held: Arc<Mutex<Option<Arc<tokio::sync::Semaphore>>>>,
    spents: Arc<AtomicUsize>,
    /// Lookups that ran to their end (a held one, once released).
    finds_done: Arc<AtomicUsize>,
    /// While reads of the recorded spend are held: what they wait on.
    held_spent: Arc<Mutex<Option<Arc<tokio::sync::Semaphore>>>>,
}

/// Lookups held at a [`CountingStore`] until this is dropped.
#[must_use = "the lookups are released when this is dropped"]
pub struct HoldFinds(Arc<Mutex<Option<Arc<tokio::sync::Semaphore>>>>);

impl Drop for HoldFinds {
    fn drop(&mut self) {
        if let Some(door) = self.0.lock().unwrap().take() {
            door.close();
        }
    }
}

impl CountingStore {
    pub fn finds(&self) -> usize {
        self.finds.load(Ordering::SeqCst)
    }

    /// Holds every lookup (counted as it arrives) until the [`HoldFinds`] is dropped.
    pub fn hold_finds(&self) -> HoldFinds {
        *self.held.lock().unwrap() = Some(Arc::new(tokio::sync::Semaphore::new(0)));
        HoldFinds(self.held.clone())
    }

    /// Lookups that ran to their end.
    pub fn finds_done(&self) -> usize {
        self.finds_done.load(Ordering::SeqCst)
    }

    /// Reads of the recorded spend (`spent`).
    pub fn spents(&self) -> usize {
        self.spents.load(Ordering::SeqCst)
    }

    /// Holds every read of the recorded spend (counted as it arrives) until the
    /// [`HoldFinds`] is dropped.
    pub fn hold_spent(&self) -> HoldFinds {
        *self.held_spent.lock().unwrap() = Some(Arc::new(tokio::sync::Semaphore::new(0)));
        HoldFinds(self.held_spent.clone())
    }

    /// Every record found from now on carries `hash`.
    pub fn replace_hash(&self, hash: SecretHash) {
        *self.hash.lock().unwrap() = Some(hash);
    }
}

impl KeyStore for CountingStore {
    async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        let door = self.held.lock().unwrap().clone();
        if let Some(door) = door {
            // Closed when released: every waiter goes on.
            let _ = door.acquire().await;
        }
        let replaced = self.hash.lock().unwrap().clone();
        let found = self.inner.find(key_id).await;
        self.finds_done.fetch_add(1, Ordering::SeqCst);
        let found = found?;
        Ok(found.map(|mut record| {
            if let Some(hash) = replaced {
                record.secret_hash = hash;
            }
            record
        }))
    }
    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }
    async fn list_by_owner(&self, owner: &OwnerId, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_by_owner(owner, page).await
    }
    async fn list(&self, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list(page).await
    }
    async fn revoke(&self, key_id: &KeyId, at: DateTime<Utc>) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.revoke(key_id, at).await
    }
    async fn set_expiry(
        &self,
        key_id: &KeyId,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.set_expiry(key_id, at).await
    }
    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.inner.record_usage(batch).await
    }
    async fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        at: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.replace(old, new, at).await
    }
    async fn record_spend(&self, batch: &[SpendDelta]) -> Result<(), StoreError> {
        self.inner.record_spend(batch).await
    }
    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
        self.spents.fetch_add(1, Ordering::SeqCst);
        let door = self.held_spent.lock().unwrap().clone();
        if let Some(door) = door {
            let _ = door.acquire().await;
        }
        self.inner.spent(key_id, month).await
    }
    async fn changes_since(&self, cursor: u64) -> Result<Changes, StoreError> {
        self.inner.changes_since(cursor).await
    }
}

/// A door that blocks the threads that reach it while it is shut.
#[derive(Default)]
struct Valve {
    shut: Mutex<bool>,
    changed: Condvar,
}

impl Valve {
    fn set(&self, shut: bool) {
        *self.shut.lock().unwrap() = shut;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut shut = self.shut.lock().unwrap();
        while *shut {
            shut = self.changed.wait(shut).unwrap();
        }
    }
}

#[derive(Default)]
struct ProbeState {
    hashes: AtomicUsize,
    verifies: AtomicUsize,
    /// `hash` calls under way, and the most there ever were (which a test waits on: it
    /// is raised just after the count).
    hashing: AtomicUsize,
    most_hashing: AtomicUsize,
    /// `hash` and `verify` calls under way (all argon2 work), and the most at once.
    running: AtomicUsize,
    most_running: AtomicUsize,
    hold_hash: Valve,
    hold_verify: Valve,
}

/// argon2 (cheap parameters) that counts `hash` and `verify`, can hold each until
/// released, and records the most calls running at once.
#[derive(Clone)]
pub struct Probe {
    argon2: Argon2Hasher,
    state: Arc<ProbeState>,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            argon2: Argon2Hasher::insecure_fast(),
            state: Arc::default(),
        }
    }
}

/// Counts a call under way while it lives.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn enter(now: &'a AtomicUsize, most: &AtomicUsize) -> Self {
        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(n, Ordering::SeqCst);
        Self(now)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Calls held at a [`Probe`] until this is dropped (a failing assertion included, so
/// that no blocking thread is left waiting and the runtime can shut down).
#[must_use = "the calls are released when this is dropped"]
pub struct Hold {
    state: Arc<ProbeState>,
    hashes: bool,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let valve = if self.hashes {
            &self.state.hold_hash
        } else {
            &self.state.hold_verify
        };
        valve.set(false);
    }
}

impl Probe {
    /// Holds every `hash` (key creation) until the [`Hold`] is dropped.
    pub fn hold_hashes(&self) -> Hold {
        self.state.hold_hash.set(true);
        Hold {
            state: self.state.clone(),
            hashes: true,
        }
    }
    /// Holds every `verify` until the [`Hold`] is dropped.
    pub fn hold_verifies(&self) -> Hold {
        self.state.hold_verify.set(true);
        Hold {
            state: self.state.clone(),
            hashes: false,
        }
    }
    pub fn hashes(&self) -> usize {
        self.state.hashes.load(Ordering::SeqCst)
    }
    pub fn verifies(&self) -> usize {
        self.state.verifies.load(Ordering::SeqCst)
    }
    pub fn most_hashing(&self) -> usize {
        self.state.most_hashing.load(Ordering::SeqCst)
    }
    pub fn most_running(&self) -> usize {
        self.state.most_running.load(Ordering::SeqCst)
    }
}

impl KeyHasher for Probe {
    fn hash(&self, secret: &[u8]) -> Result<SecretHash, HashError> {
        let s = &*self.state;
        s.hashes.fetch_add(1, Ordering::SeqCst);
        let _hashing = Running::enter(&s.hashing, &s.most_hashing);
        let _running = Running::enter(&s.running, &s.most_running);
        s.hold_hash.pass();
        self.argon2.hash(secret)
    }
    fn verify(&self, secret: &[u8], stored: &SecretHash) -> Result<bool, HashError> {
        let s = &*self.state;
        s.verifies.fetch_add(1, Ordering::SeqCst);
        let _running = Running::enter(&s.running, &s.most_running);
        s.hold_verify.pass();
        self.argon2.verify(secret, stored)
    }
}

pub fn bearer(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
    headers
}

pub async fn status(gate: &Gate, key: &str) -> StatusCode {
    match gate.admit(&bearer(key), &RoutePolicy::new()).await {
        Ok(_) => StatusCode::OK,
        Err(rejection) => rejection.status(),
    }
}

pub async fn create(gate: &Gate) -> CreatedKey {
    gate.keys()
        .create(NewKey::new("acct_1", "test").scopes(["read"]))
        .await
        .unwrap()
}

/// A well-formed key (valid checksum) for `key_id`, with a random secret: for an id
/// that exists, a wrong secret.
pub fn forge(key_id: &str) -> String {
    let format = KeyFormat::default();
    let (_, other) = format.generate(Environment::Live);
    let secret = format.parse(other.expose_secret()).unwrap().secret().to_string();
    format
        .compose(key_id, &secret)
        .unwrap()
        .expose_secret()
        .to_string()
}

/// A well-formed key whose id no store holds.
pub fn unknown_key() -> String {
    let (_, key) = KeyFormat::default().generate(Environment::Live);
    key.expose_secret().to_string()
}

/// Yields until `done` holds. The counts it reads are set by other threads.
pub async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::task::yield_now().await;
    }
}

/// Polls `future` once: whether it is still pending. A cold request polled once has
/// joined or started its verification.
pub async fn pending<F: Future>(future: &mut Pin<Box<F>>) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_pending())).await
}
