//! The actix half of the `requests` example: `requests_actix <mode> <n>` sends `n`
//! requests to the app of an actix mode of [`keygate_bench::Mode`] in process, with no
//! socket, for `scripts/instructions.sh` to count as it counts the axum modes.
//! `requests_actix --modes` lists the modes it serves.
//!
//! A binary of its own, because compiled into `requests` (or into the library), the actix
//! code changed how rustc split and inlined axum's code there: the axum modes' counts
//! moved by 25 to 115 instructions a request with no change in what they do.

use std::error::Error;

use keygate_bench::{Framework, Mode};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "actix-auth".into());
    if name == "--modes" {
        for mode in served() {
            println!("{mode} {}", mode.reference());
        }
        return Ok(());
    }
    let mode: Mode = name.parse()?;
    if !served().any(|served| served == mode) {
        return Err(format!("`{mode}` is not an actix mode: the requests example sends it").into());
    }
    let n: usize = args.next().unwrap_or_else(|| "1000".into()).parse()?;
    // actix's own runtime, as its server runs each worker on one.
    actix_web::rt::System::new().block_on(actix(mode, n))
}

/// The modes this example sends requests to: actix's (that this build serves).
fn served() -> impl Iterator<Item = Mode> {
    Mode::ALL
        .into_iter()
        .filter(|mode| mode.framework() == Framework::Actix && mode.is_available())
}

/// Sends `n` requests to the actix-web app of `mode`, built as each worker of
/// `HttpServer` builds it: the service its dispatcher calls, without the dispatcher (and
/// the socket) before it.
async fn actix(mode: Mode, n: usize) -> Result<(), Box<dyn Error>> {
    let gate = keygate_bench::gate_builder(mode)?.build();
    let (created, _) = keygate_bench::create_key(&gate).await?;
    let authorization = format!("Bearer {}", created.key.expose_secret());
    let request = || {
        actix_web::test::TestRequest::get()
            .uri("/v1/ping")
            .insert_header(("authorization", authorization.as_str()))
            .to_request()
    };
    // `init_service` panics only if the app's factory fails, which these have no way to.
    match keygate_bench::actix_middleware(mode, &gate)? {
        None => {
            let app = actix_web::test::init_service(keygate_bench::actix_bare()).await;
            send(&app, request, n).await
        }
        Some(middleware) => {
            let app = actix_web::test::init_service(keygate_bench::actix_guarded(middleware)).await;
            send(&app, request, n).await
        }
    }
}

/// Sends `n` requests made by `request` to the actix service `app`, one after another.
/// (Generic over the request: actix-web does not re-export actix-http's `Request`.)
async fn send<S, R, B>(app: &S, request: impl Fn() -> R, n: usize) -> Result<(), Box<dyn Error>>
where
    S: actix_web::dev::Service<R, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
{
    for _ in 0..n {
        let response = app.call(request()).await?;
        if !response.status().is_success() {
            return Err(format!("unexpected {}", response.status()).into());
        }
    }
    Ok(())
}
