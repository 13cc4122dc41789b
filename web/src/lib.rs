//! The web UI: server-rendered pages over the store (DAGs, runs, attempts, logs), behind a
//! login, and the actions operators take from them.
#![forbid(unsafe_code)]

mod actions;
mod api;
mod auth;
mod backfill_form;
mod backfills;
mod cursor;
mod dag_cache;
mod error;
mod format;
mod live;
mod login;
mod metrics;
mod openapi;
mod pages;
mod paths;
mod settings;
mod views;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use sluice_store::Store;
use tokio::net::TcpListener;

pub use auth::{hash_password, new_api_token, token_hash};

/// What every handler shares: the store the pages read from.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    dags: Arc<dag_cache::DagCache>,
    /// Adds `Secure` to the session cookie: set it when the UI is served over HTTPS.
    secure_cookies: bool,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>) -> Self {
        AppState {
            store,
            dags: Arc::default(),
            secure_cookies: false,
        }
    }

    /// Session cookies only travel over HTTPS (behind a TLS-terminating proxy).
    pub fn with_secure_cookies(mut self) -> Self {
        self.secure_cookies = true;
        self
    }
}

/// The router: the pages (behind a login), the login page, the stylesheet and the health
/// check.
pub fn app(state: AppState) -> Router {
    let pages = Router::new()
        .route("/", get(pages::dags))
        .route("/dags/{dag_id}", get(pages::dag))
        .route("/dags/{dag_id}/runs/{run_id}", get(pages::run))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}",
            get(pages::task_instance),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/attempts/{try_number}/log",
            get(pages::attempt_log),
        )
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/attempts/{try_number}/log/stream",
            get(live::log_stream),
        )
        .route(
            "/dags/{dag_id}/trigger",
            get(actions::trigger_form).post(actions::trigger),
        )
        .route(
            "/dags/{dag_id}/backfill",
            get(backfill_form::form).post(backfill_form::submit),
        )
        .route("/dags/{dag_id}/pause", post(actions::pause))
        .route("/dags/{dag_id}/runs/{run_id}/cancel", post(actions::cancel))
        .route("/dags/{dag_id}/runs/{run_id}/clear", post(actions::clear))
        .route(
            "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark",
            post(actions::mark),
        )
        .route("/events", get(pages::events))
        .route("/access", get(pages::access))
        .route("/settings", get(settings::form).post(settings::save))
        .route("/logout", post(login::logout))
        .route_layer(from_fn_with_state(state.clone(), auth::require_session));
    let metrics = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .merge(pages)
        .merge(metrics)
        .nest("/api/v1", api::router(state.clone()))
        .route("/login", get(login::form).post(login::submit))
        .route("/healthz", get(pages::healthz))
        .route("/static/style.css", get(stylesheet))
        .route("/static/live.js", get(live::script))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(settings::with_timezone))
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
