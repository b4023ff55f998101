//! Credential extraction from header maps, through the public `Gate::decide` (the
//! extraction itself is private to keygate-core): a gate on a `MemoryStore` that holds
//! one key, and headers built from the input.
//!
//! Input: lines; a line's first byte picks the header (`authorization`, `x-api-key`,
//! `user-agent` or another), the rest is its value. In a value, `@KEY@` stands for the
//! one real key and `@ID@` for its id, and `@SUM@` ends a key: the word before it (an
//! id, `_`, a secret) gets its checksum, so that well-formed wrong and unknown keys reach
//! the cold path (the store, argon2, the negative cache and the failure counters). The
//! input's first byte picks the route policy (its low bits) and whether the real key is
//! dropped from the cache before the check that ends each run (its high bit). More than
//! twelve lines take the lookup path instead of the one pass.
//!
//! Properties: nothing panics; a refusal is 401, 403 or 503, never another 5xx; only
//! the real key is ever admitted, and only when a credential header carries it; a route
//! that needs `write` admits no one (the key holds `read`); without a credential header
//! a required key answers 401; and whatever came before, the real key alone is still
//! admitted afterwards, from the cache or cold: guesses at its id never lock it out.

#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::KeyFormat;
use keygate_core::{Gate, KeyId, MemoryStore, NewKey, RoutePolicy};
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: tokio::runtime::Runtime,
    gate: Gate,
    key: String,
    key_id: KeyId,
    format: KeyFormat,
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
        key_id: created.key.key_id().clone(),
        format: KeyFormat::default(),
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
        let value = substitute(value, world);
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
    if first & 0x80 != 0 {
        world.gate.invalidate(&world.key_id);
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

/// `value` with its marks replaced: `@KEY@` by the real key, `@ID@` by its id, and the
/// word before each `@SUM@` by the key composed of its parts (left as it is, without the
/// mark, when the parts do not fit the format).
fn substitute(value: &[u8], world: &World) -> Vec<u8> {
    let marks: [(&[u8], &[u8]); 2] = [
        (b"@KEY@", world.key.as_bytes()),
        (b"@ID@", world.key_id.as_str().as_bytes()),
    ];
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    'bytes: while let Some((&byte, after)) = rest.split_first() {
        for (mark, with) in marks {
            if let Some(after) = rest.strip_prefix(mark) {
                out.extend_from_slice(with);
                rest = after;
                continue 'bytes;
            }
        }
        if let Some(after) = rest.strip_prefix(b"@SUM@") {
            let start = out.iter().rposition(|b| *b == b' ').map_or(0, |space| space + 1);
            if let Some(key) = compose(&world.format, &out[start..]) {
                out.truncate(start);
                out.extend_from_slice(key.as_bytes());
            }
            rest = after;
            continue;
        }
        out.push(byte);
        rest = after;
    }
    out
}

/// The key of `word` (`<id>_<secret>`, the id as long as the real key's) with its checksum.
fn compose(format: &KeyFormat, word: &[u8]) -> Option<String> {
    let word = std::str::from_utf8(word).ok()?;
    let id = word.get(..16)?;
    let secret = word.get(16..)?.strip_prefix('_')?;
    let key = format.compose(id, secret).ok()?;
    Some(key.expose_secret().to_owned())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
