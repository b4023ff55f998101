//! Backends on the request path (the key store, a rate limiter, a spend meter): what
//! the gate does when one cannot answer ([`FailMode`]), and how long it waits for one
//! ([`Budget`]: a timeout per call and a circuit [`Breaker`]).

mod breaker;
mod budget;

pub use breaker::{Breaker, COOL_DOWN, THRESHOLD};
pub use budget::{Budget, Unanswered, DEFAULT_TIMEOUT};

/// A limiter or meter could not answer.
#[derive(Debug, thiserror::Error)]
#[error("policy backend unavailable: {0}")]
pub struct BackendError(pub String);

/// What to do when the rate limiter or spend meter cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// Refuse with 503 and `Retry-After` (the default: limits are a promise).
    #[default]
    Closed,
    /// Admit the request as if the limit were not there.
    Open,
}
