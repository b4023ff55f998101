//! [`RedisBroadcast`]: a [`KeyStore`] wrapper that publishes every revoke, rotation and
//! expiry change on a Redis channel, and hears every other instance's, so that a key
//! revoked anywhere is refused everywhere within milliseconds.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use keygate_core::clock::Month;
use keygate_core::record::{KeyRecord, OwnerId, SpendDelta, UsageDelta};
use keygate_core::store::{Changes, KeyStore, Page, Pushed, StoreError};
use keygate_core::KeyId;
use redis::aio::{ConnectionManager, PubSub};
use tokio::sync::mpsc;

/// The channel changes are published on unless [`channel`](RedisBroadcast::channel)
/// names another.
pub const DEFAULT_CHANNEL: &str = "keygate:changes";

/// How long a write waits for its `PUBLISH` by default. A write is never failed by it:
/// an unpublished change reaches the other instances through the change feed.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_millis(250);

/// Pushes waiting for the gate at most; a slower gate gets `Lost` and catches up.
const BUFFER: usize = 1024;
/// Reconnection attempts of the subscription: the first after this, doubling up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long connecting and subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an idle subscription is pinged, so that a connection that died silently
/// (a half-open TCP connection) is noticed and replaced.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Longer than any key id: a longer payload is not one, and is ignored.
const MAX_PAYLOAD: usize = 256;

/// A [`KeyStore`] that broadcasts its changes on Redis. Every method is the inner
/// store's; after a successful [`revoke`](KeyStore::revoke),
/// [`set_expiry`](KeyStore::set_expiry) or [`replace`](KeyStore::replace) (the rotated
/// key) it publishes the key id on the channel ([`DEFAULT_CHANNEL`]), and its
/// [`subscribe`](KeyStore::subscribe) listens there: the gate's background task drops
/// each published key from its cache as the message arrives.
///
/// Wrap the store of every instance (and of the `keygate` CLI, `--redis-url`) in one:
/// writers publish, gates listen.
///
/// # When Redis is away
///
/// - A `PUBLISH` that fails or takes longer than [`DEFAULT_PUBLISH_TIMEOUT`] is logged
///   and the write still succeeds: the change is in the store's change feed, which every
///   gate polls as the backstop.
/// - The subscription reconnects on its own (50 ms, doubling to 1 s between attempts)
///   and, once subscribed again, pushes [`Pushed::Lost`]: the gate then reads the change
///   feed after the last cursor it saw and forgets exactly the keys changed meanwhile.
///   It never drops its whole cache, so a blip costs no argon2 verification of the keys
///   that did not change. The same happens after the first subscription, which covers
///   the moment between the gate's start and it.
/// - An idle subscription is pinged every 5 s, so a connection that died silently is
///   replaced too.
///
/// The inner store's own pushes (PostgreSQL's LISTEN/NOTIFY) are forwarded as well:
/// either path alone invalidates.
///
/// # Example
/// ```no_run
/// use keygate_core::{Gate, MemoryStore};
/// use keygate_core::background::Background;
/// use keygate_redis::RedisBroadcast;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisBroadcast::connect_lazy(MemoryStore::new(), "redis://127.0.0.1:6379")?;
/// let gate = Gate::builder(store).build();
/// let background = gate.spawn_background(Background::default());
/// # background.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBroadcast<S> {
    inner: S,
    client: redis::Client,
    publisher: ConnectionManager,
    channel: Arc<str>,
    timeout: Duration,
}

impl<S> fmt::Debug for RedisBroadcast<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroadcast")
            .field("channel", &self.channel)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore> RedisBroadcast<S> {
    /// Wraps `inner`, connecting to the Redis at `url` on the first publish and in the
    /// background for the subscription, so that an instance (or the CLI) starts while
    /// Redis is down. Fails only on a malformed `url`, or outside a Tokio runtime.
    pub fn connect_lazy(inner: S, url: &str) -> Result<Self, redis::RedisError> {
        let publisher = crate::connect_lazy(url)?;
        Ok(Self {
            inner,
            client: redis::Client::open(url)?,
            publisher,
            channel: Arc::from(DEFAULT_CHANNEL),
            timeout: DEFAULT_PUBLISH_TIMEOUT,
        })
    }

    /// Publishes on (and listens to) `channel` instead of [`DEFAULT_CHANNEL`]: one per
    /// deployment that shares a Redis with another.
    pub fn channel(mut self, channel: &str) -> Self {
        self.channel = Arc::from(channel);
        self
    }

    /// Sets how long a write waits for its `PUBLISH`.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Tells every subscribed instance that `key_id` changed; a failure is logged only.
    async fn publish(&self, key_id: &KeyId) {
        let mut connection = self.publisher.clone();
        let published = crate::call(self.timeout, async {
            redis::cmd("PUBLISH")
                .arg(&*self.channel)
                .arg(key_id.as_str())
                .query_async::<i64>(&mut connection)
                .await
        })
        .await;
        if let Err(error) = published {
            tracing::warn!(
                key_id = %key_id,
                %error,
                "change not broadcast; other instances read it from the change feed"
            );
        }
    }
}

