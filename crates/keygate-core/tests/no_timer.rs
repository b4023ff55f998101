//! A gate on a Tokio runtime built without its timer (no `enable_time`): the store's time
//! budget cannot be kept there, and cold keys are still verified, not refused. A file of
//! its own: the gate notes once per process that there is no timer.

use http::HeaderMap;
use keygate_core::hash::Argon2Hasher;
use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};

#[test]
fn a_runtime_without_a_timer_still_verifies_cold_keys() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("a runtime without the timer");
    runtime.block_on(async {
        let gate = Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .build();
        let created = gate.keys().create(NewKey::new("acct_1", "demo")).await.unwrap();
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {}", created.key.expose_secret());
        headers.insert("authorization", value.parse().unwrap());
        for _ in 0..2 {
            let admitted = gate.admit(&headers, &RoutePolicy::new()).await;
            assert!(admitted.is_ok(), "refused: {:?}", admitted.err());
        }
    });
}
