//! [`InvalidValue`]: a setting that could not be parsed from text (a scope list, a rate,
//! a duration, an environment, an error format's name).

/// A value that could not be parsed from text (a scope list, a rate, a duration).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {hint}")]
pub struct InvalidValue {
    what: &'static str,
    value: String,
    hint: &'static str,
}

impl InvalidValue {
    pub(crate) fn new(what: &'static str, value: &str, hint: &'static str) -> Self {
        // Inputs here are user-typed settings, never keys; cap them for the message.
        let value = value.chars().take(64).collect();
        Self { what, value, hint }
    }
}
