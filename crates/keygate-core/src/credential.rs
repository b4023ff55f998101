//! Finding the credential in a request's headers, framework-agnostically.

use http::HeaderName;

/// Read access to request headers. Implemented for `http::HeaderMap`; the actix adapter
/// implements it for actix's header map.
///
/// Names come parsed (lowercase), once, when the gate is built: a lookup in an
/// `http::HeaderMap` then hashes the name and parses nothing.
pub trait HeaderSource {
    /// Every value of header `name`, in order.
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// Every header as `(name, value)`, values of one name in order, when the source
    /// holds so few that one pass over them costs less than a lookup per name the gate
    /// needs (its credential headers and `User-Agent`). The default, `None`, makes the
    /// gate use [`values`](Self::values).
    fn scan<'a>(&'a self) -> Option<impl Iterator<Item = (&'a HeaderName, &'a [u8])> + 'a> {
        None::<std::iter::Empty<(&'a HeaderName, &'a [u8])>>
    }
}

/// Headers up to which one pass beats three hashed lookups in an `http::HeaderMap`
/// (an API client sends a handful; a browser, a dozen or more).
const SCAN_MAX: usize = 12;

impl HeaderSource for http::HeaderMap {
    fn values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).into_iter().map(http::HeaderValue::as_bytes)
    }

    fn scan<'a>(&'a self) -> Option<impl Iterator<Item = (&'a HeaderName, &'a [u8])> + 'a> {
        (self.len() <= SCAN_MAX).then(|| self.iter().map(|(name, value)| (name, value.as_bytes())))
    }
}

/// Where a credential may be presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer <key>`, the scheme matched case-insensitively (RFC 6750).
    /// Other schemes (`Basic`) are ignored.
    Bearer,
    /// A header whose whole value is the key, such as `X-Api-Key` (matched
    /// case-insensitively).
    Header(&'static str),
}

impl CredentialSource {
    /// `X-Api-Key: <key>`.
    pub const X_API_KEY: CredentialSource = CredentialSource::Header("X-Api-Key");

    /// The header this source reads, as documented to clients.
    pub fn header_name(&self) -> &'static str {
        match self {
            CredentialSource::Bearer => "Authorization",
            CredentialSource::Header(name) => name,
        }
    }
}

/// A [`CredentialSource`] ready for lookups: its header name parsed once.
#[derive(Clone, Debug)]
pub(crate) struct Lookup {
    name: HeaderName,
    bearer: bool,
}

impl Lookup {
    /// The header read.
    pub(crate) fn name(&self) -> &HeaderName {
        &self.name
    }
}

/// The sources' lookups, in order. A source whose name is not a valid header name
/// could never be sent, so it is left out (with a warning).
pub(crate) fn lookups(sources: &[CredentialSource]) -> Vec<Lookup> {
    sources
        .iter()
        .filter_map(|source| {
            let (name, bearer) = match source {
                CredentialSource::Bearer => (http::header::AUTHORIZATION, true),
                CredentialSource::Header(name) => match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(parsed) => (parsed, false),
                    Err(_) => {
                        tracing::warn!(header = name, "credential source ignored: not a header name");
                        return None;
                    }
                },
            };
            Some(Lookup { name, bearer })
        })
        .collect()
}

/// What the headers hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// No credential in any source.
    Nothing,
    /// One credential (possibly sent in several sources, all equal), as sent: bytes,
    /// since a cached key needs only its digest. Whether it is UTF-8 is the parser's
    /// question, asked only of keys the cache does not know.
    One(&'a [u8]),
    /// Something that cannot be a key: empty, or two different values.
    Unusable,
}