impl<S: KeyStore> KeyStore for RedisBroadcast<S> {
    async fn find(&self, key_id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.find(key_id).await
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
        let revoked = self.inner.revoke(key_id, at).await?;
        if revoked.is_some() {
            self.publish(key_id).await;
        }
        Ok(revoked)
    }

    async fn set_expiry(
        &self,
        key_id: &KeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let updated = self.inner.set_expiry(key_id, expires_at).await?;
        if updated.is_some() {
            self.publish(key_id).await;
        }
        Ok(updated)
    }

    async fn replace(
        &self,
        old: &KeyId,
        new: &KeyRecord,
        old_expires_at: DateTime<Utc>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let replaced = self.inner.replace(old, new, old_expires_at).await?;
        if replaced.is_some() {
            self.publish(old).await;
        }
        Ok(replaced)
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.inner.record_usage(batch).await
    }

    async fn record_spend(&self, batch: &[SpendDelta]) -> Result<(), StoreError> {
        self.inner.record_spend(batch).await
    }

    async fn spent(&self, key_id: &KeyId, month: Month) -> Result<u64, StoreError> {
        self.inner.spent(key_id, month).await
    }

    async fn changes_since(&self, cursor: u64) -> Result<Changes, StoreError> {
        self.inner.changes_since(cursor).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.inner.is_empty().await
    }

    async fn subscribe(&self) -> Option<mpsc::Receiver<Pushed>> {
        let (tx, rx) = mpsc::channel(BUFFER);
        if let Some(from_store) = self.inner.subscribe().await {
            tokio::spawn(relay(from_store, tx.clone()));
        }
        tokio::spawn(listen(self.client.clone(), self.channel.clone(), tx));
        Some(rx)
    }
}

/// Hands `pushed` to the gate; `false` once the gate stopped listening. A gate that
/// lags gets `Lost` instead, and catches up from the feed.
async fn deliver(tx: &mpsc::Sender<Pushed>, pushed: Pushed) -> bool {
    match tx.try_send(pushed) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => tx.send(Pushed::Lost).await.is_ok(),
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Forwards the inner store's pushes until either side ends (dropping the inner
/// receiver then stops the store's own listener too).
async fn relay(mut from_store: mpsc::Receiver<Pushed>, tx: mpsc::Sender<Pushed>) {
    loop {
        let pushed = tokio::select! {
            pushed = from_store.recv() => pushed,
            () = tx.closed() => return,
        };
        let Some(pushed) = pushed else { return };
        if !deliver(&tx, pushed).await {
            return;
        }
    }
}

/// Keeps a subscription to `channel` until the gate stops listening: subscribes,
/// pushes `Lost` (what changed while it was not subscribed is read from the feed),
/// forwards messages until the connection drops, and starts again.
async fn listen(client: redis::Client, channel: Arc<str>, tx: mpsc::Sender<Pushed>) {
    let mut delay = RETRY_MIN;
    let mut failing = false;
    loop {
        match subscribed(&client, &channel).await {
            Ok(pubsub) => {
                if failing {
                    tracing::info!(%channel, "change broadcast subscribed again; catching up from the feed");
                }
                failing = false;
                delay = RETRY_MIN;
                if !deliver(&tx, Pushed::Lost).await || !forward(pubsub, &tx).await {
                    return;
                }
                tracing::warn!(%channel, "change broadcast subscription dropped; reconnecting");
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%channel, %error, "change broadcast unavailable; retrying");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// A connection subscribed to `channel`, within [`SUBSCRIBE_TIMEOUT`].
async fn subscribed(
    client: &redis::Client,
    channel: &str,
) -> Result<PubSub, keygate_core::backend::BackendError> {
    crate::call(SUBSCRIBE_TIMEOUT, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    })
    .await
}

/// Forwards each message as [`Pushed::Changed`] until the connection drops (`true`) or
/// the gate stops listening (`false`).
async fn forward(pubsub: PubSub, tx: &mpsc::Sender<Pushed>) -> bool {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return true };
                let payload = message.get_payload_bytes();
                match std::str::from_utf8(payload) {
                    Ok(key_id) if !key_id.is_empty() && key_id.len() <= MAX_PAYLOAD => {
                        if !deliver(tx, Pushed::Changed(KeyId::new(key_id))).await {
                            return false;
                        }
                    }
                    _ => tracing::warn!(bytes = payload.len(), "change broadcast: not a key id; ignored"),
                }
            }
            _ = ping.tick() => {
                let answered = tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return true;
                }
            }
            () = tx.closed() => return false,
        }
    }
}
