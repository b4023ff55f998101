//! The one place keygate-actix translates between core's types (http 1) and actix's
//! (http 0.2): the header names the gate reads and writes, converted once per service;
//! actix's header map read as core's [`HeaderSource`]; the rate-limit headers written
//! from core's numbers; and a response core rendered, copied as it is.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use keygate_core::credential::HeaderSource;
use keygate_core::headers::RateHeaders;
use keygate_core::{Gate, Rejection};

/// The header names core reads and writes, converted to actix's once per service:
/// actix parses a name given as text on every lookup, and allocates a custom one such as
/// `x-api-key`.
#[derive(Debug)]
pub(crate) struct Names {
    /// The gate's credential headers and `User-Agent`: core's name, then actix's.
    read: Vec<(keygate_core::http::HeaderName, HeaderName)>,
    /// `RateHeaders::NAMES`, in order.
    rate: [HeaderName; 3],
}

impl Names {
    pub(crate) fn of(gate: &Gate) -> Self {
        let read = gate
            .header_names()
            .filter_map(|name| {
                Some((
                    name.clone(),
                    HeaderName::from_bytes(name.as_str().as_bytes()).ok()?,
                ))
            })
            .collect();
        Self {
            read,
            rate: RateHeaders::NAMES.map(HeaderName::from_static),
        }
    }
}

/// actix's header map (http 0.2) read as core's [`HeaderSource`].
pub(crate) struct ActixHeaders<'a> {
    pub(crate) map: &'a HeaderMap,
    pub(crate) names: &'a Names,
}

impl HeaderSource for ActixHeaders<'_> {
    fn values<'a>(&'a self, name: &keygate_core::http::HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        let values = match self.names.read.iter().find(|(core, _)| core == name) {
            Some((_, actix)) => self.map.get_all(actix),
            None => self.map.get_all(name.as_str()),
        };
        values.map(HeaderValue::as_bytes)
    }
}

/// Appends the rate-limit headers in actix's types: values made from core's numbers
/// (small ones static, so that ordinary limits and remaining counts allocate nothing),
/// under the names core gives, converted once.
pub(crate) fn append_rate_headers(headers: &RateHeaders, names: &Names, to: &mut HeaderMap) {
    for (name, n) in names.rate.iter().zip(headers.numbers()) {
        let value = match RateHeaders::static_text(n) {
            Some(text) => HeaderValue::from_static(text),
            None => HeaderValue::from(n),
        };
        to.append(name.clone(), value);
    }
    if let Some(fields) = headers.ietf_fields() {
        append_headers(fields, to);
    }
}

/// Copies core's headers (http 1 types) onto actix's map by name and value bytes. Both
/// were valid header text on one side, so neither conversion fails in practice; a pair
/// that did would be skipped rather than panic.
fn append_headers(from: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<[u8]>)>, to: &mut HeaderMap) {
    for (name, value) in from {
        let name = HeaderName::from_bytes(name.as_ref().as_bytes());
        let value = HeaderValue::from_bytes(value.as_ref());
        if let (Ok(name), Ok(value)) = (name, value) {
            to.append(name, value);
        }
    }
}

/// The rejection as core rendered it: status, headers (content-type included) and body.
pub(crate) fn rejection_response(rejection: &Rejection) -> HttpResponse {
    core_response(rejection.status(), rejection.headers(), rejection.body().clone())
}

/// A response core rendered (http 1 types) as an actix response (http 0.2 types), as it
/// is: the one place the actix adapter translates a whole response.
pub(crate) fn core_response(
    status: keygate_core::http::StatusCode,
    headers: &keygate_core::http::HeaderMap,
    body: actix_web::web::Bytes,
) -> HttpResponse {
    let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::with_body(status, body).map_into_boxed_body();
    append_headers(headers, response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use keygate_core::hash::Argon2Hasher;
    use keygate_core::MemoryStore;

    use super::*;

    fn gate() -> Gate {
        Gate::builder(MemoryStore::new())
            .hasher(Argon2Hasher::insecure_fast())
            .build()
    }

    #[test]
    fn actix_headers_are_read_in_order() {
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("a"),
        );
        map.append(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("b"),
        );
        let names = Names::of(&gate());
        let headers = ActixHeaders {
            map: &map,
            names: &names,
        };
        let values: Vec<&[u8]> = headers
            .values(&keygate_core::http::HeaderName::from_static("x-api-key"))
            .collect();
        assert_eq!(values, [b"a".as_slice(), b"b".as_slice()]);
        assert_eq!(
            headers.values(&keygate_core::http::header::AUTHORIZATION).count(),
            0
        );
    }

    #[test]
    fn known_and_other_header_names_are_both_found() {
        let mut map = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer k"),
            ("user-agent", "curl"),
            ("x-api-key", "k"),
            ("x-custom-key", "c"),
        ] {
            map.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let names = Names::of(&gate());
        let headers = ActixHeaders {
            map: &map,
            names: &names,
        };
        for (name, value) in [
            ("authorization", "Bearer k"),
            ("user-agent", "curl"),
            ("x-api-key", "k"),
            ("x-custom-key", "c"),
        ] {
            let values: Vec<&[u8]> = headers
                .values(&keygate_core::http::HeaderName::from_static(name))
                .collect();
            assert_eq!(values, [value.as_bytes()], "{name}");
        }
    }
}
