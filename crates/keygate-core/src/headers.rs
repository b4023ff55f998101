//! The rate-limit headers of a response: `X-RateLimit-Limit`, `-Remaining` and
//! `-Reset` for the tightest window (and the IETF draft's `RateLimit` and
//! `RateLimit-Policy` when switched on). The one place that names them and makes their
//! values, for `http` adapters ([`RateHeaders::append_to`]) and for adapters that make
//! their own values from the numbers ([`RateHeaders::numbers`], [`RateHeaders::NAMES`]).

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::clock::Timestamp;
use crate::rate::WindowState;

static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The tightest window of a request, kept as numbers: header values are made once,
/// straight into the response.
#[derive(Clone, Copy, Debug)]
pub struct RateHeaders {
    window: WindowState,
    /// The request's time: the IETF fields' reset is relative to it.
    now: Timestamp,
    ietf: bool,
}

impl RateHeaders {
    /// The names of [`numbers`](Self::numbers), in order: `x-ratelimit-limit`,
    /// `x-ratelimit-remaining`, `x-ratelimit-reset`.
    pub const NAMES: [&'static str; 3] = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"];

    pub(crate) fn new(window: WindowState, now: Timestamp, ietf: bool) -> Self {
        Self { window, now, ietf }
    }

    /// The window's limit, the requests left in it, and when it resets (Unix seconds),
    /// in the order of [`NAMES`](Self::NAMES).
    pub fn numbers(&self) -> [u64; 3] {
        let w = self.window;
        [w.limit.into(), w.remaining.into(), w.reset_at]
    }

    /// The text of `n` from a static table when `n` is below 1024 (the limits and
    /// remaining counts of ordinary windows), so that a header value of it needs no
    /// allocation.
    pub fn static_text(n: u64) -> Option<&'static str> {
        let small: &'static [HeaderValue] = small_numbers();
        let value = usize::try_from(n).ok().and_then(|i| small.get(i))?;
        value.to_str().ok()
    }

