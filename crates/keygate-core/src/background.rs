//! Work the gate does behind the requests: usage written behind in batches, and the
//! store's change feed polled so that a key revoked by another process (the CLI,
//! another instance) is refused here within one poll interval.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use keygate_core::background::Background;
//! use keygate_core::hash::Argon2Hasher;
//! use keygate_core::{Gate, MemoryStore};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_time().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let background = gate.spawn_background(Background::default());
//! // ... serve requests ...
//! background.shutdown().await; // flushes the last usage batch
//! # });
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::DateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::Timestamp;
use crate::key::KeyId;
use crate::record::{Refused, UsageDelta};
use crate::spend::DynSpendMeter;
use crate::store::{DynKeyStore, Pushed};

/// Longest user agent kept; longer ones are cut (at a char boundary).
const MAX_USER_AGENT: usize = 256;

/// `last_used_at` is kept to this precision (a millisecond): a later use within it is
/// not written again.
const LAST_USED_GRANULARITY_NANOS: i64 = 1_000_000;

/// The usage of one cached key since the last flush. Lives in the key's cache entry, so
/// counting a request touches only this key's atomics: no shared lock, no map lookup.
#[derive(Debug)]
pub(crate) struct UsageCell {
    key_id: KeyId,
    requests: AtomicU64,
    /// Nanoseconds since the epoch of the latest use.
    last_used: AtomicI64,
    /// Whether the cell is listed for the next flush.
    listed: AtomicBool,
    /// Refusals after the secret was proven, by kind (`Refusal`), and micro-cents
    /// charged, since the last flush.
    refused: [AtomicU64; 4],
    spend: AtomicU64,
    /// Nanoseconds since the epoch of the latest refusal or charge.
    last_seen: AtomicI64,
    /// A hash of the last user agent, so that an unchanged one is not copied again.
    agent_hash: AtomicU64,
    agent: Mutex<Option<String>>,
}

impl UsageCell {
    pub(crate) fn new(key_id: KeyId) -> Self {
        Self {
            key_id,
            requests: AtomicU64::new(0),
            last_used: AtomicI64::new(i64::MIN),
            listed: AtomicBool::new(false),
            refused: Default::default(),
            spend: AtomicU64::new(0),
            last_seen: AtomicI64::new(i64::MIN),
            agent_hash: AtomicU64::new(0),
            agent: Mutex::new(None),
        }
    }
}

impl UsageCell {
    /// The requests counted since the last take, as a delta; `None` when there are none.
    /// A request racing with this is counted now or next time, never twice.
    fn take_delta(&self) -> Option<UsageDelta> {
        // Unlisted first: activity from here on lists the cell again.
        self.listed.store(false, Ordering::Release);
        let requests = self.requests.swap(0, Ordering::AcqRel);
        let take = |c: &AtomicU64| c.swap(0, Ordering::AcqRel);
        let refused = Refused {
            expired: take(&self.refused[Refusal::Expired as usize]),
            scope: take(&self.refused[Refusal::Scope as usize]),
            quota: take(&self.refused[Refusal::Quota as usize]),
            rate: take(&self.refused[Refusal::Rate as usize]),
        };
        let spend = take(&self.spend);
        if requests == 0 && refused.total() == 0 && spend == 0 {
            return None;
        }
        let nanos = if requests > 0 {
            self.last_used.load(Ordering::Acquire)
        } else {
            self.last_seen.load(Ordering::Acquire)
        };
        Some(UsageDelta {
            key_id: self.key_id.clone(),
            requests,
            last_used_at: DateTime::from_timestamp_nanos(nanos),
            last_user_agent: self.agent.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            refused,
            spend,
        })
    }
}

/// A refusal the daily usage counts, by the `Refused` field it adds to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refusal {
    Expired,
    Scope,
    Quota,
    Rate,
}

