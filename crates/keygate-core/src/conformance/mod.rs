//! Conformance suites: one per trait, run unchanged against every backend. A new backend
//! is done when it passes them. Enabled by the `conformance` feature.
//!
//! Each suite is a list of cases ([`store`], [`limiter`]), and a macro that expands it
//! into one `#[tokio::test]` per case in the calling test file, so a failure names its
//! case and does not hide the others: [`store_tests!`](crate::store_tests) and
//! [`limiter_tests!`](crate::limiter_tests). Every store and limiter crate invokes them
//! the same way, in one of two forms:
//!
//! - `store_tests!(|| async { MyStore::new() })`: a fresh backend per case;
//! - `store_tests!(harness = my_harness)`: `my_harness(case)` makes the backend, runs
//!   the [`Case`] on it and cleans up after it (a database schema, say), and may skip
//!   the case (returning at once) when its server is not configured.
//!
//! The generated tests run on a multi-threaded Tokio runtime, so the calling crate needs
//! `tokio` with the `macros` and `rt-multi-thread` features among its dev-dependencies.

use std::future::Future;

use crate::store::BoxFuture;

pub mod limiter;
mod owners;
mod rotation;
pub mod store;
mod store_fixtures;

/// One case of a suite, ready to run on a backend `B`: what a harness is handed.
pub type Case<B> = fn(B) -> BoxFuture<'static, ()>;

/// The harness of the closure form: runs `case` on a fresh backend from `make`.
pub async fn fresh<B, F, Fut>(make: F, case: Case<B>)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = B>,
{
    case(make().await).await;
}

/// Expands the [`KeyStore`](crate::KeyStore) conformance suite
/// ([`conformance::store`](crate::conformance::store)) into one `#[tokio::test]` per case.
///
/// ```
/// use keygate_core::MemoryStore;
///
/// keygate_core::store_tests!(|| async { MemoryStore::new() });
/// # fn main() {}
/// ```
///
/// With a harness, for backends that need setting up and tearing down per case:
///
/// ```
/// use keygate_core::conformance::Case;
/// use keygate_core::MemoryStore;
///
/// async fn in_memory(case: Case<MemoryStore>) {
///     // Set up (a schema, a file), run, then clean up even if the case failed.
///     case(MemoryStore::new()).await;
/// }
///
/// keygate_core::store_tests!(harness = in_memory);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_tests {
    (harness = $harness:expr) => {
        $crate::__conformance_tests! {
            store, $harness;
            create_stores_every_field_and_find_returns_the_record,
            stored_hash_is_a_phc_string_never_the_plaintext,
            inserting_an_existing_key_id_is_a_conflict_and_keeps_the_original,
            list_by_owner_pages_in_creation_order,
            list_pages_every_key_across_owners,
            revoke_is_idempotent_and_keeps_the_first_revocation_time,
            set_expiry_sets_and_clears_the_expiry,
            rotate_issues_a_replacement_and_expires_the_old_key,
            owner_limits_are_kept_and_put_the_owners_keys_on_the_feed,
            an_accounts_spend_is_recorded_under_its_subject,
            daily_usage_is_kept_per_key_and_day,
            replace_is_one_step_and_a_key_is_replaced_once,
            record_usage_adds_counts_and_keeps_the_latest_use,
            changes_since_reports_revoked_and_rotated_keys_after_a_cursor,
            concurrent_creates_are_all_stored_with_distinct_ids,
            recorded_spend_adds_up_per_key_and_month,
        }
    };
    ($make:expr) => {
        $crate::store_tests!(harness = |case| $crate::conformance::fresh($make, case));
    };
}

/// Expands the [`RateLimiter`](crate::rate::RateLimiter) conformance suite
/// ([`conformance::limiter`](crate::conformance::limiter)) into one `#[tokio::test]` per
/// case; the same two forms as [`store_tests!`](crate::store_tests).
///
/// ```
/// use keygate_core::rate::MemoryRateLimiter;
///
/// keygate_core::limiter_tests!(|| async { MemoryRateLimiter::new() });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! limiter_tests {
    (harness = $harness:expr) => {
        $crate::__conformance_tests! {
            limiter, $harness;
            an_idle_key_may_burst_up_to_the_limit,
            every_window_applies_at_once,
            services_keep_separate_counters,
            keys_keep_separate_counters,
            concurrent_calls_admit_exactly_the_limit,
            a_refused_request_counts_in_no_window,
            retry_after_is_whole_seconds_rounded_up_and_at_least_one,
            a_window_is_whole_again_at_its_reset,
            an_account_window_is_shared_by_its_keys,
            a_request_refused_by_key_or_account_counts_in_neither,
            concurrent_keys_of_one_account_admit_exactly_its_limit,
        }
    };
    ($make:expr) => {
        $crate::limiter_tests!(harness = |case| $crate::conformance::fresh($make, case));
    };
}

/// One test per case: `conformance::$suite::$case`, run through `$harness`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($suite:ident, $harness:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let case: $crate::conformance::Case<_> =
                    |backend| ::std::boxed::Box::pin($crate::conformance::$suite::$case(backend));
                ($harness)(case).await;
            }
        )+
    };
}
