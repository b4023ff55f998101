//! [`KeyFormat`]: generation from the OS CSPRNG, parsing that never panics, checksums.

use std::fmt;

use rand::distributions::{Alphanumeric, Distribution, Uniform};
use rand::rngs::OsRng;
use secrecy::SecretString;

use super::{ApiKey, Environment, KeyId};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const CHECKSUM_LEN: usize = 6;
/// Longest input the parser looks at; anything longer is refused before any work.
const MAX_KEY_LEN: usize = 256;
/// 128 bits of secret need 22 base62 characters (62^22 > 2^130).
const MIN_SECRET_LEN: usize = 22;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Brand {
    /// The same brand for every key: `kova_`, `sk-kunavo-`.
    Fixed(String),
    /// The environment is part of the brand: `kg_live_`, `kg_test_`.
    PerEnvironment(String),
}

/// The shape of keys: brand, id length, separator, secret length, checksum.
///
/// Presets: [`KeyFormat::kova`] (`kova_a1b2c3d4.e5f6…`), [`KeyFormat::kunavo`]
/// (`sk-kunavo-` and 38 characters) and the default, [`KeyFormat::per_environment`]
/// with `kg_` (`kg_live_…`, `kg_test_…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFormat {
    brand: Brand,
    id_len: usize,
    separator: String,
    secret_len: usize,
    checksum: bool,
}

impl Default for KeyFormat {
    fn default() -> Self {
        Self::per_environment("kg_")
    }
}

/// Why a presented key could not be parsed. Carries the key id when the public part
/// was readable, for the error body; never the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key ({reason})")]
pub struct ParseError {
    /// The public part as presented, when the brand and id were well-formed.
    pub key_id: Option<KeyId>,
    /// What was wrong, for logs.
    pub reason: &'static str,
}

/// A key split into its parts, borrowed from the presented text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    key_id: &'a str,
    secret: &'a str,
    environment: Option<Environment>,
}

