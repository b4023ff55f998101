//! A flood of shed requests logs one warning a second, with the count of those held
//! back, not one per request. Alone in its binary: it installs a tracing subscriber.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use keygate_core::clock::ManualClock;
use keygate_core::verify::VerifierConfig;
use keygate_core::{Gate, MemoryStore};
use support::{create, forge, status, unknown_key, until, Probe};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// A warning's message and its `suppressed` field.
type Warning = (String, Option<u64>);

/// Each warning or error keygate logs.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<Warning>>>);

impl Warnings {
    fn matching(&self, text: &str) -> Vec<Option<u64>> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(message, _)| message.contains(text))
            .map(|(_, suppressed)| *suppressed)
            .collect()
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    suppressed: Option<u64>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "suppressed" {
            self.suppressed = Some(value);
        }
    }
}

impl<S: Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() <= Level::WARN && event.metadata().target().starts_with("keygate") {
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0.lock().unwrap().push((fields.message, fields.suppressed));
        }
    }
}

// One thread: every event of the test, its tasks' included, reaches the subscriber.
#[tokio::test(flavor = "current_thread")]
async fn shed_requests_log_one_warning_a_second_with_the_count_held_back() {
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let probe = Probe::default();
    let gate = Gate::builder(MemoryStore::new())
        .hasher(probe.clone())
        .clock(clock.clone())
        .verifier(VerifierConfig {
            hash_workers: 1,
            hash_queue: 0,
            ..VerifierConfig::default()
        })
        .build();
    let victim = create(&gate).await;

    // One cold verification holds the only slot.
    let held = probe.hold_verifies();
    let holder = {
        let (gate, key) = (gate.clone(), forge(victim.record.key_id.as_str()));
        tokio::spawn(async move { status(&gate, &key).await })
    };
    until(|| probe.verifies() == 1).await;

    // A flood of new cold keys within one second: each shed, one warning.
    for _ in 0..100 {
        assert_eq!(
            status(&gate, &unknown_key()).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let shed = warnings.matching("shed");
    assert_eq!(shed.len(), 1, "one warning in the first second: {shed:?}");

    // A second later, the next shed request logs again and tells how many were held back.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        status(&gate, &unknown_key()).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let shed = warnings.matching("shed");
    assert_eq!(shed.len(), 2, "{shed:?}");
    assert_eq!(shed[1], Some(99), "the count held back");

    drop(held);
    assert_eq!(holder.await.unwrap(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "current_thread")]
async fn guesses_past_the_limit_log_one_warning_a_second() {
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Probe::default())
        .clock(clock.clone())
        .verifier(VerifierConfig {
            failure_limit: 2,
            ..VerifierConfig::default()
        })
        .build();
    // Many ids, each guessed past its limit, all within one second.
    for _ in 0..50 {
        let victim = create(&gate).await;
        for _ in 0..4 {
            status(&gate, &forge(victim.record.key_id.as_str())).await;
        }
    }
    let all = warnings.0.lock().unwrap().len();
    assert!(all <= 2, "{all} warnings: {:?}", warnings.0.lock().unwrap());
}
