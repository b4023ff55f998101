//! The user-space cost of `ApiKeyLayer` in an axum app, without sockets: the apps of
//! `load_server` (every axum mode of [`keygate_bench::Mode`]) called with `oneshot`.
//! `cargo bench -p keygate-bench --bench router`.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use keygate_bench::{Framework, Mode};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

fn router(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("router");
    for mode in Mode::ALL {
        let framework = mode.framework();
        if framework == Framework::Actix || !mode.is_available() {
            continue;
        }
        let gate = {
            let _runtime = rt.enter();
            keygate_bench::gate_builder(mode).expect("a gate").build()
        };
        let (created, principal) = rt.block_on(keygate_bench::create_key(&gate)).expect("key");
        let key = created.key.expose_secret().to_string();
        if framework == Framework::AxumAround {
            let app = keygate_bench::around_app(mode, &gate).expect("an around mode");
            bench(&mut group, &rt, mode, app, &key);
        } else {
            // What `axum::serve` does once per connection: handlers become routes (and
            // layers are applied) once, not on every request.
            let app = keygate_bench::app(mode, &gate, &key, &principal)
                .expect("a mode")
                .with_state::<()>(());
            bench(&mut group, &rt, mode, app, &key);
        }
    }
    group.finish();
}

/// One request after another to clones of `app`, as a server sends them.
fn bench<S>(group: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, mode: Mode, app: S, key: &str)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    let request = || {
        Request::get("/v1/ping")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request")
    };
    rt.block_on(app.clone().oneshot(request())).expect("warm");
    group.bench_function(mode.name(), |b| {
        b.to_async(rt)
            .iter(|| async { app.clone().oneshot(request()).await.map(|r| r.status()) })
    });
}

criterion_group!(benches, router);
criterion_main!(benches);