impl<'a> ParsedKey<'a> {
    /// The public part: brand and id.
    pub fn key_id(&self) -> &'a str {
        self.key_id
    }

    /// The secret part (without the checksum): what the store's hash is of.
    pub fn secret(&self) -> &'a str {
        self.secret
    }

    /// The environment named by the brand, for per-environment formats.
    pub fn environment(&self) -> Option<Environment> {
        self.environment
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("key_id", &self.key_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl KeyFormat {
    /// A format with one brand for every key, an 8-character id, `_` as separator, a
    /// 32-character secret (190 bits) and a checksum.
    pub fn new(brand: impl Into<String>) -> Self {
        Self {
            brand: Brand::Fixed(brand.into()),
            id_len: 8,
            separator: "_".into(),
            secret_len: 32,
            checksum: true,
        }
    }

    /// A format whose brand names the environment: `per_environment("kg_")` makes
    /// `kg_live_<id>_<secret>` and `kg_test_<id>_<secret>`.
    pub fn per_environment(prefix: impl Into<String>) -> Self {
        Self {
            brand: Brand::PerEnvironment(prefix.into()),
            ..Self::new(String::new())
        }
    }

    /// `kova_a1b2c3d4.e5f6g7h8…`: brand `kova_`, 8-character id, `.`, 32-character
    /// secret, checksum.
    pub fn kova() -> Self {
        Self::new("kova_").separator(".")
    }

    /// `sk-kunavo-` followed by 38 characters: an 8-character id, a 24-character secret
    /// (142 bits) and the checksum, with no separator.
    pub fn kunavo() -> Self {
        Self::new("sk-kunavo-").separator("").secret_len(24)
    }

    /// Sets the id length (4 to 32 characters of `[0-9a-z]`).
    pub fn id_len(mut self, len: usize) -> Self {
        self.id_len = len.clamp(4, 32);
        self
    }

    /// Sets the separator between id and secret (may be empty).
    pub fn separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// Sets the secret length in base62 characters; at least 22 (128 bits).
    pub fn secret_len(mut self, len: usize) -> Self {
        self.secret_len = len.clamp(MIN_SECRET_LEN, 128);
        self
    }

    /// Turns the trailing CRC32 checksum on or off.
    pub fn checksum(mut self, on: bool) -> Self {
        self.checksum = on;
        self
    }

    fn brand_for(&self, environment: Environment) -> String {
        match &self.brand {
            Brand::Fixed(brand) => brand.clone(),
            Brand::PerEnvironment(prefix) => format!("{prefix}{}_", environment.as_str()),
        }
    }

    /// Generates a new key for `environment` from the OS CSPRNG.
    pub fn generate(&self, environment: Environment) -> (KeyId, ApiKey) {
        let mut rng = OsRng;
        let mut text = self.brand_for(environment);
        let id_chars = Uniform::from(0..ID_ALPHABET.len());
        text.extend((0..self.id_len).map(|_| ID_ALPHABET[id_chars.sample(&mut rng)] as char));
        let key_id = KeyId::new(text.as_str());
        text.push_str(&self.separator);
        text.extend(
            Alphanumeric
                .sample_iter(&mut rng)
                .take(self.secret_len)
                .map(char::from),
        );
        if self.checksum {
            let sum = checksum(text.as_bytes());
            text.extend(sum.iter().map(|&b| b as char));
        }
        let key = ApiKey {
            key_id: key_id.clone(),
            full: SecretString::from(text),
        };
        (key_id, key)
    }

    /// Builds the key whose id is `key_id` and whose secret is `secret`, with its
    /// checksum: for importing keys issued elsewhere, and for tests. Fails, like
    /// [`parse`](Self::parse), when the parts do not fit this format.
    pub fn compose(&self, key_id: &str, secret: &str) -> Result<ApiKey, ParseError> {
        let mut text = format!("{key_id}{}{secret}", self.separator);
        if self.checksum {
            let sum = checksum(text.as_bytes());
            text.extend(sum.iter().map(|&b| b as char));
        }
        let parsed = self.parse(&text)?;
        if parsed.key_id() != key_id || parsed.secret() != secret {
            return Err(ParseError {
                key_id: None,
                reason: "parts do not fit the format",
            });
        }
        Ok(ApiKey {
            key_id: KeyId::from(key_id),
            full: SecretString::from(text),
        })
    }

    /// Whether `input` starts like one of this format's keys. Optional mode uses it to
    /// tell our credentials from another scheme's (a JWT) without parsing further.
    pub fn is_branded(&self, input: &str) -> bool {
        self.strip_brand(input).is_some()
    }

    fn strip_brand<'a>(&self, input: &'a str) -> Option<(&'a str, Option<Environment>)> {
        match &self.brand {
            Brand::Fixed(brand) => input.strip_prefix(brand.as_str()).map(|rest| (rest, None)),
            Brand::PerEnvironment(prefix) => {
                let rest = input.strip_prefix(prefix.as_str())?;
                [Environment::Live, Environment::Test]
                    .into_iter()
                    .find_map(|env| {
                        rest.strip_prefix(env.as_str())
                            .and_then(|r| r.strip_prefix('_'))
                            .map(|r| (r, Some(env)))
                    })
            }
        }
    }

    /// Splits a presented key into its parts and checks its checksum. Does no I/O and
    /// never panics, whatever the input.
    pub fn parse<'a>(&self, input: &'a str) -> Result<ParsedKey<'a>, ParseError> {
        let fail = |key_id: Option<&str>, reason| ParseError {
            key_id: key_id.map(KeyId::from),
            reason,
        };
        if input.len() > MAX_KEY_LEN || !input.is_ascii() {
            return Err(fail(None, "not a short ASCII string"));
        }
        let (rest, environment) = self
            .strip_brand(input)
            .ok_or_else(|| fail(None, "unknown brand"))?;
        // `input` is ASCII, so every byte offset below is a char boundary.
        let id = rest
            .get(..self.id_len)
            .filter(|id| id.bytes().all(is_id_char))
            .ok_or_else(|| fail(None, "bad id"))?;
        let key_id = &input[..input.len() - rest.len() + self.id_len];
        let rest = rest[self.id_len..]
            .strip_prefix(self.separator.as_str())
            .ok_or_else(|| fail(Some(key_id), "bad separator"))?;
        let expected = self.secret_len + if self.checksum { CHECKSUM_LEN } else { 0 };
        if rest.len() != expected || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(fail(Some(key_id), "bad secret"));
        }
        let (secret, sum) = rest.split_at(self.secret_len);
        if self.checksum {
            let body = &input[..input.len() - CHECKSUM_LEN];
            // Not secret-dependent in a way that matters: a checksum only catches typos.
            if checksum(body.as_bytes()) != sum.as_bytes() {
                return Err(fail(Some(key_id), "bad checksum"));
            }
        }
        debug_assert_eq!(id.len(), self.id_len);
        Ok(ParsedKey {
            key_id,
            secret,
            environment,
        })
    }
}

/// Whether `b` is in [`ID_ALPHABET`] (digits and lowercase letters), without a search
/// through it.
fn is_id_char(b: u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_lowercase()
}

