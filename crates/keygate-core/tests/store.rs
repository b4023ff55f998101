//! The store conformance suite against the in-memory store.
//! Needs the `conformance` feature (`cargo test --workspace --all-features` enables it).
#![cfg(feature = "conformance")]

use keygate_core::{conformance, MemoryStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_store_conformance_suite() {
    conformance::store::run_all(|| async { MemoryStore::new() }).await;
}
