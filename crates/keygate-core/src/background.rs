//! Work the gate does behind the requests: usage written behind in batches, and the
//! store's change feed polled so that a key revoked by another process (the CLI,
//! another instance) is refused here within one poll interval.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use keygate_core::{Argon2Hasher, Background, Gate, MemoryStore};
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_time().build().unwrap().block_on(async {
//! let gate = Gate::builder(MemoryStore::new()).hasher(Argon2Hasher::insecure_fast()).build();
//! let background = gate.spawn_background(Background::default());
//! // ... serve requests ...
//! background.shutdown().await; // flushes the last usage batch
//! # });
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::key::KeyId;
use crate::record::UsageDelta;
use crate::store::DynKeyStore;

/// Longest user agent kept; longer ones are cut (at a char boundary).
const MAX_USER_AGENT: usize = 256;

/// Usage accumulated since the last flush: one entry per key, whatever the traffic.
#[derive(Default)]
pub(crate) struct UsageBuffer {
    pending: Mutex<HashMap<KeyId, UsageDelta>>,
}

impl UsageBuffer {
    /// Counts one admitted request. A map update under a short lock; the user agent is
    /// copied only when it changes.
    pub(crate) fn record(&self, key_id: &KeyId, at: DateTime<Utc>, user_agent: Option<&[u8]>) {
        let agent = user_agent
            .and_then(|ua| std::str::from_utf8(ua).ok())
            .map(|ua| truncate(ua, MAX_USER_AGENT));
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(key_id) {
            Some(delta) => {
                delta.requests += 1;
                if at >= delta.last_used_at {
                    delta.last_used_at = at;
                    if delta.last_user_agent.as_deref() != agent {
                        delta.last_user_agent = agent.map(str::to_owned);
                    }
                }
            }
            None => {
                pending.insert(
                    key_id.clone(),
                    UsageDelta {
                        key_id: key_id.clone(),
                        requests: 1,
                        last_used_at: at,
                        last_user_agent: agent.map(str::to_owned),
                    },
                );
            }
        }
    }

    fn take(&self) -> Vec<UsageDelta> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *pending).into_values().collect()
    }

    /// Writes everything pending in one batch. On failure the batch is put back, so a
    /// store outage delays usage rather than losing it.
    pub(crate) async fn flush(&self, store: &dyn DynKeyStore) -> usize {
        let batch = self.take();
        if batch.is_empty() {
            return 0;
        }
        match store.record_usage(&batch).await {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(%error, keys = batch.len(), "usage flush failed; will retry");
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for delta in batch {
                    let merged = pending.entry(delta.key_id.clone()).or_insert_with(|| UsageDelta {
                        requests: 0,
                        ..delta.clone()
                    });
                    merged.requests += delta.requests;
                    if delta.last_used_at > merged.last_used_at {
                        merged.last_used_at = delta.last_used_at;
                        merged.last_user_agent = delta.last_user_agent;
                    }
                }
                0
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