/// Cells with uncounted usage. A cell is listed once per flush interval, by the first
/// request after a flush; every later request only touches the cell.
#[derive(Default)]
pub(crate) struct UsageBuffer {
    dirty: Mutex<Vec<Arc<UsageCell>>>,
    /// What failed flushes gave back, one merged delta per key, written with the next
    /// one. At most one entry per key that was used, and never more than
    /// [`MAX_RETRY_KEYS`]: a long outage delays usage, it does not grow memory.
    retry: Mutex<HashMap<KeyId, UsageDelta>>,
}

impl UsageBuffer {
    /// Counts one refusal of a verified key, for the daily usage.
    pub(crate) fn refused(&self, cell: &Arc<UsageCell>, kind: Refusal, at: Timestamp) {
        cell.refused[kind as usize].fetch_add(1, Ordering::AcqRel);
        cell.last_seen.fetch_max(at.unix_nanos(), Ordering::AcqRel);
        self.list(cell);
    }

    /// Counts micro-cents charged to a key, for the daily usage.
    pub(crate) fn charged(&self, cell: &Arc<UsageCell>, micro_cents: u64, at: Timestamp) {
        cell.spend.fetch_add(micro_cents, Ordering::AcqRel);
        cell.last_seen.fetch_max(at.unix_nanos(), Ordering::AcqRel);
        self.list(cell);
    }

    /// Lists `cell` for the next flush, once.
    fn list(&self, cell: &Arc<UsageCell>) {
        if cell.listed.load(Ordering::Relaxed) || cell.listed.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
        dirty.push(cell.clone());
        if dirty.len() > MAX_DIRTY {
            let cells = std::mem::take(&mut *dirty);
            drop(dirty);
            self.merge_into_retry(cells);
        }
    }

    /// Counts one admitted request.
    pub(crate) fn record(&self, cell: &Arc<UsageCell>, at: Timestamp, user_agent: Option<&[u8]>) {
        cell.requests.fetch_add(1, Ordering::AcqRel);
        // Plain reads first: on a hot key the time moves by less than the granularity,
        // and the agent stays the same, so most requests write neither.
        let at = at.unix_nanos();
        if at.saturating_sub(cell.last_used.load(Ordering::Relaxed)) >= LAST_USED_GRANULARITY_NANOS {
            cell.last_used.fetch_max(at, Ordering::AcqRel);
        }
        if let Some(agent) = user_agent {
            // Compared as bytes, eight at a time; read as text only when it changed.
            let agent = &agent[..agent.len().min(MAX_USER_AGENT)];
            let hash = agent_hash(agent);
            if cell.agent_hash.load(Ordering::Relaxed) != hash
                && cell.agent_hash.swap(hash, Ordering::AcqRel) != hash
            {
                if let Some(text) = agent_text(agent) {
                    *cell.agent.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.to_owned());
                }
            }
        }
        self.list(cell);
    }

    /// Folds listed cells into the retry map, one merged entry per key (bounded like
    /// failed flushes are), so that the list does not grow with re-verified keys.
    #[cold]
    fn merge_into_retry(&self, cells: Vec<Arc<UsageCell>>) {
        let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
        for cell in cells {
            if let Some(delta) = cell.take_delta() {
                if retry.len() >= MAX_RETRY_KEYS && !retry.contains_key(&delta.key_id) {
                    tracing::error!("usage retry buffer full; a key's usage is dropped");
                    continue;
                }
                merge(&mut retry, delta);
            }
        }
    }

    /// Takes what is pending. A request racing with this is counted now or next time,
    /// never twice and never lost: the counter is swapped, and a cell whose counter
    /// goes from zero again is listed again.
    fn take(&self) -> Vec<UsageDelta> {
        let cells = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let mut batch = std::mem::take(&mut *self.retry.lock().unwrap_or_else(|p| p.into_inner()));
        for cell in cells {
            if let Some(delta) = cell.take_delta() {
                merge(&mut batch, delta);
            }
        }
        batch.into_values().collect()
    }

    /// Writes everything pending in one batch. On failure the batch is kept for the
    /// next flush, so a store outage delays usage rather than losing it.
    pub(crate) async fn flush(&self, store: &dyn DynKeyStore) -> usize {
        let batch = self.take();
        if batch.is_empty() {
            return 0;
        }
        match store.record_usage(&batch).await {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(%error, keys = batch.len(), "usage flush failed; will retry");
                let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
                let mut dropped = 0usize;
                for delta in batch {
                    if retry.len() >= MAX_RETRY_KEYS && !retry.contains_key(&delta.key_id) {
                        dropped += 1;
                        continue;
                    }
                    merge(&mut retry, delta);
                }
                if dropped > 0 {
                    tracing::error!(keys = dropped, "usage retry buffer full; their usage is dropped");
                }
                0
            }
        }
    }
}

