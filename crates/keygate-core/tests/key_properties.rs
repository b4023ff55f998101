//! Property tests of the key format: parsing never panics whatever it is given, what
//! `compose` and `generate` make parses back to its parts, and a key with one character
//! changed never authenticates as the original.
//!
//! Formats are the presets (`KeyFormat::default()`, `kova()`, `kunavo()`) and generated
//! ones: any brand, id length, separator, secret length, with or without a checksum.
//! Failures are saved to `proptest-regressions/key_properties.txt` and replayed first.

use keygate_core::hash::{Argon2Hasher, KeyHasher};
use keygate_core::key::{Environment, KeyFormat};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

/// `PROPTEST_CASES` when set (a longer soak: `PROPTEST_CASES=10000 cargo test`), else a
/// count small enough for the unoptimised suite CI runs.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        // An absolute path fixed at compile time: proptest's default (`SourceParallel`)
        // looks for a `lib.rs` beside the test file, finds none for `tests/`, warns and
        // writes next to the source instead. This keeps the file where it is committed.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/key_properties.txt"
        )))),
        ..ProptestConfig::default()
    }
}

const ID_CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const SECRET_CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM_LEN: usize = 6;

/// How the brand is written, mirrored here because `KeyFormat` keeps its fields private.
#[derive(Clone, Debug)]
enum Brand {
    Fixed(String),
    PerEnvironment(String),
}

/// What a `KeyFormat` is built from, so the test knows the shape of its keys.
#[derive(Clone, Debug)]
struct Shape {
    brand: Brand,
    id_len: usize,
    separator: String,
    secret_len: usize,
    checksum: bool,
}

impl Shape {
    fn format(&self) -> KeyFormat {
        let base = match &self.brand {
            Brand::Fixed(brand) => KeyFormat::new(brand.as_str()),
            Brand::PerEnvironment(prefix) => KeyFormat::per_environment(prefix.as_str()),
        };
        base.id_len(self.id_len)
            .separator(self.separator.as_str())
            .secret_len(self.secret_len)
            .checksum(self.checksum)
    }

    fn brand(&self, environment: Environment) -> String {
        match &self.brand {
            Brand::Fixed(brand) => brand.clone(),
            Brand::PerEnvironment(prefix) => format!("{prefix}{}_", environment.as_str()),
        }
    }

    fn environment(&self, environment: Environment) -> Option<Environment> {
        matches!(self.brand, Brand::PerEnvironment(_)).then_some(environment)
    }

    fn key_len(&self, environment: Environment) -> usize {
        self.brand(environment).len()
            + self.id_len
            + self.separator.len()
            + self.secret_len
            + if self.checksum { CHECKSUM_LEN } else { 0 }
    }
}

/// The presets, as documented, and the same shapes without a checksum (where a changed
/// secret reaches the hash instead of failing the parse).
fn presets() -> Vec<(Shape, KeyFormat)> {
    let shape = |brand: Brand, separator: &str, secret_len, checksum| Shape {
        brand,
        id_len: 8,
        separator: separator.into(),
        secret_len,
        checksum,
    };
    let kg = || Brand::PerEnvironment("kg_".into());
    let kova = || Brand::Fixed("kova_".into());
    let kunavo = || Brand::Fixed("sk-kunavo-".into());
    vec![
        (shape(kg(), "_", 32, true), KeyFormat::default()),
        (shape(kova(), ".", 32, true), KeyFormat::kova()),
        (shape(kunavo(), "", 24, true), KeyFormat::kunavo()),
        (shape(kg(), "_", 32, false), KeyFormat::default().checksum(false)),
        (shape(kova(), ".", 32, false), KeyFormat::kova().checksum(false)),
        (
            shape(kunavo(), "", 24, false),
            KeyFormat::kunavo().checksum(false),
        ),
    ]
}

/// A preset or an arbitrary format within the documented limits.
fn shape() -> impl Strategy<Value = Shape> {
    let preset = prop::sample::select(presets().into_iter().map(|(shape, _)| shape).collect::<Vec<_>>());
    let custom = (
        "[a-z]{1,8}[_-]",
        any::<bool>(),
        4usize..=32,
        prop::sample::select(vec!["", "_", ".", "-", "::"]),
        22usize..=128,
        any::<bool>(),
    )
        .prop_map(
            |(brand, per_environment, id_len, separator, secret_len, checksum)| Shape {
                brand: if per_environment {
                    Brand::PerEnvironment(brand)
                } else {
                    Brand::Fixed(brand)
                },
                id_len,
                separator: separator.into(),
                secret_len,
                checksum,
            },
        );
    prop_oneof![preset, custom]
}

fn environment() -> impl Strategy<Value = Environment> {
    prop_oneof![Just(Environment::Live), Just(Environment::Test)]
}

