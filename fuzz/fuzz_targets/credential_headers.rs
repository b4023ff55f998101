//! Credential extraction from header maps, through the public `Gate::decide` (the
//! extraction itself is private to keygate-core): a gate on a `MemoryStore` that holds
//! one key, and headers built from the input.
//!
//! Input: lines; a line's first byte picks the header (`authorization`, `x-api-key`,
//! `user-agent` or another), the rest is its value, in which `@KEY@` stands for the one
//! real key. The input's first byte picks the route policy. More than twelve lines take
//! the lookup path instead of the one pass.
//!
//! Properties: nothing panics; a refusal is 401, 403 or 503, never another 5xx; only
//! the real key is ever admitted, and only when a credential header carries it; a route
//! that needs `write` admits no one (the key holds `read`); without a credential header
//! a required key answers 401; and whatever came before, the real key alone is still
//! admitted afterwards (garbage never locks it out).

#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use keygate_core::hash::Argon2Hasher;
use keygate_core::{Gate, MemoryStore, NewKey, RoutePolicy};
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: tokio::runtime::Runtime,
    gate: Gate,
    key: String,
    policies: [RoutePolicy; 4],
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let created = runtime
        .block_on(
            gate.keys()
                .create(NewKey::new("acct_fuzz", "fuzz").scopes(["read"])),
        )
        .expect("the key is created");
    World {
        runtime,
        gate,
        key: created.key.expose_secret().to_owned(),
        policies: [
            RoutePolicy::new(),
            RoutePolicy::new().optional(true),
            RoutePolicy::new().require(["read"]),
            RoutePolicy::new().require(["write"]),
        ],
    }
});

const NAMES: [&str; 4] = ["authorization", "x-api-key", "user-agent", "x-other"];

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let Some(first) = data.first() else {
        return;
    };
    let which = usize::from(*first % 4);
    let policy = &world.policies[which];
    let mut headers = HeaderMap::new();
    let mut carries_key = false;
    let mut has_credential_header = false;
    for line in data[1..].split(|b| *b == b'\n').take(32) {
        let Some((pick, value)) = line.split_first() else {
            continue;
        };
        let name = NAMES[usize::from(*pick) % NAMES.len()];
        let value = substitute(value, world.key.as_bytes());
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        let credential = !matches!(name, "user-agent" | "x-other");
        has_credential_header |= credential;
        carries_key |= credential && contains(value.as_bytes(), world.key.as_bytes());
        headers.append(HeaderName::from_static(name), value);
    }
    let decided = world.runtime.block_on(world.gate.admit(&headers, policy));
    match decided {
        Ok(admission) => match admission.principal() {
            Some(principal) => {
                assert!(carries_key, "admitted without the key in a credential header");
                assert_eq!(principal.owner().as_str(), "acct_fuzz");
                assert_ne!(which, 3, "a key without `write` admitted where it is required");
            }
            None => assert!(policy.is_optional(), "no principal on a route that needs one"),
        },
        Err(rejection) => {
            let status = rejection.status();
            assert!(
                matches!(
                    status,
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE
                ),
                "{status}"
            );
            if !has_credential_header && !policy.is_optional() {
                assert_eq!(status, StatusCode::UNAUTHORIZED);
            }
        }
    }
    let mut alone = HeaderMap::new();
    let bearer = format!("Bearer {}", world.key);
    alone.insert(
        "authorization",
        HeaderValue::from_str(&bearer).expect("a key is a header value"),
    );
    let again = world
        .runtime
        .block_on(world.gate.admit(&alone, &world.policies[2]));
    if let Err(rejection) = again {
        panic!(
            "the real key is refused after a fuzz input: {}",
            rejection.status()
        );
    }
});

/// `value` with every `@KEY@` replaced by `key`.
fn substitute(value: &[u8], key: &[u8]) -> Vec<u8> {
    const MARK: &[u8] = b"@KEY@";
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while !rest.is_empty() {
        if rest.starts_with(MARK) {
            out.extend_from_slice(key);
            rest = &rest[MARK.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
