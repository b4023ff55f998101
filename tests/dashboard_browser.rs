//! The key dashboard in a real browser (Debian's `chromium` and `chromium-driver`), as a
//! new user works it, against both example services as real processes: sign in with the
//! demo key (keyboard only), create "CI Pipeline" (keyboard only), use the key it shows
//! once, find it listed without its secret, revoke it through the dialog, and see the
//! usage page count its requests; then the pages at 375 px wide. A screenshot of each
//! step lands in `target/dashboard-screens/`.
//!
//! Skipped, saying so, without `/usr/bin/chromium` and `/usr/bin/chromedriver`, unless
//! `KEYGATE_REQUIRE_SERVICES=1` (CI, whose `.ci/run` installs them).
#![cfg(all(
    feature = "axum",
    feature = "actix",
    feature = "sqlite",
    feature = "dashboard"
))]

#[path = "support/processes.rs"]
mod processes;
#[path = "browser/service.rs"]
mod service;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use service::{free_port, target_profile_dir, Service};
use webdriver::{Driver, Session, ENTER, TAB};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser is here; without it the test is skipped, unless services are required.
fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var("KEYGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "KEYGATE_REQUIRE_SERVICES=1 but {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install -y chromium chromium-driver)"
        );
        println!("skipped: install chromium and chromium-driver to run the dashboard's browser test");
    }
    present
}

fn screens() -> PathBuf {
    let dir = target_profile_dir()
        .parent()
        .expect("target")
        .join("dashboard-screens");
    std::fs::create_dir_all(&dir).expect("screens dir");
    dir
}

/// The key id of a plaintext key: brand, environment and id (`kg_live_a1b2c3d4`).
fn key_id(key: &str) -> String {
    key.split('_').take(3).collect::<Vec<_>>().join("_")
}

/// Neither the page's markup nor any field but "New key" holds `secret`.
async fn assert_not_shown(browser: &Session, secret: &str, step: &str) {
    let shown = browser
        .js(
            "const s = arguments[0];
             if (document.documentElement.outerHTML.includes(s)) return 'markup';
             for (const i of document.querySelectorAll('input, textarea'))
               if (i.id !== 'new-key' && i.value.includes(s)) return i.id;
             return '';",
            vec![json!(secret)],
        )
        .await;
    assert_eq!(shown, json!(""), "{step}: a secret is shown in {shown}");
}

