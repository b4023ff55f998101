//! [`ApiResponse`]: a rendered answer, and the JSON shapes of the records it shows.

use std::fmt;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use keygate_core::record::{KeyRecord, KeyStatus};
use keygate_core::Rejection;
use serde::Serialize;

/// A rendered answer of the [`SelfService`](crate::SelfService): status, headers (`content-type` included)
/// and body. Adapters copy it into their response type and add nothing.
///
/// Its `Debug` shows the status only: a body may hold a plaintext key.
#[derive(Clone)]
pub struct ApiResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ApiResponse {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Every header of the response, `content-type` included.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Status, headers and body.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes) {
        (self.status, self.headers, self.body)
    }

    /// As an `http` response with any body type built from [`Bytes`].
    pub fn into_response<B: From<Bytes>>(self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }

    pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Self {
        let mut headers = HeaderMap::with_capacity(1);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Self {
            status,
            headers,
            body: Bytes::from(body),
        }
    }
}

impl From<Rejection> for ApiResponse {
    fn from(rejection: Rejection) -> Self {
        Self {
            status: rejection.status(),
            headers: rejection.headers().clone(),
            body: rejection.body().clone(),
        }
    }
}

/// A record as the API shows it: the stored fields (never the hash) and its status.
#[derive(Serialize)]
pub(crate) struct View<'a> {
    #[serde(flatten)]
    pub(crate) record: &'a KeyRecord,
    pub(crate) status: KeyStatus,
}

#[derive(Serialize)]
pub(crate) struct Created<'a> {
    #[serde(flatten)]
    pub(crate) view: View<'a>,
    /// The plaintext, in this one response only.
    pub(crate) key: &'a str,
}

#[derive(Serialize)]
pub(crate) struct RotatedView<'a> {
    #[serde(flatten)]
    pub(crate) new: Created<'a>,
    pub(crate) old: View<'a>,
}

#[derive(Serialize)]
pub(crate) struct List<'a> {
    pub(crate) data: Vec<View<'a>>,
    pub(crate) offset: u64,
    pub(crate) limit: u32,
}
