//! Adapter parity: one table of scenarios, each sent through axum (the tower layer) and
//! actix-web (the middleware). Both must answer with the same status, the same
//! keygate headers and the same body, and that answer must be the one in the table.
//!
//! Run with `cargo test --all-features --test parity`.
//!
//! Time is a [`ManualClock`], so expiry dates, quota resets, rate-limit resets and the
//! 429 timestamp are fixed and every body is compared byte for byte. To add a scenario,
//! add a row to [`cases`]: the request headers and the expected body are templates in
//! which `{name}` is the key id of the fixture key `name` and `{name.key}` its plaintext
//! (see [`Fixture::new`] for the keys).

#![cfg(all(feature = "axum", feature = "actix"))]

use actix_web::test as actix_test;
use axum::body::Body;
use http_body_util::BodyExt;
use keygate::clock::{Clock, ManualClock};
use keygate::hash::Argon2Hasher;
use keygate::key::Environment;
use keygate::manage::CreatedKey;
use keygate::rate::MemoryRateLimiter;
use keygate::reject::ErrorFormatKind;
use keygate::spend::{MemorySpendMeter, Month};
use keygate::{
    ApiKeyLayer, ApiKeyMiddleware, Gate, KeyStore, MemoryStore, NewKey, Principal, RateLimit, RoutePolicy,
};
use tower::ServiceExt;

/// When the fixture's keys are created.
const CREATED: &str = "2026-03-15T12:00:00Z";
/// When the expiring key expires.
const EXPIRES: &str = "2026-03-15T12:30:00Z";
/// When every request of the table is sent: one hour after creation, half an hour after
/// the expiry. Unix seconds 1773579600.
const NOW: &str = "2026-03-15T13:00:00Z";
/// The spend cap of the `capped` key, in micro-cents; the meter has charged all of it.
const CAP: u64 = 1000;

/// The headers the parity is checked on: everything keygate sets. A header not listed
/// in a row's expectation must be absent.
const CHECKED: [&str; 8] = [
    "content-type",
    "www-authenticate",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit",
    "ratelimit-policy",
];

