//! Key parsing: `KeyFormat::parse` under every preset, `compose` back from the parts,
//! and the other entry points that read a key's public side (`KeyId` from JSON, the
//! `Environment` and `Scopes` names).
//!
//! Properties: nothing panics; a parsed key is exactly its id, separator, secret and
//! checksum (`compose` of its parts re-renders the input byte for byte); the id of a
//! refusal is a prefix of the input; parsed scopes and ids round-trip.

#![no_main]

use std::sync::LazyLock;

use keygate_core::key::{Environment, KeyFormat};
use keygate_core::{KeyId, Scopes};
use libfuzzer_sys::fuzz_target;

static FORMATS: LazyLock<Vec<KeyFormat>> = LazyLock::new(|| {
    vec![
        KeyFormat::default(),
        KeyFormat::kova(),
        KeyFormat::kunavo(),
        KeyFormat::new("acme_").checksum(false),
        KeyFormat::per_environment("x-")
            .id_len(4)
            .secret_len(22)
            .separator("--"),
    ]
});

fuzz_target!(|data: &[u8]| {
    // The gate hands the parser UTF-8 only; the rest is refused before it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in FORMATS.iter() {
        parse(format, text);
        compose(format, text);
    }
    if let Ok(scopes) = text.parse::<Scopes>() {
        assert!(!scopes.is_empty());
        let again: Scopes = scopes.to_string().parse().expect("rendered scopes parse");
        assert_eq!(again, scopes);
    }
    if let Ok(environment) = text.parse::<Environment>() {
        assert_eq!(environment.as_str(), text);
    }
    if let Ok(id) = serde_json::from_slice::<KeyId>(data) {
        let json = serde_json::to_string(&id).expect("a key id serialises");
        assert_eq!(serde_json::from_str::<KeyId>(&json).ok(), Some(id));
    }
});

fn parse(format: &KeyFormat, text: &str) {
    match format.parse(text) {
        Ok(parsed) => {
            assert!(text.starts_with(parsed.key_id()));
            assert!(text.contains(parsed.secret()));
            assert!(format.is_branded(text));
            let again = format
                .compose(parsed.key_id(), parsed.secret())
                .expect("the parts of a parsed key compose");
            assert_eq!(again.expose_secret(), text, "a parsed key re-renders to itself");
            assert_eq!(again.key_id().as_str(), parsed.key_id());
            if let Some(environment) = parsed.environment() {
                assert!(parsed.key_id().contains(environment.as_str()));
            }
        }
        Err(error) => {
            if let Some(id) = error.key_id {
                assert!(text.starts_with(id.as_str()), "a refusal names a prefix");
            }
        }
    }
}

/// The other direction: parts split from the input; a key composed from them parses
/// back to the same parts.
fn compose(format: &KeyFormat, text: &str) {
    let Some((id, secret)) = text.split_once('\u{1}') else {
        return;
    };
    if let Ok(key) = format.compose(id, secret) {
        let parsed = format.parse(key.expose_secret()).expect("a composed key parses");
        assert_eq!((parsed.key_id(), parsed.secret()), (id, secret));
        assert_eq!(key.key_id().as_str(), id);
    }
}
