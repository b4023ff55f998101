//! A small W3C WebDriver client over chromedriver: the dozen commands the dashboard's
//! browser test needs, as JSON over HTTP/1.1 on loopback.
//!
//! Written here rather than taken from fantoccini: fantoccini needs Mozilla's `webdriver`
//! crate, licensed MPL-2.0, which deny.toml does not allow.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The W3C name of an element reference in a JSON answer.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// WebDriver's code points for the keys the test presses.
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";
pub const CONTROL: &str = "\u{E009}";

/// A chromedriver process on a free port, ended on drop.
pub struct Driver {
    _child: Child,
    addr: String,
}

impl Driver {
    pub async fn start(chromedriver: &Path, port: u16) -> Driver {
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, body)) = request(&addr, "GET", "/status", None).await {
                if body["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not get ready in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { _child: child, addr }
    }

    /// A new headless Chromium with a profile of its own in `profile`.
    pub async fn session(&self, chromium: &Path, profile: &Path) -> Session {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chromium.display().to_string(), "args": args },
            }}
        });
        let (status, body) = request(&self.addr, "POST", "/session", Some(&capabilities))
            .await
            .expect("new session");
        assert_eq!(status, 200, "new session: {body}");
        let id = body["value"]["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        Session {
            addr: self.addr.clone(),
            base: format!("/session/{id}"),
        }
    }
}

/// One browser session.
pub struct Session {
    addr: String,
    base: String,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Session {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("{}{path}", self.base);
        let (status, answer) = request(&self.addr, method, &path, body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn refresh(&self) {
        self.call("POST", "/refresh", Some(json!({}))).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The elements matching a CSS selector now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .call(
                "POST",
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (up to 20 s) until `condition`, a JavaScript expression, is true.
    pub async fn wait_for(&self, condition: &str) {
        let script = format!("return !!({condition});");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.js(&script, vec![]).await != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "still not true after 20 s: {condition}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The one element matching `css`, waiting for it to be displayed.
    pub async fn find(&self, css: &str) -> Element {
        let quoted = serde_json::to_string(css).expect("json");
        self.wait_for(&format!(
            "(() => {{ const e = document.querySelector({quoted}); return e && e.offsetParent !== null; }})()"
        ))
        .await;
        self.find_all(css).await.into_iter().next().expect("found")
    }

    pub async fn click(&self, element: &Element) {
        self.call("POST", &format!("/element/{}/click", element.0), Some(json!({})))
            .await;
    }

    pub async fn property(&self, element: &Element, name: &str) -> Value {
        self.call("GET", &format!("/element/{}/property/{name}", element.0), None)
            .await
    }

    /// Presses each key of `keys` in turn on whatever has the focus, as a keyboard does.
    pub async fn keys(&self, keys: &str) {
        let mut actions = Vec::new();
        for key in keys.chars() {
            actions.push(json!({ "type": "keyDown", "value": key.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": key.to_string() }));
        }
        self.perform(actions).await;
    }

    /// Control+`key` (select all, with `a`).
    pub async fn chord(&self, key: &str) {
        self.perform(vec![
            json!({ "type": "keyDown", "value": CONTROL }),
            json!({ "type": "keyDown", "value": key }),
            json!({ "type": "keyUp", "value": key }),
            json!({ "type": "keyUp", "value": CONTROL }),
        ])
        .await;
    }

    async fn perform(&self, actions: Vec<Value>) {
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] });
        self.call("POST", "/actions", Some(body)).await;
        self.call("DELETE", "/actions", None).await;
    }

    /// The `id` of the focused element.
    pub async fn focused(&self) -> String {
        self.js(
            "return document.activeElement ? document.activeElement.id : '';",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Emulates a phone's viewport (`width` CSS pixels, touch, scale 1) through
    /// chromedriver's DevTools bridge.
    pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
        let params = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile });
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": params })),
        )
        .await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let encoded = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64"))
            .expect("a PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    pub async fn quit(self) {
        let _ = request(&self.addr, "DELETE", &self.base, None).await;
    }
}

/// One HTTP/1.1 request with a JSON body and `Connection: close`; the status and JSON.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    // chromedriver keeps the connection open after its answer: read by Content-Length.
    let mut response = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let (head_len, length) = loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the answer's head",
            ));
        }
        response.extend_from_slice(&buffer[..n]);
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|line| {
                line.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            break (end + 4, length);
        }
    };
    match length {
        Some(length) => {
            while response.len() < head_len + length {
                let n = stream.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                response.extend_from_slice(&buffer[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut response).await?;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line: {text}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
