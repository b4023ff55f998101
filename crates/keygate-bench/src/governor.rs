//! The `governor` mode: the stack a user would hand-build instead of keygate from
//! tower-http's fixed-token bearer check and tower_governor, rate limited per presented
//! token, with tower_governor's `X-RateLimit-*` headers.
//!
//! It sits behind the crate's `governor` feature (a default one): tower_governor depends
//! on axum with axum's default features, which add work to every request in every mode
//! (the `original-uri` extension, `tracing/log`), so `scripts/instructions.sh` counts
//! the other modes in a build without it, as they were counted before this mode.

#[cfg(feature = "governor")]
pub(crate) use with_feature::guard;

#[cfg(feature = "governor")]
mod with_feature {
    use axum::http::header::AUTHORIZATION;
    use axum::http::Request;
    use axum::Router;
    use tower::ServiceBuilder;
    use tower_governor::governor::GovernorConfigBuilder;
    use tower_governor::key_extractor::KeyExtractor;
    use tower_governor::{GovernorError, GovernorLayer};
    use tower_http::validate_request::ValidateRequestHeaderLayer;

    /// Keys the limiter by the bearer token of `Authorization`, as tower_governor's README
    /// suggests for per-token limits; needs no peer address (`ConnectInfo`), so it also
    /// works in process, with `oneshot`.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct BearerToken;

    impl KeyExtractor for BearerToken {
        type Key = String;

        fn extract<T>(&self, request: &Request<T>) -> Result<String, GovernorError> {
            request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::to_owned)
                .ok_or(GovernorError::UnableToExtractKey)
        }
    }

    /// `routes` behind the bearer check of `key` (outermost, so that a refused request
    /// spends no quota) and a per-token limiter that never refuses: a cell every
    /// nanosecond, a burst of `u32::MAX`.
    pub(crate) fn guard(routes: Router, key: &str) -> Result<Router, String> {
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .key_extractor(BearerToken)
            .use_headers()
            .finish()
            .ok_or("tower_governor refused the quota")?;
        #[allow(deprecated)] // "too basic for real applications": as in `tower-http`.
        let bearer = ValidateRequestHeaderLayer::bearer(key);
        Ok(routes.route_layer(
            ServiceBuilder::new()
                .layer(bearer)
                .layer(GovernorLayer::new(config)),
        ))
    }
}

/// Without the `governor` feature, the mode is known but cannot be served.
#[cfg(not(feature = "governor"))]
pub(crate) fn guard(_routes: axum::Router, _key: &str) -> Result<axum::Router, String> {
    Err("the `governor` mode needs keygate-bench's `governor` feature (a default one)".into())
}