fn chars_from(alphabet: &'static [u8], len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet), len)
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

/// A shape with the parts of one of its keys: environment, key id, secret.
fn parts() -> impl Strategy<Value = (Shape, Environment, String, String)> {
    (shape(), environment()).prop_flat_map(|(shape, env)| {
        let brand = shape.brand(env);
        (
            chars_from(ID_CHARS, shape.id_len).prop_map(move |id| format!("{brand}{id}")),
            chars_from(SECRET_CHARS, shape.secret_len),
        )
            .prop_map(move |(key_id, secret)| (shape.clone(), env, key_id, secret))
    })
}

/// Characters a key is made of, and now and then anything at all.
fn replacement() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_.-:".as_slice())
            .prop_map(char::from),
        1 => any::<char>(),
    ]
}

#[derive(Clone, Debug)]
enum Edit {
    Truncate(Index),
    Delete(Index),
    Insert(Index, char),
    Replace(Index, char),
    Append(String),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Replacements most: they keep the length, so they reach the secret and checksum checks.
    prop_oneof![
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => any::<Index>().prop_map(Edit::Delete),
        1 => (any::<Index>(), replacement()).prop_map(|(at, c)| Edit::Insert(at, c)),
        3 => (any::<Index>(), replacement()).prop_map(|(at, c)| Edit::Replace(at, c)),
        1 => "[ -~]{0,8}|[ -~]{0,300}|.{0,8}".prop_map(Edit::Append),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let len = chars.len();
        match edit {
            Edit::Truncate(at) => chars.truncate(at.index(len + 1)),
            Edit::Delete(at) if len > 0 => {
                chars.remove(at.index(len));
            }
            Edit::Delete(_) => {}
            Edit::Insert(at, c) => chars.insert(at.index(len + 1), *c),
            Edit::Replace(at, c) if len > 0 => chars[at.index(len)] = *c,
            Edit::Replace(..) => {}
            Edit::Append(tail) => chars.extend(tail.chars()),
        }
    }
    chars.into_iter().collect()
}

