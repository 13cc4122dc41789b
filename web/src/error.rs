//! `AppError`: every way a page can fail, and the page each failure shows.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sluice_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    /// The message names what was asked for, in the user's terms (`DAG `x` not found`).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    refresh: bool,
    status: u16,
    title: &'static str,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            AppError::Store(error @ StoreError::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, error.to_string())
            }
            AppError::Store(error) => {
                // the page stays generic: database errors can name hosts, users and tables
                tracing::error!(%error, "store error while rendering a page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The database did not answer as expected; the details are in the server log."
                        .to_owned(),
                )
            }
        };
        let page = ErrorPage {
            refresh: false,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        (status, page).into_response()
    }
}
