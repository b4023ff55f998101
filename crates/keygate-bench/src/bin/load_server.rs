//! The axum app of keygate's throughput budget, served on one thread so that it can be
//! pinned to one core. `scripts/load.sh` runs it and drives it with wrk.
//!
//! `load_server <mode> <addr>` prints `key: <key>` and serves `GET /v1/ping` in one of
//! the modes of [`keygate_bench::MODES`] (see the crate's documentation), or:
//! - `flood` / `flood-unthrottled`: `auth` with real argon2 parameters, writing to the
//!   file named by a third argument 10 000 well-formed wrong keys: half guess secrets
//!   for one real key id, half name unknown ids. `flood-unthrottled` turns off the
//!   per-key-id failure limit, to show what it saves;
//! - a mode of [`keygate_bench::AROUND_MODES`]: `ApiKeyLayer` around the whole app;
//! - a mode of [`keygate_bench::ACTIX_MODES`]: the same app on actix-web, with one
//!   worker.

use std::io::Write;

use axum::extract::Request;
use axum::ServiceExt;
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::{Environment, KeyFormat};
use keygate_core::verify::VerifierConfig;
use keygate_core::{Gate, NewKey};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "auth".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3900".into());
    let flood_file = args.next();
    if mode.starts_with("actix-") {
        return serve_actix(&mode, &addr);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let flooded = mode.starts_with("flood");
        let mut builder = keygate_bench::gate_builder(&mode);
        if flooded {
            // Real parameters: a flood is only a threat when hashes are expensive.
            let failure_limit = if mode == "flood-unthrottled" { u32::MAX } else { 20 };
            builder = builder.hasher(Argon2Hasher::default()).verifier(VerifierConfig {
                failure_limit,
                ..VerifierConfig::default()
            });
        }
        let gate = builder.build();
        let (created, principal) = keygate_bench::create_key(&gate).await?;
        let key = created.key.expose_secret();
        if flooded {
            let path = flood_file.ok_or("flood modes take a file for the flood keys")?;
            write_flood(&path, gate.keys().key_format(), &gate).await?;
        }
        println!("key: {key}");
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        if keygate_bench::AROUND_MODES.contains(&mode.as_str()) {
            let app = keygate_bench::around_app(&mode, &gate)?;
            axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).await?;
        } else {
            let app = keygate_bench::app(if flooded { "auth" } else { &mode }, &gate, key, &principal)?;
            axum::serve(listener, app).await?;
        }
        Ok(())
    })
}

/// Serves an actix-web mode on one worker (actix's own runtime).
fn serve_actix(mode: &str, addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    actix_web::rt::System::new().block_on(async move {
        let base = mode.trim_start_matches("actix-");
        let gate = keygate_bench::gate_builder(base).build();
        let (created, _) = keygate_bench::create_key(&gate).await?;
        println!("key: {}", created.key.expose_secret());
        let server = if mode == "actix-bare" {
            actix_web::HttpServer::new(keygate_bench::actix_bare)
                .workers(1)
                .shutdown_timeout(1)
                .bind(addr)?
                .run()
        } else {
            let middleware = keygate_bench::actix_middleware(mode, &gate)?;
            actix_web::HttpServer::new(move || keygate_bench::actix_guarded(middleware.clone()))
                .workers(1)
                .shutdown_timeout(1)
                .bind(addr)?
                .run()
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