async fn no_horizontal_overflow(browser: &Session, step: &str) {
    let widths = browser
        .js(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await;
    assert_eq!(widths[1], 375, "{step}: the viewport is 375 px wide");
    let scroll = widths[0].as_u64().expect("scrollWidth");
    assert!(scroll <= 375, "{step}: the page is {scroll} px wide at 375");
}

/// Every card's content fits inside the card at each of `widths` (the screenshots at
/// 1280 px once showed the usage table running past its card's right edge): no card
/// is wider inside than it is, whether or not it would scroll.
async fn cards_fit(browser: &Session, step: &str, widths: &[u32]) {
    for &width in widths {
        browser.viewport(width, 900, false).await;
        let spilled = browser
            .js(
                "return [...document.querySelectorAll('.card')]
                    .filter(c => c.offsetParent !== null && c.scrollWidth > c.clientWidth + 1)
                    .map(c => (c.getAttribute('aria-labelledby') || c.id || c.className)
                        + ' ' + c.scrollWidth + ' > ' + c.clientWidth);",
                vec![],
            )
            .await;
        assert_eq!(
            spilled,
            json!([]),
            "{step} at {width} px: content wider than its card"
        );
    }
}

/// `keygate_requests_total` from the service's `/metrics`: (admitted, refused with
/// `INVALID_API_KEY`), on every path.
async fn counters(service: &Service) -> (u64, u64) {
    let (status, metrics) = service.get("/metrics", "none").await;
    assert_eq!(status, 200, "{metrics}");
    let sum = |outcome: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("keygate_requests_total{") && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    (sum("admitted"), sum("INVALID_API_KEY"))
}

async fn works_in_a_browser(example: &str, driver: &Driver) {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Service::start(example, dir.path()).await;
    let demo = service.demo_key.clone();
    let keys_url = service.url("/app/keys");
    assert!(
        service.dashboard_line.contains(&keys_url),
        "{example} prints the dashboard's URL: {}",
        service.dashboard_line
    );
    let shot = |name: &str| screens().join(format!("{example}-{name}.png"));
    let before = counters(&service).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.session(Path::new(CHROMIUM), profile.path()).await;

    // A new user types the mount point, with its slash, and lands on the keys page.
    // Sign in, keyboard only: the page puts the focus in "API key"; type, Tab, Enter.
    browser.goto(&service.url("/app/")).await;
    browser.find("#signin-form").await;
    let landed = browser.js("return location.pathname;", vec![]).await;
    assert_eq!(landed, "/app/keys", "{example}: /app/ leads to the keys page");
    assert_eq!(browser.focused().await, "signin-key");
    browser.screenshot(&shot("1-sign-in")).await;
    browser.keys(&demo).await;
    browser.keys(TAB).await;
    assert_eq!(
        browser
            .js("return document.activeElement.textContent;", vec![])
            .await,
        "Sign in"
    );
    browser.keys(ENTER).await;
    browser.find("#create-form").await;
    let demo_row = format!("#keys tr[data-key-id='{}']", key_id(&demo));
    browser.find(&demo_row).await;
    assert_not_shown(&browser, &demo, "signed in").await;
    let stored = browser
        .js(
            "return sessionStorage.getItem('keygate.dashboard.api_key');",
            vec![],
        )
        .await;
    assert_eq!(stored, json!(demo), "the key is kept in the tab's sessionStorage");
    let local = browser.js("return localStorage.length;", vec![]).await;
    assert_eq!(local, json!(0), "nothing in localStorage");

    // Create "CI Pipeline" with scope read, keyboard only: Tab from the main region.
    browser
        .js("document.getElementById('main').focus();", vec![])
        .await;
    browser.keys(TAB).await;
    assert_eq!(browser.focused().await, "create-name");
    browser.keys("CI Pipeline").await;
    browser.keys(TAB).await;
    assert_eq!(browser.focused().await, "create-scopes");
    browser.chord("a").await;
    browser.keys("read").await;
    browser.keys(TAB).await;
    assert_eq!(browser.focused().await, "create-expires");
    browser.keys(TAB).await;
    assert_eq!(browser.focused().await, "create-submit");
    browser.keys(ENTER).await;
    let field = browser.find("#new-key").await;
    browser
        .wait_for("document.getElementById('new-key').value.length > 0")
        .await;
    let new_key = browser
        .property(&field, "value")
        .await
        .as_str()
        .expect("value")
        .to_string();
    assert!(new_key.starts_with("kg_live_"), "{new_key}");
    assert_eq!(
        browser.focused().await,
        "new-key",
        "the focus moves to the new key"
    );
    let notice = browser
        .js(
            "return document.getElementById('new-key-panel').textContent;",
            vec![],
        )
        .await;
    assert!(
        notice
            .as_str()
            .is_some_and(|t| t.contains("will not be shown again")),
        "{notice}"
    );
    browser.find("#copy").await;
    browser.screenshot(&shot("2-new-key")).await;

    // The key works: /v1/whoami answers 200 as "CI Pipeline", read only.
    let (status, body) = service.get("/v1/whoami", &new_key).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"CI Pipeline""#), "{body}");
    assert!(body.contains(r#""scopes":["read"]"#), "{body}");

    // After a reload the key is listed, and its secret is nowhere on the page.
    browser.refresh().await;
    let row = format!("#keys tr[data-key-id='{}']", key_id(&new_key));
    browser.find(&row).await;
    assert_eq!(
        browser
            .js("return document.getElementById('new-key').value;", vec![])
            .await,
        ""
    );
    assert_not_shown(&browser, &new_key, "reloaded").await;
    assert_not_shown(&browser, &demo, "reloaded").await;
    let cells = browser
        .js(
            "return [...document.querySelector(arguments[0]).cells].map(c => c.textContent.trim());",
            vec![json!(row)],
        )
        .await;
    assert_eq!(cells[0], "CI Pipeline", "{cells}");
    assert_eq!(cells[1], json!(key_id(&new_key)), "{cells}");
    assert_eq!(cells[2], "read", "{cells}");
    assert_eq!(cells[3], "live", "{cells}");
    assert_eq!(cells[7], "active", "{cells}");

    // The filter finds it by name, and by key id.
    let filter = browser.find("#filter").await;
    browser.click(&filter).await;
    browser.keys("pipeline").await;
    let visible = "[...document.querySelectorAll('#keys tbody tr')].filter(r => !r.hidden).length";
    browser.wait_for(&format!("{visible} === 1")).await;
    browser.screenshot(&shot("3-listed-and-filtered")).await;

    // Revoke through the dialog; the next call with the key answers 401.
    let revoke = browser.find(&format!("{row} button[data-action='revoke']")).await;
    browser.click(&revoke).await;
    browser.wait_for("document.getElementById('confirm').open").await;
    assert_eq!(
        browser.focused().await,
        "confirm-cancel",
        "the safe choice has the focus"
    );
    browser.screenshot(&shot("4-revoke-dialog")).await;
    let confirm = browser.find("#confirm-ok").await;
    browser.click(&confirm).await;
    browser
        .wait_for(&format!(
            "document.querySelector(\"{row} .badge\").textContent === 'revoked'"
        ))
        .await;
    let (status, body) = service.get("/v1/whoami", &new_key).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("INVALID_API_KEY"), "{body}");

    // /metrics moved with what the browser and the calls did: admitted and refused.
    let after = counters(&service).await;
    assert!(after.0 > before.0, "admitted: {before:?} -> {after:?}");
    assert!(
        after.1 > before.1,
        "refused INVALID_API_KEY: {before:?} -> {after:?}"
    );

    // The usage page counts the requests just made (usage is written behind: reload
    // until the batch is in, for at most a minute).
    browser.goto(&service.url("/app/usage")).await;
    let usage_row = format!("#usage tr[data-key-id='{}']", key_id(&new_key));
    let deadline = Instant::now() + Duration::from_secs(60);
    let cells = loop {
        browser.find(&usage_row).await;
        let cells = browser
            .js(
                "return [...document.querySelector(arguments[0]).cells].map(c => c.textContent.trim());",
                vec![json!(usage_row)],
            )
            .await;
        if cells[1] == "1" {
            break cells;
        }
        assert!(
            Instant::now() < deadline,
            "usage not shown after a minute: {cells}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        browser.refresh().await;
    };
    assert_eq!(cells[3], "keygate-e2e/1", "{cells}");
    let bars = browser
        .js(
            "return document.querySelectorAll('#chart svg[role=img] rect.bar').length;",
            vec![],
        )
        .await;
    // The examples serve the usage route: one column per day of the last 30.
    assert_eq!(bars, 30, "one column per day");
    let title = browser
        .js(
            "return document.getElementById('chart-title').textContent;",
            vec![],
        )
        .await;
    assert_eq!(title, "Requests per day, all keys");
    assert_not_shown(&browser, &demo, "usage").await;
    browser.screenshot(&shot("5-usage")).await;
    // From a phone held sideways to a wide screen, on both sides of each breakpoint.
    let widths = [1440, 1280, 1100, 1024, 1000, 900, 800, 600];
    cards_fit(&browser, "usage", &widths).await;
    browser.goto(&keys_url).await;
    browser.find(&row).await;
    cards_fit(&browser, "keys", &widths).await;

    // At 375 px nothing is wider than the screen: both pages, the dialog, the sign-in form.
    browser.viewport(375, 812, true).await;
    browser.goto(&keys_url).await;
    browser.find(&row).await;
    no_horizontal_overflow(&browser, "keys").await;
    browser.screenshot(&shot("6-keys-375")).await;
    let rotate = browser
        .find(&format!(
            "#keys tr[data-key-id='{}'] button[data-action='rotate']",
            key_id(&demo)
        ))
        .await;
    browser.click(&rotate).await;
    browser.wait_for("document.getElementById('confirm').open").await;
    no_horizontal_overflow(&browser, "dialog").await;
    browser.screenshot(&shot("7-rotate-dialog-375")).await;
    let cancel = browser.find("#confirm-cancel").await;
    browser.click(&cancel).await;
    browser.wait_for("!document.getElementById('confirm').open").await;
    browser.goto(&service.url("/app/usage")).await;
    browser.find(&usage_row).await;
    no_horizontal_overflow(&browser, "usage").await;
    browser.screenshot(&shot("8-usage-375")).await;
    let sign_out = browser.find("#sign-out").await;
    browser.click(&sign_out).await;
    browser.find("#signin-form").await;
    assert_eq!(
        browser.js("return sessionStorage.length;", vec![]).await,
        json!(0),
        "signing out forgets the key"
    );
    no_horizontal_overflow(&browser, "sign-in").await;
    browser.screenshot(&shot("9-sign-in-375")).await;

    // The demo key, which the cancelled dialog did not rotate, still works.
    assert_eq!(service.get("/v1/whoami", &demo).await.0, 200);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_manages_keys_in_the_dashboard_of_both_examples() {
    if !browser_available() {
        return;
    }
    let driver = Driver::start(Path::new(CHROMEDRIVER), free_port()).await;
    for example in ["axum_service", "actix_service"] {
        // Boxed: the whole walk is one large future.
        Box::pin(works_in_a_browser(example, &driver)).await;
        println!(
            "{example}: dashboard passed; screenshots in {}",
            screens().display()
        );
    }
}

/// A host whose own login put an `Account` into the extensions: the page is signed in
/// without a key, sends none, and keeps nothing in the tab's storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_account_is_signed_in_without_a_key() {
    use axum::Router;
    use keygate::hash::Argon2Hasher;
    use keygate::{dashboard_router, self_service_router, Account, Dashboard, Gate, MemoryStore, NewKey};

    if !browser_available() {
        return;
    }
    let gate = Gate::builder(MemoryStore::new())
        .hasher(Argon2Hasher::insecure_fast())
        .build();
    let existing = gate
        .keys()
        .create(NewKey::new("acct_1", "existing").scopes(["read"]))
        .await
        .expect("a key");
    // A stand-in for the host's session layer: every request is acct_1's. It also counts
    // the requests that carry an Authorization header: the page must send none.
    let keyed = Arc::new(AtomicUsize::new(0));
    let seen = keyed.clone();
    // And a stand-in for a daily usage route, which the usage page plugs in when it exists:
    // 30 days of `existing`, 1 to 30 requests a day.
    let days: Vec<serde_json::Value> = (1..=30)
        .map(|d| json!({ "date": format!("2026-11-{d:02}"), "requests": d, "spend": 0 }))
        .collect();
    let series = json!({ "data": [{ "key_id": existing.record.key_id.to_string(), "days": days }] });
    let app = Router::new()
        .nest("/api/v1/api-keys", self_service_router(gate))
        .route(
            "/api/v1/usage",
            axum::routing::get(move || async move { axum::Json(series) }),
        )
        .nest("/app", dashboard_router(Dashboard::new()))
        .layer(axum::middleware::from_fn(
            move |mut request: axum::extract::Request, next: axum::middleware::Next| {
                if request.headers().contains_key("authorization") {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                request.extensions_mut().insert(Account::new("acct_1"));
                next.run(request)
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let driver = Driver::start(Path::new(CHROMEDRIVER), free_port()).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let browser = driver.session(Path::new(CHROMIUM), profile.path()).await;
    browser.goto(&format!("http://{addr}/app/keys")).await;
    browser
        .find(&format!("#keys tr[data-key-id='{}']", existing.record.key_id))
        .await;
    assert_eq!(
        browser
            .js("return document.getElementById('signin').hidden;", vec![])
            .await,
        true
    );
    assert_eq!(
        browser
            .js("return document.getElementById('who-text').textContent;", vec![])
            .await,
        "Signed in as acct_1"
    );
    assert_eq!(
        browser
            .js("return document.getElementById('sign-out').hidden;", vec![])
            .await,
        true
    );

    let name = browser.find("#create-name").await;
    browser.click(&name).await;
    browser.keys("Signed-in user's key").await;
    let create = browser.find("#create-submit").await;
    browser.click(&create).await;
    browser
        .wait_for("document.getElementById('new-key').value.startsWith('kg_live_')")
        .await;
    assert_eq!(
        browser.js("return sessionStorage.length;", vec![]).await,
        json!(0)
    );
    assert_eq!(keyed.load(Ordering::SeqCst), 0, "the page sent a key");
    browser.screenshot(&screens().join("account-keys.png")).await;

    // The usage page draws the daily series: one column per day, the days summed per key.
    browser.goto(&format!("http://{addr}/app/usage")).await;
    let row = format!("#usage tr[data-key-id='{}']", existing.record.key_id);
    browser.find(&row).await;
    let chart = browser
        .js(
            "return [document.getElementById('chart-title').textContent,
                     document.querySelectorAll('#chart rect.bar').length,
                     document.querySelector(arguments[0]).cells[1].textContent.trim()];",
            vec![json!(row)],
        )
        .await;
    assert_eq!(chart, json!(["Requests per day, all keys", 30, "465"]));
    browser
        .screenshot(&screens().join("account-usage-daily.png"))
        .await;
    browser.quit().await;
    server.abort();
}
