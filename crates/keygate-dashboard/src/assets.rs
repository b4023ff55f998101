//! The files the dashboard serves, compiled into the binary, each with its content type
//! and an entity tag computed at compile time.

/// One compiled-in file.
pub(crate) struct Asset {
    /// The path below the mount point (`/keys`, `/assets/dashboard.js`).
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
    /// FNV-1a of the body: a new build with other bytes gets another tag.
    pub(crate) etag: u64,
}

const fn asset(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        path,
        content_type,
        body,
        etag: fnv1a(body),
    }
}

/// FNV-1a, 64 bits: enough to tell two builds of a file apart; not a security measure.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const HTML: &str = "text/html; charset=utf-8";

/// Every file, found by [`find`].
pub(crate) static ASSETS: [Asset; 5] = [
    asset("/keys", HTML, include_bytes!("../assets/keys.html")),
    asset("/usage", HTML, include_bytes!("../assets/usage.html")),
    asset(
        "/assets/dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/dashboard.css"),
    ),
    asset(
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/dashboard.js"),
    ),
    asset(
        "/assets/icon.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    ),
];

/// The OpenAPI 3.1 document of the self-service API; `{{api_base}}` is its server URL.
pub(crate) const OPENAPI: &str = include_str!("../assets/openapi.json");

pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_tag_and_a_body() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(!a.body.is_empty(), "{}", a.path);
            for b in &ASSETS[i + 1..] {
                assert_ne!(a.etag, b.etag, "{} and {}", a.path, b.path);
            }
        }
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    /// Whether an attribute such as ` onclick=` appears.
    fn has_event_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name = rest.chars().take_while(char::is_ascii_lowercase).count();
            name > 0 && rest[name..].starts_with('=')
        })
    }

    #[test]
    fn the_pages_load_no_inline_script_and_nothing_from_elsewhere() {
        for page in ["/keys", "/usage"] {
            let html = std::str::from_utf8(find(page).unwrap().body).unwrap();
            assert!(html.contains(r#"<script src="assets/dashboard.js" defer></script>"#));
            assert_eq!(html.matches("<script").count(), 1, "{page}: one script, by URL");
            assert!(!has_event_handler(html), "{page}: no inline event handler");
            assert!(!html.contains("style="), "{page}: no inline style");
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{page}: no CDN"
            );
        }
    }
}
