//! Duration and rate parsing: `parse_duration` (`90d`), `RateLimit`'s `FromStr`
//! (`100/min`) and `RateLimit::parse_list` (`100/min,1000/h`).
//!
//! Properties: nothing panics; a duration is whole seconds, at most 1000 years, and
//! reads back from `<secs>s`; a rate is positive and round-trips through `Display`, and
//! so does a list.

#![no_main]

use std::time::Duration;

use keygate_core::record::parse_duration;
use keygate_core::RateLimit;
use libfuzzer_sys::fuzz_target;

const THOUSAND_YEARS: Duration = Duration::from_secs(1000 * 365 * 86_400);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = parse_duration(text) {
        assert_eq!(duration.subsec_nanos(), 0);
        assert!(duration <= THOUSAND_YEARS, "{duration:?}");
        let shown = format!("{}s", duration.as_secs());
        assert_eq!(parse_duration(&shown).ok(), Some(duration));
    }
    if let Ok(rate) = text.parse::<RateLimit>() {
        round_trips(rate);
    }
    if let Ok(list) = RateLimit::parse_list(text) {
        assert!(!list.is_empty());
        list.iter().copied().for_each(round_trips);
        let shown: Vec<String> = list.iter().map(RateLimit::to_string).collect();
        assert_eq!(RateLimit::parse_list(&shown.join(",")).ok(), Some(list));
    }
});

fn round_trips(rate: RateLimit) {
    assert!(rate.limit > 0 && !rate.period.is_zero(), "{rate:?}");
    assert!(rate.period <= THOUSAND_YEARS);
    let shown = rate.to_string();
    assert_eq!(shown.parse::<RateLimit>().ok(), Some(rate), "{shown}");
}
