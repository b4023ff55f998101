//! The bench's modes, in one list ([`Mode::ALL`]) read by the `load_server` binary, the
//! `requests` example, the `router` bench, the tests and, through `load_server --modes`,
//! the scripts: a mode added here is known everywhere.

use std::fmt;
use std::str::FromStr;

/// How a mode's app is built, and so which function builds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framework {
    /// axum, the mode's layer on the route (`Router::route_layer`): [`crate::app`].
    AxumRouteLayer,
    /// axum, `ApiKeyLayer` around the whole app: [`crate::around_app`].
    AxumAround,
    /// actix-web: [`crate::actix_bare`], or [`crate::actix_guarded`] with
    /// [`crate::actix_middleware`].
    Actix,
}

impl Framework {
    /// The function of this crate that builds the app of this framework's modes.
    pub const fn builder(self) -> &'static str {
        match self {
            Framework::AxumRouteLayer => "app",
            Framework::AxumAround => "around_app",
            Framework::Actix => "actix_bare or actix_guarded",
        }
    }
}

/// One way of serving `GET /v1/ping`; see the crate's documentation for what each does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `bare`: the axum app alone, the reference of the axum modes.
    Bare,
    /// `auth`: `ApiKeyLayer` on the route.
    Auth,
    /// `policy`: `auth` with a required scope and rate limits.
    Policy,
    /// `auth-around`: `auth`'s layer around the whole app.
    AuthAround,
    /// `policy-around`: `policy`'s layer around the whole app.
    PolicyAround,
    /// `tower-http`: tower-http's fixed-token bearer check.
    TowerHttp,
    /// `governor`: `tower-http` plus tower_governor keyed by the token, with its headers.
    Governor,
    /// `headers`: three static `X-RateLimit-*` headers added.
    Headers,
    /// `floor`: [`crate::FloorLayer`].
    Floor,
    /// `floor-headers`: `floor` and `headers`.
    FloorHeaders,
    /// `actix-bare`: the actix-web app alone, the reference of the actix modes.
    ActixBare,
    /// `actix-auth`: `ApiKeyMiddleware` on the actix app.
    ActixAuth,
    /// `actix-policy`: `actix-auth` with `policy`'s scope and limits.
    ActixPolicy,
    /// `redis-policy`: `policy` with its windows counted by `RedisRateLimiter` on the
    /// Redis at `KEYGATE_BENCH_REDIS_URL` (served only when that is set).
    RedisPolicy,
    /// `actix-redis-policy`: `actix-policy` with `redis-policy`'s Redis windows.
    ActixRedisPolicy,
}

impl Mode {
    /// Every mode, in the order the scripts report them, each framework's reference first.
    pub const ALL: [Mode; 15] = [
        Mode::Bare,
        Mode::Auth,
        Mode::Policy,
        Mode::AuthAround,
        Mode::PolicyAround,
        Mode::TowerHttp,
        Mode::Governor,
        Mode::Headers,
        Mode::Floor,
        Mode::FloorHeaders,
        Mode::ActixBare,
        Mode::ActixAuth,
        Mode::ActixPolicy,
        Mode::RedisPolicy,
        Mode::ActixRedisPolicy,
    ];

    /// The mode's name on the command line and in the scripts' tables.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Auth => "auth",
            Mode::Policy => "policy",
            Mode::AuthAround => "auth-around",
            Mode::PolicyAround => "policy-around",
            Mode::TowerHttp => "tower-http",
            Mode::Governor => "governor",
            Mode::Headers => "headers",
            Mode::Floor => "floor",
            Mode::FloorHeaders => "floor-headers",
            Mode::ActixBare => "actix-bare",
            Mode::ActixAuth => "actix-auth",
            Mode::ActixPolicy => "actix-policy",
            Mode::RedisPolicy => "redis-policy",
            Mode::ActixRedisPolicy => "actix-redis-policy",
        }
    }

    /// How the mode's app is built.
    pub const fn framework(self) -> Framework {
        match self {
            Mode::Bare
            | Mode::Auth
            | Mode::Policy
            | Mode::TowerHttp
            | Mode::Governor
            | Mode::Headers
            | Mode::Floor
            | Mode::FloorHeaders
            | Mode::RedisPolicy => Framework::AxumRouteLayer,
            Mode::AuthAround | Mode::PolicyAround => Framework::AxumAround,
            Mode::ActixBare | Mode::ActixAuth | Mode::ActixPolicy | Mode::ActixRedisPolicy => {
                Framework::Actix
            }
        }
    }

    /// The mode this one's cost is reported over: the same framework with nothing on it.
    pub const fn reference(self) -> Mode {
        match self.framework() {
            Framework::AxumRouteLayer | Framework::AxumAround => Mode::Bare,
            Framework::Actix => Mode::ActixBare,
        }
    }

    /// Whether this build serves the mode: `governor` needs the crate's `governor`
    /// feature, and `redis-policy` and `actix-redis-policy` a Redis, named by `KEYGATE_BENCH_REDIS_URL`.
    pub fn is_available(self) -> bool {
        match self {
            Mode::Governor => cfg!(feature = "governor"),
            Mode::RedisPolicy | Mode::ActixRedisPolicy => redis_url().is_some(),
            _ => true,
        }
    }

    /// Whether keygate guards the mode with `policy`'s route policy: the `read` scope, a
    /// service window, and the gate's default limits (all high enough never to refuse).
    pub const fn is_policy(self) -> bool {
        matches!(
            self,
            Mode::Policy
                | Mode::PolicyAround
                | Mode::ActixPolicy
                | Mode::RedisPolicy
                | Mode::ActixRedisPolicy
        )
    }
}

/// The Redis of `redis-policy`: `KEYGATE_BENCH_REDIS_URL`, when set and not empty.
pub fn redis_url() -> Option<String> {
    std::env::var("KEYGATE_BENCH_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(name: &str) -> Result<Self, UnknownMode> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| UnknownMode(name.to_owned()))
    }
}

/// A name that is no mode; its message lists the modes.
#[derive(Clone, PartialEq, Eq)]
pub struct UnknownMode(pub String);

/// The message, as `Display` gives it: a `main` that returns the error prints its `Debug`.
impl fmt::Debug for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for UnknownMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown mode `{}`: one of ", self.0)?;
        for (i, mode) in Mode::ALL.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(mode.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownMode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_parses_back_from_its_name() {
        for mode in Mode::ALL {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
    }

    #[test]
    fn each_mode_is_listed_once() {
        for (i, mode) in Mode::ALL.into_iter().enumerate() {
            assert_eq!(Mode::ALL.iter().position(|m| *m == mode), Some(i), "{mode}");
        }
    }

    #[test]
    fn a_reference_is_its_own_reference_and_of_its_framework() {
        for mode in Mode::ALL {
            let reference = mode.reference();
            assert_eq!(reference.reference(), reference, "{mode}");
            assert_eq!(
                reference.framework() == Framework::Actix,
                mode.framework() == Framework::Actix
            );
        }
    }
}
