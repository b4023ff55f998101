//! Sends `n` requests through the app of a load-server mode in process, with no sockets:
//! `requests <mode> <n>`, an axum mode of [`keygate_bench::Mode`] (the actix modes have
//! the `requests_actix` example). `scripts/instructions.sh` runs it under callgrind twice
//! per mode and divides the difference by the extra requests, which gives the
//! instructions one request costs: an exact count, unlike timings on a shared machine.
//! `requests --modes` lists the modes it serves in this build.

use std::convert::Infallible;
use std::error::Error;

use axum::body::Body;
use axum::http::Request;
use axum::response::Response;
use keygate_bench::{Framework, Mode};
use tower::{Service, ServiceExt};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "auth".into());
    if name == "--modes" {
        let axum = |mode: &Mode| mode.framework() != Framework::Actix && mode.is_available();
        for mode in Mode::ALL.into_iter().filter(axum) {
            println!("{mode} {}", mode.reference());
        }
        return Ok(());
    }
    let mode: Mode = name.parse()?;
    let n: usize = args.next().unwrap_or_else(|| "1000".into()).parse()?;
    match mode.framework() {
        Framework::Actix => {
            Err(format!("`{mode}` is an actix mode: the requests_actix example sends it").into())
        }
        Framework::AxumRouteLayer | Framework::AxumAround => axum(mode, n),
    }
}

/// Sends `n` requests to the axum app of `mode`.
fn axum(mode: Mode, n: usize) -> Result<(), Box<dyn Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // `redis-policy` connects on the runtime it is built on.
    let gate = {
        let _runtime = rt.enter();
        keygate_bench::gate_builder(mode)?.build()
    };
    let (created, principal) = rt.block_on(keygate_bench::create_key(&gate))?;
    let key = created.key.expose_secret();
    let authorization = format!("Bearer {key}");
    if mode.framework() == Framework::AxumAround {
        let app = keygate_bench::around_app(mode, &gate)?;
        return rt.block_on(send(app, &authorization, n));
    }
    // What `axum::serve` does once per connection: handlers become routes once.
    let app = keygate_bench::app(mode, &gate, key, &principal)?.with_state::<()>(());
    rt.block_on(send(app, &authorization, n))
}

/// Sends `n` requests to `app`, each on a clone of it, as a server does.
async fn send<S>(app: S, authorization: &str, n: usize) -> Result<(), Box<dyn Error>>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone,
{
    for _ in 0..n {
        let request = Request::get("/v1/ping")
            .header("authorization", authorization)
            .body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        if !response.status().is_success() {
            return Err(format!("unexpected {}", response.status()).into());
        }
    }
    Ok(())
}