/// Extracts the credential and, when `agent` is set, the first `User-Agent` value.
/// Values for which `ours` is false are ignored as if absent when `only_ours` is set
/// (optional mode: a JWT in `Authorization` is someone else's).
pub(crate) fn extract<'h, H: HeaderSource + ?Sized>(
    headers: &'h H,
    sources: &[Lookup],
    only_ours: Option<&dyn Fn(&str) -> bool>,
    agent: bool,
) -> (Presented<'h>, Option<&'h [u8]>) {
    let mut found = Found::default();
    let mut user_agent = None;
    if let Some(all) = headers.scan() {
        for (name, raw) in all {
            if let Some(source) = sources.iter().find(|source| source.name == *name) {
                if found.offer(source, raw, only_ours).is_err() {
                    return (Presented::Unusable, None);
                }
            } else if agent && user_agent.is_none() && name == http::header::USER_AGENT {
                user_agent = Some(raw);
            }
        }
    } else {
        for source in sources {
            for raw in headers.values(&source.name) {
                if found.offer(source, raw, only_ours).is_err() {
                    return (Presented::Unusable, None);
                }
            }
        }
        if agent {
            user_agent = headers.values(&http::header::USER_AGENT).next();
        }
    }
    (found.0.map_or(Presented::Nothing, Presented::One), user_agent)
}

/// The credential found so far.
#[derive(Default)]
struct Found<'h>(Option<&'h [u8]>);