    /// The IETF draft's `RateLimit` and `RateLimit-Policy` fields as names and text,
    /// when the gate sends them (`None` otherwise).
    pub fn ietf_fields(&self) -> Option<[(&'static str, String); 2]> {
        if !self.ietf {
            return None;
        }
        let w = self.window;
        let now_secs = u64::try_from(self.now.unix_secs()).unwrap_or(0);
        let reset = w.reset_at.saturating_sub(now_secs);
        Some([
            (
                RATELIMIT.as_str(),
                format!("limit={}, remaining={}, reset={}", w.limit, w.remaining, reset),
            ),
            (
                RATELIMIT_POLICY.as_str(),
                format!("{};w={}", w.limit, w.period_secs),
            ),
        ])
    }

    /// Every header as `http` names and values.
    pub fn pairs(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        self.http_numbers().into_iter().chain(self.http_ietf())
    }

    /// Appends every header to `headers`: what an adapter on `http` types calls on
    /// each response, with no iterator in between.
    #[inline]
    pub fn append_to(&self, headers: &mut HeaderMap) {
        // No `reserve`: the usual response (a header or two) does not need it.
        append_numbers(headers, self.numbers());
        if self.ietf {
            for (name, value) in self.http_ietf() {
                headers.append(name, value);
            }
        }
    }

    /// The three numbers as `http` headers.
    fn http_numbers(&self) -> [(HeaderName, HeaderValue); 3] {
        let [l, r, t] = number_values(self.numbers());
        [
            (X_RATELIMIT_LIMIT.clone(), l),
            (X_RATELIMIT_REMAINING.clone(), r),
            (X_RATELIMIT_RESET.clone(), t),
        ]
    }

    /// The IETF fields as `http` headers, when switched on.
    fn http_ietf(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        let [limit, policy] = match self.ietf_fields() {
            Some([(_, limit), (_, policy)]) => [Some(limit), Some(policy)],
            None => [None, None],
        };
        [(&RATELIMIT, limit), (&RATELIMIT_POLICY, policy)]
            .into_iter()
            .filter_map(|(name, text)| Some((name.clone(), HeaderValue::try_from(text?).ok()?)))
    }
}

/// Numbers below this have a static header value: limits and remaining counts of
/// ordinary windows (100/min, 1000/h) are shown with no allocation and no atomics.
const STATIC_NUMBERS: u64 = 1024;

/// The header values of `numbers` (limit, remaining, reset). Small numbers come from a
/// static table (built once; cloning a static value copies two words). A larger number
/// is kept per thread and header once it repeats: a limit never changes and a reset
/// time once a second, so most responses share theirs (a reference count) instead of
/// allocating. A number seen once, as a remaining count usually is, gets a value of its
/// own: one allocation, freed with the response, where sharing it would cost a second
/// allocation and the reference counts.
fn number_values(numbers: [u64; 3]) -> [HeaderValue; 3] {
    let [l, r, t] = numbers;
    // Three plain calls rather than `array::from_fn`, whose closure the compiler may
    // leave out of line (it did, for ~120 instructions a response).
    LAST.with_borrow_mut(|[a, b, c]| [a.value_of(l), b.value_of(r), c.value_of(t)])
}

/// Appends the `X-RateLimit-*` headers of `numbers` (limit, remaining, reset) to
/// `headers`, with values as [`number_values`] makes them: each made where it is
/// appended, where an array of them in between cost ~300 instructions a response in
/// moves.
#[inline]
fn append_numbers(headers: &mut HeaderMap, numbers: [u64; 3]) {
    let [l, r, t] = numbers;
    LAST.with_borrow_mut(|[a, b, c]| {
        headers.append(X_RATELIMIT_LIMIT.clone(), a.value_of(l));
        headers.append(X_RATELIMIT_REMAINING.clone(), b.value_of(r));
        headers.append(X_RATELIMIT_RESET.clone(), c.value_of(t));
    });
}

thread_local! {
    /// Each header's last large number and value, per thread.
    static LAST: std::cell::RefCell<[Shared; 3]> = std::cell::RefCell::new(Default::default());
}

/// One header's last large number, and its shared value once it has repeated.
#[derive(Default)]
struct Shared {
    seen: u64,
    value: Option<HeaderValue>,
}

impl Shared {
    /// The value of `n`: from the static table when it has it, else this slot's.
    #[inline(always)]
    fn value_of(&mut self, n: u64) -> HeaderValue {
        // A large number shown last time too, first: the table is not read for it.
        // (Only a large number is ever kept with a value.)
        if let (true, Some(value)) = (self.seen == n, &self.value) {
            return value.clone();
        }
        if let Some(value) = usize::try_from(n).ok().and_then(|i| small_numbers().get(i)) {
            return value.clone();
        }
        if self.seen != n {
            self.seen = n;
            self.value = None;
            return HeaderValue::from(n);
        }
        self.value.get_or_insert_with(|| HeaderValue::from(n)).clone()
    }
}

/// The values of 0 to [`STATIC_NUMBERS`] − 1, static.
fn small_numbers() -> &'static [HeaderValue] {
    static SMALL: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    SMALL.get_or_init(|| {
        // One string of every number, leaked once so that its slices are static.
        let text: &'static str = Box::leak(
            (0..STATIC_NUMBERS)
                .map(|i| i.to_string())
                .collect::<String>()
                .into_boxed_str(),
        );
        let mut at = 0;
        (0..STATIC_NUMBERS)
            .map(|i| {
                let len = if i == 0 { 1 } else { i.ilog10() as usize + 1 };
                let value = HeaderValue::from_static(&text[at..at + len]);
                at += len;
                value
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_text_covers_the_table_and_nothing_beyond_it() {
        for n in [0, 1, 9, 10, 99, 100, 999, 1000, 1023] {
            assert_eq!(RateHeaders::static_text(n), Some(n.to_string().as_str()));
        }
        for n in [1024, 1_795_000_000, u64::MAX] {
            assert_eq!(RateHeaders::static_text(n), None);
        }
    }

    #[test]
    fn the_names_are_those_of_the_http_headers_in_order() {
        let rate = RateHeaders::new(
            WindowState {
                limit: 100,
                period_secs: 60,
                remaining: 99,
                reset_at: 1_795_000_000,
            },
            Timestamp::from_unix_nanos(1_794_999_999_000_000_000),
            false,
        );
        let pairs: Vec<_> = rate.pairs().collect();
        let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, RateHeaders::NAMES);
        let values: Vec<u64> = pairs
            .iter()
            .map(|(_, v)| v.to_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(values, rate.numbers());
    }

    #[test]
    fn number_values_read_as_their_numbers_from_the_table_and_beyond_it() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            1023,
            1024,
            1_795_000_000,
            u64::MAX,
        ] {
            // Each header alone, then all three (from the table and beyond it at once),
            // and again (reused values): still right.
            for numbers in [[n, 0, 0], [0, n, 0], [0, 0, n], [n, 7, n], [n, 7, n]] {
                let values = number_values(numbers);
                for (value, number) in values.iter().zip(numbers) {
                    assert_eq!(value, number.to_string().as_str(), "{numbers:?}");
                }
            }
        }
    }
}