const JSON: (&str, &str) = ("content-type", "application/json");
const PROBLEM: (&str, &str) = ("content-type", "application/problem+json");
const TEXT: (&str, &str) = ("content-type", "text/plain; charset=utf-8");
const CHALLENGE: (&str, &str) = ("www-authenticate", r#"Bearer realm="api""#);
const INVALID_TOKEN: (&str, &str) = ("www-authenticate", r#"Bearer realm="api", error="invalid_token""#);
const INSUFFICIENT_SCOPE: (&str, &str) = (
    "www-authenticate",
    r#"Bearer realm="api", error="insufficient_scope", scope="write""#,
);

const MISSING: &str = r#"{"success":false,"error":{"code":"MISSING_API_KEY","message":"API key is required","details":{"header":"Authorization"}}}"#;
const INVALID_NULL: &str = r#"{"success":false,"error":{"code":"INVALID_API_KEY","message":"The provided API key is invalid","details":{"key_id":null}}}"#;

/// `INVALID_API_KEY` naming the key id presented (a template: `{valid}`, `{unknown}`, …).
fn invalid(id: &str) -> String {
    format!(
        r#"{{"success":false,"error":{{"code":"INVALID_API_KEY","message":"The provided API key is invalid","details":{{"key_id":"{{{id}}}"}}}}}}"#
    )
}

/// How the gate of a scenario is built: its error format and its policy backends.
#[derive(Clone, Copy)]
struct Setup {
    format: ErrorFormatKind,
    /// A [`MemoryRateLimiter`] with these default per-key limits; `None`: no limiter.
    limits: Option<&'static [RateLimit]>,
    /// A [`MemorySpendMeter`] on which the `capped` key has spent its whole cap.
    meter: bool,
    /// The IETF draft's `RateLimit` and `RateLimit-Policy` fields switched on.
    ietf: bool,
}

impl Setup {
    const PLAIN: Setup = Setup {
        format: ErrorFormatKind::Default,
        limits: None,
        meter: false,
        ietf: false,
    };
}

/// What both adapters must answer.
struct Expect {
    status: u16,
    /// Exactly the [`CHECKED`] headers the response has, as templates.
    headers: Vec<(&'static str, &'static str)>,
    /// The body, as a template.
    body: String,
}

/// An admitted request: the handler's answer, the key id of the principal it was given
/// (or `anonymous`).
fn admitted(body: &str, extra: &[(&'static str, &'static str)]) -> Expect {
    let mut headers = vec![TEXT];
    headers.extend_from_slice(extra);
    Expect {
        status: 200,
        headers,
        body: body.to_owned(),
    }
}

/// A refusal rendered by the gate.
fn refused(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Expect {
    Expect {
        status,
        headers: headers.to_vec(),
        body: body.to_owned(),
    }
}

/// One scenario.
struct Case {
    /// What the scenario shows, as a sentence.
    name: &'static str,
    setup: Setup,
    /// The route's policy. An optional policy is served by a handler taking
    /// `Option<Principal>`, any other by one taking `Principal`.
    policy: RoutePolicy,
    /// Identical requests sent first, each of which must be admitted (to use up a limit).
    warmup: usize,
    /// The request's headers, as templates.
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

impl Case {
    fn new(name: &'static str, headers: &'static [(&'static str, &'static str)], expect: Expect) -> Self {
        Self {
            name,
            setup: Setup::PLAIN,
            policy: RoutePolicy::new(),
            warmup: 0,
            headers,
            expect,
        }
    }

    fn setup(mut self, setup: Setup) -> Self {
        self.setup = setup;
        self
    }

    fn format(mut self, format: ErrorFormatKind) -> Self {
        self.setup.format = format;
        self
    }

    fn policy(mut self, policy: RoutePolicy) -> Self {
        self.policy = policy;
        self
    }

    fn warmup(mut self, requests: usize) -> Self {
        self.warmup = requests;
        self
    }
}

const PER_MINUTE_2: &[RateLimit] = &[RateLimit::per_minute(2)];
/// The 429 of a key past `PER_MINUTE_2` at [`NOW`].
const LIMITED_429: &str = r#"{"error":"Rate limit exceeded","status_code":429,"retry_after":30,"timestamp":"2026-03-15T13:00:00.000Z"}"#;
const GENEROUS: &[RateLimit] = &[RateLimit::per_minute(100), RateLimit::per_hour(1000)];

const LIMITED: Setup = Setup {
    limits: Some(PER_MINUTE_2),
    ..Setup::PLAIN
};
const METERED: Setup = Setup {
    meter: true,
    ..Setup::PLAIN
};

/// The table. Every row runs through both adapters.
fn cases() -> Vec<Case> {
    let write = || RoutePolicy::new().require(["write"]);
    let optional = || RoutePolicy::new().optional(true);
    let jwt = &[(
        "authorization",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
    )];
    let mut cases = vec![
        // Credentials: missing, malformed, unknown, wrong, revoked, expired, valid.
        Case::new("a request without a key is refused as missing", &[], refused(401, &[JSON, CHALLENGE], MISSING)),
        Case::new(
            "an empty bearer token is refused as invalid, not missing",
            &[("authorization", "Bearer ")],
            refused(401, &[JSON, INVALID_TOKEN], INVALID_NULL),
        ),
        Case::new(
            "garbage is refused as invalid without a key id",
            &[("authorization", "Bearer not-a-key")],
            refused(401, &[JSON, INVALID_TOKEN], INVALID_NULL),
        ),
        Case::new(
            "a key with one character changed fails its checksum",
            &[("authorization", "Bearer {bad_checksum.key}")],
            refused(401, &[JSON, INVALID_TOKEN], &invalid("valid")),
        ),
        Case::new(
            "a well-formed key that was never created is invalid",
            &[("authorization", "Bearer {unknown.key}")],
            refused(401, &[JSON, INVALID_TOKEN], &invalid("unknown")),
        ),
        Case::new(
            "a known key id with another secret is invalid",
            &[("authorization", "Bearer {wrong_secret.key}")],
            refused(401, &[JSON, INVALID_TOKEN], &invalid("wrong_secret")),
        ),
        Case::new(
            "a revoked key answers exactly like an unknown one",
            &[("authorization", "Bearer {revoked.key}")],
            refused(401, &[JSON, INVALID_TOKEN], &invalid("revoked")),
        ),
        Case::new(
            "an expired key is refused with its expiry",
            &[("authorization", "Bearer {expired.key}")],
            refused(
                401,
                &[JSON, INVALID_TOKEN],
                r#"{"success":false,"error":{"code":"EXPIRED_API_KEY","message":"The API key has expired","details":{"expired_at":"2026-03-15T12:30:00Z"}}}"#,
            ),
        ),
        Case::new(
            "a valid key by bearer reaches the handler as its principal",
            &[("authorization", "Bearer {valid.key}")],
            admitted("{valid}", &[]),
        ),
        Case::new(
            "the bearer scheme is case-insensitive",
            &[("authorization", "bearer {valid.key}")],
            admitted("{valid}", &[]),
        ),
        Case::new("a valid key by x-api-key is admitted", &[("x-api-key", "{valid.key}")], admitted("{valid}", &[])),
        Case::new(
            "the same key in both headers is admitted",
            &[("authorization", "Bearer {valid.key}"), ("x-api-key", "{valid.key}")],
            admitted("{valid}", &[]),
        ),
        Case::new(
            "two different keys in one request are refused",
            &[("authorization", "Bearer {valid.key}"), ("x-api-key", "{other.key}")],
            refused(401, &[JSON, INVALID_TOKEN], INVALID_NULL),
        ),
        // Policy after authentication: scopes, spend cap, rate limits.
        Case::new(
            "a key without the route's scope is forbidden",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                403,
                &[JSON, INSUFFICIENT_SCOPE],
                r#"{"success":false,"error":{"code":"INSUFFICIENT_PERMISSIONS","message":"The API key lacks the scopes this route requires","details":{"required":["write"]}}}"#,
            ),
        )
        .policy(write()),
        Case::new(
            "a key that has spent its monthly cap is refused until the month turns",
            &[("authorization", "Bearer {capped.key}")],
            refused(
                402,
                &[JSON],
                r#"{"success":false,"error":{"code":"INSUFFICIENT_QUOTA","message":"The API key's monthly spend cap is exhausted","details":{"resets_at":"2026-04-01T00:00:00Z"}}}"#,
            ),
        )
        .setup(METERED),
        Case::new(
            "an uncapped key passes a metered gate",
            &[("authorization", "Bearer {valid.key}")],
            admitted("{valid}", &[]),
        )
        .setup(METERED),
        Case::new(
            "an admitted response carries the tightest window's rate-limit headers",
            &[("authorization", "Bearer {valid.key}")],
            admitted(
                "{valid}",
                &[
                    ("x-ratelimit-limit", "100"),
                    ("x-ratelimit-remaining", "99"),
                    ("x-ratelimit-reset", "1773579601"),
                ],
            ),
        )
        .setup(Setup {
            limits: Some(GENEROUS),
            ..Setup::PLAIN
        }),
        Case::new(
            "a key over its limit gets 429 with retry-after and the window's headers",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                429,
                &[
                    JSON,
                    ("retry-after", "30"),
                    ("x-ratelimit-limit", "2"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1773579660"),
                ],
                LIMITED_429,
            ),
        )
        .setup(LIMITED)
        .warmup(2),
        Case::new(
            "the ietf rate-limit fields, switched on, come with the x-ratelimit headers",
            &[("authorization", "Bearer {valid.key}")],
            admitted(
                "{valid}",
                &[
                    ("x-ratelimit-limit", "100"),
                    ("x-ratelimit-remaining", "99"),
                    ("x-ratelimit-reset", "1773579601"),
                    ("ratelimit", "limit=100, remaining=99, reset=1"),
                    ("ratelimit-policy", "100;w=60"),
                ],
            ),
        )
        .setup(Setup {
            limits: Some(GENEROUS),
            ietf: true,
            ..Setup::PLAIN
        }),
        Case::new(
            "a 429 carries the ietf rate-limit fields when they are switched on",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                429,
                &[
                    JSON,
                    ("retry-after", "30"),
                    ("x-ratelimit-limit", "2"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1773579660"),
                    ("ratelimit", "limit=2, remaining=0, reset=60"),
                    ("ratelimit-policy", "2;w=60"),
                ],
                LIMITED_429,
            ),
        )
        .setup(Setup {
            ietf: true,
            ..LIMITED
        })
        .warmup(2),
        Case::new(
            "a route's service limit is counted on top of the key's",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                429,
                &[
                    JSON,
                    ("retry-after", "60"),
                    ("x-ratelimit-limit", "1"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1773579660"),
                ],
                r#"{"error":"Rate limit exceeded","status_code":429,"retry_after":60,"timestamp":"2026-03-15T13:00:00.000Z"}"#,
            ),
        )
        .setup(Setup {
            limits: Some(GENEROUS),
            ..Setup::PLAIN
        })
        .policy(RoutePolicy::new().limits_for("chat", [RateLimit::per_minute(1)]))
        .warmup(1),
        // Optional mode: API keys beside another scheme on the same routes.
        Case::new("optional mode lets a request without a key through with no principal", &[], admitted("anonymous", &[]))
            .policy(optional()),
        Case::new("optional mode leaves a jwt bearer to another layer", jwt, admitted("anonymous", &[]))
            .policy(optional()),
        Case::new(
            "optional mode still admits a valid key as its principal",
            &[("x-api-key", "{valid.key}")],
            admitted("{valid}", &[]),
        )
        .policy(optional()),
        Case::new(
            "optional mode still refuses a key that looks like ours but fails",
            &[("authorization", "Bearer {bad_checksum.key}")],
            refused(401, &[JSON, INVALID_TOKEN], &invalid("valid")),
        )
        .policy(optional()),
        Case::new(
            "optional mode still refuses a revoked key",
            &[("authorization", "Bearer {revoked.key}")],
            refused(401, &[JSON, INVALID_TOKEN], &invalid("revoked")),
        )
        .policy(optional()),
    ];

    // Error formats: the same decisions, rendered as OpenAI's API and RFC 9457 do.
    use ErrorFormatKind::{OpenAi, Problem};
    cases.extend([
        Case::new(
            "openai format: a missing key",
            &[],
            refused(
                401,
                &[JSON, CHALLENGE],
                r#"{"error":{"message":"You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).","type":"invalid_request_error","param":null,"code":null}}"#,
            ),
        )
        .format(OpenAi),
        Case::new(
            "openai format: an unknown key",
            &[("authorization", "Bearer {unknown.key}")],
            refused(
                401,
                &[JSON, INVALID_TOKEN],
                r#"{"error":{"message":"Incorrect API key provided: {unknown}.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            ),
        )
        .format(OpenAi),
        Case::new(
            "openai format: an expired key",
            &[("authorization", "Bearer {expired.key}")],
            refused(
                401,
                &[JSON, INVALID_TOKEN],
                r#"{"error":{"message":"The API key expired at 2026-03-15T12:30:00Z.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            ),
        )
        .format(OpenAi),
        Case::new(
            "openai format: a missing scope",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                403,
                &[JSON, INSUFFICIENT_SCOPE],
                r#"{"error":{"message":"You have insufficient permissions for this operation. Required scopes: write.","type":"invalid_request_error","param":null,"code":"missing_scope"}}"#,
            ),
        )
        .format(OpenAi)
        .policy(write()),
        Case::new(
            "openai format: a spent cap",
            &[("authorization", "Bearer {capped.key}")],
            refused(
                402,
                &[JSON],
                r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. The quota resets at 2026-04-01T00:00:00Z.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            ),
        )
        .setup(METERED)
        .format(OpenAi),
        Case::new(
            "openai format: a rate limit",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                429,
                &[
                    JSON,
                    ("retry-after", "30"),
                    ("x-ratelimit-limit", "2"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1773579660"),
                ],
                r#"{"error":{"message":"Rate limit reached for requests. Please try again in 30s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            ),
        )
        .setup(LIMITED)
        .format(OpenAi)
        .warmup(2),
        Case::new(
            "problem format: a missing key",
            &[],
            refused(
                401,
                &[PROBLEM, CHALLENGE],
                r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"An API key is required in the Authorization header.","code":"MISSING_API_KEY","header":"Authorization"}"#,
            ),
        )
        .format(Problem),
        Case::new(
            "problem format: an unknown key",
            &[("authorization", "Bearer {unknown.key}")],
            refused(
                401,
                &[PROBLEM, INVALID_TOKEN],
                r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"The provided API key is invalid.","code":"INVALID_API_KEY","key_id":"{unknown}"}"#,
            ),
        )
        .format(Problem),
        Case::new(
            "problem format: an expired key",
            &[("authorization", "Bearer {expired.key}")],
            refused(
                401,
                &[PROBLEM, INVALID_TOKEN],
                r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"The API key expired at 2026-03-15T12:30:00Z.","code":"EXPIRED_API_KEY","expired_at":"2026-03-15T12:30:00Z"}"#,
            ),
        )
        .format(Problem),
        Case::new(
            "problem format: a missing scope",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                403,
                &[PROBLEM, INSUFFICIENT_SCOPE],
                r#"{"type":"about:blank","title":"Forbidden","status":403,"detail":"This request requires the scopes: write.","code":"INSUFFICIENT_PERMISSIONS","required":["write"]}"#,
            ),
        )
        .format(Problem)
        .policy(write()),
        Case::new(
            "problem format: a spent cap",
            &[("authorization", "Bearer {capped.key}")],
            refused(
                402,
                &[PROBLEM],
                r#"{"type":"about:blank","title":"Payment Required","status":402,"detail":"The API key's monthly spend cap is exhausted until 2026-04-01T00:00:00Z.","code":"INSUFFICIENT_QUOTA","resets_at":"2026-04-01T00:00:00Z"}"#,
            ),
        )
        .setup(METERED)
        .format(Problem),
        Case::new(
            "problem format: a rate limit",
            &[("authorization", "Bearer {valid.key}")],
            refused(
                429,
                &[
                    PROBLEM,
                    ("retry-after", "30"),
                    ("x-ratelimit-limit", "2"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1773579660"),
                ],
                r#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Too many requests for this API key; retry in 30 seconds.","code":"RATE_LIMIT_EXCEEDED","retry_after":30}"#,
            ),
        )
        .setup(LIMITED)
        .format(Problem)
        .warmup(2),
    ]);
    cases
}

/// A key of the fixture: its id and its plaintext.
struct FixtureKey {
    name: &'static str,
    id: String,
    key: String,
}

/// One store of keys and one clock shared by every gate of the run; each scenario gets
/// fresh gates (fresh caches, limiters and meters) over them, one per adapter, so both
/// adapters start from the same state.
struct Fixture {
    store: MemoryStore,
    clock: ManualClock,
    keys: Vec<FixtureKey>,
}

impl Fixture {
    /// Keys (templates name them):
    /// - `valid`: scope `read`; `other`: another valid key;
    /// - `capped`: a spend cap of [`CAP`], all spent on a metered gate;
    /// - `revoked`; `expired` (at [`EXPIRES`]);
    /// - `wrong_secret`: a stored key id whose record holds the hash of another secret;
    /// - `unknown`: well-formed, never stored;
    /// - `bad_checksum`: `valid` with its last character changed (its id is `valid`'s).
    async fn new() -> Self {
        let clock = ManualClock::new(CREATED.parse().expect("a timestamp"));
        let mut fixture = Self {
            store: MemoryStore::new(),
            clock,
            keys: Vec::new(),
        };
        let admin = fixture.gate(Setup::PLAIN);
        let valid = fixture
            .create(&admin, "valid", NewKey::new("acct_1", "valid").scopes(["read"]))
            .await;
        fixture
            .create(&admin, "other", NewKey::new("acct_1", "other").scopes(["read"]))
            .await;
        fixture
            .create(&admin, "capped", NewKey::new("acct_1", "capped").spend_cap(CAP))
            .await;
        let revoked = fixture
            .create(&admin, "revoked", NewKey::new("acct_1", "revoked"))
            .await;
        let expires = EXPIRES.parse().expect("a timestamp");
        fixture
            .create(
                &admin,
                "expired",
                NewKey::new("acct_1", "expired").expires_at(expires),
            )
            .await;
        admin.keys().revoke(&revoked.record.key_id).await.expect("revoke");

        let format = admin.keys().key_format().clone();
        // A record under a fresh id holding `valid`'s hash: the id exists, the secret
        // presented with it is not the one hashed.
        let (wrong_id, wrong_key) = format.generate(Environment::Live);
        let mut record = valid.record.clone();
        record.key_id = wrong_id;
        fixture.store.insert(&record).await.expect("insert a record");
        fixture.keys.push(FixtureKey {
            name: "wrong_secret",
            id: record.key_id.to_string(),
            key: wrong_key.expose_secret().to_owned(),
        });
        let (unknown_id, unknown_key) = format.generate(Environment::Live);
        fixture.keys.push(FixtureKey {
            name: "unknown",
            id: unknown_id.to_string(),
            key: unknown_key.expose_secret().to_owned(),
        });
        let mut bad = valid.key.expose_secret().to_owned();
        let last = if bad.ends_with('A') { "B" } else { "A" };
        bad.pop();
        bad.push_str(last);
        fixture.keys.push(FixtureKey {
            name: "bad_checksum",
            id: valid.record.key_id.to_string(),
            key: bad,
        });

        fixture.clock.set(NOW.parse().expect("a timestamp"));
        fixture
    }

    async fn create(&mut self, admin: &Gate, name: &'static str, new: NewKey) -> CreatedKey {
        let created = admin.keys().create(new).await.expect("create a key");
        self.keys.push(FixtureKey {
            name,
            id: created.record.key_id.to_string(),
            key: created.key.expose_secret().to_owned(),
        });
        created
    }

    /// A fresh gate for one scenario and one adapter.
    fn gate(&self, setup: Setup) -> Gate {
        let mut builder = Gate::builder(self.store.clone())
            .hasher(Argon2Hasher::insecure_fast())
            .clock(self.clock.clone())
            .error_format(setup.format)
            .ietf_rate_limit_headers(setup.ietf);
        if let Some(limits) = setup.limits {
            builder = builder.rate_limiter(MemoryRateLimiter::new(), limits.to_vec());
        }
        if setup.meter {
            let meter = MemorySpendMeter::new();
            let capped = self
                .keys
                .iter()
                .find(|k| k.name == "capped")
                .expect("the capped key");
            meter.charge_now(&capped.id.as_str().into(), Month::of(self.clock.now()), CAP);
            builder = builder.spend_meter(meter);
        }
        builder.build()
    }

    /// Expands `{name.key}` to the plaintext of key `name` and `{name}` to its id.
    fn fill(&self, template: &str) -> String {
        let mut text = template.to_owned();
        for k in &self.keys {
            text = text.replace(&format!("{{{}.key}}", k.name), &k.key);
            text = text.replace(&format!("{{{}}}", k.name), &k.id);
        }
        text
    }
}

/// What an adapter answered, reduced to what parity is about.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn path(policy: &RoutePolicy) -> &'static str {
    if policy.is_optional() {
        "/optional"
    } else {
        "/required"
    }
}

/// The handlers, shared by both frameworks: they answer with the principal's key id, so
/// a 200 proves the principal reached the handler through the adapter.
async fn required(principal: Principal) -> String {
    principal.key_id().to_string()
}

async fn optional(principal: Option<Principal>) -> String {
    principal.map_or_else(|| "anonymous".to_owned(), |p| p.key_id().to_string())
}

/// Sends the scenario through axum: a `Router` with `ApiKeyLayer`, via `oneshot`.
async fn through_axum(gate: Gate, case: &Case, headers: &[(&str, String)]) -> Vec<Answer> {
    let app = axum::Router::new()
        .route("/required", axum::routing::get(required))
        .route("/optional", axum::routing::get(optional))
        .layer(ApiKeyLayer::new(gate).policy(case.policy.clone()));
    let mut answers = Vec::new();
    for _ in 0..=case.warmup {
        let mut request = axum::http::Request::get(path(&case.policy));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Body::empty()).expect("a valid request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let headers = CHECKED
            .iter()
            .flat_map(|name| {
                response.headers().get_all(*name).iter().map(move |v| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
            })
            .collect();
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        answers.push(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    answers
}

/// Sends the scenario through actix-web: an `App` wrapped in `ApiKeyMiddleware`, via
/// `init_service` and `call_service`.
async fn through_actix(gate: Gate, case: &Case, headers: &[(&str, String)]) -> Vec<Answer> {
    let app = actix_test::init_service(
        actix_web::App::new()
            .wrap(ApiKeyMiddleware::new(gate).policy(case.policy.clone()))
            .route("/required", actix_web::web::get().to(required))
            .route("/optional", actix_web::web::get().to(optional)),
    )
    .await;
    let mut answers = Vec::new();
    for _ in 0..=case.warmup {
        let mut request = actix_test::TestRequest::get().uri(path(&case.policy));
        for (name, value) in headers {
            request = request.append_header((*name, value.as_str()));
        }
        let response = actix_test::call_service(&app, request.to_request()).await;
        let status = response.status().as_u16();
        let headers = CHECKED
            .iter()
            .flat_map(|name| {
                response.headers().get_all(*name).map(move |v| {
                    (
                        name.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
            })
            .collect::<Vec<_>>();
        let body = actix_test::read_body(response).await;
        answers.push(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    answers
}

#[actix_web::test]
async fn axum_and_actix_answer_every_scenario_alike_and_as_documented() {
    let fixture = Fixture::new().await;
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let headers: Vec<(&str, String)> = case.headers.iter().map(|(n, v)| (*n, fixture.fill(v))).collect();
        let axum = through_axum(fixture.gate(case.setup), case, &headers).await;
        let actix = through_actix(fixture.gate(case.setup), case, &headers).await;
        let expected = Answer {
            status: case.expect.status,
            headers: CHECKED
                .iter()
                .flat_map(|name| {
                    case.expect
                        .headers
                        .iter()
                        .filter(move |(n, _)| n == name)
                        .map(|(n, v)| (n.to_string(), fixture.fill(v)))
                })
                .collect(),
            body: fixture.fill(&case.expect.body),
        };
        let (Some((axum_last, axum_warmup)), Some((actix_last, actix_warmup))) =
            (axum.split_last(), actix.split_last())
        else {
            failures.push(format!("{}: no answer", case.name));
            continue;
        };
        for (adapter, warmup) in [("axum", axum_warmup), ("actix", actix_warmup)] {
            if let Some(bad) = warmup.iter().find(|a| a.status != 200) {
                failures.push(format!(
                    "{}: a warm-up request through {adapter} was refused: {bad:?}",
                    case.name
                ));
            }
        }
        if axum_last != actix_last {
            failures.push(format!(
                "{}: the adapters differ\n  axum:  {axum_last:?}\n  actix: {actix_last:?}",
                case.name
            ));
        }
        for (adapter, answer) in [("axum", axum_last), ("actix", actix_last)] {
            if answer != &expected {
                failures.push(format!(
                    "{}: {adapter} answered\n  {answer:?}\n  expected\n  {expected:?}",
                    case.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_scenario_has_a_unique_name() {
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}
