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

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::DateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Timestamp;
use crate::key::KeyId;
use crate::record::UsageDelta;
use crate::store::DynKeyStore;

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
            agent_hash: AtomicU64::new(0),
            agent: Mutex::new(None),
        }
    }
}

/// Cells with uncounted usage. A cell is listed once per flush interval, by the first
/// request after a flush; every later request only touches the cell.
#[derive(Default)]
pub(crate) struct UsageBuffer {
    dirty: Mutex<Vec<Arc<UsageCell>>>,
    /// Batches a failed flush gives back, written with the next one.
    retry: Mutex<Vec<UsageDelta>>,
}

impl UsageBuffer {
    /// Counts one admitted request.
    pub(crate) fn record(&self, cell: &Arc<UsageCell>, at: Timestamp, user_agent: Option<&[u8]>) {
        let first = cell.requests.fetch_add(1, Ordering::AcqRel) == 0;
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
        if first {
            self.dirty
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(cell.clone());
        }
    }

    /// Takes what is pending. A request racing with this is counted now or next time,
    /// never twice and never lost: the counter is swapped, and a cell whose counter
    /// goes from zero again is listed again.
    fn take(&self) -> Vec<UsageDelta> {
        let cells = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let mut batch = std::mem::take(&mut *self.retry.lock().unwrap_or_else(|p| p.into_inner()));
        for cell in cells {
            let requests = cell.requests.swap(0, Ordering::AcqRel);
            if requests == 0 {
                continue;
            }
            let nanos = cell.last_used.load(Ordering::Acquire);
            batch.push(UsageDelta {
                key_id: cell.key_id.clone(),
                requests,
                last_used_at: DateTime::from_timestamp_nanos(nanos),
                last_user_agent: cell.agent.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            });
        }
        batch
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
                self.retry.lock().unwrap_or_else(|p| p.into_inner()).extend(batch);
                0
            }
        }
    }
}

/// FNV-1a: a fast hash to notice a changed user agent (not for adversarial input: a
/// collision only leaves the previous agent recorded).
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
    invalidate: impl Fn(&KeyId) + Send + 'static,
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
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                _ = flush.tick() => {
                    usage.flush(&*store).await;
                }
                _ = poll.tick(), if config.feed_poll.is_some() => {
                    match store.changes_since(cursor.unwrap_or(0)).await {
                        Ok(changes) => {
                            for key_id in &changes.keys {
                                tracing::debug!(key_id = %key_id, "changed elsewhere; cache entry dropped");
                                invalidate(key_id);
                            }
                            cursor = Some(changes.cursor);
                        }
                        Err(error) => tracing::warn!(%error, "change feed poll failed"),
                    }
                }
            }
        }
        usage.flush(&*store).await;
    });
    BackgroundTask { stop, handle }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
