//! What the gate does when a backend (a rate limiter, a spend meter) cannot answer.

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
