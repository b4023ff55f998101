//! The memory budget of `docs/ARCHITECTURE.md`: at most 1 KiB per cached key. Measured with a counting
//! allocator, alone in this test binary so that no other test's allocations mix in.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use http::HeaderMap;
use keygate_core::hash::Argon2Hasher;
use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_cached_key_costs_at_most_one_kibibyte() {
    const KEYS: usize = 2000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .track_usage(false)
        .build();
    let requests: Vec<HeaderMap> = (0..KEYS)
        .map(|i| {
            let new = NewKey::new(format!("acct_{i}").as_str(), "memory").scopes(["read", "write"]);
            let created = rt.block_on(gate.keys().create(new)).unwrap();
            let mut headers = HeaderMap::new();
            headers.insert("x-api-key", created.key.expose_secret().parse().unwrap());
            headers
        })
        .collect();
    // One key through the path first, so lazily built structures are not counted.
    rt.block_on(gate.admit(&requests[0], &RoutePolicy::new()))
        .unwrap();
    gate.cached_keys();

    let before = LIVE_BYTES.load(Ordering::SeqCst);
    for headers in &requests[1..] {
        rt.block_on(gate.admit(headers, &RoutePolicy::new())).unwrap();
    }
    assert_eq!(gate.cached_keys(), KEYS as u64);
    let after = LIVE_BYTES.load(Ordering::SeqCst);

    let per_key = (after - before) / (KEYS as isize - 1);
    println!("cached key: {per_key} bytes");
    assert!(
        per_key <= 1024,
        "a cached key costs {per_key} bytes, over the 1 KiB budget"
    );
}