/// CRC32 of `bytes` in 6 base62 characters, most significant first. On the stack: it
/// runs on every request.
fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(bytes) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats() -> Vec<KeyFormat> {
        vec![
            KeyFormat::default(),
            KeyFormat::kova(),
            KeyFormat::kunavo(),
            KeyFormat::new("acme_").checksum(false),
        ]
    }

    #[test]
    fn id_chars_are_exactly_the_id_alphabet() {
        for b in 0..=u8::MAX {
            assert_eq!(is_id_char(b), ID_ALPHABET.contains(&b), "{b}");
        }
    }

    #[test]
    fn generated_keys_parse_back_to_their_id() {
        for format in formats() {
            for env in [Environment::Live, Environment::Test] {
                let (id, key) = format.generate(env);
                let parsed = format.parse(key.expose_secret()).expect("parses");
                assert_eq!(parsed.key_id(), id.as_str());
                assert!(parsed.secret().len() >= MIN_SECRET_LEN);
            }
        }
    }

    #[test]
    fn presets_reproduce_the_documented_shapes() {
        let (id, key) = KeyFormat::kova().generate(Environment::Live);
        assert!(id.as_str().starts_with("kova_") && id.as_str().len() == 13);
        assert_eq!(key.expose_secret().as_bytes()[13], b'.');

        let (_, key) = KeyFormat::kunavo().generate(Environment::Live);
        let rest = key.expose_secret().strip_prefix("sk-kunavo-").unwrap();
        assert!(rest.len() >= 30, "{} characters", rest.len());
        assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()));

        let (id, _) = KeyFormat::default().generate(Environment::Live);
        assert!(id.as_str().starts_with("kg_live_"));
        let (id, _) = KeyFormat::default().generate(Environment::Test);
        assert!(id.as_str().starts_with("kg_test_"));
    }

    #[test]
    fn per_environment_brand_names_the_environment() {
        let format = KeyFormat::default();
        let (_, key) = format.generate(Environment::Test);
        let parsed = format.parse(key.expose_secret()).unwrap();
        assert_eq!(parsed.environment(), Some(Environment::Test));
    }

    #[test]
    fn one_changed_character_fails_the_checksum() {
        let format = KeyFormat::kova();
        let (_, key) = format.generate(Environment::Live);
        let text = key.expose_secret();
        for i in 14..text.len() {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            let changed = String::from_utf8(bytes).unwrap();
            let err = format.parse(&changed).unwrap_err();
            assert_eq!(err.key_id.as_ref().map(KeyId::as_str), Some(&text[..13]));
        }
    }

    #[test]
    fn parse_refuses_garbage_without_panicking() {
        let format = KeyFormat::kova();
        let (_, key) = format.generate(Environment::Live);
        let good = key.expose_secret();
        let mut inputs: Vec<String> = vec![
            String::new(),
            "kova_".into(),
            "kova_a1b2c3d4".into(),
            "kova_a1b2c3d4.".into(),
            "kova_ü1b2c3d4.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into(),
            "Bearer kova_a1b2c3d4".into(),
            "x".repeat(10_000),
            "kova_\u{0}".into(),
        ];
        for cut in 0..good.len() {
            inputs.push(good[..cut].to_string());
        }
        for input in &inputs {
            assert!(format.parse(input).is_err(), "accepted {input:?}");
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes() {
        let format = KeyFormat::kova();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..200 {
            for _ in 0..50 {
                let s: String = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        char::from_u32((seed % 0x300) as u32).unwrap_or('?')
                    })
                    .collect();
                let _ = format.parse(&s);
                let _ = format.parse(&format!("kova_{s}"));
            }
        }
    }

    #[test]
    fn compose_rebuilds_a_generated_key_and_refuses_misfits() {
        let format = KeyFormat::kova();
        let (id, key) = format.generate(Environment::Live);
        let parsed = format.parse(key.expose_secret()).unwrap();
        let again = format.compose(id.as_str(), parsed.secret()).unwrap();
        assert_eq!(again.expose_secret(), key.expose_secret());
        assert!(format.compose(id.as_str(), "short").is_err());
        assert!(format.compose("acme_a1b2c3d4", parsed.secret()).is_err());
    }

    #[test]
    fn debug_and_display_redact_the_secret() {
        let (_, key) = KeyFormat::kova().generate(Environment::Live);
        let secret = &key.expose_secret()[14..];
        let shown = format!("{key:?} {key} {:?}", KeyFormat::kova().parse(key.expose_secret()));
        assert!(!shown.contains(secret), "{shown}");
    }
}
