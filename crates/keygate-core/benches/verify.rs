//! The warm verify path: a request with a cached key, through `Gate::admit`, and its
//! parts (parsing, the cache digest). `cargo bench -p keygate-core --bench verify`.

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::KeyFormat;
use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};

fn warm_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .track_usage(false)
        .build();
    let created = rt
        .block_on(
            gate.keys()
                .create(NewKey::new("acct_bench", "bench").scopes(["read"])),
        )
        .expect("create");
    let key = created.key.expose_secret().to_string();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {key}").parse().expect("header"));
    let policy = RoutePolicy::new();
    let scoped = RoutePolicy::new().require(["read"]);
    rt.block_on(gate.admit(&headers, &policy)).expect("warm");

    let mut group = c.benchmark_group("warm");
    group.bench_function("admit", |b| {
        b.to_async(&rt)
            .iter(|| async { gate.admit(&headers, &policy).await.is_ok() })
    });
    group.bench_function("admit_with_scope", |b| {
        b.to_async(&rt)
            .iter(|| async { gate.admit(&headers, &scoped).await.is_ok() })
    });
    let tracked = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let created = rt
        .block_on(tracked.keys().create(NewKey::new("acct_bench", "bench")))
        .expect("create");
    let mut tracked_headers = HeaderMap::new();
    tracked_headers.insert("x-api-key", created.key.expose_secret().parse().expect("header"));
    rt.block_on(tracked.admit(&tracked_headers, &policy))
        .expect("warm");
    group.bench_function("admit_with_usage_tracking", |b| {
        b.to_async(&rt)
            .iter(|| async { tracked.admit(&tracked_headers, &policy).await.is_ok() })
    });
    group.finish();

    let format = KeyFormat::default();
    c.bench_function("parse", |b| {
        b.iter(|| format.parse(std::hint::black_box(&key)).is_ok())
    });
}

criterion_group!(benches, warm_path);
criterion_main!(benches);
