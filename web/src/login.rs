//! Logging in and out: the login form, the session it starts, and its end.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;
use sluice_store::NewSession;

use crate::AppState;
use crate::auth::{
    self, CurrentUser, SESSION_LIFETIME, random_token, safe_next, session_clear_cookie,
    session_cookie, session_set_cookie, token_hash, verify_password,
};
use crate::error::AppError;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    refresh: bool,
    user: Option<CurrentUser>,
    next: String,
    username: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

pub(crate) async fn form(Query(query): Query<LoginQuery>) -> LoginPage {
    LoginPage {
        refresh: false,
        user: None,
        next: safe_next(query.next.as_deref()),
        username: String::new(),
        error: None,
    }
}

#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
    next: Option<String>,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    Form(credentials): Form<Credentials>,
) -> Result<Response, AppError> {
    let next = safe_next(credentials.next.as_deref());
    let user = state.store.get_user(credentials.username.trim()).await?;
    let password = credentials.password.clone();
    let stored = user.as_ref().map(|user| user.password_hash.clone());
    // argon2 takes tens of milliseconds of CPU on purpose: off the async threads
    let matches = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => verify_password(&hash, &password),
        None => {
            // the same work for an unknown user, so timing does not tell which names exist
            let _ = auth::hash_password(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        tracing::info!(username = %credentials.username, "failed login");
        let page = LoginPage {
            refresh: false,
            user: None,
            next,
            username: credentials.username,
            error: Some("Wrong username or password.".to_owned()),
        };
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    let token = random_token();
    let now = Utc::now();
    state
        .store
        .create_session(&NewSession {
            token_hash: token_hash(&token),
            user_id: user.id,
            csrf_token: random_token(),
            now,
            expires_at: now + SESSION_LIFETIME,
        })
        .await?;
    tracing::info!(username = %user.username, "logged in");
    Ok((
        [(
            header::SET_COOKIE,
            session_set_cookie(&token, state.secure_cookies),
        )],
        Redirect::to(&next),
    )
        .into_response())
}

/// Behind `require_session`, so the form's CSRF token was checked.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = session_cookie(&headers) {
        state.store.delete_session(&token_hash(&token)).await?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            session_clear_cookie(state.secure_cookies),
        )],
        Redirect::to(&crate::paths::login(None)),
    )
        .into_response())
}