/// Keys whose usage a store outage may hold back at most; usage beyond is dropped (and
/// logged). Spend is not usage: it is never dropped here.
const MAX_RETRY_KEYS: usize = 100_000;

/// Cells listed for the next flush at most; past it, the list is merged into one entry
/// per key (with what failed flushes gave back), so a gate that never flushes, or
/// flushes rarely while its keys are re-verified, keeps one entry per key.
const MAX_DIRTY: usize = 10_000;

/// Adds `delta` to `into`'s entry for its key: requests summed, the latest use and its
/// user agent kept.
fn merge(into: &mut HashMap<KeyId, UsageDelta>, delta: UsageDelta) {
    match into.entry(delta.key_id.clone()) {
        std::collections::hash_map::Entry::Vacant(entry) => {
            entry.insert(delta);
        }
        std::collections::hash_map::Entry::Occupied(mut entry) => {
            let kept = entry.get_mut();
            kept.refused = kept.refused.plus(delta.refused);
            kept.spend = kept.spend.saturating_add(delta.spend);
            // A delta of refusals or charges alone does not stand for a use.
            if delta.requests > 0 && (kept.requests == 0 || delta.last_used_at >= kept.last_used_at) {
                kept.last_used_at = delta.last_used_at;
                kept.last_user_agent = delta.last_user_agent;
            }
            kept.requests = kept.requests.saturating_add(delta.requests);
        }
    }
}

/// A hash of a user agent, to notice that it changed: eight bytes per step. Not
/// collision resistant; a collision only keeps the previous agent recorded a while.
fn agent_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut chunks = bytes.chunks_exact(8);
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    let mut word = [0u8; 8];
    word[..rest.len()].copy_from_slice(rest);
    (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K)
}

/// The agent as text: UTF-8, or UTF-8 cut inside its last character (by the length
/// limit), which is then left out; `None` for anything else.
fn agent_text(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(cut) if cut.error_len().is_none() => std::str::from_utf8(&bytes[..cut.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

/// Settings of [`Gate::spawn_background`](crate::Gate::spawn_background).
#[derive(Clone, Debug)]
pub struct Background {
    /// How often usage is written to the store.
    pub usage_flush: Duration,
    /// How often the store's change feed is polled for revocations made elsewhere.
    /// `None` turns polling off (a single instance whose only writer is itself).
    pub feed_poll: Option<Duration>,
}

impl Default for Background {
    /// Usage every 10 s; the feed every second, so a revocation made elsewhere is
    /// honoured within 2 s.
    fn default() -> Self {
        Self {
            usage_flush: Duration::from_secs(10),
            feed_poll: Some(Duration::from_secs(1)),
        }
    }
}

/// The running background work; [`BackgroundTask::shutdown`] stops it and flushes.
#[derive(Debug)]
pub struct BackgroundTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl BackgroundTask {
    /// Stops polling and writes the last usage batch. Call it on graceful shutdown.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.handle.await {
            tracing::error!(%error, "keygate background task failed");
        }
    }
}

pub(crate) fn spawn(
    store: Arc<dyn DynKeyStore>,
    usage: Arc<UsageBuffer>,
    meter: Option<Arc<dyn DynSpendMeter>>,
    invalidate: impl Fn(&KeyId) + Send + Sync + 'static,
    config: Background,
) -> BackgroundTask {
    let (stop, mut stopped) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let mut flush = tokio::time::interval(config.usage_flush.max(Duration::from_millis(10)));
        let poll_every = config.feed_poll.unwrap_or(Duration::from_secs(3600));
        let mut poll = tokio::time::interval(poll_every.max(Duration::from_millis(10)));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Start from the feed's present: older changes were already in the store when
        // this process first read any key.
        let mut cursor = match store.changes_since(u64::MAX).await {
            Ok(changes) => Some(changes.cursor),
            Err(error) => {
                tracing::warn!(%error, "change feed unavailable at start");
                None
            }
        };
        // Pushed changes, when the store has them; the poll below stays the backstop.
        let mut pushed = store.subscribe().await;
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                push = next_push(&mut pushed) => match push {
                    Some(Pushed::Changed(key_id)) => {
                        tracing::debug!(key_id = %key_id, "changed elsewhere (pushed); cache entry dropped");
                        invalidate(&key_id);
                    }
                    // Back after a drop: exactly what changed meanwhile, from the feed.
                    Some(Pushed::Lost) => catch_up(&*store, &mut cursor, &invalidate).await,
                    None => pushed = None,
                },
                _ = flush.tick() => {
                    usage.flush(&*store).await;
                    if let Some(meter) = &meter {
                        meter.flush().await;
                    }
                }
                _ = poll.tick(), if config.feed_poll.is_some() => {
                    catch_up(&*store, &mut cursor, &invalidate).await;
                }
            }
        }
        usage.flush(&*store).await;
        if let Some(meter) = &meter {
            meter.flush().await;
        }
    });
    BackgroundTask { stop, handle }
}

