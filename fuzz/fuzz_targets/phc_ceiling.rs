//! PHC strings read from a store: `Argon2Hasher::verify` parses the stored hash and
//! refuses parameters above its ceiling before any hashing.
//!
//! Input: three bytes choose the ceiling (small, so that what passes it hashes in well
//! under a millisecond), the rest is the stored PHC string; the secret is fixed.
//!
//! Properties: nothing panics; every refusal is `Corrupt`, never `Failed`; whatever
//! verifies (true or false) is an argon2id PHC string, read by argon2 itself here, whose
//! memory, iterations and lanes are all within the ceiling.

#![no_main]

use argon2::password_hash::PasswordHash;
use argon2::Params;
use keygate_core::hash::{Argon2Hasher, HashError, KeyHasher, ParamCeiling, SecretHash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [m, t, p, rest @ ..] = data else {
        return;
    };
    let ceiling = ParamCeiling {
        m_cost: u32::from(*m) * 2,
        t_cost: u32::from(*t % 3),
        p_cost: u32::from(*p % 3),
    };
    let Ok(phc) = std::str::from_utf8(rest) else {
        return;
    };
    let hasher = Argon2Hasher::insecure_fast().ceiling(ceiling);
    match hasher.verify(b"secret", &SecretHash::new(phc)) {
        Ok(_) => {
            let parsed = PasswordHash::new(phc).expect("a verified hash is a PHC string");
            assert_eq!(parsed.algorithm.as_str(), "argon2id");
            let params = Params::try_from(&parsed).expect("a verified hash has valid parameters");
            assert!(params.m_cost() <= ceiling.m_cost, "{phc}");
            assert!(params.t_cost() <= ceiling.t_cost, "{phc}");
            assert!(params.p_cost() <= ceiling.p_cost, "{phc}");
        }
        Err(HashError::Corrupt(_)) => {}
        Err(HashError::Failed(error)) => panic!("a stored hash failed instead of being refused: {error}"),
    }
});
