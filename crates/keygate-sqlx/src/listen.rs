//! PostgreSQL's LISTEN/NOTIFY as [`KeyStore::subscribe`](keygate_core::KeyStore::subscribe):
//! every revoke, rotation and expiry change written through `SqlStore` notifies
//! `keygate_changes` in its transaction, and each listening process forgets that key at
//! once. When the listener's connection drops, [`Pushed::Lost`] tells the gate to read
//! what it missed from the change feed; sqlx's listener reconnects and listens again.

use std::time::Duration;

use keygate_core::store::Pushed;
use keygate_core::KeyId;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use crate::store::CHANGES_CHANNEL;

/// Pushes waiting for the gate at most; a slower gate gets `Lost` and catches up.
const BUFFER: usize = 1024;

/// Starts listening; `None` (the gate then polls only) when the first connection fails.
pub(crate) async fn subscribe(pool: &PgPool) -> Option<mpsc::Receiver<Pushed>> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, "change push unavailable; polling the change feed only");
            return None;
        }
    };
    if let Err(error) = listener.listen(CHANGES_CHANNEL).await {
        tracing::warn!(%error, "change push unavailable; polling the change feed only");
        return None;
    }
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(forward(listener, tx));
    Some(rx)
}

/// Forwards notifications until the gate stops listening (the receiver is dropped).
async fn forward(mut listener: PgListener, tx: mpsc::Sender<Pushed>) {
    loop {
        let pushed = match listener.try_recv().await {
            Ok(Some(notification)) => Pushed::Changed(KeyId::new(notification.payload())),
            // The connection dropped: the next try_recv reconnects and listens again, and
            // whatever was notified meanwhile is read from the feed.
            Ok(None) => Pushed::Lost,
            Err(error) => {
                tracing::warn!(%error, "change push failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                Pushed::Lost
            }
        };
        match tx.try_send(pushed) {
            Ok(()) => {}
            // The gate lags: it will catch up from the feed.
            Err(mpsc::error::TrySendError::Full(_)) => {
                if tx.send(Pushed::Lost).await.is_err() {
                    return;
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
