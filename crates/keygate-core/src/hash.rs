//! Hashing secrets at rest: the [`KeyHasher`] trait and its argon2id default.
//!
//! # Example
//! ```
//! use keygate_core::hash::{Argon2Hasher, KeyHasher};
//!
//! let hasher = Argon2Hasher::default();
//! let stored = hasher.hash(b"e5f6g7h8").unwrap();
//! assert!(stored.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
//! assert!(hasher.verify(b"e5f6g7h8", &stored).unwrap());
//! assert!(!hasher.verify(b"wrong", &stored).unwrap());
//! ```

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

/// A stored hash of a secret, as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHash(String);

impl SecretHash {
    /// Wraps a PHC string read from a store.
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The algorithm and parameters help debugging; the salt and hash do not.
        let head: String = self.0.split('$').take(4).collect::<Vec<_>>().join("$");
        write!(f, "SecretHash({head}$…)")
    }
}

/// Why hashing or verifying failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The stored hash is not a PHC string this hasher accepts, or its parameters
    /// exceed the configured ceiling. It is refused, not computed.
    #[error("stored hash is corrupt or exceeds the parameter ceiling: {0}")]
    Corrupt(&'static str),
    /// The hash function itself failed.
    #[error("hashing failed: {0}")]
    Failed(String),
}

/// Hashes secrets for storage and verifies presented secrets against stored hashes.
///
/// Both calls are blocking and CPU-heavy; the gate runs them on its bounded pool, never
/// on an async worker thread.
pub trait KeyHasher: Send + Sync + 'static {
    /// Hashes a new secret for storage.
    fn hash(&self, secret: &[u8]) -> Result<SecretHash, HashError>;

    /// Whether `secret` matches `stored`. A malformed or over-expensive `stored` is
    /// [`HashError::Corrupt`].
    fn verify(&self, secret: &[u8], stored: &SecretHash) -> Result<bool, HashError>;
}

/// The most a stored argon2 hash may ask for before it is refused as corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCeiling {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for ParamCeiling {
    /// 64 MiB, 8 iterations, 4 lanes: well above OWASP's settings, far below a DoS.
    fn default() -> Self {
        Self {
            m_cost: 65_536,
            t_cost: 8,
            p_cost: 4,
        }
    }
}

/// argon2id with OWASP's parameters (m=19456 KiB, t=2, p=1) by default.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    ceiling: ParamCeiling,
}

impl fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("m_cost", &self.params.m_cost())
            .field("t_cost", &self.params.t_cost())
            .field("p_cost", &self.params.p_cost())
            .field("ceiling", &self.ceiling)
            .finish()
    }
}

impl Default for Argon2Hasher {
    fn default() -> Self {
        Self {
            params: Params::new(19_456, 2, 1, None).expect("OWASP parameters are valid"),
            ceiling: ParamCeiling::default(),
        }
    }
}

impl Argon2Hasher {
    /// argon2id with custom parameters for new hashes. Returns `None` for parameters
    /// argon2 rejects or that exceed the default ceiling.
    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> Option<Self> {
        let params = Params::new(m_cost, t_cost, p_cost, None).ok()?;
        let hasher = Self {
            params,
            ceiling: ParamCeiling::default(),
        };
        hasher.within_ceiling(m_cost, t_cost, p_cost).then_some(hasher)
    }

    /// Cheap parameters (m=256 KiB, t=1) for tests and examples that create many keys.
    /// Never use them in production.
    pub fn insecure_fast() -> Self {
        Self::with_params(256, 1, 1).expect("valid parameters")
    }

    /// Sets the ceiling above which stored hashes are refused as corrupt.
    pub fn ceiling(mut self, ceiling: ParamCeiling) -> Self {
        self.ceiling = ceiling;
        self
    }

    fn within_ceiling(&self, m: u32, t: u32, p: u32) -> bool {
        m <= self.ceiling.m_cost && t <= self.ceiling.t_cost && p <= self.ceiling.p_cost
    }

