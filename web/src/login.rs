//! Logging in and out: the login form, the session it starts, and its end.
//!
//! The login form has a CSRF token too (there is no session yet): a random value sent both as
//! a short-lived cookie and in the form, which must match on POST (double submit), so another
//! site cannot log a visitor into an account of its choosing.

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
    self, CurrentUser, SESSION_LIFETIME, random_token, safe_next, same_secret,
    session_clear_cookie, session_cookie, session_set_cookie, token_hash, verify_password,
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
    /// The login form's CSRF token, also set as the `sluice_login` cookie.
    csrf: String,
}

const LOGIN_COOKIE: &str = "sluice_login";

/// The page with a fresh login token in the form and in its cookie.
fn login_page(
    state: &AppState,
    status: StatusCode,
    page: impl FnOnce(String) -> LoginPage,
) -> Response {
    let token = random_token();
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Lax; Max-Age=1800{}",
        if state.secure_cookies { "; Secure" } else { "" }
    );
    (status, [(header::SET_COOKIE, cookie)], page(token)).into_response()
}

fn login_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LOGIN_COOKIE)
        .map(|(_, value)| value.to_owned())
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

pub(crate) async fn form(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Response {
    login_page(&state, StatusCode::OK, |csrf| LoginPage {
        refresh: false,
        user: None,
        next: safe_next(query.next.as_deref()),
        username: String::new(),
        error: None,
        csrf,
    })
}

#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
    next: Option<String>,
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(credentials): Form<Credentials>,
) -> Result<Response, AppError> {
    let next = safe_next(credentials.next.as_deref());
    let token_matches = login_cookie(&headers)
        .is_some_and(|cookie| !cookie.is_empty() && same_secret(&cookie, &credentials.csrf));
    if !token_matches {
        let message = "The login form expired or came from elsewhere: please log in again.";
        return Ok(login_page(&state, StatusCode::FORBIDDEN, |csrf| {
            LoginPage {
                refresh: false,
                user: None,
                next,
                username: credentials.username,
                error: Some(message.to_owned()),
                csrf,
            }
        }));
    }
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
        return Ok(login_page(&state, StatusCode::UNAUTHORIZED, |csrf| {
            LoginPage {
                refresh: false,
                user: None,
                next,
                username: credentials.username,
                error: Some("Wrong username or password.".to_owned()),
                csrf,
            }
        }));
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
