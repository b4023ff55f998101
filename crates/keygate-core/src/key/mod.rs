//! Keys: the public [`KeyId`], the plaintext [`ApiKey`] shown once, the key's
//! [`Environment`], and the [`KeyFormat`] that generates and parses them.
//!
//! A key is `<brand><id><separator><secret>[checksum]`. The public part, `<brand><id>`,
//! is the [`KeyId`]; the secret is base62 from the OS CSPRNG; the optional checksum is
//! the CRC32 of everything before it, in 6 base62 characters, so a mistyped key is
//! refused without any I/O.
//!
//! # Example
//! ```
//! use keygate_core::key::{Environment, KeyFormat};
//!
//! let format = KeyFormat::kova();
//! let (key_id, key) = format.generate(Environment::Live);
//! let parsed = format.parse(key.expose_secret()).unwrap();
//! assert_eq!(parsed.key_id(), key_id.as_str());
//! assert!(key_id.as_str().starts_with("kova_"));
//! // Debug and Display never show the secret.
//! assert!(!format!("{key:?} {key}").contains(parsed.secret()));
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::invalid::InvalidValue;

mod format;

pub use format::{KeyFormat, ParseError, ParsedKey};

/// The public part of a key (`kova_a1b2c3d4`): stored in plaintext, used for lookup,
/// logs, error details and revocation URLs. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// Wraps a key id read from a store or a URL. No format check: a store is trusted
    /// to hold what the format produced, and a bad id from a URL simply finds nothing.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The key id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for KeyId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// Lets maps keyed by `KeyId` be searched with a `&str` (hashes agree: `Arc<str>`
/// hashes as `str`).
impl std::borrow::Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A plaintext API key. It exists once, in the value returned when the key is created:
/// `Debug` and `Display` show only the key id, it does not implement `Serialize`, and
/// the text is reachable only through [`ApiKey::expose_secret`].
pub struct ApiKey {
    key_id: KeyId,
    full: SecretString,
}

impl ApiKey {
    /// The public part of this key.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The whole key, to show the user once. Never log it.
    pub fn expose_secret(&self) -> &str {
        self.full.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &self.key_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…[REDACTED]", self.key_id)
    }
}

/// Whether a key is for production traffic or for testing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production keys.
    #[default]
    Live,
    /// Test keys.
    Test,
}

impl Environment {
    /// Every environment.
    pub const ALL: [Environment; 2] = [Environment::Live, Environment::Test];

    /// This environment's bit in a set of environments.
    pub(crate) fn bit(self) -> u8 {
        match self {
            Environment::Live => 1,
            Environment::Test => 2,
        }
    }

    /// `live` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            _ => Err(InvalidValue::new("environment", s, "expected `live` or `test`")),
        }
    }
}