/// Inputs for the parser: any text, any bytes read lossily, the format's brand followed
/// by printable noise, and real keys of the format with a few edits (the inputs that
/// reach the id, separator, secret and checksum checks).
fn input_for(shape: Shape) -> impl Strategy<Value = String> {
    let any_text = prop::collection::vec(any::<char>(), 0..300).prop_map(String::from_iter);
    let any_bytes = prop::collection::vec(any::<u8>(), 0..300)
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let brands = vec![shape.brand(Environment::Live), shape.brand(Environment::Test)];
    let branded = (prop::sample::select(brands), "[ -~]{0,300}").prop_map(|(brand, tail)| brand + &tail);
    let format = shape.format();
    let edited = (
        environment(),
        chars_from(ID_CHARS, shape.id_len),
        chars_from(SECRET_CHARS, shape.secret_len),
        prop::collection::vec(edit(), 0..4),
    )
        .prop_map(move |(env, id, secret, edits)| {
            let key_id = format!("{}{id}", shape.brand(env));
            let key = format.compose(&key_id, &secret).expect("the parts fit the shape");
            apply(key.expose_secret(), &edits)
        });
    // Mostly edited keys: random text almost never gets past the ASCII and brand checks.
    prop_oneof![1 => any_text, 1 => any_bytes, 2 => branded, 6 => edited]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parsing_any_text_never_panics_and_accepts_only_what_compose_builds(
        (shape, input) in shape().prop_flat_map(|shape| (Just(shape.clone()), input_for(shape))),
    ) {
        let format = shape.format();
        match format.parse(&input) {
            Ok(parsed) => {
                let env = parsed.environment().unwrap_or_default();
                prop_assert_eq!(parsed.environment(), shape.environment(env));
                prop_assert!(input.starts_with(&shape.brand(env)));
                prop_assert!(input.starts_with(parsed.key_id()));
                prop_assert_eq!(parsed.key_id().len(), shape.brand(env).len() + shape.id_len);
                prop_assert_eq!(parsed.secret().len(), shape.secret_len);
                // Whatever parses is exactly the key that its parts compose, checksum and all.
                let again = format.compose(parsed.key_id(), parsed.secret());
                prop_assert!(again.is_ok(), "compose refused the parts of an accepted key");
                let again = again.expect("checked");
                prop_assert_eq!(again.expose_secret(), input.as_str());
            }
            Err(error) => {
                // An error may name the public part, never more of the input.
                if let Some(key_id) = &error.key_id {
                    prop_assert!(input.starts_with(key_id.as_str()));
                    let public_len = |env| shape.brand(env).len() + shape.id_len;
                    let len = key_id.as_str().len();
                    prop_assert!(
                        len == public_len(Environment::Live) || len == public_len(Environment::Test),
                        "the error names {:?}, not just a brand and an id", key_id
                    );
                }
            }
        }
    }

    #[test]
    fn parsing_arbitrary_bytes_read_lossily_never_panics_for_any_preset(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        for (_, format) in presets() {
            let _ = format.parse(&text);
            for brand in ["kg_live_", "kg_test_", "kova_", "sk-kunavo-"] {
                let _ = format.parse(&format!("{brand}{text}"));
            }
        }
    }

    #[test]
    fn composing_then_parsing_gives_back_the_key_id_and_secret(
        (shape, env, key_id, secret) in parts(),
    ) {
        let format = shape.format();
        let key = format.compose(&key_id, &secret);
        prop_assert!(key.is_ok(), "compose refused parts that fit: {:?}", key.err());
        let key = key.expect("checked");
        prop_assert_eq!(key.key_id().as_str(), key_id.as_str());
        prop_assert_eq!(key.expose_secret().len(), shape.key_len(env));
        let parsed = format.parse(key.expose_secret());
        prop_assert!(parsed.is_ok(), "a composed key does not parse: {:?}", parsed.err());
        let parsed = parsed.expect("checked");
        prop_assert_eq!(parsed.key_id(), key_id.as_str());
        prop_assert_eq!(parsed.secret(), secret.as_str());
        prop_assert_eq!(parsed.environment(), shape.environment(env));
    }

    #[test]
    fn composing_refuses_a_secret_of_another_length(
        (shape, _env, key_id, secret) in parts(),
        cut in 1usize..22,
        extra in chars_from(SECRET_CHARS, 1),
    ) {
        let format = shape.format();
        prop_assert!(format.compose(&key_id, &secret[..secret.len() - cut]).is_err());
        let longer = secret.clone() + &extra;
        prop_assert!(format.compose(&key_id, &longer).is_err());
    }

    #[test]
    fn a_generated_key_parses_back_to_its_id_and_composes_again(
        shape in shape(),
        env in environment(),
    ) {
        let format = shape.format();
        let (key_id, key) = format.generate(env);
        let text = key.expose_secret();
        prop_assert_eq!(key.key_id(), &key_id);
        prop_assert_eq!(text.len(), shape.key_len(env));
        prop_assert!(key_id.as_str().starts_with(&shape.brand(env)));
        let parsed = format.parse(text);
        prop_assert!(parsed.is_ok(), "a generated key does not parse: {:?}", parsed.err());
        let parsed = parsed.expect("checked");
        prop_assert_eq!(parsed.key_id(), key_id.as_str());
        prop_assert_eq!(parsed.environment(), shape.environment(env));
        let again = format.compose(parsed.key_id(), parsed.secret()).expect("its own parts fit");
        prop_assert_eq!(again.expose_secret(), text);
    }
}

proptest! {
    // Each case costs at most three argon2 calls (only when the changed key still parses
    // to the same id); `insecure_fast` keeps each well under a millisecond.
    #![proptest_config(config(128))]

    #[test]
    fn a_key_with_one_character_changed_never_authenticates_as_the_original(
        shape in shape(),
        env in environment(),
        at in any::<Index>(),
        replacement in replacement(),
    ) {
        let format = shape.format();
        let (key_id, key) = format.generate(env);
        let original: Vec<char> = key.expose_secret().chars().collect();
        let at = at.index(original.len());
        prop_assume!(original[at] != replacement);
        let mut changed = original.clone();
        changed[at] = replacement;
        let changed: String = changed.into_iter().collect();

        let Ok(parsed) = format.parse(&changed) else {
            return Ok(());
        };
        // CRC32 catches every single-character change, the checksum's own included.
        prop_assert!(!shape.checksum, "a changed key passed the checksum: {}", changed);
        if parsed.key_id() != key_id.as_str() {
            // Another key's id: the store finds that key, or none, never the original.
            prop_assert!(at < key_id.as_str().len(), "the id changed, but the change is at {}", at);
            return Ok(());
        }
        prop_assert!(at >= key_id.as_str().len(), "the id did not change, but the change is at {}", at);
        let secret = format
            .parse(key.expose_secret())
            .expect("a generated key parses")
            .secret()
            .to_owned();
        let hasher = Argon2Hasher::insecure_fast();
        let stored = hasher.hash(secret.as_bytes()).expect("hashing works");
        // Otherwise the property below would hold for a hasher that verifies nothing.
        prop_assert!(hasher.verify(secret.as_bytes(), &stored).expect("a fresh hash verifies"));
        prop_assert!(
            !hasher.verify(parsed.secret().as_bytes(), &stored).expect("a fresh hash verifies"),
            "a secret with position {} changed verified against the original's hash",
            at
        );
    }
}
