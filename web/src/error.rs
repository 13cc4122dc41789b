//! `AppError`: every way a request can fail, as a page (`AppError`) or as JSON (`ApiError`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use sluice_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    /// The message names what was asked for, in the user's terms (`DAG `x` not found`).
    #[error("{0}")]
    NotFound(String),
    /// Logged in, but the role does not allow it, or a form's CSRF token is wrong.
    #[error("{0}")]
    Forbidden(String),
    /// Not logged in (pages) or no valid API token (API).
    #[error("log in first, or send `Authorization: Bearer TOKEN` with an API token")]
    Unauthorized,
    /// The request itself is wrong, said in the user's terms.
    #[error("{0}")]
    BadRequest(String),
    /// The request is fine but clashes with what exists (a run with the same id).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    /// The status, a stable code for the API, and a message fit to show.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            AppError::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message.clone()),
            AppError::Store(error @ StoreError::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            AppError::Forbidden(message) => (StatusCode::FORBIDDEN, "forbidden", message.clone()),
            AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", self.to_string()),
            AppError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, "bad_request", message.clone())
            }
            AppError::Conflict(message) => (StatusCode::CONFLICT, "conflict", message.clone()),
            AppError::Store(error) => {
                // the answer stays generic: database errors can name hosts, users and tables
                tracing::error!(%error, "store error while answering a request");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "The database did not answer as expected; the details are in the server log."
                        .to_owned(),
                )
            }
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    refresh: bool,
    user: Option<crate::auth::CurrentUser>,
    status: u16,
    title: &'static str,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if matches!(self, AppError::Unauthorized) {
            return Redirect::to(&crate::paths::login(None)).into_response();
        }
        let (status, _, message) = self.parts();
        let page = ErrorPage {
            refresh: false,
            user: None,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        (status, page).into_response()
    }
}

/// The same failures for `/api/v1`: `{"error": {"code": "not_found", "message": "…"}}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        ApiError(error)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        ApiError(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.0.parts();
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        (status, Json(body)).into_response()
    }
}