/// The next push, or never when there is no subscription (a `select!` arm that waits).
async fn next_push(pushed: &mut Option<mpsc::Receiver<Pushed>>) -> Option<Pushed> {
    match pushed {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads the change feed after `cursor` and forgets exactly the keys it names.
async fn catch_up(store: &dyn DynKeyStore, cursor: &mut Option<u64>, invalidate: &impl Fn(&KeyId)) {
    match store.changes_since(cursor.unwrap_or(0)).await {
        Ok(changes) => {
            for key_id in &changes.keys {
                tracing::debug!(key_id = %key_id, "changed elsewhere; cache entry dropped");
                invalidate(key_id);
            }
            *cursor = Some(changes.cursor);
        }
        Err(error) => tracing::warn!(%error, "change feed read failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn recorded(agents: &[&[u8]]) -> Option<String> {
        let buffer = UsageBuffer::default();
        let cell = Arc::new(UsageCell::new(KeyId::from("kg_live_a1b2c3d4")));
        for agent in agents {
            buffer.record(&cell, Timestamp::from_unix_nanos(0), Some(agent));
        }
        let agent = cell.agent.lock().unwrap().clone();
        agent
    }

    #[test]
    fn the_last_agent_is_kept_even_when_it_differs_only_inside_a_word() {
        assert_eq!(
            recorded(&[b"client/1.0 (linux)", b"client/1.1 (linux)"]).as_deref(),
            Some("client/1.1 (linux)")
        );
        assert_eq!(recorded(&[b"a", b"b", b"a"]).as_deref(), Some("a"));
    }

    #[test]
    fn a_long_agent_is_cut_at_a_character_boundary() {
        let long = format!("{}é tail", "x".repeat(MAX_USER_AGENT - 1));
        let kept = recorded(&[long.as_bytes()]).unwrap();
        assert_eq!(kept, "x".repeat(MAX_USER_AGENT - 1));
    }

    #[test]
    fn an_agent_that_is_not_utf8_leaves_the_previous_one() {
        assert_eq!(
            recorded(&[b"client/1", b"bad \xff agent"]).as_deref(),
            Some("client/1")
        );
    }

    /// A store whose `record_usage` fails while `down` is set, and sums what it gets.
    #[derive(Default)]
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        written: Mutex<Vec<UsageDelta>>,
    }

    impl crate::store::KeyStore for Flaky {
        async fn find(&self, _: &KeyId) -> Result<Option<crate::record::KeyRecord>, StoreError> {
            Ok(None)
        }
        async fn insert(&self, _: &crate::record::KeyRecord) -> Result<(), StoreError> {
            Ok(())
        }
        async fn list_by_owner(
            &self,
            _: &crate::OwnerId,
            _: crate::store::Page,
        ) -> Result<Vec<crate::record::KeyRecord>, StoreError> {
            Ok(Vec::new())
        }
        async fn list(&self, _: crate::store::Page) -> Result<Vec<crate::record::KeyRecord>, StoreError> {
            Ok(Vec::new())
        }
        async fn revoke(
            &self,
            _: &KeyId,
            _: DateTime<chrono::Utc>,
        ) -> Result<Option<crate::record::KeyRecord>, StoreError> {
            Ok(None)
        }
        async fn set_expiry(
            &self,
            _: &KeyId,
            _: Option<DateTime<chrono::Utc>>,
        ) -> Result<Option<crate::record::KeyRecord>, StoreError> {
            Ok(None)
        }
        async fn replace(
            &self,
            _: &KeyId,
            _: &crate::record::KeyRecord,
            _: DateTime<chrono::Utc>,
        ) -> Result<Option<crate::record::KeyRecord>, StoreError> {
            Ok(None)
        }
        async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.written.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
        async fn record_spend(&self, _: &[crate::record::SpendDelta]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn spent(&self, _: &KeyId, _: crate::clock::Month) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn changes_since(&self, cursor: u64) -> Result<crate::store::Changes, StoreError> {
            Ok(crate::store::Changes {
                keys: Vec::new(),
                cursor,
            })
        }
    }

    #[tokio::test]
    async fn failed_flushes_keep_one_merged_entry_per_key_and_lose_no_request() {
        let store = Flaky::default();
        store.down.store(true, Ordering::SeqCst);
        let buffer = UsageBuffer::default();
        let cells: Vec<_> = (0..3)
            .map(|i| Arc::new(UsageCell::new(KeyId::new(format!("kg_live_key{i:05}")))))
            .collect();
        for round in 0..50 {
            for (i, cell) in cells.iter().enumerate() {
                let agent = format!("client/{round}");
                let at = Timestamp::from_unix_nanos((round * 10 + i as i64) * 1_000_000_000);
                buffer.record(cell, at, Some(agent.as_bytes()));
                buffer.record(cell, at, Some(agent.as_bytes()));
            }
            assert_eq!(buffer.flush(&store).await, 0, "the store is down");
            // Retries stay one entry per key, however long the outage.
            assert_eq!(buffer.retry.lock().unwrap().len(), cells.len(), "round {round}");
        }
        store.down.store(false, Ordering::SeqCst);
        assert_eq!(buffer.flush(&store).await, cells.len());
        let written = store.written.lock().unwrap();
        assert_eq!(written.len(), cells.len(), "one delta per key");
        for delta in written.iter() {
            assert_eq!(delta.requests, 100, "{}", delta.key_id);
            assert_eq!(delta.last_user_agent.as_deref(), Some("client/49"));
        }
    }

    #[tokio::test]
    async fn a_gate_that_never_flushes_keeps_one_entry_per_key_however_often_it_reverifies() {
        // Each re-verification of a key (after an invalidation, a cache expiry) makes a
        // new cell; without a flush, listing every one of them grew without bound.
        let buffer = UsageBuffer::default();
        let keys = 10;
        for round in 0..(MAX_DIRTY * 3 / keys) {
            for k in 0..keys {
                let cell = Arc::new(UsageCell::new(KeyId::new(format!("kg_live_key{k:05}"))));
                buffer.record(&cell, Timestamp::from_unix_nanos(round as i64 * 1000), None);
            }
            let held = buffer.dirty.lock().unwrap().len() + buffer.retry.lock().unwrap().len();
            assert!(held <= MAX_DIRTY + keys, "round {round}: {held} entries held");
        }
        // Nothing was lost: one delta per key, every request counted.
        let store = Flaky::default();
        assert_eq!(buffer.flush(&store).await, keys);
        let written = store.written.lock().unwrap();
        let total: u64 = written.iter().map(|d| d.requests).sum();
        assert_eq!(total, (MAX_DIRTY * 3 / keys * keys) as u64);
    }
}