    /// Refuses a stored hash any of whose `m`, `t` or `p` (each occurrence: a repeated
    /// one is read last by argon2) is above the ceiling, before argon2 reads them: argon2
    /// 0.5 checks `m >= 8 * p` with an unchecked multiplication, which overflows for a `p`
    /// of 2^29 or more (a panic wherever overflow checks are on). Parameters left out
    /// take argon2's defaults, which the check after argon2's own parse covers.
    fn check_stated_params(&self, parsed: &PasswordHash<'_>) -> Result<(), HashError> {
        for (name, value) in parsed.params.iter() {
            let most = match name.as_str() {
                "m" => self.ceiling.m_cost,
                "t" => self.ceiling.t_cost,
                // Never above argon2's own limit, whatever the ceiling says.
                "p" => self.ceiling.p_cost.min(Params::MAX_P_COST),
                _ => continue,
            };
            let value = value
                .decimal()
                .map_err(|_| HashError::Corrupt("bad parameters"))?;
            if value > most {
                return Err(HashError::Corrupt("parameters above the ceiling"));
            }
        }
        Ok(())
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }
}

impl KeyHasher for Argon2Hasher {
    fn hash(&self, secret: &[u8]) -> Result<SecretHash, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(secret, &salt)
            .map(|h| SecretHash(h.to_string()))
            .map_err(|e| HashError::Failed(e.to_string()))
    }

    fn verify(&self, secret: &[u8], stored: &SecretHash) -> Result<bool, HashError> {
        let parsed =
            PasswordHash::new(stored.as_str()).map_err(|_| HashError::Corrupt("not a PHC string"))?;
        if parsed.algorithm != Algorithm::Argon2id.ident() {
            return Err(HashError::Corrupt("not argon2id"));
        }
        self.check_stated_params(&parsed)?;
        let params = Params::try_from(&parsed).map_err(|_| HashError::Corrupt("bad parameters"))?;
        if !self.within_ceiling(params.m_cost(), params.t_cost(), params.p_cost()) {
            return Err(HashError::Corrupt("parameters above the ceiling"));
        }
        match Argon2::new(Algorithm::Argon2id, Version::V0x13, params).verify_password(secret, &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::Password) => Ok(false),
            Err(_) => Err(HashError::Corrupt("unverifiable hash")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parameters_are_owasps() {
        let stored = Argon2Hasher::default().hash(b"secret").unwrap();
        assert!(stored.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn stored_hash_above_the_ceiling_is_refused_as_corrupt_not_hashed() {
        let hasher = Argon2Hasher::insecure_fast();
        let stored = hasher.hash(b"secret").unwrap();
        // 4 GiB of memory: hashing this would be a denial of service.
        let absurd = SecretHash::new(stored.as_str().replace("m=256", "m=4194304"));
        let started = std::time::Instant::now();
        assert_eq!(
            hasher.verify(b"secret", &absurd),
            Err(HashError::Corrupt("parameters above the ceiling"))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn a_stored_lane_count_that_overflows_argon2s_own_check_is_refused_not_a_panic() {
        // Found by fuzz/fuzz_targets/phc_ceiling.rs: argon2 0.5 checks `m >= 8 * p` with an
        // unchecked multiplication, which overflows for a `p` of 2^29 or more (a panic
        // wherever overflow checks are on), and a repeated `p` is read last.
        let generous = ParamCeiling {
            p_cost: u32::MAX,
            ..ParamCeiling::default()
        };
        let tail = "$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        for hasher in [
            Argon2Hasher::insecure_fast(),
            Argon2Hasher::insecure_fast().ceiling(generous),
        ] {
            for params in [
                "m=26,t=441,p=444444441,p=522544441,t=1,p=2444444441",
                "m=256,t=1,p=536870912",
                "m=256,t=1,p=1,p=4294967295",
            ] {
                let stored = SecretHash::new(format!("$argon2id$v=19${params}{tail}"));
                assert_eq!(
                    hasher.verify(b"secret", &stored),
                    Err(HashError::Corrupt("parameters above the ceiling")),
                    "{params}"
                );
            }
        }
    }

    #[test]
    fn malformed_and_foreign_hashes_are_corrupt() {
        let hasher = Argon2Hasher::insecure_fast();
        for bad in [
            "",
            "plaintext",
            "$argon2i$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$2b$12$abc",
        ] {
            assert!(
                matches!(
                    hasher.verify(b"x", &SecretHash::new(bad)),
                    Err(HashError::Corrupt(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_hides_salt_and_hash() {
        let stored = Argon2Hasher::insecure_fast().hash(b"secret").unwrap();
        let shown = format!("{stored:?}");
        let tail = stored.as_str().rsplit('$').next().unwrap();
        assert!(!shown.contains(tail));
    }
}
