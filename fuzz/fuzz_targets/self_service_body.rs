//! Self-service request bodies and queries (`crates/keygate-self-service/src/body.rs`),
//! through the public `SelfService` methods an adapter calls: `create` with a body,
//! `rotate` with a body, `list_query` with a query string, as an account caller on a
//! `MemoryStore`.
//!
//! Input: the first byte picks the route, the rest is the body (or the query).
//!
//! Properties: nothing panics; `create` answers 201 or 400, `rotate` of an unknown key
//! 400 or 404, `list_query` 200 or 400, never a 5xx; a created key belongs to the
//! caller's owner whatever the body says, its plaintext parses in the gate's format to
//! its `key_id`, its name is trimmed, non-empty, at most 200 characters and free of NUL,
//! its metadata an object of at most 4 KiB of JSON with no NUL, its rate limits
//! positive, and it carries at most 64 scopes; a listed page's limit is 1 to 1000.

#![no_main]

use std::cell::RefCell;

use http::StatusCode;
use keygate_core::hash::Argon2Hasher;
use keygate_core::key::KeyFormat;
use keygate_core::{Gate, MemoryStore};
use keygate_self_service::{Account, Caller, SelfService};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Keys created before the store is replaced by an empty one, so that memory stays flat
/// over a long run.
const KEYS_PER_STORE: usize = 1024;

struct World {
    runtime: tokio::runtime::Runtime,
    api: SelfService,
    created: usize,
}

fn api() -> SelfService {
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    SelfService::new(gate)
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        api: api(),
        created: 0,
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((route, body)) = data.split_first() else {
        return;
    };
    WORLD.with_borrow_mut(|world| {
        let caller = Caller::from(Account::new("acct_fuzz"));
        match route % 3 {
            0 => {
                let made = world.runtime.block_on(world.api.create(&caller, body));
                match made.status() {
                    StatusCode::CREATED => {
                        check_created(made.body());
                        world.created += 1;
                        if world.created >= KEYS_PER_STORE {
                            world.api = api();
                            world.created = 0;
                        }
                    }
                    StatusCode::BAD_REQUEST => {}
                    other => panic!("create answered {other}"),
                }
            }
            1 => {
                let rotated = world
                    .runtime
                    .block_on(world.api.rotate(&caller, "kg_live_unknown0", body));
                let status = rotated.status();
                assert!(
                    matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND),
                    "rotate answered {status}"
                );
            }
            _ => {
                let Ok(query) = std::str::from_utf8(body) else {
                    return;
                };
                let listed = world.runtime.block_on(world.api.list_query(&caller, Some(query)));
                match listed.status() {
                    StatusCode::OK => {
                        let page: Value = serde_json::from_slice(listed.body()).expect("a list is JSON");
                        let limit = page["limit"].as_u64().expect("a list has its limit");
                        assert!((1..=1000).contains(&limit), "{limit}");
                    }
                    StatusCode::BAD_REQUEST => {}
                    other => panic!("list answered {other}"),
                }
            }
        }
    });
});

fn check_created(body: &[u8]) {
    let record: Value = serde_json::from_slice(body).expect("a created key is JSON");
    assert_eq!(record["owner"], "acct_fuzz", "the owner comes from the caller");
    let key = record["key"].as_str().expect("the plaintext key");
    let format = KeyFormat::default();
    let parsed = format.parse(key).expect("a created key parses");
    assert_eq!(Some(parsed.key_id()), record["key_id"].as_str());

    let name = record["name"].as_str().expect("a name");
    assert!(!name.is_empty() && name.trim() == name, "{name:?}");
    assert!(name.chars().count() <= 200 && !name.contains('\0'));

    match &record["metadata"] {
        Value::Null => {}
        object @ Value::Object(_) => {
            let json = serde_json::to_vec(object).expect("metadata serialises");
            assert!(json.len() <= 4096, "{} bytes of metadata", json.len());
            assert!(!holds_nul(object));
        }
        other => panic!("metadata is not an object: {other}"),
    }
    if let Some(limits) = record["rate_limits"].as_array() {
        for limit in limits {
            assert!(limit["limit"].as_u64().is_some_and(|n| n > 0), "{limit}");
            assert!(limit["period"].as_u64().is_some_and(|n| n > 0), "{limit}");
        }
    }
    let scopes = record["scopes"].as_array().expect("scopes");
    assert!(scopes.len() <= 64);
}

fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}
