//! [`HashPool`]: the bounded pool every argon2 call of a gate runs on, cold
//! verifications and key creations alike.
//!
//! - `hash_workers` (the cores, by default) argon2 calls run at once, on tokio's
//!   blocking threads, never on an async worker.
//! - Cold verifications are admitted up to `hash_workers + hash_queue`; key creations and
//!   rotations, on a budget of their own, up to `create_workers + create_queue`. Past its
//!   budget a call is refused at once (a request 503, a creation
//!   [`ManageError::Busy`](crate::manage::ManageError::Busy)) rather than queued: a
//!   burst of one kind never fills the other's queue.
//! - At most `create_workers` creations (half the workers by default) hold or wait for a
//!   worker. So however many creations are queued, a cold verification waits behind at
//!   most that many hashes, and with two workers or more, creations never take them all.
//! - A [`KeyManager`](crate::manage::KeyManager) used alone (the CLI, a script) has a
//!   pool of its own: the default widths, and a creation waits its turn rather than
//!   fail, since there is no client to answer 503 to. Inside a gate it shares the gate's.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::quiet::Hushed;
use super::VerifierConfig;

/// Why the pool did not run a call.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// Its budget is spent: retry later.
    Busy,
    /// The blocking task ended without an answer (it panicked).
    Lost(String),
}

pub(crate) struct HashPool {
    /// argon2 calls running.
    workers: Semaphore,
    /// Cold verifications admitted (running or waiting for a worker).
    verifications: Arc<Semaphore>,
    /// Creations admitted (hashing, or waiting for their lane).
    creations: Semaphore,
    /// Creations holding or waiting for a worker.
    creating: Semaphore,
    /// The warning of a creation refused for want of room.
    pub(crate) busy_log: Hushed,
}

impl HashPool {
    pub(crate) fn new(config: &VerifierConfig) -> Self {
        // A semaphore refuses (panics at) more than `MAX_PERMITS`: "unbounded" queues
        // are that many.
        let permits = |n: usize| n.min(Semaphore::MAX_PERMITS);
        let workers = permits(config.hash_workers.max(1));
        let lane = config.create_workers.clamp(1, workers);
        Self {
            workers: Semaphore::new(workers),
            verifications: Arc::new(Semaphore::new(permits(workers.saturating_add(config.hash_queue)))),
            creations: Semaphore::new(permits(lane.saturating_add(config.create_queue))),
            creating: Semaphore::new(lane),
            busy_log: Hushed::new(),
        }
    }

    /// A cold verification's place, held until it ends; `None` when every place is
    /// taken and the verification is to be shed.
    pub(crate) fn admit_verification(&self) -> Option<OwnedSemaphorePermit> {
        self.verifications.clone().try_acquire_owned().ok()
    }

    /// Runs `work` (an argon2 call) once a worker is free: on tokio's blocking threads
    /// when there is a runtime, inline otherwise.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let Ok(_worker) = self.workers.acquire().await else {
            return Err(PoolError::Lost("the hash pool is closed".into()));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(work)
                .await
                .map_err(|e| PoolError::Lost(e.to_string())),
            Err(_) => Ok(work()),
        }
    }

    /// Runs a key creation's `work` within the creation budget, [`PoolError::Busy`] at
    /// once past it.
    pub(crate) async fn create<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let Ok(_admitted) = self.creations.try_acquire() else {
            return Err(PoolError::Busy);
        };
        let Ok(_lane) = self.creating.acquire().await else {
            return Err(PoolError::Lost("the hash pool is closed".into()));
        };
        self.run(work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hash_workers: usize, create_workers: usize, create_queue: usize) -> VerifierConfig {
        VerifierConfig {
            hash_workers,
            hash_queue: 0,
            create_workers,
            create_queue,
            ..VerifierConfig::default()
        }
    }

    #[test]
    fn an_unbounded_queue_is_as_many_places_as_a_semaphore_holds() {
        let pool = HashPool::new(&VerifierConfig {
            hash_queue: usize::MAX,
            create_queue: usize::MAX,
            ..VerifierConfig::default()
        });
        assert_eq!(pool.creations.available_permits(), Semaphore::MAX_PERMITS);
        assert_eq!(pool.verifications.available_permits(), Semaphore::MAX_PERMITS);
    }

    #[test]
    fn creations_never_hold_more_workers_than_their_lane() {
        let pool = HashPool::new(&config(4, 9, 0));
        assert_eq!(pool.creating.available_permits(), 4, "at most every worker");
        let pool = HashPool::new(&config(4, 0, 2));
        assert_eq!(pool.creating.available_permits(), 1, "at least one");
        assert_eq!(pool.creations.available_permits(), 3);
    }

    #[test]
    fn a_creation_past_its_budget_is_refused_at_once() {
        let pool = HashPool::new(&config(1, 1, 0));
        let taken = pool.creations.try_acquire().unwrap();
        let refused = block_on(pool.create(|| 1));
        assert!(matches!(refused, Err(PoolError::Busy)));
        drop(taken);
        assert!(matches!(block_on(pool.create(|| 1)), Ok(1)));
    }

    #[test]
    fn verifications_are_admitted_up_to_workers_and_queue() {
        let pool = HashPool::new(&VerifierConfig {
            hash_workers: 2,
            hash_queue: 1,
            ..VerifierConfig::default()
        });
        let held: Vec<_> = (0..3).map(|_| pool.admit_verification().unwrap()).collect();
        assert!(pool.admit_verification().is_none());
        drop(held);
        assert!(pool.admit_verification().is_some());
    }

    /// A runtime to await the pool's futures on.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }
}