impl<'h> Found<'h> {
    /// Takes one value of `source`; `Err` when the request holds no usable credential:
    /// an empty one, or one that differs from another. The answer does not depend on
    /// the order values are offered in.
    fn offer(
        &mut self,
        source: &Lookup,
        raw: &'h [u8],
        only_ours: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<(), ()> {
        let value = if source.bearer {
            match bearer_token(raw) {
                Some(token) => token,
                None => return Ok(()),
            }
        } else {
            raw.trim_ascii()
        };
        if let Some(ours) = only_ours {
            if !std::str::from_utf8(value).is_ok_and(ours) {
                return Ok(());
            }
        }
        match self.0 {
            _ if value.is_empty() => Err(()),
            None => {
                self.0 = Some(value);
                Ok(())
            }
            Some(previous) if previous != value => Err(()),
            Some(_) => Ok(()),
        }
    }
}

/// The token of `Bearer <token>`; `None` for another scheme. An empty token is `Some("")`.
fn bearer_token(raw: &[u8]) -> Option<&[u8]> {
    // As nearly every client writes it: one comparison of seven bytes.
    if let Some(token) = raw.strip_prefix(b"Bearer ") {
        return Some(token.trim_ascii());
    }
    let raw = raw.trim_ascii_start();
    let (scheme, rest) = raw.split_at_checked(6)?;
    // `Bearer` alone, or followed by whitespace: `Bearerk1` is another scheme.
    let separated = rest.first().is_none_or(|b| *b == b' ');
    (separated && scheme.eq_ignore_ascii_case(b"bearer")).then(|| rest.trim_ascii())
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn default_sources() -> Vec<Lookup> {
        lookups(&[CredentialSource::Bearer, CredentialSource::X_API_KEY])
    }

    #[test]
    fn a_source_that_is_no_header_name_is_left_out() {
        let sources = lookups(&[CredentialSource::Header("bad name"), CredentialSource::X_API_KEY]);
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].name, "x-api-key");
    }

    fn run(pairs: &[(&'static str, &str)]) -> String {
        let h = headers(pairs);
        match extract(&h, &default_sources(), None, false).0 {
            Presented::One(key) => format!("One({:?})", String::from_utf8_lossy(key)),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert_eq!(run(&[("authorization", &format!("{scheme} k1"))]), r#"One("k1")"#);
        }
    }

    #[test]
    fn other_schemes_are_ignored() {
        assert_eq!(run(&[("authorization", "Basic dXNlcjpwYXNz")]), "Nothing");
        assert_eq!(run(&[("authorization", "Bearerk1")]), "Nothing");
        assert_eq!(run(&[("authorization", "Bear")]), "Nothing");
        assert_eq!(run(&[("authorization", "Bearer\tk1")]), "Nothing");
    }

    #[test]
    fn two_different_keys_are_refused_and_equal_ones_accepted() {
        assert_eq!(
            run(&[("authorization", "Bearer k1"), ("x-api-key", "k2")]),
            "Unusable"
        );
        assert_eq!(
            run(&[("authorization", "Bearer k1"), ("x-api-key", "k1")]),
            r#"One("k1")"#
        );
        assert_eq!(run(&[("x-api-key", "k1"), ("x-api-key", "k2")]), "Unusable");
    }

    #[test]
    fn the_token_is_trimmed() {
        assert_eq!(run(&[("authorization", "Bearer   k1  ")]), r#"One("k1")"#);
    }

    #[test]
    fn empty_bearer_is_unusable_not_missing() {
        assert_eq!(run(&[("authorization", "Bearer ")]), "Unusable");
        assert_eq!(run(&[("authorization", "Bearer")]), "Unusable");
        assert_eq!(run(&[("x-api-key", "")]), "Unusable");
    }

    #[test]
    fn a_value_that_is_not_utf8_is_presented_as_sent_and_ignored_in_optional_mode() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", http::HeaderValue::from_bytes(b"kg_\xff").unwrap());
        assert_eq!(
            extract(&h, &default_sources(), None, false).0,
            Presented::One(b"kg_\xff")
        );
        let ours = |v: &str| v.starts_with("kg_");
        assert_eq!(
            extract(&h, &default_sources(), Some(&ours), false).0,
            Presented::Nothing
        );
    }

    #[test]
    fn bearer_fast_path_and_slow_path_agree() {
        for raw in [
            "Bearer k1",
            "Bearer   k1 ",
            "bearer k1",
            " BEARER k1",
            "Bearer ",
            "Bearer",
        ] {
            let slow = raw.trim_start();
            let (scheme, rest) = slow.split_at(6.min(slow.len()));
            let expected = scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().as_bytes());
            assert_eq!(bearer_token(raw.as_bytes()), expected, "{raw:?}");
        }
    }

    #[test]
    fn optional_mode_ignores_foreign_credentials() {
        let h = headers(&[
            ("authorization", "Bearer eyJhbGciOi.jwt"),
            ("x-api-key", "kg_mine"),
        ]);
        let ours = |v: &str| v.starts_with("kg_");
        assert_eq!(
            extract(&h, &default_sources(), Some(&ours), false).0,
            Presented::One(b"kg_mine")
        );
        let h = headers(&[("authorization", "Bearer eyJhbGciOi.jwt")]);
        assert_eq!(
            extract(&h, &default_sources(), Some(&ours), false).0,
            Presented::Nothing
        );
    }

    /// `pairs`, then enough filler headers that the map is past `SCAN_MAX`.
    fn crowded(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = headers(pairs);
        for i in 0..=SCAN_MAX {
            map.append(
                HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
                "v".parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn one_pass_and_lookups_give_the_same_answers() {
        let cases: &[&[(&'static str, &str)]] = &[
            &[],
            &[("authorization", "Bearer k1")],
            &[("authorization", "Bearer k1"), ("x-api-key", "k1")],
            &[("x-api-key", "k1"), ("authorization", "Bearer k2")],
            &[("authorization", "Basic dXNlcjpwYXNz"), ("x-api-key", "k1")],
            &[("x-api-key", "")],
            &[
                ("user-agent", "client/1"),
                ("x-api-key", "k1"),
                ("user-agent", "client/2"),
            ],
        ];
        let show = |(presented, agent): (Presented<'_>, Option<&[u8]>)| {
            let presented = match presented {
                Presented::One(key) => format!("One({:?})", String::from_utf8_lossy(key)),
                other => format!("{other:?}"),
            };
            (presented, agent.map(|a| String::from_utf8_lossy(a).into_owned()))
        };
        for pairs in cases {
            let few = headers(pairs);
            let many = crowded(pairs);
            assert!(few.scan().is_some() && many.scan().is_none());
            let scanned = show(extract(&few, &default_sources(), None, true));
            let looked_up = show(extract(&many, &default_sources(), None, true));
            assert_eq!(scanned, looked_up, "{pairs:?}");
        }
        let h = headers(&[
            ("user-agent", "client/1"),
            ("x-api-key", "k1"),
            ("user-agent", "client/2"),
        ]);
        let (_, agent) = extract(&h, &default_sources(), None, true);
        assert_eq!(agent, Some(&b"client/1"[..]), "the first user agent");
        assert_eq!(
            extract(&h, &default_sources(), None, false).1,
            None,
            "not asked for"
        );
    }
}
