//! Errors of the HTTP API as RFC 9457 problem documents (`application/problem+json`), built
//! from dsm's one error type: its message is the `title`, its hints the `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, ErrorKind};

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid part of a request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// A JSON pointer into the request body, or `#/query/NAME` for a query parameter.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status code says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong, in one line.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What to do about it (dsm's hints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The invalid parts of the request, for 400 and 422.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// Seconds to wait before trying again (429 only; also in `Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with a status and a title.
    pub fn new(status: StatusCode, title: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank".into(),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds what to do about it.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds an invalid part of the request.
    #[must_use]
    pub fn field(mut self, pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        self.errors.push(FieldProblem {
            pointer: pointer.into(),
            detail: detail.into(),
        });
        self
    }

    /// 400: the request cannot be read.
    pub fn bad_request(title: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, title)
    }

    /// 401: no credentials, or wrong ones.
    pub fn unauthorized(title: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, title)
    }

    /// 403: the credentials do not allow it.
    pub fn forbidden(title: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, title)
    }

    /// 404: no such thing.
    pub fn not_found(title: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, title)
    }

    /// 500: the server failed; the details are in its log, not in the answer.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not answer this request",
        )
        .detail("the server's log says why")
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<Error> for Problem {
    /// A dsm error: configuration errors are the caller's (422), a flow already running is a
    /// conflict (409), the rest are the server's (500, logged, with no detail in the answer,
    /// which could carry paths or plugin output).
    fn from(error: Error) -> Self {
        let status = match error.kind() {
            ErrorKind::Config => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::AlreadyRunning => StatusCode::CONFLICT,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Failed | ErrorKind::Interrupted | ErrorKind::Terminated => {
                tracing::error!(error = %error.message(), "request failed");
                return Problem::internal();
            }
        };
        let mut problem = Problem::new(status, error.message());
        if !error.hints().is_empty() {
            problem.detail = Some(error.hints().join("; "));
        }
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).expect("a problem document serialises");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dsm\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
