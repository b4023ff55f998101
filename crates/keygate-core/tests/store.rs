//! The store conformance suite against the in-memory store, one test per case.
//! Needs the `conformance` feature (`cargo test --workspace --all-features` enables it).
#![cfg(feature = "conformance")]

use keygate_core::MemoryStore;

keygate_core::store_tests!(|| async { MemoryStore::new() });
