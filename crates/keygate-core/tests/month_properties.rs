//! Property tests of the spend cap's month arithmetic (`Month`): every instant belongs to
//! exactly the month `Month::of` names, months follow one another without gap or overlap,
//! and December rolls into January of the next year.
//!
//! Instants range over years -9999 to 9999, with extra weight right at month
//! boundaries, where off-by-one errors live. Failures are saved to
//! `proptest-regressions/month_properties.txt` and replayed first.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use keygate_core::spend::Month;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// `PROPTEST_CASES` when set (a longer soak: `PROPTEST_CASES=10000 cargo test`), else a
/// count small enough for the unoptimised suite CI runs.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(256),
        // An absolute path fixed at compile time: proptest's default (`SourceParallel`)
        // looks for a `lib.rs` beside the test file, finds none for `tests/`, warns and
        // writes next to the source instead. This keeps the file where it is committed.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/month_properties.txt"
        )))),
        ..ProptestConfig::default()
    }
}

const FIRST_YEAR: i32 = -9999;
const LAST_YEAR: i32 = 9999;

/// The first instant of `year`-`month`, computed by chrono directly, not by `Month`.
fn first_of(year: i32, month: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .expect("every month in range has a first instant")
}

fn month() -> impl Strategy<Value = Month> {
    month_from(FIRST_YEAR)
}

fn month_from(first_year: i32) -> impl Strategy<Value = Month> {
    (first_year..=LAST_YEAR, 1u32..=12).prop_map(|(year, month)| Month { year, month })
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    instant_from(FIRST_YEAR)
}

/// Any instant from `first_year` on, to the nanosecond; half of them within ten seconds
/// of the start of a month.
fn instant_from(first_year: i32) -> impl Strategy<Value = DateTime<Utc>> {
    let bound = |year, month, day| {
        NaiveDate::from_ymd_opt(year, month, day)
            .expect("a valid date")
            .and_hms_opt(0, 0, 0)
            .expect("a valid time")
            .and_utc()
            .timestamp()
    };
    let (lo, hi) = (bound(first_year, 1, 1), bound(LAST_YEAR, 12, 31));
    let anywhere = (lo..hi, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in chrono's range"));
    let near_a_boundary = (month_from(first_year), -10_000_000_000i64..10_000_000_000)
        .prop_map(|(m, offset)| first_of(m.year, m.month) + chrono::Duration::nanoseconds(offset));
    prop_oneof![anywhere, near_a_boundary]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_instant_lies_between_the_start_of_its_month_and_the_start_of_the_next(t in instant()) {
        let m = Month::of(t);
        prop_assert!(m.start() <= t, "{} starts at {}, after {}", m, m.start(), t);
        prop_assert!(t < m.next().start(), "{} ends at {}, not after {}", m, m.next().start(), t);
        prop_assert_eq!((m.year, m.month), (t.year(), t.month()));
    }

    #[test]
    fn the_start_of_a_month_belongs_to_that_month(m in month()) {
        prop_assert_eq!(Month::of(m.start()), m);
        prop_assert_eq!(m.start(), first_of(m.year, m.month));
    }

    #[test]
    fn the_next_month_is_later_and_starts_on_the_first_at_midnight_utc(m in month()) {
        let next = m.next();
        prop_assert!(next > m);
        prop_assert!(next.start() > m.start());
        let start = next.start();
        prop_assert_eq!(
            (start.day(), start.hour(), start.minute(), start.second(), start.nanosecond()),
            (1, 0, 0, 0, 0)
        );
        // No month is skipped: 28 to 31 days apart.
        let days = (next.start() - m.start()).num_days();
        prop_assert!((28..=31).contains(&days), "{} to {} is {} days", m, next, days);
    }

    #[test]
    fn december_rolls_into_january_of_the_next_year_and_other_months_stay_in_theirs(m in month()) {
        let next = m.next();
        if m.month == 12 {
            prop_assert_eq!(next, Month { year: m.year + 1, month: 1 });
        } else {
            prop_assert_eq!(next, Month { year: m.year, month: m.month + 1 });
        }
    }

    #[test]
    fn the_last_nanosecond_of_a_month_belongs_to_it(m in month()) {
        let last = m.next().start() - chrono::Duration::nanoseconds(1);
        prop_assert_eq!(Month::of(last), m);
        prop_assert_eq!(Month::of(last + chrono::Duration::nanoseconds(1)), m.next());
    }

    // chrono pads negative years to four digits after the sign, `Month` to four
    // characters in all: the two agree from year 0 on.
    #[test]
    fn a_month_displays_as_its_year_and_month(t in instant_from(0)) {
        let m = Month::of(t);
        prop_assert_eq!(m.to_string(), t.format("%Y-%m").to_string());
    }
}
