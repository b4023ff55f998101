//! The apps of keygate's throughput budget, served on one thread so that each can be
//! pinned to one core. `scripts/load.sh` and `scripts/paired.sh` run it and drive it with
//! wrk.
//!
//! `load_server <mode> <addr>` prints `key: <key>` and serves `GET /v1/ping` in one of
//! the modes of [`keygate_bench::Mode`] (see the crate's documentation; actix modes on
//! actix-web with one worker), or:
//! - `flood` / `flood-unthrottled`: `auth` with real argon2 parameters, writing to the
//!   file named by a third argument 10 000 well-formed wrong keys: half guess secrets
//!   for one real key id, half name unknown ids. `flood-unthrottled` turns off the
//!   per-key-id failure limit, to show what it saves.
//!
//! `load_server --modes` prints the modes this build serves, one a line with the mode it
//! is compared with (`bare` or `actix-bare`), so that the scripts check names against
//! this one list.

use std::io::Write;

use axum::extract::Request;
use axum::ServiceExt;
use keygate_bench::{Framework, Mode};
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::{Environment, KeyFormat};
use keygate_core::verify::VerifierConfig;
use keygate_core::{Gate, NewKey};

/// What to serve: a mode, or `auth` under a flood of wrong keys.
enum Serve {
    Mode(Mode),
    Flood { throttled: bool },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "auth".into());
    if name == "--modes" {
        for mode in Mode::ALL.into_iter().filter(|mode| mode.is_available()) {
            println!("{mode} {}", mode.reference());
        }
        return Ok(());
    }
    let serve = match name.as_str() {
        "flood" => Serve::Flood { throttled: true },
        "flood-unthrottled" => Serve::Flood { throttled: false },
        other => Serve::Mode(other.parse()?),
    };
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3900".into());
    let flood_file = args.next();
    match serve {
        Serve::Mode(mode) if mode.framework() == Framework::Actix => serve_actix(mode, &addr),
        Serve::Mode(mode) => serve_axum(mode, None, &addr),
        Serve::Flood { throttled } => {
            let path = flood_file.ok_or("flood modes take a file for the flood keys")?;
            serve_axum(Mode::Auth, Some((throttled, path)), &addr)
        }
    }
}

/// Serves an axum mode on a current-thread runtime; with `flood`, `auth` with real
/// hashing, its flood keys written to the file.
fn serve_axum(
    mode: Mode,
    flood: Option<(bool, String)>,
    addr: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut builder = keygate_bench::gate_builder(mode)?;
        if let Some((throttled, _)) = &flood {
            // Real parameters: a flood is only a threat when hashes are expensive.
            let failure_limit = if *throttled { 20 } else { u32::MAX };
            builder = builder.hasher(Argon2Hasher::default()).verifier(VerifierConfig {
                failure_limit,
                ..VerifierConfig::default()
            });
        }
        let gate = builder.build();
        let (created, principal) = keygate_bench::create_key(&gate).await?;
        let key = created.key.expose_secret();
        if let Some((_, path)) = &flood {
            write_flood(path, gate.keys().key_format(), &gate).await?;
        }
        println!("key: {key}");
        let listener = tokio::net::TcpListener::bind(addr).await?;
        match mode.framework() {
            Framework::AxumAround => {
                let app = keygate_bench::around_app(mode, &gate)?;
                axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).await?;
            }
            Framework::AxumRouteLayer | Framework::Actix => {
                let app = keygate_bench::app(mode, &gate, key, &principal)?;
                axum::serve(listener, app).await?;
            }
        }
        Ok(())
    })
}

/// Serves an actix-web mode on one worker (actix's own runtime).
fn serve_actix(mode: Mode, addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    actix_web::rt::System::new().block_on(async move {
        let gate = keygate_bench::gate_builder(mode)?.build();
        let (created, _) = keygate_bench::create_key(&gate).await?;
        println!("key: {}", created.key.expose_secret());
        let server = match keygate_bench::actix_middleware(mode, &gate)? {
            None => actix_web::HttpServer::new(keygate_bench::actix_bare)
                .workers(1)
                .shutdown_timeout(1)
                .bind(addr)?
                .run(),
            Some(middleware) => {
                actix_web::HttpServer::new(move || keygate_bench::actix_guarded(middleware.clone()))
                    .workers(1)
                    .shutdown_timeout(1)
                    .bind(addr)?
                    .run()
            }
        };
        server.await?;
        Ok(())
    })
}

/// 10 000 well-formed keys that fail: guesses at a real id's secret, and unknown ids.
async fn write_flood(path: &str, format: &KeyFormat, gate: &Gate) -> Result<(), Box<dyn std::error::Error>> {
    let victim = gate.keys().create(NewKey::new("acct_victim", "victim")).await?;
    let victim_id = victim.record.key_id.as_str();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..10_000 {
        let (_, fresh) = format.generate(Environment::Live);
        let line = if i % 2 == 0 {
            let secret = format.parse(fresh.expose_secret())?.secret().to_string();
            format.compose(victim_id, &secret)?.expose_secret().to_string()
        } else {
            fresh.expose_secret().to_string()
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}
