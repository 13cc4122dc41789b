//! The web UI: read-only, server-rendered pages over the store (DAGs, runs, attempts, logs).
#![forbid(unsafe_code)]

mod error;
mod format;
mod pages;
mod paths;
mod views;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use sluice_store::Store;
use tokio::net::TcpListener;

/// What every handler shares: the store the pages read from.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>) -> Self {
        AppState { store }
    }
}

/// The router with every page, the stylesheet and the health check.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::dags))
        .route("/dags/{dag_id}", get(pages::dag))
        .route("/dags/{dag_id}/runs/{run_id}", get(pages::run))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/attempts/{try_number}/log",
            get(pages::attempt_log),
        )
        .route("/healthz", get(pages::healthz))
        .route("/static/style.css", get(stylesheet))
        .fallback(pages::not_found)
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` completes, then lets open requests end.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), std::io::Error> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

const STYLESHEET: &str = include_str!("../static/style.css");

async fn stylesheet() -> impl axum::response::IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
}
